"""The copy-move significance test's cell kernel (``retouch.detect._clone_significance``) against a slow, obvious
reference: every cell's ``d`` and unshared share, computed pixel by pixel from the definitions."""

from __future__ import annotations

import numpy as np

from retouch.detect._clone_significance import _cell_window, _ratio_cells, cell_evidence


def _reference_ratio(evidence, cy: int, cx: int, dy: int, dx: int) -> tuple[float, float]:
    """``d`` and the unshared share of one cell against its twin ``(dy, dx)`` away, from the definitions:
    mean squared difference of the finest detail over the mean of both sides' noise variance, and over both
    cells' detail energy; inf when the twin leaves the image."""
    cell = evidence.cell
    height, width = evidence.detail.shape
    top, left = cy * cell, cx * cell
    if not (0 <= top + dy and top + dy + cell <= height and 0 <= left + dx and left + dx + cell <= width):
        return float("inf"), float("inf")
    own = evidence.detail[top:top + cell, left:left + cell].astype(np.float64)
    twin = evidence.detail[top + dy:top + dy + cell, left + dx:left + dx + cell].astype(np.float64)
    own_noise = evidence.noise[top:top + cell, left:left + cell].astype(np.float64)
    twin_noise = evidence.noise[top + dy:top + dy + cell, left + dx:left + dx + cell].astype(np.float64)
    difference = float(np.mean((own - twin) ** 2))
    ratio = difference / max(float(np.mean(own_noise + twin_noise)), 1e-12)
    share = difference / max(float(np.mean(own**2)) + float(np.mean(twin**2)), 1e-12)
    return ratio, share


def test_cell_ratios_agree_with_the_definition_and_find_an_exact_copy() -> None:
    rng = np.random.default_rng(3)
    image = (128 + 20 * rng.standard_normal((160, 200))).clip(0, 255).round()
    image[40:72, 120:168] = image[8:40, 16:64]  # an exact copy, 32 down and 104 to the right of its source
    evidence = cell_evidence((image / 255).astype(np.float32), cell=8, quantum=1 / 255, min_detail_quanta=0.6)
    rows, cols = evidence.grid
    count = 400
    cy = rng.integers(0, rows, count)
    cx = rng.integers(0, cols, count)
    # displacements that keep the twin inside and that leave the image, and the copy's own
    dy = rng.integers(-rows * 8, rows * 8, count)
    dx = rng.integers(-cols * 8, cols * 8, count)
    cy[:24], cx[:24] = np.repeat(np.arange(1, 5), 6), np.tile(np.arange(2, 8), 4)
    dy[:24], dx[:24] = 32, 104
    ratio, share = _ratio_cells(evidence, cy, cx, dy, dx)
    expected = np.array([_reference_ratio(evidence, *args) for args in zip(cy, cx, dy, dx, strict=True)])
    assert np.isinf(expected[:, 0]).sum() > 50 and np.isfinite(expected[:, 0]).sum() > 100
    np.testing.assert_array_equal(np.isinf(ratio), np.isinf(expected[:, 0]))
    finite = np.isfinite(expected[:, 0])
    np.testing.assert_allclose(ratio[finite], expected[finite, 0], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(share[finite], expected[finite, 1], rtol=1e-4, atol=1e-7)
    # inside the copy (away from its outline, where the 1-px blur mixes in the surroundings) d is 0; elsewhere
    # two independent noise fields give d near 1 or more
    inner = (cy[:24] >= 2) & (cy[:24] <= 3) & (cx[:24] >= 3) & (cx[:24] <= 6)
    assert ratio[:24][inner].max() < 1e-6
    assert np.median(ratio[24:][finite[24:]]) > 0.5


def test_the_cell_window_is_the_box_of_the_regions_pixels_by_their_coordinates() -> None:
    # reference: the box from every pixel's coordinates (the earlier implementation), on the cells of the grid
    rng = np.random.default_rng(3)
    cell, grid = 8, (12, 17)
    for _ in range(50):
        region = np.zeros((grid[0] * cell + 5, grid[1] * cell + 3), bool)
        for _ in range(rng.integers(0, 4)):
            y, x = rng.integers(0, region.shape[0]), rng.integers(0, region.shape[1])
            region[y: y + rng.integers(1, 30), x: x + rng.integers(1, 30)] = True
        ys, xs = np.nonzero(region[: grid[0] * cell, : grid[1] * cell])
        expected = None if ys.size == 0 else (slice(ys.min() // cell, ys.max() // cell + 1),
                                              slice(xs.min() // cell, xs.max() // cell + 1))
        assert _cell_window(region, cell, grid) == expected
