"""The result shape, fusion and the report writer render what analyses found, and nothing else."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from typing import Any

import numpy as np
import pytest
from PIL import Image

from retouch.fuse import fuse_results
from retouch.report import build_report, render_html
from retouch.result import AnalysisResult, Region, regions_from_mask

CHROMIUM = "/usr/bin/chromium"


def _result(method: str, mask: np.ndarray, score: float, kind: str = "noise-low") -> AnalysisResult:
    heatmap = mask.astype(np.float32) * 0.8
    return AnalysisResult(method, heatmap, mask, regions_from_mask(mask, heatmap, kind=kind), score,
                          summary=f"{method} summary", explanation=f"{method} explanation")


def test_region_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        Region(bbox=(0, 0, 2, 2), area=4, score=0.5, kind="mystery")
    with pytest.raises(ValueError, match="bbox"):
        Region(bbox=(0, 0, 0, 2), area=4, score=0.5, kind="added")
    assert Region(bbox=(1, 2, 3, 4), area=5, score=1.7, kind="added").score == 1.0


def test_result_clips_heatmap_and_checks_shapes() -> None:
    result = AnalysisResult("x", np.array([[np.nan, 2.0], [-1.0, 0.5]]), np.zeros((2, 2), bool), [], 3.0)
    assert result.heatmap.dtype == np.float32
    assert result.heatmap.tolist() == [[0.0, 1.0], [0.0, 0.5]] and result.score == 1.0
    with pytest.raises(ValueError, match="mask shape"):
        AnalysisResult("x", np.zeros((2, 2)), np.zeros((3, 3), bool), [], 0.0)


def test_regions_from_mask_counts_components_and_drops_small_ones() -> None:
    mask = np.zeros((20, 30), bool)
    mask[2:6, 3:9] = True  # 24 px
    mask[10:12, 20:21] = True  # 2 px, below min_area
    heat = np.where(mask, 0.5, 0.0)
    regions = regions_from_mask(mask, heat, kind="added", min_area=5)
    assert [(r.bbox, r.area, r.score) for r in regions] == [((3, 2, 6, 4), 24, 0.5)]


def test_heatmap_above_one_is_clipped_even_without_nan() -> None:
    # the NaN in the test above fails both range checks on its own; a map that only overshoots must be clipped
    # too, or region scores and pixel metrics average values above 1
    result = AnalysisResult("x", np.array([[2.0, 0.5], [0.25, 1.0]]), np.zeros((2, 2), bool), [], 0.5)
    assert result.heatmap.tolist() == [[1.0, 0.5], [0.25, 1.0]]


def test_regions_from_mask_keeps_a_component_of_exactly_min_area() -> None:
    # "components smaller than min_area are dropped": one of exactly min_area pixels stays
    mask = np.zeros((10, 10), bool)
    mask[1, 1:6] = True  # 5 px
    mask[5, 1:5] = True  # 4 px
    regions = regions_from_mask(mask, mask.astype(np.float32), kind="added", min_area=5)
    assert [(r.bbox, r.area) for r in regions] == [((1, 1, 5, 1), 5)]


def test_region_score_is_the_mean_heat_of_its_own_pixels_only() -> None:
    # a dot inside the bounding box of an L-shaped component belongs to another region: it must not raise the
    # L's score (each component is scored inside its own box)
    mask = np.zeros((20, 20), bool)
    heat = np.zeros((20, 20), np.float32)
    mask[2:12, 2:4] = True  # the L's upright, 20 px
    mask[10:12, 4:12] = True  # its foot, 16 px
    heat[mask] = 0.2
    mask[4, 8] = True  # the dot, inside the L's box (2, 2, 10, 10) and not touching it
    heat[4, 8] = 1.0
    regions = regions_from_mask(mask, heat, kind="added")
    assert [(r.bbox, r.area) for r in regions] == [((8, 4, 1, 1), 1), ((2, 2, 10, 10), 36)]
    assert regions[0].score == pytest.approx(1.0) and regions[1].score == pytest.approx(0.2)


def test_regions_are_listed_by_score_then_area() -> None:
    # reports list regions in this order: the strongest first, and of equal scores the largest
    mask = np.zeros((30, 30), bool)
    heat = np.zeros((30, 30), np.float32)
    mask[1:3, 1:6], heat[1:3, 1:6] = True, 0.5  # 10 px at 0.5
    mask[10:12, 1:3], heat[10:12, 1:3] = True, 0.9  # 4 px at 0.9
    mask[20:24, 1:6], heat[20:24, 1:6] = True, 0.5  # 20 px at 0.5
    regions = regions_from_mask(mask, heat, kind="added")
    assert [(round(r.score, 3), r.area) for r in regions] == [(0.9, 4), (0.5, 20), (0.5, 10)]


def test_fusion_is_union_with_support() -> None:
    a = np.zeros((100, 100), bool)
    b = np.zeros((100, 100), bool)
    a[10:40, 10:40] = True
    b[20:50, 20:50] = True
    b[70:90, 70:90] = True
    skipped = AnalysisResult.skipped_result("jpeg", (100, 100), "not a JPEG")
    fused = fuse_results([_result("grain", a, 0.9), _result("clone", b, 0.4, "clone-target"), skipped],
                         shape=(100, 100))
    assert fused.mask.sum() >= (a | b).sum()
    assert fused.score == pytest.approx(0.9)
    assert len(fused.regions) == 2
    big = max(fused.regions, key=lambda r: r.area)
    assert set(big.evidence["detectors"]) == {"grain", "clone"}
    small = min(fused.regions, key=lambda r: r.area)
    assert small.evidence["detectors"] == ["clone"]
    assert fused.details["skipped"] == {"jpeg": "not a JPEG"}


def test_fused_score_is_a_noisy_or_above_one_half_only_when_decided() -> None:
    from retouch.fuse import fused_score

    # excesses 2 s - 1 of 0.8 and 0.5: 0.5 + 0.5 (1 - 0.2 * 0.5) = 0.95, above either detector alone
    assert fused_score([0.9, 0.75], decided=True) == pytest.approx(0.95)
    assert fused_score([0.9, 0.3], decided=True) == pytest.approx(0.9)  # a detector below 0.5 adds nothing
    # no fused region survived: the strongest detector's score, capped below the decision line
    assert fused_score([0.75, 0.3], decided=False) == pytest.approx(0.49)
    assert fused_score([0.3, 0.2], decided=False) == pytest.approx(0.3)


def test_fusion_drops_small_flags_from_regions_and_mask_and_reports_coverage_of_the_region() -> None:
    # an L-shaped union (bbox area 2500, about 1600 px) and a 9 px flag below the 0.2 % minimum area (20 px)
    a = np.zeros((100, 100), bool)
    b = np.zeros((100, 100), bool)
    a[10:30, 10:60] = True  # 1000 px
    b[30:60, 10:30] = True  # 600 px
    b[80:83, 80:83] = True  # 9 px: dropped
    skipped = AnalysisResult.skipped_result("jpeg", (100, 100), "not a JPEG")
    fused = fuse_results([_result("grain", a, 0.9), _result("clone", b, 0.75, "clone-target"), skipped],
                         shape=(100, 100))
    [region] = fused.regions
    assert region.bbox == (10, 10, 50, 50)
    assert 1600 <= region.area <= 1610  # the closing may fill a pixel or two in the L's inner corner
    # suspect_mask.png holds exactly the listed regions: the dropped flag is not in it
    assert int(fused.mask.sum()) == region.area and not fused.mask[80:83, 80:83].any()
    # coverage is the share of the region's own pixels (not of its bbox) that each detector flagged
    assert region.evidence["support"] == [
        {"detector": "grain", "coverage": round(1000 / region.area, 3), "detector_score": 0.9},
        {"detector": "clone", "coverage": round(600 / region.area, 3), "detector_score": 0.75},
    ]
    assert fused.score == pytest.approx(0.95)
    # a skipped detector did not run: neither listed nor named in the summary
    assert fused.details["detectors"] == ["grain", "clone"] and "jpeg" not in fused.summary
    alone = fuse_results([_result("clone", b & (np.arange(100) >= 80)[:, None], 0.75, "clone-target")],
                         shape=(100, 100))
    assert alone.regions == [] and not alone.mask.any() and alone.score == pytest.approx(0.49)


def _pair_report(regions: list[Region]) -> dict:
    mask = np.zeros((60, 80), bool)
    for region in regions:
        x, y, w, h = region.bbox
        mask[y:y + h, x:x + w] = True
    result = AnalysisResult("compare", mask * 0.9, mask, regions, 0.8, summary="1 removal",
                            explanation="change map")
    return build_report(command="compare", inputs=[{"role": "reference", "name": "ref.tif", "sha256": "ab"},
                                                   {"role": "questioned", "name": "q.jpg", "sha256": "cd"}],
                        result=result, analyses=[], parameters={"threshold": 3.5}, timings={"fit": 0.1},
                        artifacts={"report.html": "page"}, extra={"registration": {"inliers": 321}})


def test_report_document_records_each_analysis_with_its_own_explanation_and_heatmap_file() -> None:
    import datetime as dt

    mask = np.zeros((20, 30), bool)
    mask[2:8, 3:9] = True
    grain, ela = _result("grain", mask, 0.9), _result("ela", mask, 0.2, "error-level")
    fused = fuse_results([grain, ela], shape=(20, 30))
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    report = build_report(command="analyze", inputs=[{"name": "scan.tif"}], result=fused, analyses=[grain, ela],
                          parameters={"detectors": ["grain", "ela"]}, timings={"grain": 0.123456, "ela": 2},
                          artifacts={"grain.png": "grain heatmap", "report.json": "this file"})
    after = dt.datetime.now(dt.timezone.utc)
    assert report["schema"] == "retouch-report/1" and report["command"] == "analyze"
    assert report["result"]["method"] == "fused" and report["result"]["explanation"] == fused.explanation
    entries = {entry["method"]: entry for entry in report["analyses"]}
    assert entries["grain"]["explanation"] == "grain explanation"
    assert entries["ela"]["explanation"] == "ela explanation"
    # the document points only at heatmaps that were written
    assert entries["grain"]["heatmap_file"] == "grain.png" and "heatmap_file" not in entries["ela"]
    assert report["timings_s"] == {"grain": 0.1235, "ela": 2.0}
    # an aware UTC time, whatever the machine's time zone: a naive local time misdates reports by hours
    created = dt.datetime.fromisoformat(report["created_utc"])
    assert created.utcoffset() == dt.timedelta(0) and before <= created <= after


def test_marks_of_damage_are_folded_under_the_edits_and_keep_their_map_numbers() -> None:
    # a missed edit's texture can be listed as two dozen specks: the words must still open on the edits
    edits = [Region(bbox=(8, 6, 20, 30), area=600, score=0.75, kind="removed"),
             Region(bbox=(40, 6, 10, 10), area=100, score=0.6, kind="retouched")]
    specks = [Region(bbox=(2 + 5 * i, 50, 3, 3), area=9, score=0.0, kind="damage") for i in range(3)]
    photo = np.full((60, 80, 3), 120, np.uint8)
    page = render_html(_pair_report(edits + specks), photo=photo,
                       layers={"changes": np.zeros((60, 80), np.float32)}, pair=(photo, photo))
    words = page[page.index("What was marked (5)"):]
    folded = re.search(r"<details><summary>3 marks of damage[^<]*</summary><ol>(.*?)</ol></details>", words)
    assert folded is not None
    assert re.findall(r'<li value="(\d)" data-region="\d"><strong>damage', folded.group(1)) == ["3", "4", "5"]
    opened = words[:folded.start()]
    assert re.findall(r'<li value="(\d)" data-region="\d"><strong>(\w+)', opened) == [("1", "removed"),
                                                                                   ("2", "retouched")]


def test_html_is_self_contained_and_renders_the_regions() -> None:
    region = Region(bbox=(8, 6, 20, 30), area=600, score=0.75, kind="removed",
                    evidence={"bbox_reference": [5, 5, 22, 33]})
    report = _pair_report([region])
    json.dumps(report)  # the document is JSON-serialisable as built
    photo = np.full((60, 80, 3), 120, np.uint8)
    page = render_html(report, photo=photo, layers={"changes": np.zeros((60, 80), np.float32)},
                       pair=(photo, photo))
    assert 'class="swipe"' in page and 'data-flicker="pair"' in page
    assert 'class="box removed" data-region="1"' in page
    assert "x=8, y=6, 20×30" in page and "in reference at x=5, y=5, 22×33" in page
    assert "321" in page  # registration quality shown
    assert not re.search(r"""(src|href)=["']https?://""", page)
    assert page.count("data:image/") >= 3


