"""Similarity maps between repeated parts of one image, from SIFT self-matches (the keypoint stage of copy-move
detection).

Keypoints are matched against the image's own keypoints (Amerini et al. 2011, g2NN ratio test) and, for
mirrored copies, against their own descriptors as mirrored patches (:func:`mirrored_descriptors`); the pairs are
grouped by the similarity map they follow (sequential RANSAC). The maps seed the dense field and propose rescaled,
turned and mirrored copies that the pixel check confirms.
"""

from __future__ import annotations

import cv2
import numpy as np


# The strongest keypoints kept. A 768 px print has about 18,000 at this contrast threshold, and a small stamp on a
# plain background can keep too few of its own among 8,000 (1 to 3 pairs agreeing with its map where 5 are
# needed). Measured with 20,000: 4 fewer misses among 48 development stamps rescaled 0.6 to 1.7 (8 -> 4), but
# clone took twice as long (5.4 -> 10 to 11.5 s; matching grows with the square of the count) and the flag's
# stars of a 1 MP scan of grace_hopper were then reported as a copy; so 8,000 stay.
MAX_KEYPOINTS = 8_000


def sift_keypoints(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """SIFT keypoint positions (x, y) and descriptors of the contrast-equalised 8-bit image."""
    eight = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(
        np.round(np.clip(cv2.GaussianBlur(gray, (0, 0), 0.8), 0, 1) * 255).astype(np.uint8))
    sift = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS, contrastThreshold=0.01)
    keypoints, descriptors = sift.detectAndCompute(eight, None)
    if descriptors is None or len(keypoints) < 10:
        return np.zeros((0, 2), np.float32), None
    return np.float32([k.pt for k in keypoints]), descriptors


def mirrored_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """The SIFT descriptors of the left-right mirror image of each keypoint's patch, from its own descriptor.

    A SIFT descriptor is a 4 x 4 grid of 8-bin gradient orientation histograms in the frame of the keypoint's
    dominant orientation (row-major grid, then orientation bin). Mirroring the image turns every gradient angle a
    into pi - a, the dominant one included, so in the mirrored patch's own frame the grid's rows come in reverse
    order and each relative angle r becomes -r: bin k moves to bin (8 - k) mod 8 (the bins are centred on
    multiples of 45 degrees, so the exchange is exact). OpenCV's SIFT is not perfectly symmetric (its sampling
    and orientation estimates), so these are close to, not equal to, the descriptors of the flipped image
    (``benchmarks/results/clone.md``); describing the image once instead of twice halves SIFT's cost.
    X. Guo, X. Cao, J. Zhang, X. Li, "MIFT: a mirror reflection invariant feature descriptor", ACCV 2009, use
    the same exchange of bins."""
    grid = descriptors.reshape(-1, 4, 4, 8)[:, ::-1]
    return np.ascontiguousarray(np.concatenate([grid[..., :1], grid[..., :0:-1]], axis=3).reshape(-1, 128))


# Lowe's ratio test for the SIFT pairs whose maps seed the dense field (the looser ``loose_ratio`` pairs only
# reach the pixel check)
SEED_RATIO = 0.6


def same_map(a: np.ndarray, b: np.ndarray, shape: tuple[int, int], tolerance: float = 6.0) -> bool:
    """Whether two 2x3 maps move the image's corners and centre to within ``tolerance`` px of each other (the
    same copy found twice; its second pixel check would only repeat the first)."""
    height, width = shape
    points = np.float64([[0, 0], [width, 0], [0, height], [width, height], [width / 2, height / 2]])
    return bool(np.abs(points @ (a[:, :2] - b[:, :2]).T + (a[:, 2] - b[:, 2])).max() <= tolerance)


