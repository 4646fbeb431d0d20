"""Report language: what the first lines, the terminal and the page say when something or nothing was found."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from retouch.report import build_report, render_html
from retouch.report.reading import reading
from retouch.result import AnalysisResult, Region
from tests.helpers import CliRunner

CHROMIUM = "/usr/bin/chromium"
# words that tell a reader the photograph is untouched: never said on the strength of a method finding nothing
ACQUITTALS = re.compile(r"\b(authentic|genuine|clean|unaltered|untampered|not (?:been )?(?:doctored|retouched))\b",
                        re.IGNORECASE)


def _visible_text(page: str) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def _nothing_found_report(fmt: str = "PNG") -> dict:
    shape = (48, 64)
    quiet = AnalysisResult("grain", np.zeros(shape, np.float32), np.zeros(shape, bool), [], 0.1,
                           summary="nothing", explanation="grain map")
    skipped = AnalysisResult.skipped_result("jpeg", shape, "the file is not a JPEG and shows no JPEG block grid")
    fused = AnalysisResult("fused", np.zeros(shape, np.float32), np.zeros(shape, bool), [], 0.1,
                           summary="No suspect region", explanation="fused map")
    return build_report(command="analyze",
                        inputs=[{"role": "image", "name": "scan.png", "format": fmt, "width": 64, "height": 48}],
                        result=fused, analyses=[quiet, skipped], parameters={}, timings={}, artifacts={})


def test_a_report_with_no_finding_never_acquits_and_names_the_next_step() -> None:
    report = _nothing_found_report()
    words = report["reading"]
    assert words["headline"] == "No area of this scan met the threshold of any method."
    told = " ".join([words["headline"], words["how_sure"], *words["cannot_see"], words["next_step"]])
    assert not ACQUITTALS.search(told), told
    assert "retouch compare" in words["next_step"] and "another copy" in words["next_step"]
    # what the methods could not see in this file: the JPEG method did not run, and why; the scan is small
    assert any("jpeg did not run" in line and "not a JPEG" in line for line in words["cannot_see"])
    assert any("small (64×48 px)" in line for line in words["cannot_see"])

    page = render_html(report, photo=np.full((48, 64, 3), 128, np.uint8), layers={}, default_layer=None)
    text = _visible_text(page)
    assert not ACQUITTALS.search(text), ACQUITTALS.search(text)
    # the first lines after the title are the reading, with the next step, before any number
    body = _visible_text(page.split("<main>", 1)[1])
    first = body[body.index("retouch analyze report: scan.png") + len("retouch analyze report: scan.png"):][:900]
    assert first.lstrip().startswith("No area of this scan met the threshold")
    assert "retouch compare" in first and not re.search(r"\d\.\d\d", first)
    assert 'class="verdict nothing"' in page and "clean" not in page.split("<main>")[1].split("</main>")[0]


def test_a_finding_is_told_in_words_first_and_its_numbers_are_folded() -> None:
    mask = np.zeros((60, 80), bool)
    mask[5:25, 50:70] = True
    region = Region(bbox=(50, 5, 20, 20), area=400, score=0.91, kind="removed", evidence={"stand_out": 0.135})
    result = AnalysisResult("compare", mask * 0.9, mask, [region], 0.9, summary="1 removal", explanation="x")
    report = build_report(command="compare", inputs=[{"name": "a.jpg"}, {"name": "b.jpg"}], result=result,
                          analyses=[], parameters={}, timings={}, artifacts={})
    assert report["reading"]["headline"].startswith("1 area between the two copies to examine: 1 area where "
                                                     "something in the other copy is missing")
    assert "strong evidence" in report["reading"]["how_sure"]
    page = render_html(report, photo=np.zeros((60, 80, 3), np.uint8), layers={"changes": result.heatmap},
                       default_layer="changes")
    words_at = page.index("upper right, 8.3 % of the picture, strong evidence")
    folded = page.index('<details class="numbers">')
    assert words_at < folded < page.index("stand_out: 0.135") < page.index("</details>", folded)
    assert page.index("<table>") > folded  # the table of numbers lives inside the fold
    assert 'class="scale"' in page  # the heatmap's colour scale sits under the picture
    assert '<img class="layer on" data-name="changes"' in page  # shown over the photograph from the start


def test_kinds_and_evidence_it_does_not_know_are_told_by_name() -> None:
    # a newer detector's kind and a region with no score or evidence: rendered, never a KeyError
    result = {"regions": [{"bbox": [1, 2, 3, 4], "area": 12, "kind": "grid-shift"}, {"bbox": [5, 5, 2, 2],
              "area": 4, "score": 0.3, "kind": "damage", "evidence": {"nfa": {"log10": -4.2}}}], "score": 0.4}
    words = reading(command="compare", result=result)
    assert "marked 'grid shift'" in words["headline"] and "damage" in words["headline"]
    only_damage = reading(command="compare", result={"regions": [result["regions"][1]]})
    # dust alone is never the headline finding
    assert only_damage["headline"].startswith("No difference in content between the two copies met the threshold")


def test_a_reshaped_part_inside_a_change_is_told_as_lying_inside_it() -> None:
    removed = {"bbox": [10, 10, 50, 80], "area": 3000, "score": 0.9, "kind": "removed"}
    reshaped = {"bbox": [20, 40, 30, 40], "area": 900, "score": 0.9, "kind": "retouched",
                "evidence": {"reshaped": True, "within": [10, 10, 50, 80]}}
    words = reading(command="compare", result={"regions": [removed, reshaped]})
    assert "One of these lies inside another" in words["headline"]
    alone = reading(command="compare", result={"regions": [removed, {**reshaped, "evidence": {}}]})
    assert "inside another" not in alone["headline"]


def test_the_terminal_summary_says_the_reading_first(cli: CliRunner, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur((rng.random((96, 128)) * 255).astype(np.uint8), (0, 0), 1.0)
    cv2.imwrite(str(tmp_path / "flat.png"), image)
    done = cli("analyze", str(tmp_path / "flat.png"), "-o", str(tmp_path / "out"), "-d", "grain")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert lines[0] == report["reading"]["headline"]
    assert any(line.startswith("Next step:") and "retouch compare" in line for line in lines)
    if not report["result"]["regions"]:
        assert not ACQUITTALS.search(done.stdout)


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_reports_fit_400_px_without_sideways_scrolling(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    mask = np.zeros((300, 900), bool)
    mask[40:90, 100:260] = True
    long_name = "a-very-long-scan-name-without-any-space-" * 4 + ".tif"
    regions = [Region(bbox=(100, 40, 160, 50), area=8000, score=0.8, kind="removed",
                      evidence={"bbox_reference": [90, 30, 170, 60], "note": "x" * 200})]
    result = AnalysisResult("compare", mask * 0.8, mask, regions, 0.8, summary="s", explanation="e")
    photo = np.full((300, 900, 3), 90, np.uint8)
    pages = {
        "compare": render_html(build_report(command="compare", inputs=[{"name": long_name, "sha256": "f" * 64},
                                                                       {"name": long_name, "sha256": "e" * 64}],
                                            result=result, analyses=[], parameters={"p": "y" * 300}, timings={},
                                            artifacts={}, extra={"registration": {"model": "homography"}}),
                               photo=photo, layers={"changes": result.heatmap}, pair=(photo, photo),
                               default_layer="changes"),
        "analyze": render_html(_nothing_found_report(), photo=photo[:48, :64], layers={}),
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            for name, page_html in pages.items():
                path = tmp_path / f"{name}.html"
                path.write_text(page_html, encoding="utf-8")
                page = browser.new_page(viewport={"width": 400, "height": 800})
                page.goto(path.as_uri())
                page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
                assert page.evaluate("document.documentElement.scrollWidth") <= 400, name
                page.close()
        finally:
            browser.close()