def test_a_questioned_copy_scanned_upside_down_is_shown_as_the_reference_stands() -> None:
    # a removal in the upper left of the questioned file; the file is the reference turned 180 degrees, so on
    # the page, turned back, the removal stands in the lower right, while the table keeps the file's pixels
    region = Region(bbox=(4, 4, 16, 12), area=192, score=0.75, kind="removed")
    report = _pair_report([region])
    report["registration"]["transform"] = [[-1.0, 0.0, 79.0], [0.0, -1.0, 59.0], [0.0, 0.0, 1.0]]
    photo = np.zeros((60, 80, 3), np.uint8)
    photo[:30, :40] = 255  # the file's upper-left quarter is white
    page = render_html(report, photo=photo, layers={"changes": np.zeros((60, 80), np.float32)},
                       pair=(photo, photo))
    assert "turned by 180 degrees clockwise" in page
    # the box drawn over the picture: 80 - (4 + 16) = 60 px from the left, 60 - (4 + 12) = 44 px from the top
    box = re.search(r'class="box removed" data-region="1" style="([^"]+)"', page).group(1)
    assert box == "left:75.000%;top:73.333%;width:20.000%;height:20.000%", box
    assert "lower right" in page and "upper left" not in page and "x=4, y=4, 16×12" in page
    # the photograph is drawn turned too: its white quarter is now the lower right
    shown = re.search(r'<img alt="analysed photograph" src="data:image/jpeg;base64,([^"]+)"', page).group(1)
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(shown))).convert("L"), np.float32)
    half_h, half_w = pixels.shape[0] // 2, pixels.shape[1] // 2
    assert pixels[half_h:, half_w:].mean() > 200 and pixels[:half_h, :half_w].mean() < 50
    # a pair turned by no quarter is drawn as the file stands
    report["registration"]["transform"] = [[1.0, 0.0, 3.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]]
    plain = render_html(report, photo=photo, layers={}, pair=(photo, photo))
    assert "turned by" not in plain and 'style="left:5.000%;top:6.667%;width:20.000%;height:20.000%"' in plain