def _group_maps(sources: np.ndarray, targets: np.ndarray, twin: np.ndarray, *, min_offset: int, max_maps: int,
                min_inliers: int, threshold: float, scale_range: tuple[float, float],
                reflect: bool) -> list[np.ndarray]:
    """Sequential RANSAC of similarity maps source -> target (see ``keypoint_proposals``). With ``reflect`` the
    targets are mirrored (x -> -x) before the fit and the map composed with the mirror again, so it flips."""
    flip = np.float32([-1, 1]) if reflect else np.float32([1, 1])
    alive = np.ones(len(sources), bool)
    maps: list[np.ndarray] = []
    for _ in range(3 * max_maps):  # a rejected fit removes its pairs too; the cap bounds time on look-alikes
        if len(maps) >= 2 * max_maps or alive.sum() < 2 * min_inliers:
            break
        live = np.flatnonzero(alive)
        affine, inliers = cv2.estimateAffinePartial2D(sources[live], targets[live] * flip, method=cv2.RANSAC,
                                                      ransacReprojThreshold=threshold, maxIters=4000,
                                                      confidence=0.999, refineIters=10)
        if affine is None or inliers is None or inliers.sum() < min_inliers:
            break
        affine = affine * flip[:, None]  # the mirror applied to the fitted map's output again
        members = live[inliers.ravel().astype(bool)]
        alive[members] = False
        alive[twin[members]] = False  # the same pairs read backwards follow the inverse map
        zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
        # measured on the larger side: RANSAC fits either orientation of a rescaled copy's pairs, and the smaller
        # side's spread (an x1.7 stamp's source keypoints: 23 px) alone would make the test depend on which
        spread = max(np.ptp(sources[members], axis=0).max(), np.ptp(targets[members], axis=0).max())
        if not scale_range[0] <= zoom <= scale_range[1] or spread < min_offset:
            continue
        maps.append(affine)
        maps.append(cv2.invertAffineTransform(affine))
    return maps


