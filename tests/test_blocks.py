"""Block statistics shared by the block detectors, and the exact descriptor matcher: exact against a plain
reference."""

import cv2
import numpy as np
import pytest

from retouch.detect._blocks import block_max, block_mean, median_of, percentile_of, quantiles_of_sorted
from retouch.detect.ela import _content_blocks
from retouch.imaging import nearest_neighbours


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_order_statistics_are_numpys_bit_for_bit(dtype: type) -> None:
    # the detectors' decisions depend on these values exactly: they replace numpy's (slower) functions only
    rng = np.random.default_rng(5)
    for size in [*range(1, 12), 999, 1000, 7197]:
        values = (rng.standard_normal(size) * rng.uniform(0.01, 50)).astype(dtype)
        for sample in (values, np.round(values, 1)):  # with and without ties
            for got, expected in [(median_of(sample), np.median(sample)),
                                  *[(percentile_of(sample, q), np.percentile(sample, q)) for q in (0, 12.5, 40, 50,
                                                                                                  99.9, 100)],
                                  (quantiles_of_sorted(np.sort(sample), np.linspace(0, 1, 13)[1:-1]),
                                   np.quantile(sample, np.linspace(0, 1, 13)[1:-1]))]:
                assert np.asarray(got).dtype == np.asarray(expected).dtype
                np.testing.assert_array_equal(got, expected)


def _tiles(values: np.ndarray, block: int) -> np.ndarray:
    rows, cols = values.shape[0] // block, values.shape[1] // block
    return values[: rows * block, : cols * block].reshape(rows, block, cols, block)


@pytest.mark.parametrize("shape", [(37, 61), (101, 29), (480, 640)])
@pytest.mark.parametrize("block", [8, 16, 24])
def test_block_mean_and_max_match_numpy(shape: tuple[int, int], block: int) -> None:
    rng = np.random.default_rng(block)
    eight = rng.integers(0, 256, shape, dtype=np.uint8)
    expected_mean = _tiles(eight, block).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(block_mean(eight, block), expected_mean.astype(np.float32))
    np.testing.assert_array_equal(block_max(eight, block), _tiles(eight, block).max(axis=(1, 3)))
    floats = rng.random(shape, dtype=np.float32)
    np.testing.assert_allclose(block_mean(floats, block), _tiles(floats, block).mean(axis=(1, 3)), rtol=1e-5)
    np.testing.assert_array_equal(block_max(floats, block), _tiles(floats, block).max(axis=(1, 3)))


@pytest.mark.parametrize("shape", [(203, 150), (64, 77), (1100, 90)])
def test_ela_content_blocks_in_bands_equal_the_whole_image(shape: tuple[int, int], monkeypatch) -> None:
    # bands of one block row each exercise every halo, in up to four threads; a single band is the whole-image
    # computation
    import cv2

    monkeypatch.setattr(cv2, "getNumThreads", lambda: 4)
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, shape, dtype=np.uint8)
    gray[40:60, 30:50] = 255  # a hard edge across band boundaries
    banded = _content_blocks(gray, 8, band_pixels=1)
    whole = _content_blocks(gray, 8, band_pixels=1 << 30)
    np.testing.assert_allclose(banded[0], whole[0], rtol=1e-6)
    np.testing.assert_array_equal(banded[1], whole[1])
    np.testing.assert_array_equal(banded[2], whole[2])


@pytest.mark.parametrize("shape", [(1029, 517), (2048, 64)])
def test_ela_recompression_in_parallel_strips_equals_the_whole_image(shape, monkeypatch) -> None:
    import cv2

    from retouch.detect._recompress import _strip_error, recompression_block_error, recompression_error

    rng = np.random.default_rng(3)
    gray = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 1.0)
    monkeypatch.setattr(cv2, "getNumThreads", lambda: 4)  # four strips whatever this machine has
    np.testing.assert_array_equal(recompression_error(gray, 90), _strip_error(gray, 90))
    for block in (8, 12, 16):
        np.testing.assert_array_equal(recompression_block_error(gray, 90, block),
                                      block_mean(_strip_error(gray, 90), block))


def test_block_mask_blown_up_sparsely_equals_the_whole_map() -> None:
    from retouch.detect._blocks import _blow_up, blocks_to_image

    rng = np.random.default_rng(5)
    for _ in range(300):
        rows, cols = (int(v) for v in rng.integers(1, 9, 2))
        block = int(rng.choice([1, 8, 16, 24]))
        flags = rng.random((rows, cols)) < rng.choice([0.0, 0.05, 0.3, 1.0])
        shape = (rows * block + int(rng.integers(0, block)), cols * block + int(rng.integers(0, 2 * block)))
        np.testing.assert_array_equal(blocks_to_image(flags, block, shape, smooth=False),
                                      _blow_up(flags, block, shape, smooth=False))


