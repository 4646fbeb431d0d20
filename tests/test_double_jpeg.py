"""Double JPEG compression: the block DCT against its definition, the last steps and the period read from the
coefficients, a piece compressed once found in a doubly compressed photograph, untouched JPEGs left alone."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from retouch.detect.double_jpeg import (
    ZIGZAG,
    block_dct,
    block_extremes,
    double_jpeg,
    dq_period,
    grid_origin,
    last_step,
    trimmed_extent,
    zigzag_coefficients,
)
from retouch.metrics import f1_score, pixel_auc
from tests.helpers import image_bytes


def _jpeg(pixels: np.ndarray, quality: int) -> tuple[np.ndarray, dict[int, list[int]]]:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    image = Image.open(buffer)
    return np.asarray(image), {int(k): list(v) for k, v in image.quantization.items()}


def _splice(first: int, last: int) -> tuple[np.ndarray, dict[int, list[int]], np.ndarray]:
    """The astronaut saved at quality ``first``, a piece of the coffee photograph (also a JPEG at ``first``,
    resized, which erases its first compression) pasted in, the whole saved again at quality ``last``."""
    base = _jpeg(data.astronaut(), first)[0].copy()
    donor = _jpeg(data.coffee(), first)[0]
    piece = cv2.resize(donor[100:300, 150:350], None, fx=0.9, fy=0.9, interpolation=cv2.INTER_AREA)
    top, left = 240, 280
    base[top:top + piece.shape[0], left:left + piece.shape[1]] = piece
    truth = np.zeros(base.shape[:2], bool)
    truth[top:top + piece.shape[0], left:left + piece.shape[1]] = True
    pixels, tables = _jpeg(base, last)
    return pixels, tables, truth


def test_block_dct_matches_the_definition_block_by_block() -> None:
    gray = data.camera()[:40, :48].astype(np.float64)
    fast = block_dct(gray, (3, 5))
    k = np.arange(8)[:, None]
    i = np.arange(8)[None, :]
    basis = np.where(k == 0, np.sqrt(1 / 8), np.sqrt(2 / 8)) * np.cos((2 * i + 1) * k * np.pi / 16)
    assert fast.shape == (4, 5, 8, 8)
    for row in range(4):
        for col in range(5):
            block = gray[3 + 8 * row: 11 + 8 * row, 5 + 8 * col: 13 + 8 * col] - 128
            np.testing.assert_allclose(fast[row, col], basis @ block @ basis.T, atol=1e-9)


def test_zigzag_coefficients_are_the_block_dct_band_by_band() -> None:
    gray = data.camera()[:203, :150].astype(np.float32)
    full = block_dct(gray, (2, 6))
    banded = zigzag_coefficients(gray, (2, 6), 20, band=7)
    assert banded.shape == (full.shape[0], full.shape[1], 20)
    for index, (u, v) in enumerate(ZIGZAG[:20]):
        np.testing.assert_allclose(banded[:, :, index], full[:, :, u, v], atol=1e-3)


def test_block_extremes_are_each_blocks_darkest_and_brightest_channel_value() -> None:
    image = data.astronaut()[:61, :83]
    low, high = block_extremes(image, (3, 2), (7, 10))
    for row in range(7):
        for col in range(10):
            block = image[3 + 8 * row: 11 + 8 * row, 2 + 8 * col: 10 + 8 * col]
            assert low[row, col] == block.min() and high[row, col] == block.max()
    rgba = np.dstack([data.coffee()[:40, :48], np.zeros((40, 48), np.uint8)])  # alpha is not a colour channel
    low, high = block_extremes(rgba, (0, 0), (5, 6))
    assert np.array_equal(low, rgba[..., :3].reshape(5, 8, 6, 8, 3).min(axis=(1, 3, 4)))
    assert np.array_equal(high, rgba[..., :3].reshape(5, 8, 6, 8, 3).max(axis=(1, 3, 4)))
    gray = data.camera()[:40, :40]
    low, high = block_extremes(gray, (0, 0), (5, 5), band=16)  # bands of two block rows
    assert np.array_equal(high, gray.reshape(5, 8, 5, 8).max(axis=(1, 3)))
    assert np.array_equal(low, gray.reshape(5, 8, 5, 8).min(axis=(1, 3)))


def test_a_decided_group_is_trimmed_to_its_own_evidence_and_never_dropped() -> None:
    decided = np.zeros((12, 20), bool)
    decided[1:8, 1:8] = True  # a piece with a ring of pooled blocks around it
    decided[2:5, 12:15] = True  # a second group whose blocks are all weak on their own
    evidence = np.zeros((12, 20), np.float32)
    evidence[3:6, 3:6] = 2.0
    evidence[4, 4] = 0.0  # a hole inside the piece is closed
    trimmed = trimmed_extent(decided, evidence, 0.5)
    assert trimmed[3:6, 3:6].all() and trimmed[1:8, 1:8].sum() == 9  # the ring is gone
    assert trimmed[2:5, 12:15].all()  # fewer than 6 blocks would be left: the group keeps all its blocks
    assert not (trimmed & ~decided).any()


def test_zigzag_is_jpegs_order() -> None:
    assert ZIGZAG[:9] == [(0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0)]
    assert len(set(ZIGZAG)) == 63 and (0, 0) not in ZIGZAG


def test_grid_origin_and_last_steps_are_read_from_decoded_pixels() -> None:
    pixels, tables = _jpeg(data.astronaut(), 75)
    shifted = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)[3:, 5:].astype(np.float32)  # a crop moves the grid
    assert grid_origin(shifted)[0] == (5, 3)
    coefficients = block_dct(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float64), (0, 0))
    table = np.asarray(tables[0])
    for u, v in ZIGZAG[:6]:
        assert last_step(coefficients[:, :, u, v]) == table[u * 8 + v]



@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_last_steps_are_read_on_well_filled_frequencies(name: str) -> None:
    """Where most non-zero values are one step from zero, they sit half a turn off a lattice of twice the step
    (and nearly so on one of a step and a little): the step, not such a lattice, is the last save's. (Steps of 2
    and 3, at qualities near 90, drown in the rounding of the decoded colours, and the coarse steps of a few
    hundred values at quality 60 are read one or two off on a third of the astronaut's frequencies.)"""
    pixels, tables = _jpeg(getattr(data, name)(), 75)
    coefficients = block_dct(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).astype(np.float64), (0, 0))
    table = np.asarray(tables[0])
    checked = [(u, v) for u, v in ZIGZAG if (np.abs(coefficients[:, :, u, v]) > 1.5).sum() >= 150]
    assert len(checked) >= 20
    wrong = [(u, v) for u, v in checked if last_step(coefficients[:, :, u, v]) != table[u * 8 + v]]
    assert len(wrong) <= len(checked) // 10