def test_html_escapes_file_names() -> None:
    report = _pair_report([])
    report["inputs"][-1]["name"] = "<script>alert(1)</script>.jpg"
    page = render_html(report, photo=np.zeros((60, 80), np.uint8), layers={})
    assert "<script>alert(1)</script>" not in page
    assert "No region was flagged" in page


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed at /usr/bin/chromium")
def test_the_printed_report_shows_both_versions_the_map_and_every_folded_section(tmp_path) -> None:
    # a filed copy is printed: nothing in it may depend on a slider, a toggle or a click
    from playwright.sync_api import sync_playwright

    region = Region(bbox=(8, 6, 20, 30), area=600, score=0.75, kind="removed")
    photo = np.full((60, 80, 3), 120, np.uint8)
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(_pair_report([region]), photo=photo, pair=(photo, photo),
                                     layers={"changes": np.zeros((60, 80), np.float32)}), encoding="utf-8")
    visible = ("(s) => Array.from(document.querySelectorAll(s)).filter(e => getComputedStyle(e).display !== "
               "'none' && getComputedStyle(e).visibility !== 'hidden' && getComputedStyle(e).clipPath === 'none')"
               ".length")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri())
            folded = page.evaluate("document.querySelectorAll('details:not([open])').length")
            assert folded >= 4 and page.evaluate(visible, "img.layer") == 0  # the screen view: photograph only
            page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
            page.emulate_media(media="print")
            assert page.evaluate("document.querySelectorAll('details:not([open])').length") == 0
            assert page.evaluate(visible, "img.layer") == 1
            assert page.evaluate(visible, "#pair img") == 2  # both versions whole, side by side
            assert page.evaluate(visible, ".controls, .swipe-range") == 0
            page.evaluate("window.dispatchEvent(new Event('afterprint'))")
            page.emulate_media(media="screen")
            assert page.evaluate("document.querySelectorAll('details:not([open])').length") == folded
            assert page.evaluate(visible, "img.layer") == 0
        finally:
            browser.close()