def test_strips_run_in_the_shared_pool_and_report_errors() -> None:
    from retouch.imaging import for_each_strip

    seen: list[tuple[int, int]] = []

    def nested(top: int, bottom: int) -> None:  # a strip that itself works in strips must not wait on the pool
        for_each_strip(lambda a, b: seen.append((a, b)), [top, (top + bottom) // 2, bottom])

    for_each_strip(nested, [0, 10, 20, 30, 40])
    assert sorted(seen) == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 25), (25, 30), (30, 35), (35, 40)]

    def failing(top: int, bottom: int) -> None:
        if top == 20:
            raise RuntimeError("strip failed")

    with pytest.raises(RuntimeError, match="strip failed"):
        for_each_strip(failing, [0, 10, 20, 30])


@pytest.mark.parametrize("shape", [(203, 150), (64, 77), (1100, 90)])
@pytest.mark.parametrize("block", [8, 16, 24])
def test_grain_measures_in_bands_equal_the_whole_image(shape: tuple[int, int], block: int, monkeypatch) -> None:
    # bands of one block row each, in up to four threads, against one band holding the whole image
    import cv2

    from retouch.detect._blocks import block_mean
    from retouch.detect.grain import _block_measures, _structure_energy

    monkeypatch.setattr(cv2, "getNumThreads", lambda: 4)
    rng = np.random.default_rng(2)
    eight = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (0, 0), 0.8)
    eight[30:70, 20:60] = 255  # clipped, with hard edges across band boundaries
    whole = {"structure": block_mean(_structure_energy(eight), block), "brightness": block_mean(eight, block),
             "residual": block_mean(cv2.absdiff(eight, cv2.medianBlur(cv2.medianBlur(eight, 5), 5)), block),
             "unclipped": block_mean(cv2.inRange(eight, 4, 251), block)}
    for band_pixels in (1, 1 << 30):
        banded = _block_measures(eight, block, band_pixels=band_pixels)
        assert banded.keys() == whole.keys()
        for name in whole:
            np.testing.assert_array_equal(banded[name], whole[name])


@pytest.mark.parametrize(("queries", "train", "k"), [(3000, 2500, 4), (5, 3, 4), (2100, 2100, 2)])
def test_nearest_neighbours_equal_opencv_brute_force(queries: int, train: int, k: int) -> None:
    rng = np.random.default_rng(queries)
    # SIFT-like descriptors: non-negative, quantised (so exact ties occur), some rows duplicated
    train_rows = np.floor(rng.gamma(1.0, 20.0, (train, 128))).astype(np.float32)
    query_rows = np.concatenate([train_rows[: queries // 2], np.floor(rng.gamma(1.0, 20.0, (queries - queries // 2,
                                                                                          128)))]).astype(np.float32)
    indices, distances = nearest_neighbours(query_rows, train_rows, k)
    expected = cv2.BFMatcher(cv2.NORM_L2).knnMatch(query_rows, train_rows, k=k)
    expected_distances = np.array([[m.distance for m in row] for row in expected], np.float32)
    assert indices.shape == distances.shape == (queries, min(k, train))
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-5, atol=1e-3)
    # indices agree wherever the distance is not tied with another candidate's
    distinct = np.abs(np.diff(expected_distances, axis=1, append=np.inf)) > 1e-3
    distinct &= np.abs(np.diff(expected_distances, axis=1, prepend=-np.inf)) > 1e-3
    expected_indices = np.array([[m.trainIdx for m in row] for row in expected])
    assert (indices[distinct] == expected_indices[distinct]).all()
    assert distinct.mean() > 0.5


def test_nearest_neighbours_skip_excluded_candidates() -> None:
    rng = np.random.default_rng(5)
    rows = np.floor(rng.gamma(1.0, 20.0, (1500, 128))).astype(np.float32)

    def itself(chunk: slice) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(chunk.stop - chunk.start), np.arange(chunk.start, chunk.stop)

    indices, distances = nearest_neighbours(rows, rows, 2, excluded=itself, rows_per_chunk=256)
    plain_indices, plain_distances = nearest_neighbours(rows, rows, 3)
    assert (indices != np.arange(len(rows))[:, None]).all()
    # without the exclusion each row's nearest is itself, at distance 0; the next two are the excluded search's
    assert (plain_indices[:, 0] == np.arange(len(rows))).all() and (plain_distances[:, 0] == 0).all()
    np.testing.assert_array_equal(distances, plain_distances[:, 1:])
    everything = nearest_neighbours(rows[:3], rows, 2,
                                    excluded=lambda chunk: np.nonzero(np.ones((3, len(rows)), bool)))[1]
    assert np.isinf(everything).all()


