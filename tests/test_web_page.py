"""The browser page in a real Chromium (Debian's package, driven by Playwright) against a real ``retouch serve``:
single scans, pairs told by their names, zips, the job list across a reload, a bad file among good ones, the
download, the key, the keyboard and a 400 px window."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from retouch.samples import make_authentic, make_pair
from tests.api_server import Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
FINISHED = "#job[data-state=done], #job[data-state=done_with_errors], #job[data-state=failed]"
PHOTO_SHOWN = "document.getElementById('photo').complete && document.getElementById('photo').naturalWidth > 0"
# the job list has been fetched once: it says how many jobs there are, or that there are none
LIST_LOADED = "document.getElementById('page-info').textContent || !document.getElementById('no-jobs').hidden"
BROKEN_PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 400  # announces a PNG; its header is damaged: its item fails alone

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("service") / "data", workers=2).start()
    yield running
    running.stop()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(server.url + "/")
    yield opened
    context.close()
    assert not errors, errors  # a script error the page survived is still a defect


def _scan(folder: Path, name: str, seed: int, size: int = 256) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(make_authentic(seed, size=size).file_bytes)
    return path


def _send(page: Page, files: list[Path] | Path, *, folder: bool = False) -> None:
    """Choose ``files`` (or a folder), wait for the plan, send it with the fast detectors."""
    page.set_input_files("#folder" if folder else "#files", files if folder else [str(f) for f in files])
    page.wait_for_selector("#plan:not([hidden])")
    page.select_option("#detectors", "grain,ela,jpeg")
    page.click("#send")
    page.wait_for_selector("#job:not([hidden])", timeout=60_000)


def _finished(page: Page) -> None:
    page.wait_for_selector(FINISHED, timeout=240_000)


def test_a_zip_batch_from_the_page_to_the_download(page: Page, tmp_path: Path) -> None:
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        for index in range(3):
            archive.writestr(f"box7/scan{index}.jpg", make_authentic(70 + index, size=256).file_bytes)
        archive.writestr("box7/readme.txt", "scanned 1998")
    (tmp_path / "box7.zip").write_bytes(bundle.getvalue())
    _send(page, [tmp_path / "box7.zip"])
    assert page.inner_text("#job-title") == "box7.zip"
    _finished(page)
    assert page.locator("#items tbody tr").count() == 3
    assert "readme.txt skipped" in page.inner_text("#job-notes")
    with page.expect_download() as started:
        page.click("#download")
    saved = tmp_path / "download.zip"
    started.value.save_as(saved)
    assert started.value.suggested_filename.endswith(".zip")
    names = zipfile.ZipFile(saved).namelist()
    assert names[0] == "summary.csv"
    assert {name.split("/")[1] for name in names if name.startswith("items/")} == {"scan0.jpg", "scan1.jpg",
                                                                                   "scan2.jpg"}
    assert sum(name.endswith("/report.html") for name in names) == 3


def test_pairs_are_told_by_their_names_and_shown_before_sending(page: Page, tmp_path: Path) -> None:
    pair = make_pair(21, size=512, edit="diffusion", geometry={"scale_range": (0.8, 1.3)})
    folder = tmp_path / "box1"
    folder.mkdir()
    (folder / "lenin_1920_a.png").write_bytes(pair.reference_bytes)
    questioned = folder / ("lenin_1920_b.jpg" if pair.questioned_format == "JPEG" else "lenin_1920_b.png")
    questioned.write_bytes(pair.questioned_bytes)
    _scan(folder, "crowd.jpg", 5)
    page.set_input_files("#folder", str(folder))  # a folder chosen: names keep it (box1/...)
    page.wait_for_selector("#plan:not([hidden])")
    rows = page.locator("#plan-items tbody tr")
    assert rows.count() == 2
    pair_row = rows.filter(has_text="compare")
    assert "reference: box1/lenin_1920_a.png" in pair_row.inner_text()
    assert f"questioned: box1/{questioned.name}" in pair_row.inner_text()
    pair_row.get_by_role("button", name="Swap").click()
    swapped = page.locator("#plan-items tbody tr", has_text="compare").inner_text()
    assert "reference: box1/" + questioned.name in swapped
    page.locator("#plan-items tbody tr", has_text="compare").get_by_role("button", name="Swap").click()
    assert page.inner_text("#send") == "Send 2 items"
    page.select_option("#detectors", "grain,ela,jpeg")
    page.click("#send")
    page.wait_for_selector("#job:not([hidden])", timeout=60_000)
    _finished(page)
    compared = page.locator("#items tbody tr", has_text="lenin_1920_a.png")
    assert f"lenin_1920_a.png, {questioned.name}" in compared.inner_text()
    compared.get_by_role("button", name="Show report").click()
    page.wait_for_selector("#result:not([hidden])")
    page.wait_for_function(PHOTO_SHOWN)
    # a comparison: the aligned pair to swipe between (it has a size once its images have decoded)
    page.wait_for_selector("#swipe", state="visible")
    assert "not probabilities" in page.text_content("#score-note")  # beside the score, in the fold
    # words first: the report's reading and its next step, the score folded away
    assert "between the two copies" in page.inner_text("#summary") and not page.is_visible("#score")
    assert "retouch compare" in page.inner_text("#next-step")
    page.wait_for_selector("#regions tbody tr")  # drawn once the heatmap is
    regions = page.locator("#regions tbody tr").count()
    assert regions >= 1 and page.locator("#boxes .box").count() == regions


def test_a_reload_keeps_the_job_list_and_the_open_job(page: Page, tmp_path: Path) -> None:
    _send(page, [_scan(tmp_path, "reload_me.jpg", 11)])
    _finished(page)
    job_url = page.url
    assert "#job=" in job_url
    page.reload()
    page.wait_for_selector("#job:not([hidden])")
    assert page.inner_text("#job-title") == "reload_me.jpg"
    assert page.locator("#job-table tbody tr", has_text="reload_me.jpg").count() == 1
    page.goto(page.url.split("#")[0])  # the page alone, no job open: the list is the service's, still there
    page.wait_for_selector("#job-table tbody tr")
    assert page.locator("#job-table tbody tr", has_text="reload_me.jpg").count() == 1
    assert page.is_hidden("#job")


def test_a_bad_file_shows_its_error_beside_its_name_while_the_others_finish(page: Page, tmp_path: Path) -> None:
    files = [_scan(tmp_path, "good1.jpg", 31), tmp_path / "broken.png", _scan(tmp_path, "good2.jpg", 32),
             tmp_path / "notes.txt"]
    files[1].write_bytes(BROKEN_PNG)
    files[3].write_text("not a scan")
    page.set_input_files("#files", [str(f) for f in files])
    page.wait_for_selector("#plan:not([hidden])")
    assert "notes.txt: left out" in page.inner_text("#plan-notes")  # named before anything is sent
    page.select_option("#detectors", "grain,ela,jpeg")
    page.click("#send")
    page.wait_for_selector("#job:not([hidden])", timeout=60_000)
    _finished(page)
    assert "done with errors" in page.inner_text("#job-meta")
    broken = page.locator("#items tbody tr", has_text="broken.png")
    assert "broken.png" in broken.locator(".item-error").inner_text()
    for name in ("good1.jpg", "good2.jpg"):
        row = page.locator("#items tbody tr", has_text=name)
        assert row.locator(".state").inner_text() == "done"
        assert row.get_by_role("button", name="Show report").count() == 1
    listed = page.locator("#job-table tbody tr", has_text="good1.jpg")
    assert "done with errors" in listed.inner_text()
    assert listed.locator("td[data-label=Errors]").inner_text() == "1"


def test_a_multi_page_tiff_is_shown_by_its_first_page(page: Page, tmp_path: Path) -> None:
    # archives scan to TIFF, which browsers cannot show: the page shows the service's JPEG preview instead
    from PIL import Image

    rng = np.random.default_rng(6)
    first, second = (np.clip(rng.normal(mean, 10, (150, 200)), 0, 255).astype(np.uint8) for mean in (80, 180))
    scan = tmp_path / "scans.tif"
    Image.fromarray(first).save(scan, save_all=True, append_images=[Image.fromarray(second)])
    _send(page, [scan])
    _finished(page)
    page.click("#items .show-report")
    page.wait_for_selector("#result:not([hidden])")
    page.wait_for_function(PHOTO_SHOWN)
    assert page.evaluate("document.getElementById('photo').naturalWidth") == 200
    assert "scans.tif holds 2 images" in page.inner_text("#summary")


def _choose_by_keyboard(page: Page, files: list[str]) -> None:
    """Enter on the focused drop zone opens the file chooser; the files are chosen in it. Headless Chromium on a
    loaded machine now and then shows no chooser for a press, or shows it late; so the chooser is intercepted for
    the whole exchange (a late one is still caught, and no native dialog is left open between presses) and Enter
    is pressed again, as a user would, up to three times."""
    chosen: list[bool] = []

    def choose(chooser: object) -> None:
        if not chosen:
            chooser.set_files(files)  # type: ignore[attr-defined]
            chosen.append(True)

    page.on("filechooser", choose)
    try:
        for _ in range(3):
            page.keyboard.press("Enter")
            for _ in range(75):  # up to 15 s for this press's chooser
                if chosen:
                    return
                page.wait_for_timeout(200)
        raise AssertionError("Enter on the drop zone opened no file chooser, three times")
    finally:
        page.remove_listener("filechooser", choose)


def test_keyboard_only_at_400_px(browser: Browser, server: Server, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 400, "height": 800})
    page = context.new_page()
    try:
        page.goto(server.url + "/")
        page.wait_for_function(LIST_LOADED)
        for _ in range(10):  # Tab until the drop zone has the focus, as a keyboard user does
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "drop":
                break
        assert page.evaluate("document.activeElement.id") == "drop"
        _choose_by_keyboard(page, [str(_scan(tmp_path, "by_keyboard.jpg", 41))])
        page.wait_for_selector("#plan:not([hidden])")
        assert page.evaluate("document.documentElement.scrollWidth") <= 400  # nothing wider than the window
        assert page.evaluate("document.activeElement.id") == "send"
        page.keyboard.press("Enter")
        page.wait_for_selector(FINISHED, timeout=240_000)
        for _ in range(40):
            if page.evaluate("document.activeElement.classList.contains('show-report')"):
                break
            page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        page.wait_for_selector("#result:not([hidden])")
        assert page.evaluate("document.documentElement.scrollWidth") <= 400  # nothing wider than the window
        text = page.inner_text("body").lower()
        assert "authentic" not in text and "clean" not in text
    finally:
        context.close()


def test_with_a_key_the_page_asks_once_and_keeps_it_for_the_tab(browser: Browser, tmp_path: Path) -> None:
    server = Server(tmp_path / "data", api_key="s3cret").start()
    context = browser.new_context(accept_downloads=True)
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        page.wait_for_selector("#keyform:not([hidden])")
        assert page.evaluate("document.activeElement.id") == "key"
        page.fill("#key", "s3cret")
        page.keyboard.press("Enter")
        page.wait_for_selector("#keyform", state="hidden")
        _send(page, [_scan(tmp_path, "keyed.jpg", 51)])
        _finished(page)
        page.reload()
        page.wait_for_selector("#job:not([hidden])")
        assert page.is_hidden("#keyform")
        with page.expect_download() as started:  # a signed link: the download carries no header
            page.click("#download-csv")
        assert "keyed.jpg" in Path(started.value.path()).read_text()
        other = context.new_page()  # another tab has to be told the key again
        other.goto(server.url + "/")
        other.wait_for_selector("#keyform:not([hidden])")
    finally:
        context.close()
        server.stop()
