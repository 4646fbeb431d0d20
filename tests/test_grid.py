"""JPEG grid votes: the DCT-zero kernel against a block-by-block reference, and pastes that lack the grid."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from retouch.detect.grid import cell_votes, dct_zero_counts, grid_votes
from retouch.metrics import f1_score


def _dct_matrix() -> np.ndarray:
    """The JPEG DCT written from its definition: C(k) sqrt(2/8) cos((2i + 1) k pi / 16), C(0) = 1 / sqrt(2)."""
    matrix = np.zeros((8, 8))
    for k in range(8):
        for i in range(8):
            scale = np.sqrt(1 / 8) if k == 0 else np.sqrt(2 / 8)
            matrix[k, i] = scale * np.cos((2 * i + 1) * k * np.pi / 16)
    return matrix


def _zero_counts_by_block(luminance: np.ndarray, limit: float) -> np.ndarray:
    """For each pixel position whose 8x8 block fits in the image, the block's AC coefficients with |c| <= limit,
    one block at a time."""
    matrix = _dct_matrix()
    height, width = luminance.shape
    counts = np.zeros((height - 7, width - 7), int)
    for y in range(height - 7):
        for x in range(width - 7):
            coefficients = matrix @ (luminance[y:y + 8, x:x + 8].astype(np.float64) - 128) @ matrix.T
            zeros = np.abs(coefficients) <= limit
            counts[y, x] = zeros.sum() - zeros[0, 0]
    return counts


def _votes_by_cell(counts: np.ndarray) -> np.ndarray:
    rows, cols = counts.shape[0] // 8, counts.shape[1] // 8
    votes = np.full((rows, cols), -1)
    for row in range(rows):
        for col in range(cols):
            cell = counts[8 * row:8 * row + 8, 8 * col:8 * col + 8].ravel()
            if (cell == cell.max()).sum() == 1:
                votes[row, col] = int(cell.argmax())
    return votes


def _jpeg_pixels(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def test_dct_zero_counts_and_votes_match_a_block_by_block_reference() -> None:
    gray = _jpeg_pixels(data.camera()[100:164, 200:272], 80).astype(np.float32)
    gray[20:30, 30:40] += np.random.default_rng(0).normal(0, 3, (10, 10))  # a few off-grid blocks
    fast = dct_zero_counts(gray)
    # integer pixels give coefficients of exactly +-0.5 (counted as zeros), which float32 filters may put a hair
    # either side: the count must lie between the coefficients surely inside and those possibly inside
    surely, possibly = _zero_counts_by_block(gray, 0.5 - 1e-4), _zero_counts_by_block(gray, 0.5 + 1e-4)
    inside = fast[: surely.shape[0], : surely.shape[1]].astype(int)
    assert np.all(surely <= inside) and np.all(inside <= possibly)
    assert np.mean(surely == possibly) > 0.9  # the bounds are tight: the test compares counts, not just ranges
    np.testing.assert_array_equal(cell_votes(surely.astype(np.uint8)), _votes_by_cell(surely))


def _paste(quality: int, *, factor: float, shift: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut decoded from a JPEG, with a piece of the coffee photograph (itself a JPEG, resized and placed
    off the grid) pasted in, as an uncompressed file would hold it."""
    base = _jpeg_pixels(data.astronaut(), quality).copy()
    donor = _jpeg_pixels(data.coffee(), quality)
    piece = cv2.resize(donor[100:260, 200:360], None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    y, x = 250 + shift[0], 300 + shift[1]
    base[y:y + piece.shape[0], x:x + piece.shape[1]] = piece
    truth = np.zeros(base.shape[:2], bool)
    truth[y:y + piece.shape[0], x:x + piece.shape[1]] = True
    return base, truth


@pytest.mark.parametrize(("factor", "shift"), [(0.8, (3, 5)), (1.0, (2, 6))])
def test_a_resized_or_shifted_paste_into_a_jpeg_born_picture_is_found(factor: float,
                                                                       shift: tuple[int, int]) -> None:
    forged, truth = _paste(85, factor=factor, shift=shift)
    result = grid_votes(forged)
    assert result.skipped is None
    assert f1_score(result.mask, truth) > 0.6
    assert all(region.evidence["nfa"] <= 0.01 for region in result.regions)


@pytest.mark.parametrize("quality", [75, 90, 95])
def test_an_untouched_jpeg_born_picture_is_not_marked(quality: int) -> None:
    for picture in (data.astronaut(), data.coffee(), data.chelsea()):
        result = grid_votes(_jpeg_pixels(picture, quality))
        assert result.skipped is None and not result.mask.any() and result.score < 0.5


def test_a_never_compressed_picture_is_not_judged() -> None:
    # (scikit-image's photographs carry JPEG grids of their own past; a rendered scene with sensor-like noise
    # never went through JPEG)
    rng = np.random.default_rng(3)
    scene = cv2.GaussianBlur(rng.uniform(0, 255, (384, 512)).astype(np.float32), (0, 0), 12)
    scene = cv2.normalize(scene, None, 20, 235, cv2.NORM_MINMAX) + rng.normal(0, 2.0, scene.shape)
    result = grid_votes(np.clip(scene, 0, 255).astype(np.uint8))
    assert result.skipped is not None and "no JPEG block grid" in result.skipped
