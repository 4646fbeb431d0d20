"""Copy-move detection at full resolution on scans larger than the bounded copy: candidates found over the whole
scan from grain-scale keypoints, each confirmed and outlined by the copy-move analysis of a window pair.

Method
------
A stamp of a tenth of a percent of a 24 MP scan is about 27 px wide in the 1 MP copy that ``copy_move`` analyses,
and that copy's resampling averages away the print's grain, the only thing that tells one place of a smooth
enlargement from another: such stamps leave no candidate there. At full resolution the grain is copied with the
stamp, so:

1. Keypoints: the peaks of a difference of Gaussians at the grain's scale (sigma 1 and 2 px), the strongest
   ``per_megapixel`` of each band of rows (memory stays bounded by the band), each described by its band-passed
   pixels on an upright 8 x 8 grid at 2 px steps, less their mean, unit norm (the grain is copied with the stamp,
   so a moved stamp's keypoints repeat its source's; a grid turned to each disc's own orientation was tried and
   matched fewer of them, the orientation of a grain blob being noisy).
2. Matching across the whole scan: candidate partners from random-projection hashing (``tables`` hash tables
   of ``bits`` sign bits each; near-identical descriptors share a bucket), then Lowe's ratio test on the
   partners found (a keypoint on an edge or a repeated pattern has many equally good partners and is dropped),
   and a smallest correlation.
3. Clustering: the pairs are grouped by the similarity map they follow with the keypoint stage's own sequential
   RANSAC (``_clone_keypoints``); each map with enough pairs gives a window around each side's keypoints.
4. Confirmation: the two windows, cut from the scan at full resolution and set side by side (or one window when
   the sides are close), are analysed by ``copy_move`` itself: dense field, candidates, the a-contrario test and
   the redrawn outline; when nothing is decided there, again on the window pair at half resolution (the test reads
   the finest detail, and a scan's blur and noise can bury the copied grain below it). Its number of false
   alarms counts the window's own informative cells; it is carried over to the scan by the ratio of the scan's
   cells at that resolution (all of them, an upper bound on its informative ones) to the window's informative
   cells, squared (the pairs of places that could have been tested), times the number of windows tried and
   times the two resolutions. A pair is kept when that scan-level NFA is at most ``nfa_threshold``, so the
   expected number of false pairs per untouched scan stays the threshold stated by ``copy_move``.

Limits: a stamp whose grain was destroyed (blur, heavy recompression) or that copies a flat area gives no
keypoint pairs; a stamp turned by more than a few degrees or rescaled changes its grain-scale descriptors (one
turned 3.5 degrees and enlarged 4 % was found); a stamp larger than a window is outlined within the window only
(such stamps are found by the bounded copy). Measured figures: ``benchmarks/results/small_edits.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from retouch.detect._clone_keypoints import _group_maps
from retouch.detect._clone_significance import cell_evidence, informative_cells
from retouch.imaging import to_gray_float, upscale_to
from retouch.result import AnalysisResult, Region

if TYPE_CHECKING:
    from retouch.detect.clone import CopyMoveOptions


@dataclass(frozen=True)
class FullResolutionOptions:
    """Calibration of the full-resolution tier (defaults documented; see the module's notes).

    Attributes
    ----------
    per_megapixel : int
        Keypoints kept per megapixel of the scan (the strongest of each band).
    band : int
        Rows per band in which keypoints are detected.
    tables, bits : int
        Hash tables, and sign bits per table, of the random-projection matching.
    neighbours : int
        Partners taken in each table: the keypoints up to this many places apart in its sorted order, same key.
    min_correlation : float
        Smallest correlation of a pair's descriptors.
    ratio : float
        Lowe's ratio test: nearest partner's descriptor distance below this times the next one's.
    min_inliers : int
        Pairs that must follow one map for it to become a window pair.
    max_windows : int
        At most this many window pairs (the best supported maps) are confirmed.
    margin : int
        Pixels added around each side's keypoints to make its window.
    max_window : int
        Longest side of a window (a larger cluster is cut down around its centre).
    """

    per_megapixel: int = 8000
    band: int = 1024
    tables: int = 8
    bits: int = 20
    neighbours: int = 2
    min_correlation: float = 0.8
    ratio: float = 0.6
    min_inliers: int = 6
    max_windows: int = 6
    margin: int = 160
    max_window: int = 720


# each window pair is analysed at full resolution, then (when nothing was decided) at half: two tests per window
ZOOMS = (1.0, 0.5)

# descriptor: a 8 x 8 grid at 2 px steps over the disc around the keypoint
_GRID = np.arange(-7, 8, 2)
_REACH = 8  # pixels the grid reaches from its keypoint


def grain_keypoints(gray: np.ndarray, *, per_megapixel: int, band: int) -> tuple[np.ndarray, np.ndarray]:
    """Grain-scale keypoints of ``gray`` (float, full resolution): positions (x, y) and unit-norm descriptors
    (the band-passed pixels on an upright 8 x 8 grid at 2 px steps around each).

    Detected band by band (rows), each band with a margin so that peaks and discs at its edges are complete."""
    height, width = gray.shape
    pad = _REACH + 8
    gy, gx = np.meshgrid(_GRID.astype(np.int64), _GRID.astype(np.int64), indexing="ij")
    points, descriptors = [], []
    for top in range(0, height, band):
        bottom = min(height, top + band)
        lo, hi = max(0, top - pad), min(height, bottom + pad)
        part = gray[lo:hi]
        dog = cv2.GaussianBlur(part, (0, 0), 1.0) - cv2.GaussianBlur(part, (0, 0), 2.0)
        peak = dog == cv2.dilate(dog, np.ones((5, 5), np.uint8))
        ys, xs = np.nonzero(peak)
        inside = ((ys + lo >= top) & (ys + lo < bottom) & (ys >= _REACH) & (ys < hi - lo - _REACH)
                  & (xs >= _REACH) & (xs < width - _REACH))
        ys, xs = ys[inside], xs[inside]
        budget = int(per_megapixel * (bottom - top) * width / 1e6)
        if ys.size > budget:
            keep = np.argpartition(-dog[ys, xs], budget)[:budget]
            ys, xs = ys[keep], xs[keep]
        if ys.size == 0:
            continue
        descriptors.append(_disc_samples(dog, xs, ys, gx, gy))
        points.append(np.column_stack([xs, ys + lo]).astype(np.float32))
    if not points:
        return np.zeros((0, 2), np.float32), np.zeros((0, _GRID.size ** 2), np.float32)
    return np.concatenate(points), np.concatenate(descriptors)


def _disc_samples(dog: np.ndarray, xs: np.ndarray, ys: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """The band-passed pixels on the descriptor's grid around each keypoint, less their mean, unit norm."""
    patch = dog[ys[:, None] + gy.ravel()[None, :], xs[:, None] + gx.ravel()[None, :]]
    patch -= patch.mean(axis=1, keepdims=True)
    patch /= np.linalg.norm(patch, axis=1, keepdims=True) + 1e-12
    return patch


def matched_pairs(points: np.ndarray, descriptors: np.ndarray, *, tables: int, bits: int, min_correlation: float,
                  ratio: float, min_distance: float, neighbours: int = 2, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of keypoints (two index arrays, each pair once) whose descriptors are near-identical and exclusive.

    Candidates share a bucket of a random-projection hash (sign bits) in at least one table, taken as the
    neighbours up to ``neighbours`` places apart in each table's sorted order; of every keypoint's candidates the
    nearest is kept when its distance is below ``ratio`` times the next one's (or it has no other), its
    correlation at least ``min_correlation`` and it lies at least ``min_distance`` px away; both ends must choose
    each other."""
    count = len(points)
    if count < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    weights = (1 << np.arange(bits)).astype(np.int64)
    found = []
    # hashed about the descriptors' mean: every keypoint's disc holds a peak at its centre, so raw descriptors
    # share a direction and would fill a few buckets
    centred = descriptors - descriptors.mean(axis=0)
    for _ in range(tables):
        projection = rng.standard_normal((descriptors.shape[1], bits)).astype(np.float32)
        keys = ((centred @ projection) > 0).astype(np.int64) @ weights
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        for step in range(1, neighbours + 1):
            same = np.flatnonzero(sorted_keys[step:] == sorted_keys[:-step])
            found.append(np.column_stack([order[same], order[same + step]]))
    del centred
    ordered = np.sort(np.concatenate(found), axis=1)
    codes = np.unique(ordered[:, 0] * count + ordered[:, 1])
    pairs = np.column_stack([codes // count, codes % count])
    if pairs.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    correlation = np.empty(len(pairs), np.float32)
    for start in range(0, len(pairs), 262_144):  # in chunks: the gathered descriptors are 256 bytes a pair
        part = pairs[start:start + 262_144]
        correlation[start:start + 262_144] = np.einsum("ij,ij->i", descriptors[part[:, 0]],
                                                       descriptors[part[:, 1]])
    # every candidate from both ends, best first per keypoint
    ends = np.concatenate([pairs[:, 0], pairs[:, 1]])
    partners = np.concatenate([pairs[:, 1], pairs[:, 0]])
    values = np.concatenate([correlation, correlation])
    order = np.lexsort((-values, ends))
    ends, partners, values = ends[order], partners[order], values[order]
    first = np.flatnonzero(np.r_[True, ends[1:] != ends[:-1]])
    best = np.full(count, -np.inf)
    second = np.full(count, -1.0)  # a keypoint with one candidate: its next partner is an unrelated one
    partner = np.full(count, -1, np.int64)
    best[ends[first]] = values[first]
    partner[ends[first]] = partners[first]
    following = first + 1
    has_next = following < len(ends)
    has_next[has_next] &= ends[following[has_next]] == ends[first[has_next]]
    second[ends[first[has_next]]] = values[following[has_next]]
    nearest = np.sqrt(np.maximum(2.0 * (1.0 - best), 0.0))
    following_distance = np.sqrt(np.maximum(2.0 * (1.0 - second), 0.0))
    chosen = np.flatnonzero((best >= min_correlation) & (nearest < ratio * following_distance))
    twins = partner[chosen]
    mutual = (partner[twins] == chosen) & (chosen < twins)
    first_end, second_end = chosen[mutual], twins[mutual]
    apart = np.hypot(*(points[first_end] - points[second_end]).T) >= min_distance
    return first_end[apart], second_end[apart]


@dataclass(frozen=True)
class WindowPair:
    """Two windows (x0, y0, x1, y1) of the scan holding the two sides of a keypoint cluster, and its pairs."""

    first: tuple[int, int, int, int]
    second: tuple[int, int, int, int]
    inliers: int


def _window(points: np.ndarray, shape: tuple[int, int], options: FullResolutionOptions, longest: int
            ) -> tuple[int, int, int, int]:
    """The box around ``points`` with the margin, at most ``longest`` a side, inside the scan."""
    height, width = shape
    low, high = points.min(axis=0) - options.margin, points.max(axis=0) + options.margin
    centre = (low + high) / 2
    half = np.minimum((high - low) / 2, longest / 2)
    x0, y0 = np.floor(centre - half).astype(int)
    x1, y1 = np.ceil(centre + half).astype(int)
    # moved inside the scan rather than cut, so that both windows keep their size
    dx = max(0, -x0) - max(0, x1 - width)
    dy = max(0, -y0) - max(0, y1 - height)
    return max(0, x0 + dx), max(0, y0 + dy), min(width, x1 + dx), min(height, y1 + dy)


def window_pairs(points: np.ndarray, first: np.ndarray, second: np.ndarray, shape: tuple[int, int],
                 options: FullResolutionOptions, *, longest: int) -> list[WindowPair]:
    """The similarity maps the pairs follow (the keypoint stage's sequential RANSAC), each as a window pair of
    windows at most ``longest`` a side."""
    if len(first) < options.min_inliers:
        return []
    ends = np.stack([points[first], points[second]], axis=1)
    sources = np.concatenate([ends[:, 0], ends[:, 1]])
    targets = np.concatenate([ends[:, 1], ends[:, 0]])
    twin = np.concatenate([np.arange(len(ends)) + len(ends), np.arange(len(ends))])
    # ``_group_maps`` also asks a map's pairs to spread over more than one spot (``min_offset`` there): grain
    # keypoints are distinct peaks a few pixels apart, so three descriptor grids' width is enough
    maps = _group_maps(sources, targets, twin, min_offset=3 * (2 * _REACH + 1) // 2, max_maps=options.max_windows,
                       min_inliers=options.min_inliers, threshold=3.0, scale_range=(0.8, 1.25), reflect=False)
    found: list[WindowPair] = []
    for affine in maps[::2]:  # each map is followed by its inverse
        moved = sources @ affine[:, :2].T + affine[:, 2]
        inliers = np.hypot(*(moved - targets).T) < 3.0
        if inliers.sum() < options.min_inliers:
            continue
        found.append(WindowPair(_window(sources[inliers], shape, options, longest),
                                _window(targets[inliers], shape, options, longest),
                                int(inliers.sum())))
    found.sort(key=lambda pair: -pair.inliers)
    return found[: options.max_windows]


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _composite(image: np.ndarray, pair: WindowPair, max_pixels: int
               ) -> tuple[np.ndarray, list[tuple[tuple[int, int, int, int], int]]]:
    """The window pair as one picture of at most ``max_pixels``: the box holding both when they overlap or it
    fits (cut down around its centre if it must be), else the two windows side by side (the second cut to the
    first's height). Returns it and each window with its first column there. Overlapping windows are never set
    side by side: their shared pixels would be a copy of each other."""
    a, b = pair.first, pair.second
    union = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    width, height = union[2] - union[0], union[3] - union[1]
    if _overlap(a, b) or width * height <= max_pixels:
        shrink = min(1.0, float(np.sqrt(max_pixels / (width * height))))
        cut_w, cut_h = int(width * shrink), int(height * shrink)
        x0, y0 = union[0] + (width - cut_w) // 2, union[1] + (height - cut_h) // 2
        box = (x0, y0, x0 + cut_w, y0 + cut_h)
        return image[box[1]:box[3], box[0]:box[2]], [(box, 0)]
    height = min(a[3] - a[1], b[3] - b[1])
    a = (a[0], a[1], a[2], a[1] + height)
    b = (b[0], b[1], b[2], b[1] + height)
    left = image[a[1]:a[3], a[0]:a[2]]
    right = image[b[1]:b[3], b[0]:b[2]]
    return np.concatenate([left, right], axis=1), [(a, 0), (b, a[2] - a[0])]


def _to_scan(x: float, y: float, placements: list[tuple[tuple[int, int, int, int], int]]) -> tuple[float, float]:
    """A composite point's place in the scan."""
    for box, column in reversed(placements):
        if x >= column:
            return x - column + box[0], y + box[1]
    return x, y


def full_resolution_tier(image: np.ndarray, result: AnalysisResult, options: CopyMoveOptions,
                         analyse: Callable[..., AnalysisResult],
                         tier: FullResolutionOptions | None = None) -> AnalysisResult:
    """``result`` (copy-move on the bounded copy of ``image``) with the pairs confirmed at full resolution added.

    ``analyse`` is ``copy_move`` (called on each window pair, which is within the bounded size)."""
    from retouch.detect.clone import decided_score  # clone imports this module

    tier = tier or FullResolutionOptions()
    gray = to_gray_float(image)
    shape = gray.shape
    quantum = 1.0 / 65535 if np.asarray(image).dtype == np.uint16 else 1.0 / 255
    min_offset = max(2 * options.radius + 1, 48)
    points, descriptors = grain_keypoints(gray, per_megapixel=tier.per_megapixel, band=tier.band)
    first, second = matched_pairs(points, descriptors, tables=tier.tables, bits=tier.bits,
                                  min_correlation=tier.min_correlation, ratio=tier.ratio, min_distance=min_offset,
                                  neighbours=tier.neighbours)
    del descriptors
    # two windows side by side stay within the bounded size, so ``analyse`` works on them at full resolution
    longest = min(tier.max_window, int(np.sqrt(options.analysis_pixels / 2)))
    candidates = window_pairs(points, first, second, shape, tier, longest=longest)
    # windows on pairs the bounded copy already decided add nothing
    decided = [tuple(r.bbox) for r in result.regions]
    candidates = [c for c in candidates if not any(
        _overlap(w, (x, y, x + bw, y + bh)) for w in (c.first, c.second) for x, y, bw, bh in decided)]
    scan_cells = float(shape[0] // options.cell) * float(shape[1] // options.cell)
    windows_tried = max(len(candidates), 1)
    mask = result.mask.copy()
    heatmap = result.heatmap.copy()
    regions = list(result.regions)
    pair_id = max((int(r.evidence.get("pair_id", 0)) for r in regions), default=0)
    best_nfa = min((float(r.evidence["nfa"]) for r in regions if "nfa" in r.evidence), default=None)
    megapixels = shape[0] * shape[1] / 1e6
    tried = []
    for candidate in candidates:
        composite, placements = _composite(image, candidate, options.analysis_pixels)
        best_here = None
        for zoom in ZOOMS:
            # the test reads the finest detail; where a scan's blur and noise have buried the copied grain there,
            # it stands out one octave lower
            picture = composite if zoom == 1.0 else cv2.resize(composite, None, fx=zoom, fy=zoom,
                                                                interpolation=cv2.INTER_AREA)
            evidence = cell_evidence(to_gray_float(picture), cell=options.cell, quantum=quantum,
                                     min_detail_quanta=options.min_detail)
            window_cells = float(max(int(informative_cells(evidence).sum()), 2))
            del evidence
            # the window's NFA counts its own pairs of informative cells; the scan's pairs of cells at this
            # resolution, every window and every resolution tried multiply it
            factor = (scan_cells * zoom * zoom / window_cells) ** 2 * windows_tried * len(ZOOMS)
            found = analyse(picture, options=replace(options, nfa_threshold=options.nfa_threshold / factor))
            if not found.regions:
                continue
            best_here = min(float(r.evidence["nfa"]) for r in found.regions) * factor
            _paste(found, placements, mask, heatmap, composite.shape[:2])
            ids: dict[int, int] = {}
            seen: set[int] = set()
            for region in found.regions:
                local_id = int(region.evidence["pair_id"])
                if local_id not in ids:
                    pair_id += 1
                    ids[local_id] = pair_id
                # a pair's regions come target side first; both state the target -> source displacement
                regions.append(_scan_region(region, placements, ids[local_id], factor, megapixels, zoom,
                                            target_side=ids[local_id] not in seen))
                seen.add(ids[local_id])
                nfa = regions[-1].evidence["nfa"]
                best_nfa = nfa if best_nfa is None else min(best_nfa, nfa)
            break
        tried.append(float(f"{best_here:.3g}") if best_here is not None else None)
    details = {**result.details, "full_resolution_windows": len(candidates),
               "full_resolution_keypoints": len(points), "full_resolution_pairs": int(len(first)),
               "full_resolution_window_nfa": tried,
               # the smallest NFA over the bounded copy's candidates and the windows' confirmations alike
               "smallest_nfa": min((v for v in [result.details.get("smallest_nfa"), *tried] if v is not None),
                                   default=None)}
    params = {**result.params, "full_resolution": True,
              "false_alarm_control": result.params.get("false_alarm_control", "") + "; on scans whose "
              "bounded copy is under full_resolution_scale of their size a side, windows confirmed at full (or half) "
              "resolution with the NFA carried over to the scan's cells and multiplied by the windows and "
              "resolutions tried"}
    if len(regions) == len(result.regions):
        return replace(result, details=details, params=params)
    pairs = len({r.evidence.get("pair_id") for r in regions})
    score = decided_score(best_nfa, options.nfa_threshold)
    summary = (f"{pairs} pair(s) of copied areas found (small ones at full resolution), covering "
               f"{100 * mask.mean():.3f} % of the image (both sides); the most significant would occur by chance "
               f"in an untouched photograph of this size with expectation {best_nfa:.1e}.")
    details["pairs"] = pairs
    details["copied_fraction"] = round(float(mask.mean()), 6)
    return replace(result, mask=mask, heatmap=heatmap, regions=regions, score=float(np.clip(score, 0, 1)),
                   summary=summary, details=details, params=params)


def _paste(found: AnalysisResult, placements: list[tuple[tuple[int, int, int, int], int]], mask: np.ndarray,
           heatmap: np.ndarray, shape: tuple[int, int]) -> None:
    """The window's decision and its decided pairs' heat (brought to the composite's ``shape``), into the scan's
    mask and heat map."""
    found = replace(found, mask=upscale_to(found.mask, shape), heatmap=upscale_to(found.heatmap, shape))
    for box, column in placements:
        x0, y0, x1, y1 = box
        part = (slice(None), slice(column, column + x1 - x0))
        decided = found.mask[part]
        mask[y0:y1, x0:x1] |= decided
        np.maximum(heatmap[y0:y1, x0:x1], np.where(decided, found.heatmap[part], 0.0).astype(heatmap.dtype),
                   out=heatmap[y0:y1, x0:x1])


def _scan_region(region: Region, placements: list[tuple[tuple[int, int, int, int], int]], pair_id: int,
                 factor: float, megapixels: float, zoom: float, *, target_side: bool) -> Region:
    """A window's region (found on the window pair resized by ``zoom``) in the scan's coordinates, with its NFA
    carried over to the scan. ``target_side``: the region is its pair's first side, from which the pair's
    displacement (``offset_px``, the same in both regions) is measured."""
    from retouch.detect.clone import false_alarm_sentence

    def moved(box: list[int] | tuple[int, ...]) -> tuple[float, float]:
        # how far the window holding this box's corner moved from the composite to the scan
        x, y = box[0], box[1]
        sx, sy = _to_scan(x, y, placements)
        return sx - x, sy - y

    box = [round(v / zoom) for v in region.bbox]
    partner = [round(v / zoom) for v in region.evidence["partner_bbox"]]
    own_shift, partner_shift = moved(box), moved(partner)
    target_shift, source_shift = (own_shift, partner_shift) if target_side else (partner_shift, own_shift)
    offset = [v / zoom for v in region.evidence.get("offset_px", [0.0, 0.0])]
    offset = [round(offset[0] + source_shift[0] - target_shift[0], 1),
              round(offset[1] + source_shift[1] - target_shift[1], 1)]
    nfa = float(f"{float(region.evidence['nfa']) * factor:.3g}")
    evidence = {**region.evidence, "pair_id": pair_id,
                "partner_bbox": [int(partner[0] + partner_shift[0]), int(partner[1] + partner_shift[1]),
                                 partner[2], partner[3]],
                "offset_px": offset, "nfa": nfa, "false_alarm_control": false_alarm_sentence(nfa, megapixels),
                "full_resolution": True}
    return replace(region, bbox=(int(box[0] + own_shift[0]), int(box[1] + own_shift[1]), box[2], box[3]),
                   area=int(round(region.area / zoom**2)), evidence=evidence)
