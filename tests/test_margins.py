"""Uniform margins (frames, padding, a scanner bed clipped to white) are left out of the single-image analysis."""

from __future__ import annotations

import cv2
import numpy as np
from retouch.imaging import content_box
from retouch.io import load_image_bytes
from retouch.metrics import f1_score
from retouch.pipeline import analyze_image
from retouch.result import AnalysisResult, Region
from retouch.samples import make_authentic, make_forgery


def test_content_box_finds_the_picture_inside_uniform_margins() -> None:
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)
    assert content_box(picture) == (0, 100, 0, 140)
    framed = cv2.copyMakeBorder(picture, 21, 9, 16, 5, cv2.BORDER_CONSTANT, value=(250, 250, 250))
    # top and left go up to the next multiple of 8 (the JPEG grid); bottom and right are exact
    assert content_box(framed) == (24, 121, 16, 156)
    deep = (framed.astype(np.uint16) * 257)[:, :, 0]
    assert content_box(deep) == (24, 121, 16, 156)
    assert content_box(np.full((50, 60), 7, np.uint8)) == (0, 50, 0, 60)  # uniform throughout: nothing to cut
    clipped_sky = picture.copy()
    clipped_sky[:2] = 255  # a top row clipped to white is not a frame, but holds nothing either
    assert content_box(clipped_sky) == (8, 100, 0, 140)


def test_a_result_placed_back_moves_maps_regions_and_paired_boxes() -> None:
    heatmap = np.zeros((20, 30), np.float32)
    heatmap[5:10, 5:15] = 0.8
    region = Region(bbox=(5, 5, 10, 5), area=50, score=0.8, kind="clone-target",
                    evidence={"source_bbox": [1, 2, 10, 5], "pair_id": 1})
    part = AnalysisResult(method="clone", heatmap=heatmap, mask=heatmap > 0, regions=[region], score=0.9)
    whole = part.placed_in((50, 60), 16, 8)
    assert whole.shape == (50, 60) and whole.mask.sum() == 50 and whole.mask[21:26, 13:23].all()
    assert whole.regions[0].bbox == (13, 21, 10, 5)
    assert whole.regions[0].evidence == {"source_bbox": [9, 18, 10, 5], "pair_id": 1}


def test_a_padded_scan_is_judged_like_the_unpadded_one() -> None:
    # without the margins left out, their straight borders and flat blocks made the detectors mark about 11 % of
    # padded untouched scans
    clean = load_image_bytes(make_authentic(750001, size=768).file_bytes, name="a").pixels
    for fill in (255, 0):
        padded = cv2.copyMakeBorder(clean, 60, 60, 80, 77, cv2.BORDER_CONSTANT, value=fill)
        run = analyze_image(padded)
        assert run.params["analysed_area"] == {"bbox": [80, 64, 768, clean.shape[0] - 4],
                                               "uniform_margins_excluded": True}
        assert run.fused.mask.mean() < 0.01 and "margins were left out" in run.fused.summary
        assert all(r.shape == padded.shape[:2] for r in run.results)


def test_a_fill_in_a_framed_scan_is_found_where_it_is() -> None:
    case = make_forgery(700003, method="diffusion", size=768, history="print")
    forged = load_image_bytes(case.file_bytes, name="f").pixels
    truth = cv2.copyMakeBorder(case.mask.astype(np.uint8), 64, 60, 80, 77, cv2.BORDER_CONSTANT, value=0) > 0
    framed = analyze_image(cv2.copyMakeBorder(forged, 64, 60, 80, 77, cv2.BORDER_CONSTANT, value=255))
    plain = analyze_image(forged)
    assert f1_score(framed.fused.mask, truth) >= f1_score(plain.fused.mask, case.mask) - 0.05 > 0.5
    assert not framed.fused.mask[:64].any() and not framed.fused.mask[:, :80].any()