def _binned_reference_by_loop(values: np.ndarray, covariate: np.ndarray, eligible: np.ndarray, bins: int,
                              quantile: float, min_count: int) -> tuple[np.ndarray, np.ndarray]:
    """binned_reference as its docstring states it, one bin at a time with numpy's own order statistics."""
    if eligible.sum() < min_count:
        eligible = np.ones_like(eligible)
    pool = values[eligible]
    edges = np.quantile(covariate[eligible], np.linspace(0, 1, bins + 1)[1:-1])
    index = np.searchsorted(edges, covariate, side="right")
    overall = 1.4826 * np.median(np.abs(pool - np.median(pool))) + 1e-6
    centre, spread = np.empty(bins), np.empty(bins)
    for b in range(bins):
        here = values[eligible & (index == b)]
        if here.size >= min_count:
            centre[b] = np.percentile(here, quantile)
            spread[b] = 1.4826 * np.median(np.abs(here - np.median(here))) + 1e-6
        else:  # a sparse bin borrows the overall figures
            centre[b], spread[b] = np.percentile(pool, quantile), overall
        spread[b] = max(spread[b], 0.5 * overall)
    return centre[index], spread[index]


@pytest.mark.parametrize(("blocks", "quantile", "eligible_share"),
                         [(3000, 50.0, 0.9), (3001, 75.0, 0.8), (150, 50.0, 0.9), (400, 50.0, 0.04)])
def test_binned_reference_equals_a_loop_over_bins(blocks: int, quantile: float, eligible_share: float) -> None:
    # the expected grain / error level per brightness bin and its robust spread set every block's z: a wrong MAD
    # constant, a bin edge on the wrong side or a lower median instead of the interpolated one moves decisions.
    # Whole-number brightness puts blocks exactly on the bin edges; 150 blocks leave bins sparse (< 20); 4 %
    # eligible falls back to every block
    from retouch.detect._blocks import binned_reference

    rng = np.random.default_rng(blocks)
    covariate = rng.integers(0, 40, blocks).astype(np.float32)
    values = (rng.gamma(2.0, 1.0, blocks) * (1 + covariate / 10)).astype(np.float32)
    eligible = rng.random(blocks) < eligible_share
    expected, spread = binned_reference(values, covariate, eligible, bins=12, quantile=quantile)
    want_expected, want_spread = _binned_reference_by_loop(values, covariate, eligible, 12, quantile, 20)
    # float32 block maps, as the detectors pass them: numpy's reference rounds some figures to float32, where
    # binned_reference works in float64; a wrong constant, bin edge or median moves them by far more than 1e-6
    np.testing.assert_allclose(expected, want_expected, rtol=1e-6)
    np.testing.assert_allclose(spread, want_spread, rtol=1e-6)


