"""The compiled PatchMatch kernels against slow, obvious references: each kernel one pixel and one candidate at a
time in plain Python (the same field to the bit), and the exact nearest neighbour by brute force
(``patchmatch`` below is ``compiled_patchmatch``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retouch.detect._patchmatch import compiled_patchmatch as patchmatch
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
    oy, ox, distance = patchmatch(features, min_offset=5, iterations=10, global_samples=3, seed=2)
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


_MASK = (1 << 64) - 1


class ReferenceField:
    """The kernels' field, one pixel and one candidate at a time in plain Python: the same candidates in the same
    order from the same random stream (xorshift64, its high 32 bits scaled to a bound), float32 distances
    summed channel by channel, a candidate kept when strictly closer."""

    def __init__(self, features: np.ndarray, min_offset: int, seed: int) -> None:
        self.features = features.astype(np.float32)
        self.height, self.width = features.shape[:2]
        self.min_offset_sq = min_offset**2
        self.oy = np.zeros((self.height, self.width), np.int64)
        self.ox = np.zeros((self.height, self.width), np.int64)
        self.best = np.full((self.height, self.width), np.inf, np.float32)
        self.state = 0x9E3779B97F4A7C15 ^ (seed * 2 + 1)
        for _ in range(8):
            self.random()

    def random(self) -> int:
        state = self.state
        state ^= (state << 13) & _MASK
        state ^= state >> 7
        state ^= (state << 17) & _MASK
        self.state = state
        return state

    def below(self, bound: int) -> int:
        return ((self.random() >> 32) * bound) >> 32

    def order(self, step: int):
        for row in range(self.height):
            for column in range(self.width):
                yield (row, column) if step == 1 else (self.height - 1 - row, self.width - 1 - column)

    def consider(self, y: int, x: int, dy: int, dx: int) -> None:
        ty, tx = y + dy, x + dx
        if not (0 <= ty < self.height and 0 <= tx < self.width) or dy * dy + dx * dx < self.min_offset_sq:
            return
        total = np.float32(0.0)
        for channel in range(self.features.shape[2]):
            difference = np.float32(self.features[y, x, channel] - self.features[ty, tx, channel])
            total = np.float32(total + difference * difference)
        if total < self.best[y, x]:
            self.oy[y, x], self.ox[y, x], self.best[y, x] = dy, dx, total

    def proposals(self, y: int, x: int, proposals: list[np.ndarray]) -> None:
        for a in proposals:
            a = np.asarray(a, np.float64)
            self.consider(y, x, int(np.rint(a[1, 0] * x + a[1, 1] * y + a[1, 2])) - y,
                          int(np.rint(a[0, 0] * x + a[0, 1] * y + a[0, 2])) - x)

    def propagate(self, y: int, x: int, jump: int) -> None:
        for ny, nx in ((y - jump, x), (y, x - jump), (y + jump, x), (y, x + jump)):
            if not (0 <= ny < self.height and 0 <= nx < self.width) or np.isinf(self.best[ny, nx]):
                continue
            if (self.oy[ny, nx], self.ox[ny, nx]) != (self.oy[y, x], self.ox[y, x]):
                self.consider(y, x, int(self.oy[ny, nx]), int(self.ox[ny, nx]))

    def around(self, y: int, x: int, centre_y: int, centre_x: int, reach: int) -> None:
        dy = centre_y + self.below(2 * reach + 1) - reach
        dx = centre_x + self.below(2 * reach + 1) - reach
        self.consider(y, x, dy, dx)

    def search_around(self, y: int, x: int, radii: list[int]) -> None:
        for reach in radii:
            if np.isinf(self.best[y, x]):
                break
            self.around(y, x, int(self.oy[y, x]), int(self.ox[y, x]), reach)


def reference_search(features: np.ndarray, *, min_offset: int, iterations: int, global_samples: int,
                     proposals: list[np.ndarray], seed: int) -> tuple[np.ndarray, ...]:
    """``compiled_patchmatch``: the proposals; then per iteration random samples for every pixel, and a sweep
    (raster, reverse raster in every other one) of propagation from 1, 2, 4 and 8 px and random search at radii
    shrinking by four from an eighth of the longer side."""
    field = ReferenceField(features, min_offset, seed)
    for y, x in field.order(1):
        field.proposals(y, x, proposals)
    radii, radius = [], max(field.height, field.width) / 8.0
    while radius >= 1.0:
        radii.append(int(radius))
        radius /= 4.0
    for iteration in range(iterations):
        step = 1 if iteration % 2 == 0 else -1
        for y, x in field.order(step):
            for _ in range(global_samples):
                field.consider(y, x, field.below(field.height) - y, field.below(field.width) - x)
        for y, x in field.order(step):
            for jump in (step, 2 * step, 4 * step, 8 * step):
                field.propagate(y, x, jump)
            field.search_around(y, x, radii)
    return field.oy, field.ox, field.best


def reference_refine(features: np.ndarray, coarse_oy: np.ndarray, coarse_ox: np.ndarray,
                     proposals: list[np.ndarray], *, min_offset: int, sweeps: int, radius: int, seed: int
                     ) -> tuple[np.ndarray, ...]:
    """``upsampled_field``: at every pixel the proposals, then the grid parent's offset doubled and moved by up to
    a pixel; then each sweep (reverse raster in every other one) propagates from the four nearest neighbours and
    searches around the best at radii ``radius``, ``radius // 2``, ... 1."""
    field = ReferenceField(features, min_offset, seed)
    for y, x in field.order(1):
        field.proposals(y, x, proposals)
        parent_y, parent_x = 2 * int(coarse_oy[y // 2, x // 2]), 2 * int(coarse_ox[y // 2, x // 2])
        for shift_y in (-1, 0, 1):
            for shift_x in (-1, 0, 1):
                field.consider(y, x, parent_y + shift_y, parent_x + shift_x)
    radii = [radius >> k for k in range(radius.bit_length())]
    for sweep in range(1, sweeps + 1):
        step = 1 if sweep % 2 == 0 else -1
        for y, x in field.order(step):
            field.propagate(y, x, step)
            field.search_around(y, x, radii)
    return field.oy, field.ox, field.best


def assert_same_field(found: tuple[np.ndarray, ...], expected: tuple[np.ndarray, ...]) -> None:
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_array_equal(found[1], expected[1])
    np.testing.assert_array_equal(found[2], expected[2])


def test_the_search_kernel_agrees_with_its_reference() -> None:
    features = smooth_field(17, (19, 23, 3))
    features[2:8, 12:20] = features[10:16, 2:10]
    shift = np.float32([[1, 0, -10], [0, 1, 8]])
    turn = cv2.getRotationMatrix2D((11.0, 9.0), 25.0, 1.1)
    settings = dict(min_offset=5, iterations=3, global_samples=2, seed=9)
    expected = reference_search(features, proposals=[shift, turn], **settings)
    assert_same_field(patchmatch(features, proposals=[shift, turn], **settings), expected)


def test_the_upsampling_pass_agrees_with_its_reference() -> None:
    from retouch.detect._patchmatch import upsampled_field

    features = smooth_field(15, (27, 33, 4))  # odd sides: the grid has a last row and column of its own
    rng = np.random.default_rng(4)
    coarse_oy = rng.integers(-13, 14, (14, 17))
    coarse_ox = rng.integers(-16, 17, (14, 17))
    shift = np.float32([[1, 0, -11], [0, 1, 7]])
    turn = cv2.getRotationMatrix2D((16.0, 13.0), 25.0, 1.1)
    for sweeps, radius in ((0, 4), (3, 5)):
        expected = reference_refine(features, coarse_oy, coarse_ox, [shift, turn], min_offset=6, sweeps=sweeps,
                                    radius=radius, seed=2)
        found = upsampled_field(features, (coarse_oy, coarse_ox, None), min_offset=6, proposals=[shift, turn],
                                sweeps=sweeps, radius=radius, seed=2)
        assert_same_field(found, expected)


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


def test_local_affine_residual_is_the_least_squares_fit_in_each_window() -> None:
    # reference: at each pixel, an affine fit (a + b x + c y) of each offset field over the window, by lstsq on
    # the coordinates and values as the box filter sees them (reflected at the border, edge pixel repeated);
    # pixels at the corners, the edges and inside
    from retouch.detect._patchmatch import local_affine_residual

    rng = np.random.default_rng(5)
    oy = rng.integers(-40, 40, (37, 45)).astype(np.float32)
    ox = rng.integers(-40, 40, (37, 45)).astype(np.float32)
    ys, xs = np.mgrid[10:30, 12:36]
    oy[10:30, 12:36] = np.round(0.2 * xs - 0.1 * ys + 7)  # an area whose field is nearly affine
    ox[10:30, 12:36] = 0.5 * xs + 0.25 * ys - 30  # and exactly affine
    window, half = 5, 2
    residual = local_affine_residual(oy, ox, window=window)
    pad = [(half, half), (half, half)]
    padded_y, padded_x = np.pad(np.mgrid[0:37, 0:45].astype(np.float64), [(0, 0)] + pad, mode="symmetric")
    fields = [np.pad(f.astype(np.float64), pad, mode="symmetric") for f in (oy, ox)]
    for y, x in [(0, 0), (0, 44), (36, 20), (5, 1), (18, 22), (20, 30), (11, 13), (30, 40)]:
        cut = (slice(y, y + window), slice(x, x + window))
        design = np.stack([np.ones(window * window), padded_x[cut].ravel(), padded_y[cut].ravel()], axis=1)
        expected = 0.0
        for field in fields:
            values = field[cut].ravel()
            fit, *_ = np.linalg.lstsq(design, values, rcond=None)
            expected += np.mean((values - design @ fit) ** 2)
        assert residual[y, x] == pytest.approx(expected, rel=1e-4, abs=1e-4), (y, x)
    assert residual[16:24, 18:30].max() < 0.1 and np.median(residual) > 50


def test_reduced_features_keep_the_leading_principal_components() -> None:
    # reference: the SVD of the centred features; the reduced features must give the same distances and
    # distances from the mean (signs and order of the components aside)
    from retouch.detect._patchmatch import reduce_features

    rng = np.random.default_rng(6)
    mixing = rng.standard_normal((11, 11)) * np.geomspace(10, 0.01, 11)[:, None]
    features = (rng.standard_normal((60, 70, 11)) @ mixing + 3.0).astype(np.float32)
    reduced = reduce_features(features, 4)
    flat = features.reshape(-1, 11).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ components[:4].T
    got = reduced.reshape(-1, 4).astype(np.float64)
    np.testing.assert_allclose((got**2).sum(axis=1), (expected**2).sum(axis=1), rtol=1e-3, atol=1e-2)
    pairs = rng.integers(0, len(flat), (500, 2))
    np.testing.assert_allclose(((got[pairs[:, 0]] - got[pairs[:, 1]]) ** 2).sum(axis=1),
                               ((expected[pairs[:, 0]] - expected[pairs[:, 1]]) ** 2).sum(axis=1),
                               rtol=1e-3, atol=1e-2)


def test_interleaved_standardised_channels_equal_numpys_stack_and_std_to_the_bit() -> None:
    # the slow, obvious reference: the whole stack, numpy's standard deviation of its rows, divided in place
    from retouch.detect._patchmatch_kernel import interleave_standardised

    rng = np.random.default_rng(3)
    for shape, count in (((37, 53), 11), ((200, 301), 11), ((9, 4), 3)):
        channels = [np.abs(rng.normal(5.0, 40.0, shape)).astype(np.float32) * rng.gamma(2.0) for _ in range(count)]
        expected = np.stack(channels, axis=2)
        expected /= expected.reshape(-1, count).std(axis=0) + 1e-6
        found = interleave_standardised(tuple(channels))
        assert found.dtype == np.float32 and found.shape == (*shape, count)
        np.testing.assert_array_equal(found, expected)



def reference_zernike(gray: np.ndarray, radius: int) -> np.ndarray:
    """Zernike magnitudes the slow, obvious way: every response by OpenCV's filter, the magnitude, the stack and
    its standardisation by numpy, element by element."""
    from retouch.detect._patchmatch import ZERNIKE_ORDERS, _radial

    coords = np.arange(-radius, radius + 1, dtype=np.float64)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    rho, theta = np.hypot(xx, yy) / (radius + 0.5), np.arctan2(yy, xx)
    inside = rho <= 1.0
    channels = []
    for n, m in ZERNIKE_ORDERS:
        radial = _radial(n, m, rho) * inside
        real = (radial * np.cos(m * theta)).astype(np.float32)
        imag = (radial * np.sin(m * theta)).astype(np.float32)
        if m == 0:
            real -= real[inside].mean() * inside
        re = cv2.filter2D(gray, -1, real, borderType=cv2.BORDER_REFLECT)
        im = cv2.filter2D(gray, -1, imag, borderType=cv2.BORDER_REFLECT)
        channels.append(np.abs(re) if m == 0 else np.sqrt(re * re + im * im))
    stack = np.stack(channels, axis=2)
    return stack / (stack.reshape(-1, stack.shape[2]).std(axis=0) + 1e-6)


def test_zernike_features_equal_their_reference_wherever_the_image_lies_in_memory() -> None:
    # (OpenCV's own magnitude rounds differently in its vectorised and scalar paths, so with it the features
    # would depend on the arrays' alignment, and differ from this reference)
    from retouch.detect._patchmatch import zernike_features

    rng = np.random.default_rng(5)
    image = cv2.GaussianBlur(rng.random((90, 123)).astype(np.float32), (0, 0), 1.0) * 0.8
    expected = reference_zernike(image, 6)
    for offset in range(8):  # the same pixels at every float32 alignment of a 32-byte vector
        moved = np.empty(image.size + offset, np.float32)[offset:].reshape(image.shape)
        moved[:] = image
        np.testing.assert_array_equal(zernike_features(moved, 6), expected)
