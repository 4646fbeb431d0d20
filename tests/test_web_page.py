"""The browser page in a real Chromium (Debian's package, driven by Playwright): upload, see the result."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from retouch.samples import make_pair
from tests.api_server import Server

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed at /usr/bin/chromium"),
]


@contextmanager
def _page_with_files(tmp_path: Path, files: list[Path], *, height: int) -> Iterator[Page]:
    """The page of a fresh service in Chromium, with ``files`` chosen for upload (not yet sent)."""
    from playwright.sync_api import sync_playwright

    server = Server(tmp_path / "data", workers=1).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"])
            try:
                page = browser.new_page(viewport={"width": 1200, "height": height})
                page.goto(server.url + "/")
                page.set_input_files("#files", [str(path) for path in files])
                yield page
            finally:
                browser.close()
    finally:
        server.stop()


def test_upload_a_multi_page_tiff_and_see_its_first_page(tmp_path: Path) -> None:
    # archives scan to TIFF, which browsers cannot show: the page shows the service's JPEG preview instead
    from PIL import Image

    rng = np.random.default_rng(6)
    first, second = (np.clip(rng.normal(mean, 10, (150, 200)), 0, 255).astype(np.uint8) for mean in (80, 180))
    scan = tmp_path / "scans.tif"
    Image.fromarray(first).save(scan, save_all=True, append_images=[Image.fromarray(second)])
    with _page_with_files(tmp_path, [scan], height=1200) as page:
        page.click("#go")
        page.wait_for_selector("#result:not([hidden])", timeout=120_000)
        page.wait_for_function("document.getElementById('photo').complete")
        assert page.evaluate("document.getElementById('photo').naturalWidth") == 200
        assert "scans.tif holds 2 images" in page.inner_text("#summary")


def test_upload_a_pair_and_see_swipe_and_regions(tmp_path: Path) -> None:
    pair = make_pair(21, size=512, edit="diffusion", geometry={"scale_range": (0.8, 1.3)})
    reference = tmp_path / "reference.png"
    questioned = tmp_path / "questioned.jpg" if pair.questioned_format == "JPEG" else tmp_path / "questioned.png"
    reference.write_bytes(pair.reference_bytes)
    questioned.write_bytes(pair.questioned_bytes)
    with _page_with_files(tmp_path, [reference, questioned], height=1600) as page:
        assert page.inner_text("#go") == "Compare"
        page.click("#go")
        page.wait_for_selector("#result:not([hidden])", timeout=120_000)
        assert page.is_visible("#swipe")
        page.fill("#swipe-range", "20")
        assert "20%" in page.get_attribute("#right", "style")
        rows = page.locator("#regions tbody tr")
        assert rows.count() >= 1
        assert page.locator("#boxes .box").count() == rows.count()
        rows.first.hover()
        assert "hot" in page.get_attribute("#boxes .box >> nth=0", "class")
        screenshot = tmp_path / "web-page.png"
        page.screenshot(path=str(screenshot), full_page=True)
        assert screenshot.stat().st_size > 10_000
