"""The pixel-level helpers of copy-move detection (``retouch.detect._clone_pixels``)."""

from __future__ import annotations

import numpy as np

from retouch.detect._clone_pixels import pixels_of


def test_pixels_of_a_mask_are_numpys_nonzero_in_the_same_order() -> None:
    # reference: np.nonzero over the whole image (what pair_map and refine_map listed before)
    rng = np.random.default_rng(5)
    for _ in range(60):
        mask = np.zeros((int(rng.integers(1, 90)), int(rng.integers(1, 90))), bool)
        for _ in range(int(rng.integers(0, 4))):
            y, x = rng.integers(0, mask.shape[0]), rng.integers(0, mask.shape[1])
            mask[y: y + rng.integers(1, 40), x: x + rng.integers(1, 40)] = True
        mask &= rng.random(mask.shape) < 0.8
        expected = np.nonzero(mask)
        got = pixels_of(mask)
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)
