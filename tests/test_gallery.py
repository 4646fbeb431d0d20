"""The teaching gallery: verdicts that agree with the truth, real pairs from a manifest, the Commons download."""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from retouch.metrics import overlap_verdict
from retouch.report.visual import turned_box, upright_turns

CHROMIUM = "/usr/bin/chromium"
VERDICT = re.compile(r'data-seed="(\d+)" data-case="([^"]+)" data-method="([^"]+)" data-verdict="([^"]+)" '
                     r'data-overlap="(\d+)" data-truth="(\d+)" data-flagged="(\d+)"')


def _bool_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 0


def _independent_verdict(flagged: np.ndarray, truth: np.ndarray) -> tuple[str, int, int, int]:
    """The gallery's rule, restated from its documentation and computed here with numpy alone."""
    both = int((flagged & truth).sum())
    f, t = int(flagged.sum()), int(truth.sum())
    if t == 0:
        return ("false alarm" if f else "quiet"), both, t, f
    if f == 0:
        return "missed", both, t, f
    if 2 * both >= t and 2 * both >= f:
        return "found", both, t, f
    if 10 * both < t and 10 * both < f:
        return "false alarm", both, t, f
    return "partly", both, t, f


def test_overlap_verdicts_on_known_masks() -> None:
    truth = np.zeros((40, 40), bool)
    truth[10:20, 10:20] = True  # 100 px
    flagged = np.zeros_like(truth)
    assert overlap_verdict(flagged, truth)["verdict"] == "missed"
    flagged[10:20, 10:18] = True  # 80 of 100, all on the truth
    assert overlap_verdict(flagged, truth) == {"verdict": "found", "overlap_px": 80, "truth_px": 100,
                                               "flagged_px": 80}
    flagged[:] = False
    flagged[10:20, 10:13] = True  # 30 % of the truth, all on it
    assert overlap_verdict(flagged, truth)["verdict"] == "partly"
    flagged[:] = False
    flagged[25:40, 25:40] = True  # beside it
    assert overlap_verdict(flagged, truth)["verdict"] == "false alarm"
    assert overlap_verdict(flagged, np.zeros_like(truth))["verdict"] == "false alarm"
    assert overlap_verdict(np.zeros_like(truth), np.zeros_like(truth))["verdict"] == "quiet"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run([sys.executable, "-m", "retouch", "demo", "-o", str(out), "--size", "256", "--seeds", "3"],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == f"Gallery: {(out / 'index.html').resolve()}"
    return out


@pytest.mark.slow
def test_every_verdict_of_three_seeds_agrees_with_an_independent_overlap(demo: Path) -> None:
    page = (demo / "index.html").read_text(encoding="utf-8")
    shown = VERDICT.findall(page)
    lessons = sorted(demo.glob("seed-*"))
    assert len(lessons) == 3
    checked = set()
    for seed, case, method, word, overlap, truth_px, flagged_px in shown:
        lesson = demo / f"seed-{seed}"
        manifest = json.loads((lesson / "lesson.json").read_text())
        if case == "pair":
            truth = _bool_mask(lesson / manifest["pair"]["truth"])
            refused = manifest["pair"].get("refused")  # compare could not align them: nothing flagged
            flagged = np.zeros_like(truth) if refused else _bool_mask(lesson / "compare-pair" / "changes_mask.png")
        else:
            entry = next(c for c in manifest["cases"] if c["key"] == case)
            truth = _bool_mask(lesson / entry["truth"])
            folder = lesson / f"analyze-{case}"
            if word == "did not run":
                report = json.loads((folder / "report.json").read_text())
                assert next(a for a in report["analyses"] if a["method"] == method)["skipped"]
                checked.add((seed, case, method))
                continue
            name = "suspect_mask.png" if method == "all methods" else f"{method}_mask.png"
            flagged = _bool_mask(folder / name)
        assert (word, int(overlap), int(truth_px), int(flagged_px)) == _independent_verdict(flagged, truth), \
            (seed, case, method)
        checked.add((seed, case, method))
    # every seed, every case and every method is judged, on its card or in its seed's line
    for lesson in lessons:
        manifest = json.loads((lesson / "lesson.json").read_text())
        seed = str(manifest["seed"])
        assert (seed, "pair", "compare") in checked
        for entry in manifest["cases"]:
            report = json.loads((lesson / f"analyze-{entry['key']}" / "report.json").read_text())
            for method in [a["method"] for a in report["analyses"]] + ["all methods"]:
                assert (seed, entry["key"], method) in checked
    # the untouched scans are cases too: a flag there is counted as a false alarm, never hidden
    assert any(case == "none" for _, case, *_ in shown)
    # the header says how often each method found each technique, over the three seeds
    assert "Technique (3 seeds)" in page
    text = html.unescape(re.sub(r"<[^>]+>", " ", page.split("<main>")[1]))
    assert not re.search(r"\b(authentic|genuine|clean)\b", text, re.IGNORECASE)


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_the_gallery_fits_400_px(demo: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 400, "height": 800})
            page.goto((demo / "index.html").as_uri())
            page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
            assert page.evaluate("document.documentElement.scrollWidth") <= 400
        finally:
            browser.close()


