"""The compiled PatchMatch kernel against a slow, obvious reference: the exact nearest neighbour by brute force
(``patchmatch`` below is ``compiled_patchmatch``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retouch.detect._patchmatch import compiled_patchmatch as patchmatch
from retouch.detect._patchmatch import projected_patch_features, reduce_features
from tests.helpers import assert_offset_field


def brute_force_nearest(features: np.ndarray, min_offset: int) -> np.ndarray:
    """For every pixel, the smallest squared feature distance to any pixel at least ``min_offset`` away (exact,
    one pixel at a time: the reference the kernel approximates)."""
    height, width, _ = features.shape
    ys, xs = np.mgrid[0:height, 0:width]
    flat = features.reshape(-1, features.shape[2]).astype(np.float64)
    nearest = np.empty((height, width))
    for y in range(height):
        for x in range(width):
            allowed = ((ys - y) ** 2 + (xs - x) ** 2 >= min_offset**2).reshape(-1)
            nearest[y, x] = ((flat[allowed] - flat[y * width + x]) ** 2).sum(axis=1).min()
    return nearest


def smooth_field(seed: int, shape: tuple[int, int, int]) -> np.ndarray:
    # smooth random fields, like real patch features: near misses are close, so the search can home in
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 2.0)


def test_kernel_finds_the_exact_nearest_neighbour_almost_everywhere() -> None:
    features = smooth_field(11, (36, 48, 4))
    features[4:16, 30:42] = features[20:32, 6:18]  # a copy: its pixels have exact twins 16 px down, 24 px left
    oy, ox, distance = patchmatch(features, min_offset=5, iterations=10, global_samples=3, local_samples=4,
                                  local_radius=16, seed=2)
    exact = brute_force_nearest(features, 5)
    # the reported distance is the true distance to the reported partner, never below the exact minimum
    assert_offset_field(features, oy, ox, distance, 5)
    assert (distance >= exact * (1 - 1e-5) - 1e-7).all()
    # it is an approximation: on this field the whole-array numpy version it replaced found the exact minimum at
    # half the pixels after 10 iterations, at a mean distance 1.4 times the exact one; one iteration is at 2.3
    found = np.isclose(distance, exact, rtol=1e-4, atol=1e-7)
    assert found.mean() > 0.4, found.mean()
    assert distance.mean() < 1.6 * exact.mean()
    # and everywhere inside the copy it finds the exact twin
    assert found[6:14, 32:40].all() and (distance[6:14, 32:40] == 0).all()
    assert (oy[6:14, 32:40] == 16).all() and (ox[6:14, 32:40] == -24).all()


def test_kernel_is_deterministic_and_the_seed_matters() -> None:
    features = smooth_field(12, (40, 50, 6))
    first = patchmatch(features, min_offset=6, iterations=2, seed=4)
    again = patchmatch(features, min_offset=6, iterations=2, seed=4)
    other = patchmatch(features, min_offset=6, iterations=2, seed=5)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_a_proposal_alone_finds_the_copy_it_describes() -> None:
    features = smooth_field(13, (40, 60, 4))
    features[5:20, 35:55] = features[22:37, 5:25]
    shift = np.float32([[1, 0, -30], [0, 1, 17]])  # pixel (x, y) -> (x - 30, y + 17)
    oy, ox, distance = patchmatch(features, min_offset=8, iterations=0, proposals=[shift])
    assert (distance[5:20, 35:55] == 0).all() and (oy[5:20, 35:55] == 17).all() and (ox[5:20, 35:55] == -30).all()
    # where the proposal lands outside the image, nothing was tried: no partner, infinite distance
    assert np.isinf(distance[30:, :]).all()


def test_continuing_from_an_initial_field_never_loses_a_match() -> None:
    features = smooth_field(14, (30, 40, 4))
    start = patchmatch(features, min_offset=6, iterations=1, seed=1)
    more = patchmatch(features, min_offset=6, iterations=2, seed=2, initial=start)
    assert (more[2] <= start[2]).all() and (more[2] < start[2]).any()


@pytest.mark.parametrize("shape", [(1, 40, 3), (40, 1, 3), (3, 3, 2)])
def test_degenerate_shapes_give_a_valid_field(shape: tuple[int, int, int]) -> None:
    features = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    oy, ox, distance = patchmatch(features, min_offset=2, iterations=2, seed=0)
    reachable = np.isfinite(distance)
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    assert ((ys + oy)[reachable] < shape[0]).all() and ((xs + ox)[reachable] < shape[1]).all()
    assert (oy[~reachable] == 0).all() and (ox[~reachable] == 0).all()


def raw_patch_features(gray: np.ndarray, size: int) -> np.ndarray:
    """(H, W, size*size): each pixel's size x size neighbourhood, mean removed (what the projection avoids)."""
    half = size // 2
    padded = cv2.copyMakeBorder(gray.astype(np.float32), half, half, half, half, cv2.BORDER_REFLECT)
    height, width = gray.shape
    stack = np.stack([padded[dy:dy + height, dx:dx + width] for dy in range(size) for dx in range(size)], axis=2)
    return (stack - stack.mean(axis=2, keepdims=True)).astype(np.float32)


