"""Uniform margins (frames, padding, a scanner bed clipped to white) are left out of the single-image analysis."""

from __future__ import annotations

import io

import cv2
import numpy as np

from retouch.imaging import content_box
from retouch.io import load_image_bytes
from retouch.metrics import f1_score
from retouch.result import AnalysisResult, Region
from retouch.run.pipeline import analyze_image
from retouch.samples import make_authentic, make_forgery


def test_content_box_finds_the_picture_inside_uniform_margins() -> None:
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)
    assert content_box(picture) == (0, 100, 0, 140)
    framed = cv2.copyMakeBorder(picture, 21, 9, 16, 5, cv2.BORDER_CONSTANT, value=(250, 250, 250))
    # on the JPEG grid, without the 8x8 blocks that hold the picture's edges (rows 21 and 120, columns 16 and 155)
    assert content_box(framed) == (24, 120, 24, 152)
    deep = (framed.astype(np.uint16) * 257)[:, :, 0]
    assert content_box(deep) == (24, 120, 24, 152)
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
    bottom = (60 + clean.shape[0] - 1) // 8 * 8
    for fill, saved_as in ((255, ".png"), (0, ".png"), (255, ".jpg")):
        padded = cv2.copyMakeBorder(clean, 60, 60, 80, 77, cv2.BORDER_CONSTANT, value=fill)
        # a JPEG rings along the picture's edge, into the margin's side of the blocks that straddle it
        quality = [cv2.IMWRITE_JPEG_QUALITY, 85] if saved_as == ".jpg" else []
        loaded = load_image_bytes(cv2.imencode(saved_as, padded, quality)[1].tobytes(), name=f"padded{saved_as}")
        run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization)
        assert run.params["analysed_area"] == {"bbox": [88, 64, 840 - 88, bottom - 64],
                                               "uniform_margins_excluded": True}, saved_as
        assert run.fused.mask.mean() < 0.01 and "margins were left out" in run.fused.summary, saved_as
        assert all(r.shape == padded.shape[:2] for r in run.results)


def test_a_fill_in_a_framed_scan_is_found_where_it_is() -> None:
    case = make_forgery(700003, method="diffusion", size=768, history="print")
    forged = load_image_bytes(case.file_bytes, name="f").pixels
    truth = cv2.copyMakeBorder(case.mask.astype(np.uint8), 64, 60, 80, 77, cv2.BORDER_CONSTANT, value=0) > 0
    framed = analyze_image(cv2.copyMakeBorder(forged, 64, 60, 80, 77, cv2.BORDER_CONSTANT, value=255))
    plain = analyze_image(forged)
    assert f1_score(framed.fused.mask, truth) >= f1_score(plain.fused.mask, case.mask) - 0.05 > 0.5
    assert not framed.fused.mask[:64].any() and not framed.fused.mask[:, :80].any()


def test_colour_jpeg_padding_off_its_chroma_grid_stays_out_of_the_analysis() -> None:
    # halved chroma is coded in 16-pixel blocks, so the ringing of a colour JPEG's picture edge starts up to 16
    # lines into the margin: a whole 8x8 block of ringing margin (4 columns, 2 rows here) was analysed and 5 % of
    # the untouched photograph marked along its edges
    from PIL import Image
    from skimage import data

    photograph = data.astronaut()
    buffer = io.BytesIO()
    Image.fromarray(np.pad(photograph, ((50, 30), (20, 70), (0, 0)), constant_values=255)).save(
        buffer, "JPEG", quality=85)  # Pillow's default 4:2:0 chroma subsampling
    loaded = load_image_bytes(buffer.getvalue(), name="padded.jpg")
    top, bottom, left, right = content_box(loaded.pixels)
    assert (top, left) >= (50, 20) and (bottom, right) <= (50 + 512, 20 + 512)
    assert top % 8 == 0 and left % 8 == 0
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization)
    assert run.fused.mask.mean() < 0.005