def _generated_pair(folder: Path, seed: int) -> tuple[str, str]:
    """Two prints of one generated photograph, one with a figure painted out (never a shared real file)."""
    from retouch.samples.forge import make_pair

    pair = make_pair(seed, size=320, edit="airbrush")
    names = (f"case{seed}_original.{'jpg' if pair.reference_format == 'JPEG' else 'png'}",
             f"case{seed}_altered.{'jpg' if pair.questioned_format == 'JPEG' else 'png'}")
    (folder / names[0]).write_bytes(pair.reference_bytes)
    (folder / names[1]).write_bytes(pair.questioned_bytes)
    return names


@pytest.mark.slow
def test_historical_cards_show_what_compare_found_beside_what_is_recorded(tmp_path: Path) -> None:
    real = tmp_path / "pairs"
    real.mkdir()
    original, altered = _generated_pair(real, 7)
    (real / "manifest.json").write_text(json.dumps({"source": "made by the test", "cases": [
        {"id": "painted_out", "original": original, "altered": altered, "what": "A man was painted out in 1938."},
        {"id": "two_photographs", "original": original, "altered": "other.png", "what": "A composite."}]}))
    from retouch.samples.forge import make_authentic

    (real / "other.png").write_bytes(make_authentic(99, size=320, source="coffee").file_bytes)
    out = tmp_path / "out"
    with socket.socket() as probe:  # a port nothing listens on: the Commons download fails as offline
        probe.bind(("127.0.0.1", 0))
        offline = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    environment = {**os.environ, "RETOUCH_COMMONS_URL": offline, "RETOUCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "retouch", "demo", "-o", str(out), "--size", "256", "--seeds", "1",
                           "--historical", str(real), "--commons"], capture_output=True, text=True, timeout=900,
                          env=environment)
    assert done.returncode == 0, done.stderr
    # offline, the demo says what to do and builds the gallery without the Commons pair
    assert "Note: could not download Voroshilov" in done.stdout and "--historical DIR" in done.stdout
    assert done.stdout.strip().splitlines()[-1].startswith("Gallery: ")
    page = (out / "index.html").read_text(encoding="utf-8")
    section = page[page.index('id="historical"'):]
    card = section[section.index('data-case="painted_out"'):section.index('data-case="two_photographs"')]
    report = json.loads((out / "historical" / "painted_out" / "report.json").read_text())
    assert html.escape(report["reading"]["headline"]) in card and "A man was painted out in 1938." in card
    assert report["result"]["regions"]  # the painted-out figure is found in the generated pair
    other = section[section.index('data-case="two_photographs"'):]
    # a pair compare cannot align is shown with compare's own reason, not dropped
    assert "compare gave no map" in other and "same photograph" in other and "A composite." in other


def test_a_historical_folder_without_a_manifest_is_refused_before_any_work(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "retouch", "demo", "-o", str(tmp_path / "out"),
                           "--historical", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "manifest.json" in done.stderr and str(tmp_path) in done.stderr
    assert not (tmp_path / "out" / "seed-1917").exists()


class _Files(http.server.SimpleHTTPRequestHandler):
    served: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        self.served.append(self.path)
        super().do_GET()


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "served" / "wiki" / "Special:FilePath"
    root.mkdir(parents=True)
    _Files.served = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Files, directory=str(tmp_path / "served")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/wiki/Special:FilePath/", root
    finally:
        server.shutdown()
        server.server_close()


def test_commons_originals_are_fetched_once_then_read_from_the_cache(file_server: tuple[str, Path],
                                                                     tmp_path: Path) -> None:
    from retouch.io.historical import COMMONS_FILES, fetch_commons_pair, read_pairs

    url, root = file_server
    made = {}
    for role, seed in (("original", 11), ("altered", 12)):  # generated stand-ins, written by the test
        image = (np.random.default_rng(seed).random((40, 60)) * 255).astype(np.uint8)
        Image.fromarray(image).save(root / COMMONS_FILES[role], format="JPEG")
        made[role] = (root / COMMONS_FILES[role]).read_bytes()
    cache = tmp_path / "cache"
    folder = fetch_commons_pair(cache=cache, base_url=url)
    assert len(_Files.served) == 2 and all("%2C" in p or "Commissar" in p for p in _Files.served)
    manifest, [case] = read_pairs(folder)
    assert case.original.read_bytes() == made["original"] and case.altered.read_bytes() == made["altered"]
    assert "Yezhov" in case.what and "Commons" in manifest["name"]
    fetch_commons_pair(cache=cache, base_url=url)  # the second time: from the cache, no request
    assert len(_Files.served) == 2


def test_offline_the_fetch_says_what_to_do_and_the_demo_goes_on(tmp_path: Path) -> None:
    from retouch.io.historical import OfflineError, fetch_commons_pair

    # a port nothing listens on: the request is refused at once, as offline
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OfflineError) as raised:
        fetch_commons_pair(cache=tmp_path / "cache", base_url=f"http://127.0.0.1:{port}/", timeout=5)
    message = str(raised.value)
    assert "Voroshilov" in message and str(tmp_path / "cache") in message and "--historical DIR" in message
    assert not any((tmp_path / "cache").glob("*.jpg"))  # nothing half-written


