"""Noise-residual consistency: the residual, its patterns and their symmetry classes against slow references; a
piece with another noise found on the map; untouched photographs, JPEG and PNG, not marked."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from skimage import data

from retouch.detect.noise_residual import (
    BINS,
    CLASSES,
    cell_histograms,
    noise_residual,
    pattern_classes,
    quantised_residuals,
    robust_host,
)
from retouch.metrics import f1_score, pixel_auc
from tests.helpers import jpeg_round_trip


def test_symmetry_classes_merge_reversal_and_sign_into_25() -> None:
    assert BINS == 25
    for values in itertools.product((-1, 0, 1), repeat=4):
        code = sum((v + 1) * 3 ** k for k, v in enumerate(values))
        for twin in (values[::-1], tuple(-v for v in values), tuple(-v for v in values[::-1])):
            assert CLASSES[sum((v + 1) * 3 ** k for k, v in enumerate(twin))] == CLASSES[code]
    # and nothing else is merged: 81 patterns in orbits of 1, 2 or 4 (Burnside's count gives 25)
    sizes = np.bincount(CLASSES)
    assert sizes.sum() == 81 and set(sizes) <= {1, 2, 4}


def test_residual_patterns_and_histograms_match_a_pixel_by_pixel_reference() -> None:
    rng = np.random.default_rng(0)
    luminance = (rng.normal(128, 6, (24, 32))).astype(np.float32)
    along_rows, along_cols = quantised_residuals(luminance, 6.0)
    step = 6.0

    def quantise(value: float) -> int:
        return 2 if value / step >= 0.5 else 0 if value / step <= -0.5 else 1

    for y in range(2, 22):
        for x in range(2, 28):
            row = luminance[y, x - 1: x + 3].astype(np.float64)
            col = luminance[y - 1: y + 3, x].astype(np.float64)
            assert along_rows[y, x] == quantise(-row[0] + 3 * row[1] - 3 * row[2] + row[3])
            assert along_cols[y, x] == quantise(-col[0] + 3 * col[1] - 3 * col[2] + col[3])
    classes = pattern_classes(along_rows, along_rows=True)
    for y, x in [(3, 4), (10, 20), (20, 27)]:
        code = sum(int(along_rows[y, x + k]) * 3 ** k for k in range(4))
        assert classes[y, x] == CLASSES[code]
    valid = np.ones(luminance.shape, bool)
    valid[0, 0] = False
    counts = cell_histograms([classes], valid)
    assert counts.shape == (3, 4, BINS)
    assert counts[0, 0].sum() == 63 and counts[1, 2].sum() == 64
    np.testing.assert_array_equal(counts[1, 2], np.bincount(classes[8:16, 16:24].ravel(), minlength=BINS))
    np.testing.assert_array_equal(cell_histograms([classes, classes], valid), 2 * counts)


def test_robust_host_ignores_a_compact_minority() -> None:
    rng = np.random.default_rng(1)
    host = rng.normal(0, 1, (900, 5))
    piece = rng.normal(0, 0.2, (100, 5)) + np.array([5.0, 0, 0, 0, 0])
    mean, covariance = robust_host(np.vstack([host, piece]))
    assert abs(mean[0]) < 0.3 and covariance[0, 0] < 1.5


def _two_cameras(host_name: str, donor_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``host_name`` photographed with a noisier sensor (Gaussian noise of 4 grey levels), a piece of
    ``donor_name`` without that noise pasted in."""
    rng = np.random.default_rng(2)
    host = getattr(data, host_name)().astype(np.float64)
    base = np.clip(host + rng.normal(0, 4, host.shape), 0, 255).astype(np.uint8)
    base[150:330, 150:330] = getattr(data, donor_name)()[50:230, 50:230]
    truth = np.zeros(base.shape[:2], bool)
    truth[150:330, 150:330] = True
    return base, truth


@pytest.mark.parametrize("quality", [None, 95])
def test_a_piece_from_another_camera_stands_out_on_the_map(quality: int | None) -> None:
    pixels, truth = _two_cameras("astronaut", "chelsea")
    if quality:
        pixels = jpeg_round_trip(pixels, quality)
    result = noise_residual(pixels)
    assert result.skipped is None
    assert pixel_auc(result.heatmap, truth) > 0.9
    assert not result.mask.any() or f1_score(result.mask, truth) > 0.5  # what it marks lies on the piece


def test_a_strong_noise_difference_is_decided() -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:512, :512]
    scene = 110 + 60 * np.sin(xx / 40) * np.cos(yy / 55) + rng.normal(0, 2, (512, 512))
    truth = np.zeros(scene.shape, bool)
    truth[150:330, 200:380] = True
    scene[truth] += rng.normal(0, 6, int(truth.sum()))
    result = noise_residual(np.clip(scene, 0, 255).astype(np.uint8))
    assert f1_score(result.mask, truth) > 0.6
    assert result.regions and all(r.kind == "noise-residual" and r.evidence["nfa"] <= 0.01 for r in result.regions)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
@pytest.mark.parametrize("quality", [None, 75, 95])
def test_untouched_photographs_are_not_marked(name: str, quality: int | None) -> None:
    pixels = getattr(data, name)()
    if quality:
        pixels = jpeg_round_trip(pixels, quality)
    result = noise_residual(pixels)
    assert not result.mask.any() and not result.regions
    assert result.score < 0.5


def test_a_picture_too_small_for_its_windows_is_not_judged() -> None:
    result = noise_residual(data.camera()[:60, :60])
    assert result.skipped is not None