def _flood(z_passes: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """The 8-connected blocks reachable from ``start`` through blocks where ``z_passes`` holds, one at a time."""
    component, stack, visited = [], [start], {start}
    while stack:
        y, x = stack.pop()
        component.append((y, x))
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if (0 <= ny < z_passes.shape[0] and 0 <= nx < z_passes.shape[1] and (ny, nx) not in visited
                        and z_passes[ny, nx]):
                    visited.add((ny, nx))
                    stack.append((ny, nx))
    return component


def _groups_by_flood_fill(z: np.ndarray, tests: int, margin: float, nfa_threshold: float, min_blocks: int,
                          candidate_nfa: float = 1.0, extent_z: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """group_decision the slow, obvious way: flood-fill 8-connected groups above the growing level, one block at a
    time, each group's NFA from its peak by the Gaussian tail written out with math.erfc; then flood-fill from
    every decided block through the blocks above ``extent_z`` (when given)."""
    import math
    from statistics import NormalDist

    def level(nfa: float) -> float:
        return margin * -NormalDist().inv_cdf(min(0.5, nfa / tests))

    grow, candidate = 0.7 * level(nfa_threshold), level(max(candidate_nfa, nfa_threshold))
    seen = np.zeros(z.shape, bool)
    nfa_map = np.full(z.shape, np.inf)
    for start in zip(*np.nonzero(z > grow)):
        if seen[start]:
            continue
        group = _flood(z > grow, start)
        for y, x in group:
            seen[y, x] = True
        peak = max(z[y, x] for y, x in group)
        if len(group) >= min_blocks and peak > candidate:
            nfa = tests * 0.5 * math.erfc(peak / margin / math.sqrt(2))
            for y, x in group:
                nfa_map[y, x] = nfa
    decided = nfa_map <= nfa_threshold
    if extent_z is None:
        return decided, nfa_map
    grown, final_nfa = decided.copy(), nfa_map.copy()
    for start in zip(*np.nonzero(decided)):
        component = _flood((z > extent_z) | decided, start)
        smallest = min(nfa_map[y, x] for y, x in component if decided[y, x])
        for y, x in component:
            grown[y, x] = True
            final_nfa[y, x] = min(final_nfa[y, x], smallest)
    return grown, final_nfa


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("extent", [False, True])
def test_group_decision_matches_a_flood_fill_reference(seed: int, extent: bool) -> None:
    from retouch.detect._blocks import EXTENT_Z, group_decision

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((40, 50)) * 1.6
    z[10:14, 20:25] += rng.uniform(4, 9)  # an anomaly of varying strength
    tests, margin = 2000, 1.3
    extent_z = EXTENT_Z if extent else None
    decision = group_decision(z, tests=tests, margin=margin, nfa_threshold=0.01, min_blocks=4, extent_z=extent_z)
    want_mask, want_nfa = _groups_by_flood_fill(z, tests, margin, 0.01, 4, extent_z=extent_z)
    np.testing.assert_array_equal(decision.mask, want_mask)
    finite = np.isfinite(want_nfa)
    np.testing.assert_array_equal(np.isfinite(decision.nfa), finite)
    np.testing.assert_allclose(decision.nfa[finite], want_nfa[finite], rtol=1e-9)


def test_group_decision_by_hand() -> None:
    from retouch.detect._blocks import bonferroni_z, group_decision

    tests, margin = 100, 1.0
    decide = bonferroni_z(tests, 0.01)  # 4.26: a block this strong is expected 0.01 times in 100 null tests
    z = np.zeros((6, 6))
    z[1, 1], z[1, 2], z[2, 1] = decide + 0.5, 0.75 * decide, 0.75 * decide  # strong block, two grown: 3 blocks
    z[4:6, 4:6] = 0.75 * decide  # four grown blocks without a strong one: no candidate
    z[0, 5] = decide + 1.0  # strong but alone
    decision = group_decision(z, tests=tests, margin=margin, nfa_threshold=0.01, min_blocks=3)
    expected = np.zeros((6, 6), bool)
    expected[1, 1] = expected[1, 2] = expected[2, 1] = True
    np.testing.assert_array_equal(decision.mask, expected)
    assert decision.nfa[1, 1] < 0.01 and decision.nfa[1, 1] == decision.nfa[2, 1]
    assert not group_decision(z, tests=tests, margin=margin, nfa_threshold=0.01, min_blocks=4).mask.any()
    # the smallest NFA of the map counts the lone block too, and grades an image where nothing is decided
    assert decision.best_nfa == pytest.approx(tests * _gaussian_tail(decide + 1.0))
    # a wider null (heavier tails) makes the same map less improbable: nothing decided
    assert not group_decision(z, tests=tests, margin=1.3, nfa_threshold=0.01, min_blocks=3).mask.any()


def _gaussian_tail(z: float) -> float:
    import math

    return 0.5 * math.erfc(z / math.sqrt(2))


def test_nfa_score_is_one_half_at_the_threshold_and_capped_without_a_decision() -> None:
    from retouch.detect._blocks import nfa_score

    assert nfa_score(0.01, 0.01, decided=True) == pytest.approx(0.5)
    assert nfa_score(0.001, 0.01, decided=True) == pytest.approx(1 / (1 + np.exp(-1)))
    assert nfa_score(1e-6, 0.01, decided=False) == pytest.approx(0.49)
    assert nfa_score(1.0, 0.01, decided=False) < nfa_score(0.1, 0.01, decided=False) < 0.49


def test_strength_to_heat_is_one_half_at_the_threshold_and_increasing() -> None:
    import math

    from retouch.detect._blocks import strength_to_heat

    heat = strength_to_heat(np.array([-100.0, 0.0, 2.0, 4.0, 6.0, 100.0]), 4.0)
    # a logistic of width threshold / 4, as documented: 0.12 at half the threshold, 0.88 at 1.5 times it
    np.testing.assert_allclose(heat[2:5], [1 / (1 + math.e ** 2), 0.5, 1 / (1 + math.e ** -2)], rtol=1e-6)
    assert (np.diff(heat) >= 0).all() and heat[0] < 1e-6 and heat[-1] > 1 - 1e-6


def test_content_classes_split_each_covariate_into_quantile_bins_and_coarsen_small_maps() -> None:
    from retouch.detect._blocks import content_classes

    rng = np.random.default_rng(0)
    texture, brightness = rng.uniform(size=(60, 60)), rng.uniform(size=(60, 60))
    where = np.ones(texture.shape, bool)
    classes = content_classes(where, texture, brightness, None, min_count=48)  # 3600 blocks: 3 x 3 classes
    assert sorted(np.unique(classes)) == list(range(9))
    for cls in range(9):
        assert abs((classes == cls).mean() - 1 / 9) < 0.02
    # the class follows texture first: a block in the top texture tercile is in classes 6..8
    top = texture >= np.quantile(texture, 2 / 3) + 1e-9
    assert np.all(classes[top] >= 6)
    # 300 blocks cannot fill 9 classes, nor 4, of 96 blocks: texture alone, in three bins
    small = content_classes(where[:15, :20], texture[:15, :20], brightness[:15, :20], min_count=48)
    assert sorted(np.unique(small)) == [0, 1, 2]
    np.testing.assert_array_equal(small, content_classes(where[:15, :20], texture[:15, :20], min_count=48))
    # 100 blocks: one covariate in two bins; 50: a single class
    assert sorted(np.unique(content_classes(where[:10, :10], texture[:10, :10], brightness[:10, :10],
                                            min_count=24))) == [0, 1]
    assert np.all(content_classes(where[:5, :10], texture[:5, :10], min_count=48) == 0)


def test_content_null_judges_blocks_against_their_class_and_never_more_strictly_than_the_image() -> None:
    from retouch.detect._blocks import standardise, standardise_by_content

    rng = np.random.default_rng(1)
    values = rng.standard_normal((80, 80))
    classes = np.zeros(values.shape, np.int32)
    classes[:40] = 1  # a content class (say a JPEG-flattened sky) with a wider spread, shifted up
    values[:40] = 2.0 + 3.0 * values[:40]
    classes[78:, 78:] = 2  # four blocks: too few for their own null
    where = np.ones(values.shape, bool)
    plain = standardise(values, where)
    judged = standardise_by_content(values, where, classes, min_count=48)
    # the wide class is on its own scale: median 0 and MAD 1
    sky = judged[:40].ravel()
    assert abs(np.median(sky)) < 1e-6
    assert 1.4826 * np.median(np.abs(sky)) == pytest.approx(1.0, rel=1e-4)
    # a class may only relax the test: no block scores higher than under the image-wide null (above 0)
    assert np.all(judged <= np.maximum(plain, 0) + 1e-9)
    # the narrow class keeps the image-wide figures (never stricter than the calibrated null), as does the tiny one
    np.testing.assert_allclose(judged[40:78], plain[40:78], rtol=1e-5)
    np.testing.assert_allclose(judged[78:, 78:], plain[78:, 78:], rtol=1e-5)


def test_a_decided_group_reaches_its_connected_blocks_above_the_extent_level_but_decides_nothing_new() -> None:
    from retouch.detect._blocks import EXTENT_Z, bonferroni_z, group_decision

    tests, margin = 100, 2.0
    decide = margin * bonferroni_z(tests, 0.01)  # 8.5
    z = np.zeros((8, 12))
    z[2, 2] = z[2, 3] = z[3, 2] = z[3, 3] = decide + 1.0  # a decided group of four
    z[2:6, 4:7] = EXTENT_Z + 0.5  # its weaker surroundings: below the growing level 0.7 * decide
    z[6:8, 9:12] = EXTENT_Z + 0.5  # as weak, not touching it: not decided, not grown into
    decision = group_decision(z, tests=tests, margin=margin, nfa_threshold=0.01, min_blocks=4, extent_z=EXTENT_Z)
    expected = np.zeros(z.shape, bool)
    expected[2:4, 2:4] = True
    expected[2:6, 4:7] = True
    np.testing.assert_array_equal(decision.mask, expected)
    assert np.all(decision.nfa[expected] == decision.nfa[2, 2]) and np.isinf(decision.nfa[7, 10])
    without_extent = group_decision(z, tests=tests, margin=margin, nfa_threshold=0.01, min_blocks=4)
    assert without_extent.mask.sum() == 4
    # nothing decided: nothing grown
    z[2:4, 2:4] = EXTENT_Z + 0.5
    assert not group_decision(z, tests=tests, margin=margin, nfa_threshold=0.01, min_blocks=4,
                              extent_z=EXTENT_Z).mask.any()