@pytest.mark.parametrize("method", ["airbrush", "clone", "pasteup"])
def test_the_vanished_figure_is_a_person_seen_in_the_untouched_scan(method: str) -> None:
    from retouch.samples.forge import make_forgery

    case = make_forgery(5, method=method, size=320, person=True)
    before = np.asarray(case.original, np.float32)
    after = np.asarray(case.image, np.float32)
    change = np.abs(before - after).reshape(*case.mask.shape, -1).mean(axis=2)
    # the person is there before and gone after: the doctored pixels changed, the rest is the same scan
    assert change[case.mask].mean() > 20 and change[~case.mask].mean() < 1.0
    rows = np.flatnonzero(case.mask.any(axis=1))
    widths = case.mask.sum(axis=1)[rows]
    height = rows[-1] - rows[0] + 1
    head, shoulders = widths[: height // 10].max(), widths[height // 5: height // 2].max()
    assert height > 1.8 * shoulders and shoulders > 1.6 * head  # a standing figure, its head narrower than its coat


@pytest.mark.parametrize("quarters", [0, 1, 2, 3])
def test_a_copy_scanned_turned_is_shown_upright_with_its_places_turned_alike(quarters: int) -> None:
    height, width = 30, 50
    rows, cols = np.mgrid[0:height, 0:width]
    # the questioned copy is the reference turned by whole quarters and slightly more; the transform is fitted
    # from where each reference pixel lands, as a registration would report it
    landed_rows, landed_cols = np.rot90(rows, quarters), np.rot90(cols, quarters)
    q_rows, q_cols = np.mgrid[0:landed_rows.shape[0], 0:landed_rows.shape[1]]
    reference_xy = np.stack([landed_cols.ravel(), landed_rows.ravel()], 1).astype(np.float32)
    questioned_xy = np.stack([q_cols.ravel(), q_rows.ravel()], 1).astype(np.float32)
    slight = cv2.getRotationMatrix2D((0.0, 0.0), 7.0, 1.0)
    questioned_xy = questioned_xy @ slight[:, :2].T.astype(np.float32)
    affine, _ = cv2.estimateAffine2D(reference_xy, questioned_xy)
    matrix = np.vstack([affine, [0.0, 0.0, 1.0]])
    turns = upright_turns(matrix)
    questioned = np.rot90(np.arange(height * width).reshape(height, width), quarters)
    assert np.array_equal(np.rot90(questioned, turns), np.arange(height * width).reshape(height, width))
    # a box on the questioned copy lands where the same pixels lie once the copy is turned upright
    q_height, q_width = questioned.shape
    box = (3, 4, 9, 6)
    marked = np.zeros((q_height, q_width), bool)
    marked[box[1]:box[1] + box[3], box[0]:box[0] + box[2]] = True
    upright = np.rot90(marked, turns)
    ys, xs = np.nonzero(upright)
    expected = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    assert turned_box(box, turns, q_width, q_height) == expected


def test_a_copy_turned_by_less_than_the_tolerance_or_mirrored_is_not_turned() -> None:
    assert upright_turns(np.vstack([cv2.getRotationMatrix2D((0.0, 0.0), 12.0, 1.3), [0, 0, 1]])) == 0
    assert upright_turns(np.vstack([cv2.getRotationMatrix2D((0.0, 0.0), 45.0, 1.0), [0, 0, 1]])) == 0
    # a print mirrored left to right is not half a turn: shown as the file stands, not upside down
    assert upright_turns([[-1.0, 0.0, 99.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) == 0