def keypoint_proposals(gray: np.ndarray, min_offset: int, *, max_maps: int = 8, min_inliers: int = 5,
                       threshold: float = 3.0, scale_range: tuple[float, float] = (0.4, 2.5),
                       mirrored: bool = False, ratio: float = SEED_RATIO,
                       own: tuple[np.ndarray, np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Similarity maps between repeated parts of one image, from SIFT self-matches (Amerini et al. 2011, g2NN):
    each keypoint's nearest other keypoint, when far away and closer than ``ratio`` times the next one, makes a
    pair.

    Pairs are grouped by the map they follow, not by their displacement: a copy turned or rescaled relative to
    its source has a displacement that changes across it (a half turn spreads it over twice the copy's size), so
    no displacement bin holds enough of its pairs. Sequential RANSAC of a similarity (rotation by any angle,
    scale, shift) takes the largest consensus set, removes it and repeats. A map is kept when at least
    ``min_inliers`` pairs agree within ``threshold`` px, its scale lies in ``scale_range``, its pairs are at least
    ``min_offset`` apart and spread over more than one spot (a few keypoints on one blob can agree on anything).
    Each map is returned with its inverse (either side may be the copy).

    ``mirrored``: maps that also flip (determinant < 0) instead. SIFT descriptors are not mirror-invariant, so
    the image's descriptors are matched against the descriptors of its keypoints' mirrored patches
    (:func:`mirrored_descriptors`); a keypoint's match with its own mirror image (a locally symmetric blob) is
    skipped.

    ``own``: the image's SIFT keypoints and descriptors (``sift_keypoints(gray)``) when already computed.
    """
    return keypoint_maps(gray, min_offset, ratios=(ratio,), max_maps=max_maps, min_inliers=min_inliers,
                         threshold=threshold, scale_range=scale_range, mirrored=mirrored, own=own)[0]


def _pairs_within(points: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair (i, j) of ``points`` (each paired with itself too) closer than ``radius``, as two index
    arrays. With the points sorted by x, the k-th following point is tried for every point at once, for k = 1, 2,
    ... while any lies less than ``radius`` to the right: a few whole-array passes for keypoints, where testing
    every pair would take 8,000 x 8,000 distances."""
    order = np.argsort(points[:, 0], kind="stable")
    xs, ys = points[order, 0], points[order, 1]
    firsts, seconds = [np.arange(len(points))], [np.arange(len(points))]
    for k in range(1, len(points)):
        dx = xs[k:] - xs[:-k]
        if not (dx < radius).any():
            break
        dy = ys[k:] - ys[:-k]
        near = np.flatnonzero(dx * dx + dy * dy < np.float32(radius * radius))
        firsts += [near, near + k]
        seconds += [near + k, near]
    return order[np.concatenate(firsts)], order[np.concatenate(seconds)]


def _mirror_permutation() -> np.ndarray:
    """The order of a SIFT descriptor's entries that gives its mirrored patch's (:func:`mirrored_descriptors`)."""
    return mirrored_descriptors(np.arange(128, dtype=np.float32)[None])[0].astype(np.intp)


def self_matches(descriptors: np.ndarray, *, mirrored: bool, excluded: tuple[np.ndarray, np.ndarray],
                 block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Each descriptor's two nearest (Euclidean) among the image's own descriptors, or among their mirrored
    patches' (``mirrored``): indices (int64) and distances (float32), each (n, 2), nearest first; what
    ``retouch.imaging.nearest_neighbours(descriptors, others, 2, ...)`` returns, in half its products.

    ``excluded``: the (row, column) pairs that may not be chosen (a keypoint itself, or its own mirror image),
    as two index arrays, a set that holds each pair both ways. A row with fewer than two others gets distance
    inf in the last places.

    Both distance matrices are symmetric: plain, trivially; mirrored, because the mirror is a permutation of a
    descriptor's entries that is its own inverse, so x . Py = Px . y. The dot products are computed in blocks on
    and above the diagonal (one matrix product each), and a compiled pass (``_clone_match_kernel``) reads each
    block along its rows and, off the diagonal, along its columns for the rows below. OpenCV's SIFT descriptors
    hold whole numbers (at most 255, norm about 512), so every product and distance is exact in float32 and the
    result is the same, to the bit, whichever side a pair is computed from."""
    from retouch.detect._clone_match_kernel import two_nearest_in_block

    rows = np.ascontiguousarray(descriptors, np.float32)
    columns = np.ascontiguousarray(rows[:, _mirror_permutation()]) if mirrored else rows
    count = len(rows)
    norms = np.einsum("ij,ij->i", rows, rows)  # a permutation keeps the norm
    indices = np.zeros((count, 2), np.int64)
    distances = np.full((count, 2), np.inf, np.float32)
    order = np.argsort(excluded[0], kind="stable")
    excluded_rows, excluded_columns = excluded[0][order], excluded[1][order]
    for top in range(0, count, block):
        # one band of rows against every column from the band's own diagonal block on (a few large products:
        # BLAS is at its most efficient on those)
        bottom = min(top + block, count)
        dots = rows[top:bottom] @ columns[top:].T
        first, last = np.searchsorted(excluded_rows, [top, bottom])
        near_rows, near_columns = excluded_rows[first:last], excluded_columns[first:last]
        ahead = near_columns >= top  # the pairs left of the band come back, exchanged, in an earlier band
        dots[near_rows[ahead] - top, near_columns[ahead] - top] = -np.inf
        two_nearest_in_block(dots[:, : bottom - top], norms, top, top, False, indices, distances)
        two_nearest_in_block(dots[:, bottom - top:], norms, top, bottom, True, indices, distances)
    np.sqrt(np.maximum(distances, 0.0, out=distances), out=distances)
    return indices, distances


def self_matches_plain_and_mirrored(descriptors: np.ndarray, *, excluded: tuple[np.ndarray, np.ndarray],
                                    excluded_mirrored: tuple[np.ndarray, np.ndarray], block: int = 1024
                                    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``self_matches`` plain and mirrored at once (``excluded`` for the plain, ``excluded_mirrored`` for the
    mirrored), the same to the bit, in the products of one.

    The mirror P is an involution that moves every entry (a descriptor's grid rows are exchanged in pairs), so the
    128 entries fall into 64 pairs (i, P i). With s = x_i + x_Pi and a = x_i - x_Pi over one entry of each pair,
    s . s' = x . y + x . Py and a . a' = x . y - x . Py: two products of 64 columns give both matrices, where
    two of 128 were taken. Every product and partial sum is a whole number (or a half: the columns' side is
    halved) below 2^23 while the descriptors' norms stay below 2^11 (OpenCV's are about 512), so both are exact in
    float32 and equal ``self_matches``; larger norms take ``self_matches`` twice."""
    rows = np.ascontiguousarray(descriptors, np.float32)
    norms = np.einsum("ij,ij->i", rows, rows)
    if len(rows) and norms.max() >= 2.0**22:
        return (self_matches(rows, mirrored=False, excluded=excluded),
                self_matches(rows, mirrored=True, excluded=excluded_mirrored))
    from retouch.detect._clone_match_kernel import two_nearest_in_block

    mirror = _mirror_permutation()
    one = np.flatnonzero(np.arange(128) < mirror)  # one entry of each pair
    sums, differences = rows[:, one] + rows[:, mirror[one]], rows[:, one] - rows[:, mirror[one]]
    half_sums, half_differences = np.float32(0.5) * sums, np.float32(0.5) * differences
    count = len(rows)
    found, skipped = [], []
    for pairs in (excluded, excluded_mirrored):
        order = np.argsort(pairs[0], kind="stable")
        skipped.append((pairs[0][order], pairs[1][order]))
        found.append((np.zeros((count, 2), np.int64), np.full((count, 2), np.inf, np.float32)))
    for top in range(0, count, block):
        bottom = min(top + block, count)
        symmetric = sums[top:bottom] @ half_sums[top:].T  # (x . y + x . Py) / 2
        antisymmetric = differences[top:bottom] @ half_differences[top:].T  # (x . y - x . Py) / 2
        plain = symmetric + antisymmetric
        mirrored = np.subtract(symmetric, antisymmetric, out=symmetric)
        for dots, (excluded_rows, excluded_columns), (indices, distances) in zip((plain, mirrored), skipped, found,
                                                                                 strict=True):
            first, last = np.searchsorted(excluded_rows, [top, bottom])
            near_rows, near_columns = excluded_rows[first:last], excluded_columns[first:last]
            ahead = near_columns >= top  # as in ``self_matches``
            dots[near_rows[ahead] - top, near_columns[ahead] - top] = -np.inf
            two_nearest_in_block(dots[:, : bottom - top], norms, top, top, False, indices, distances)
            two_nearest_in_block(dots[:, bottom - top:], norms, top, bottom, True, indices, distances)
    for _, distances in found:
        np.sqrt(np.maximum(distances, 0.0, out=distances), out=distances)
    return found[0], found[1]


def excluded_pairs(points: np.ndarray, *, mirrored: bool) -> tuple[np.ndarray, np.ndarray]:
    """The (row, column) pairs a keypoint may not be matched with: itself, or (``mirrored``) its own mirror image,
    any keypoint within 2 px (a locally symmetric blob)."""
    if mirrored:
        return _pairs_within(points, 2.0)
    itself = np.arange(len(points))
    return itself, itself


def plain_and_mirrored_maps(gray: np.ndarray, min_offset: int, *, ratios: tuple[float, ...],
                            own: tuple[np.ndarray, np.ndarray | None] | None = None
                            ) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """``keypoint_maps(gray, min_offset, ratios=ratios)`` and ``keypoint_proposals(gray, min_offset,
    mirrored=True)``, each with its other options at their defaults, from one matching of the descriptors
    (:func:`self_matches_plain_and_mirrored`): the same maps."""
    points, descriptors = own if own is not None else sift_keypoints(gray)
    if descriptors is None:
        return [[] for _ in ratios], []
    plain, mirrored = self_matches_plain_and_mirrored(descriptors, excluded=excluded_pairs(points, mirrored=False),
                                                      excluded_mirrored=excluded_pairs(points, mirrored=True))
    return (keypoint_maps(gray, min_offset, ratios=ratios, own=(points, descriptors), matches=plain),
            keypoint_maps(gray, min_offset, ratios=(SEED_RATIO,), mirrored=True, own=(points, descriptors),
                          matches=mirrored)[0])


def keypoint_maps(gray: np.ndarray, min_offset: int, *, ratios: tuple[float, ...], max_maps: int = 8,
                  min_inliers: int = 5, threshold: float = 3.0, scale_range: tuple[float, float] = (0.4, 2.5),
                  mirrored: bool = False, own: tuple[np.ndarray, np.ndarray | None] | None = None,
                  matches: tuple[np.ndarray, np.ndarray] | None = None) -> list[list[np.ndarray]]:
    """``keypoint_proposals`` for several ratio-test thresholds at once (one list of maps per entry of
    ``ratios``): the descriptors are matched once, and only the pairs' grouping is repeated. ``matches``: what
    ``self_matches`` returns for ``own``'s descriptors, when already computed."""
    points, descriptors = own if own is not None else sift_keypoints(gray)
    if descriptors is None:
        return [[] for _ in ratios]
    # mirrored, the mirror image's keypoints are the image's own at the same places, described as mirrored
    # patches (``self_matches``)
    other_points = points
    # each pair with the smallest ratio (nearest / next distance) at which it was found, from either end
    pairs: dict[tuple, float] = {}
    loosest = max(ratios)
    # a keypoint's own twin (itself, or its mirror image at the same place) is no evidence of copying
    nearest, distance = matches if matches is not None else self_matches(
        descriptors, mirrored=mirrored, excluded=excluded_pairs(points, mirrored=mirrored))
    first, second = distance.astype(np.float64).T
    usable = np.isfinite(second)
    # two equally near candidates at distance 0 (exact duplicates) are as ambiguous as any tie
    closeness = np.divide(first, second, out=np.full(first.shape, np.inf), where=usable & (second > 0))
    match = nearest[:, 0]
    apart = np.hypot(*(other_points[match] - points).T) >= min_offset
    for query in np.flatnonzero(usable & (closeness < loosest) & apart):
        a, b = points[query], other_points[match[query]]
        # one orientation per pair of keypoints: a match found from both ends counts once (mirrored, the two ends
        # are keypoints of different images, so the pair is known by its two places)
        ends = (tuple(np.round(a, 1)), tuple(np.round(b, 1))) if mirrored else (int(query), int(match[query]))
        key = (min(ends), max(ends))
        pairs[key] = min(float(closeness[query]), pairs.get(key, np.inf))
    found = []
    for ratio in ratios:
        chosen = sorted(key for key, closeness in pairs.items() if closeness < ratio)
        if len(chosen) < min_inliers:
            found.append([])
            continue
        if mirrored:
            ends = np.float32(chosen)  # (pairs, 2 ends, xy)
        else:
            index = np.array(chosen, np.int64)
            ends = np.stack([points[index[:, 0]], points[index[:, 1]]], axis=1)
        # both orientations: a pair whose ends are listed in the other order than the copy's still fits the map
        sources = np.concatenate([ends[:, 0], ends[:, 1]])
        targets = np.concatenate([ends[:, 1], ends[:, 0]])
        twin = np.concatenate([np.arange(len(ends)) + len(ends), np.arange(len(ends))])
        found.append(_group_maps(sources, targets, twin, min_offset=min_offset, max_maps=max_maps,
                                 min_inliers=min_inliers, threshold=threshold, scale_range=scale_range,
                                 reflect=mirrored))
    return found