def _embedded_images(page: str) -> list[tuple[str, str, Any]]:
    """Every data: image of a page as (alt text, MIME type, the opened picture)."""
    import base64
    import io

    from PIL import Image

    found = []
    for alt, mime, data in re.findall(r'<img[^>]*?alt="([^"]*)"[^>]*?src="data:(image/[a-z]+);base64,([^"]+)"', page):
        picture = Image.open(io.BytesIO(base64.b64decode(data)))
        found.append((alt, mime, picture))
    return found


def test_report_folder_keeps_full_size_maps_and_embeds_bounded_previews(tmp_path) -> None:
    # what a user relies on: every map at the scan's size with the analysis' own values, the mask exactly the
    # decision; the page shows small previews whose levels are the map's, shrunk, not a second analysis
    import cv2

    from retouch.io import heatmap_to_uint8, load_image_bytes
    from retouch.report.html import CARD_SIDE, DISPLAY_SIDE
    from retouch.report.visual import LAYER_ALPHA, map_preview
    from retouch.run.pipeline import analyze_image
    from retouch.run.tasks import analyze_loaded

    rng = np.random.default_rng(5)
    height, width = 1300, 2100  # longer than the page's previews on both kinds of picture
    scene = cv2.GaussianBlur(rng.normal(128, 60, (height, width)).astype(np.float32), (0, 0), 25)
    scene = np.clip((scene - scene.mean()) * 6 + 128 + rng.normal(0, 4, scene.shape), 0, 255).astype(np.uint8)
    scene[400:600, 700:1000] = cv2.GaussianBlur(scene[400:600, 700:1000], (0, 0), 4)  # grain removed here
    data = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    loaded = load_image_bytes(data, name="scan.jpg")
    detectors = "ela,grain"
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors=detectors)
    analyze_loaded(loaded, tmp_path / "out", detectors=detectors)
    out = tmp_path / "out"

    for result in run.results:
        written = cv2.imread(str(out / f"{result.method}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(written, heatmap_to_uint8(result.heatmap))
    np.testing.assert_array_equal(cv2.imread(str(out / "suspect_heatmap.png"), cv2.IMREAD_UNCHANGED),
                                  heatmap_to_uint8(run.fused.heatmap))
    mask = cv2.imread(str(out / "suspect_mask.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, run.fused.mask.astype(np.uint8) * 255)
    for result in run.results:
        own = cv2.imread(str(out / f"{result.method}_mask.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(own, result.mask.astype(np.uint8) * 255)
    assert cv2.imread(str(out / "overlay.png"), cv2.IMREAD_UNCHANGED).shape == (height, width, 3)

    page = (out / "report.html").read_text(encoding="utf-8")
    images = _embedded_images(page)
    assert images, "the page embeds its pictures"
    for alt, mime, picture in images:
        assert max(picture.size) <= DISPLAY_SIDE, (alt, picture.size)
    photo = [(mime, picture) for alt, mime, picture in images if alt == "analysed photograph"]
    assert [(mime, picture.size) for mime, picture in photo] == [("image/jpeg", (DISPLAY_SIDE, 990))]
    layers = {alt.removesuffix(" map"): picture for alt, mime, picture in images if alt.endswith(" map")}
    assert set(layers) == {"suspect", "ela", "grain"}
    grain = next(result for result in run.results if result.method == "grain")
    levels = np.asarray(layers["grain"])  # a palette image: its indices are the map's levels
    assert layers["grain"].mode == "P" and layers["grain"].info["transparency"] == LAYER_ALPHA.tobytes()
    np.testing.assert_array_equal(levels, map_preview(grain.heatmap, DISPLAY_SIDE))
    cards = [(mime, picture) for alt, mime, picture in images if alt.endswith(" map over the photograph")]
    assert len(cards) == 2 and all(mime == "image/jpeg" and max(card.size) == CARD_SIDE for mime, card in cards)
    assert len(page.encode("utf-8")) < 3_000_000, "previews, not full-size maps"


def test_pictures_drawn_by_table_look_up_match_the_float_blend_they_replace() -> None:
    # slow, obvious references: the map's colour over the gray photograph at the layer's opacity (cards), and
    # the dimmed photograph tinted by the heat (overlay), computed pixel by pixel in floating point
    from retouch.report.visual import DEFAULT_COLOUR, INFERNO, LAYER_ALPHA, levels_over_gray, overlay

    rng = np.random.default_rng(11)
    gray = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    levels = rng.integers(0, 256, gray.shape, dtype=np.uint8)
    alpha = LAYER_ALPHA[levels].astype(np.float64)[:, :, None] / 255.0
    expected = np.round(gray[:, :, None] * (1.0 - alpha) + INFERNO[levels].astype(np.float64) * alpha)
    np.testing.assert_array_equal(levels_over_gray(gray, levels), expected.astype(np.uint8))

    heat = rng.random(gray.shape).astype(np.float32)
    heat[0, :3] = (0.0, 1.0, 0.5)
    weight = np.round(heat.astype(np.float64) * 255.0)[:, :, None] / 255.0 * 0.65
    tinted = (gray[:, :, None] * 0.8 + 20.0) * (1.0 - weight) + weight * np.asarray(DEFAULT_COLOUR, np.float64)
    drawn = overlay(np.dstack([gray] * 3), heat, np.zeros(gray.shape, bool), [])
    assert drawn.shape == (*gray.shape, 3) and drawn.dtype == np.uint8
    assert np.abs(drawn.astype(np.float64) - np.clip(tinted, 0, 255)).max() <= 1.0  # a uint8 cast truncates