def test_period_of_a_doubly_quantised_histogram() -> None:
    rng = np.random.default_rng(0)
    values = rng.laplace(0, 40, 200_000)
    twice = np.rint(np.rint(values / 7) * 7 / 4)  # first step 7, then 4: a period of 7 in the last step's units
    histogram = np.bincount(np.abs(twice[twice != 0]).astype(int))[1:]
    period, strength = dq_period(histogram)
    assert period == 7 and strength > 4
    once = np.rint(values / 4)
    assert dq_period(np.bincount(np.abs(once[once != 0]).astype(int))[1:])[1] < 2


@pytest.mark.parametrize("tables_known", [True, False])
def test_a_piece_compressed_once_is_found(tables_known: bool) -> None:
    pixels, tables, truth = _splice(60, 90)
    result = double_jpeg(pixels, jpeg_quantization=tables if tables_known else None)
    assert result.skipped is None
    assert f1_score(result.mask, truth) > 0.4
    assert truth[result.mask].mean() > 0.7  # what it marks lies on the piece
    assert pixel_auc(result.heatmap, truth) > 0.75  # the piece's clipped whites and flat blocks are not judged
    assert result.regions and all(r.kind == "jpeg-single" and r.evidence["nfa"] <= 0.01 for r in result.regions)
    assert result.score > 0.5


def test_a_crop_off_the_grid_is_still_judged_on_its_own_grid() -> None:
    pixels, _, truth = _splice(60, 90)
    result = double_jpeg(pixels[5:, 3:])  # decoded pixels, cropped: the grid starts at (3, 5)
    assert result.details["grid_origin"] == [3, 5]
    assert f1_score(result.mask, truth[5:, 3:]) > 0.4


def test_when_the_last_save_is_the_stronger_nothing_is_claimed() -> None:
    pixels, tables, truth = _splice(90, 70)
    result = double_jpeg(pixels, jpeg_quantization=tables)
    assert not result.mask.any()


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
@pytest.mark.parametrize("saves", [(75,), (95,), (70, 90), (65, 92)])
def test_untouched_jpegs_are_not_marked(name: str, saves: tuple[int, ...]) -> None:
    pixels = getattr(data, name)()
    tables = None
    for quality in saves:
        pixels, tables = _jpeg(pixels, quality)
    result = double_jpeg(pixels, jpeg_quantization=tables)
    assert not result.mask.any() and not result.regions
    assert result.score < 0.5


def test_a_never_compressed_picture_is_not_judged() -> None:
    result = double_jpeg(data.camera())
    assert result.skipped is not None and "grid" in result.skipped
    assert not result.mask.any()


def test_the_pipeline_reads_the_file_and_reports_the_piece() -> None:
    from retouch.io import load_image_bytes
    from retouch.run.pipeline import analyze_image

    pixels, _, truth = _splice(60, 90)
    # decoded pixels kept losslessly, as CASIA v1's files are
    loaded = load_image_bytes(image_bytes(pixels, "PNG"), name="splice.png")
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors="dq")
    assert f1_score(run.fused.mask, truth) > 0.4
    assert any(r.kind == "jpeg-single" for r in run.results[0].regions)


def test_the_newcomers_painted_out_stars_are_found_as_compressed_once() -> None:
    """Issue 23's newcomer case: the astronaut saved at quality 75, the flag's stars painted out with cv2.inpaint,
    saved at 90. The painted area was never compressed at 75."""
    first = _jpeg(data.astronaut(), 75)[0]
    canton = np.zeros(first.shape[:2], bool)
    canton[:115, :62] = True  # the flag's blue field with its stars
    stars = cv2.dilate((canton & (first[..., 0] > 90)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    painted = cv2.inpaint(first, stars.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    pixels, tables = _jpeg(painted, 90)
    result = double_jpeg(pixels, jpeg_quantization=tables)
    assert result.regions and result.score > 0.5
    covered = result.mask[stars].mean()
    assert covered > 0.5  # most of the painted stars are marked
    assert result.mask[~canton].mean() < 0.01  # and almost nothing outside the flag's field
    assert all(region.evidence["nfa"] <= 0.01 for region in result.regions)
    untouched, untouched_tables = _jpeg(first, 90)
    assert not double_jpeg(untouched, jpeg_quantization=untouched_tables).mask.any()