def test_projected_features_equal_the_reduced_patch_stack() -> None:
    from skimage import data

    gray = data.camera()[100:260, 150:330].astype(np.float32) / 255
    stacked = reduce_features(raw_patch_features(gray, 5), 8)
    projected = projected_patch_features(gray, 5, 8)
    assert projected.shape == stacked.shape == (160, 180, 8)
    for channel in range(8):  # a principal component is defined up to its sign
        sign = np.sign((stacked[..., channel] * projected[..., channel]).sum())
        np.testing.assert_allclose(sign * projected[..., channel], stacked[..., channel], atol=2e-5)


def reference_upsampling_pass(features: np.ndarray, coarse_oy: np.ndarray, coarse_ox: np.ndarray,
                              proposals: list[np.ndarray], min_offset: int) -> tuple[np.ndarray, ...]:
    """Pass 0 of the full-resolution kernel, one pixel and one candidate at a time: the proposals, then the grid
    parent's offset doubled and moved by up to a pixel, in that order, the first strictly closer one kept."""
    height, width, _ = features.shape
    oy = np.zeros((height, width), np.int64)
    ox = np.zeros((height, width), np.int64)
    best = np.full((height, width), np.inf)
    for y in range(height):
        for x in range(width):
            candidates = [(int(np.rint(a[1, 0] * x + a[1, 1] * y + a[1, 2])) - y,
                           int(np.rint(a[0, 0] * x + a[0, 1] * y + a[0, 2])) - x) for a in proposals]
            parent_y, parent_x = 2 * coarse_oy[y // 2, x // 2], 2 * coarse_ox[y // 2, x // 2]
            candidates += [(parent_y + sy, parent_x + sx) for sy in (-1, 0, 1) for sx in (-1, 0, 1)]
            for dy, dx in candidates:
                ty, tx = y + dy, x + dx
                if not (0 <= ty < height and 0 <= tx < width) or dy * dy + dx * dx < min_offset**2:
                    continue
                distance = float(((features[y, x] - features[ty, tx]) ** 2).sum(dtype=np.float32))
                if distance < best[y, x]:
                    oy[y, x], ox[y, x], best[y, x] = dy, dx, distance
    return oy, ox, best


def test_the_upsampling_pass_agrees_with_its_reference() -> None:
    from retouch.detect._patchmatch import upsampled_field

    features = smooth_field(15, (27, 33, 4))  # odd sides: the grid has a last row and column of its own
    rng = np.random.default_rng(4)
    coarse_oy = rng.integers(-13, 14, (14, 17))
    coarse_ox = rng.integers(-16, 17, (14, 17))
    shift = np.float32([[1, 0, -11], [0, 1, 7]])
    turn = cv2.getRotationMatrix2D((16.0, 13.0), 25.0, 1.1)
    expected = reference_upsampling_pass(features, coarse_oy, coarse_ox, [shift, turn], 6)
    found = upsampled_field(features, (coarse_oy, coarse_ox, None), min_offset=6, proposals=[shift, turn],
                            sweeps=0)
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_array_equal(found[1], expected[1])
    np.testing.assert_allclose(found[2], expected[2], rtol=1e-5, atol=1e-6)


def test_coarse_to_fine_search_is_as_close_as_the_full_search_and_finds_an_odd_copy() -> None:
    from retouch.detect._patchmatch import coarse_to_fine_patchmatch

    features = smooth_field(16, (48, 64, 4))
    features[5:21, 40:56] = features[22:38, 9:25]  # a copy 17 px down and 31 px left of its source: odd offsets
    exact = brute_force_nearest(features, 7)
    oy, ox, distance = coarse_to_fine_patchmatch(features, min_offset=7, iterations=4, seed=3)
    assert_offset_field(features, oy, ox, distance, 7)
    assert (distance >= exact * (1 - 1e-5) - 1e-7).all()
    full = patchmatch(features, min_offset=7, iterations=4, seed=3)
    # the grid's field doubled is within a pixel of the full one, and the full-resolution sweeps finish it
    assert distance.mean() <= 1.1 * full[2].mean(), (distance.mean(), full[2].mean())
    assert (distance[7:19, 42:54] == 0).all()
    assert (oy[7:19, 42:54] == 17).all() and (ox[7:19, 42:54] == -31).all()
