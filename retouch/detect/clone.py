"""Copy-move (clone stamp) detection: areas copied from elsewhere in the same picture, each paired with its source.

Method
------
1. Features: rotation-invariant magnitudes of Zernike moments of the disc around every pixel (Cozzolino, Poggi &
   Verdoliva 2015), and SIFT keypoints, described as they are and as their patches' mirror images.
2. Matching: a dense nearest-neighbour field by PatchMatch with a minimum displacement, seeded by the similarity
   maps that SIFT self-matches follow (Amerini et al. 2011; grouped by sequential RANSAC) and by the field's own
   dominant displacements; searched on the grid of every second pixel of every second row, then brought to full
   resolution (the disc features are smooth at that step).
3. Filtering: the field is median filtered and fitted by local affine maps (dense linear fitting): a copy, also
   turned or rescaled, has a locally affine field, chance matches do not. Coherent areas become candidate pairs,
   each with the affine map between its two sides. Keypoint maps that rescale, turn strongly or mirror are
   checked directly at the pixels and give candidates too.
4. Significance: every candidate is tested a contrario (``_clone_significance``): in cells of 8 px, a copy's two
   sides differ by far less than two independent noise fields of this image would, and the twin is exclusive (it
   matches much better than the image's other recurrent displacements, which repeated windows, tiles and letters
   match equally well). The image's own rate of such cells, measured on its other matches, gives each pair a
   number of false alarms (``nfa``); pairs with ``nfa <= nfa_threshold`` are kept and redrawn at the pixels:
   from the candidate over every connected pixel that equals its twin under the pair's map down to the grain,
   in cells that pass the pair's own test (the field often finds a plain or turned copy only in patches; the
   map holds across all of it).
5. Target call: a resampled copy has lost some of its source's finest grain, and a stamped copy meets a seam its
   source does not (``_clone_pixels.call_target``); when neither trace is clear the pair is left undecided.

The decision marks both sides of every kept pair: region kinds ``clone-target`` and ``clone-source`` when the
call is confident, ``clone-pair`` for both sides otherwise. Every region carries ``nfa``, the expected number of
pairs at least this significant in an untouched photograph of this size, and a sentence saying so. The heat map
grades every candidate by its significance (decided pairs at 0.6 and above) over the dense field's coherence.

Parameters are the fields of :class:`CopyMoveOptions`. Measured ranges and rejected ideas are in
``benchmarks/results/clone.md``.

Limits
------
Analysis runs on a copy bounded to ``analysis_pixels``, mapped back: on larger scans, copies smaller than about
``min_area_fraction`` of the picture are looked for again at full resolution on scans more than four times the
bounded size (``_clone_fullres``: grain-scale keypoints over the whole scan, each candidate pair confirmed by this
analysis on a window pair, its NFA counted over the scan), which finds moved stamps, not strongly turned or rescaled
ones; and the bounded copy's resampling weakens the exactness that tells a copy from a look-alike. Copies whose
noise was destroyed (strong blur, heavy recompression, a flat digital fill) carry nothing that could prove them and
are not decided; copies of a repeated pattern that match its other repeats as well as their source are not decided
either. Strongly rescaled, turned or mirrored copies are found only when SIFT pairs enough keypoints between copy
and source. A symmetric or repeated subject that is identical down to its noise (a digitally mirrored or repeated
graphic) is a copy by this definition. The target call is an inference: the interpolation cue says nothing about a
whole-pixel shift, and the seam cue fails where the copy was stamped onto similar, smooth surroundings.

References
----------
D. Cozzolino, G. Poggi, L. Verdoliva, "Efficient dense-field copy-move forgery detection", IEEE TIFS 10(11), 2015.
I. Amerini et al., "A SIFT-based forensic method for copy-move attack detection and transformation recovery",
IEEE TIFS 6(3), 2011. T. Ehret, "Robust copy-move forgery detection by false alarm control", arXiv 1906.00649,
2019. A. Desolneux, L. Moisan, J.-M. Morel, "From Gestalt Theory to Image Analysis", Springer, 2008.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> image = rng.integers(0, 256, (240, 320), dtype=np.uint8)
>>> image[20:80, 200:280] = image[140:200, 20:100]  # stamp a 60 x 80 block
>>> result = copy_move(image)
>>> [region.bbox for region in result.regions], result.regions[0].evidence["nfa"] < 0.01
([(200, 19, 80, 62), (20, 139, 80, 62)], True)
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import cv2
import numpy as np

from retouch.detect._clone_exact import exact_duplicates
from retouch.detect._clone_fullres import full_resolution_tier
from retouch.detect._clone_keypoints import SEED_RATIO, plain_and_mirrored_maps, same_map, sift_keypoints
from retouch.detect._clone_pixels import TargetCall, call_target, copy_extent, pair_map, refine_map
from retouch.detect._clone_significance import (
    CellEvidence,
    PairTest,
    cell_evidence,
    null_rate,
    pair_test,
    recurrent_offsets,
)
from retouch.detect._patchmatch import (
    coarse_grid,
    compiled_patchmatch,
    halved_map,
    local_affine_residual,
    reduce_features,
    upsampled_field,
    zernike_features,
)
from retouch.imaging import bounded, to_gray_float, upscale_to
from retouch.registry import register
from retouch.result import AnalysisResult, Region

EXPLANATION = (
    "A retoucher can hide a person by stamping background copied from elsewhere in the same picture over them. "
    "This analysis looks, for every point, for the most similar spot elsewhere in the image, allowing for "
    "rotation, rescaling and mirroring. Where a whole area finds its twin at a consistent displacement, it is "
    "tested: a copy and its source differ by far less than two separate places with their own noise do, and a "
    "copy matches its source much better than anything else in the picture, where repeated things (windows, "
    "tiles, letters) match many places alike. Only pairs that would arise by chance in fewer than about one "
    "untouched photograph in a hundred are marked, both sides of each; the report says which side is the copy "
    "(target) and which the source when a trace tells: a copy that was turned or enlarged was redrawn pixel by "
    "pixel and lost some of its finest grain, and a copy does not continue into the scene around it as the "
    "original does. Limits: very small copies, copies whose grain was lost, strongly enlarged or shrunk copies "
    "with few distinct points, and copies of a repeated pattern are hard cases; the copy/original call is an "
    "inference, so check the pair."
)


@dataclass(frozen=True)
class CopyMoveOptions:
    """Options of :func:`copy_move` (every field has its default; ``report.json`` records them in ``params``).

    Attributes
    ----------
    analysis_pixels : int
        Analysis runs on a copy with at most this many pixels, mapped back to full size.
    full_resolution_scale : float
        When the bounded copy is smaller than the scan by more than this factor (per side), small stamps are also
        looked for at full resolution (``_clone_fullres``). Closer to full size, the bounded copy keeps at least the
        half resolution that the full-resolution tier itself falls back to, so the tier would add its cost (a few
        CPU seconds on an untouched scan) for little: a 1 MP scan is not searched twice.
    radius : int
        Radius in analysis pixels of the disc described by the Zernike features.
    min_offset_fraction : float
        Shortest displacement between copy and source, as a fraction of the analysed image's longer side.
    iterations : int
        PatchMatch iterations on the grid of every second pixel of every second row (one more follows with the
        field's dominant displacements as proposals).
    sweeps : int
        Sweeps of four-neighbour propagation and local search after the grid's field is brought to full
        resolution (``_patchmatch.upsampled_field``).
    max_affine_residual : float
        Largest mean squared residual (px^2) of the local affine fit of the displacement field inside a copy.
    match_ratio : float
        A candidate pixel's feature distance, relative to the two discs' own feature energy, is below this.
    min_area_fraction : float
        Smallest candidate side, as a fraction of the analysed image.
    max_candidates : int
        At most this many candidate pairs (the largest) are tested.
    cell : int
        Side in analysis pixels of the cells the significance test counts.
    max_difference : float
        A supporting cell's two sides differ by at most this fraction of what two independent noise fields of
        this image would.
    max_unshared : float
        ... and by at most this fraction of the two cells' own finest-detail energy (0: identical; about 1 for
        independent detail): where an image has no flat area its noise level is measured on texture, and this
        keeps look-alike textures out.
    exclusivity : float
        ... and by at most this fraction of the difference under the image's best other recurrent displacement.
    min_detail : float
        A cell carries evidence only when its finest detail has at least this RMS on both sides, in 8-bit grey
        levels (flat, clipped or smoothed-out cells match anything).
    min_rate : float
        Lower bound of the image's own rate of supporting cells (a safeguard when the image shows none).
    nfa_threshold : float
        Pairs are decided when their number of false alarms is at most this.
    min_log_scale : float
        Keypoint maps that rescale by more than ``exp(min_log_scale)`` are checked at the pixels too.
    min_angle : float
        Keypoint maps that turn by more than this many degrees are checked at the pixels too.
    loose_ratio : float
        SIFT self-matches are also paired at this looser ratio test (the maps seeding the dense field use
        0.6); the rescaled or turned maps those pairs follow are checked at the pixels only.
    interpolation_margin : float
        Smallest |log ratio| of fine-detail energy between the two sides for the interpolation call.
    seam_margin : float
        Smallest |log ratio| of seam strength between the two sides for the seam call.
    rescale_margin : float
        Between sides of clearly different size, the larger is called the (enlarged) copy when it is smoother
        than its surroundings, and than the smaller side is relative to its own, by this much in log energy.
    """

    analysis_pixels: int = 1_000_000
    full_resolution_scale: float = 0.5
    radius: int = 6
    min_offset_fraction: float = 0.04
    iterations: int = 2
    sweeps: int = 2
    max_affine_residual: float = 1.0
    match_ratio: float = 0.3
    min_area_fraction: float = 0.0005
    max_candidates: int = 40
    cell: int = 8
    max_difference: float = 0.5
    max_unshared: float = 0.25
    exclusivity: float = 0.5
    min_detail: float = 0.6
    min_rate: float = 1e-3
    nfa_threshold: float = 0.01
    min_log_scale: float = 0.18
    min_angle: float = 30.0
    loose_ratio: float = 0.8
    interpolation_margin: float = 0.1
    seam_margin: float = 0.15
    rescale_margin: float = 0.2


@dataclass
class DenseField:
    """The matching stage's output at analysis scale: the nearest-neighbour field (raw and median filtered),
    its local affine residual and closeness, and the keypoint maps (``seeds`` seeded the field; ``checked`` are
    to be checked at the pixels)."""

    oy: np.ndarray
    ox: np.ndarray
    oy_smooth: np.ndarray
    ox_smooth: np.ndarray
    residual: np.ndarray
    closeness: np.ndarray
    seeds: list[np.ndarray]
    checked: list[np.ndarray]
    min_offset: int


@dataclass
class Candidate:
    """One side of a candidate pair (bool mask at analysis scale) and the map from it to the other side."""

    member: np.ndarray
    affine: np.ndarray
    origin: str  # "dense" or "keypoint"


@dataclass
class Pair:
    """A decided pair at analysis scale: the two sides, the map, the test and the target call."""

    member: np.ndarray
    other: np.ndarray
    affine: np.ndarray
    test: PairTest
    call: TargetCall


# ------------------------------------------------------------------------------------- features and matching

def _closeness(distance: np.ndarray, energy: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
    """Match distance relative to the two discs' own feature energy (about 1 for look-alikes, near 0 for copies)."""
    height, width = distance.shape
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]  # broadcast, no full grids
    partner = energy[np.clip(ys + oy, 0, height - 1), np.clip(xs + ox, 0, width - 1)]
    return np.where(np.isfinite(distance), distance / (energy + partner + 1e-3), np.inf).astype(np.float32)


def dominant_offsets(oy: np.ndarray, ox: np.ndarray, selected: np.ndarray, *, min_count: int,
                     most: int = 6) -> list[tuple[int, int]]:
    """The displacements (to 2 px) shared by at least ``min_count`` selected pixels, the ``most`` commonest, each
    with its opposite."""
    if not selected.any():
        return []
    keys = (oy[selected] // 2).astype(np.int64) * 100_000 + (ox[selected] // 2).astype(np.int64)
    values, counts = np.unique(keys, return_counts=True)
    order = np.argsort(counts)[::-1][:most]
    found = []
    for key, count in zip(values[order], counts[order], strict=True):
        if count < min_count:
            break
        dy, dx = int(np.floor(key / 100_000 + 0.5)), int(key - np.floor(key / 100_000 + 0.5) * 100_000)
        found += [(2 * dy, 2 * dx), (-2 * dy, -2 * dx)]
    return found


def dense_field(small: np.ndarray, options: CopyMoveOptions, *, levels: np.ndarray | None = None) -> DenseField:
    """Stages 1 and 2: features and the nearest-neighbour field, seeded by keypoint maps, by the displacements of
    exact duplicate blocks (``levels``: the grey levels as stored, when the analysis runs at full size) and by
    the field's own dominant displacements."""
    radius = options.radius
    min_offset = max(2 * radius + 1, int(options.min_offset_fraction * max(small.shape)))
    # The keypoint stage (SIFT, then self-matching, plain and mirrored at once) and the dense features are
    # independent until the search needs the keypoint maps: the keypoints run in a second thread meanwhile
    # (OpenCV, BLAS and the numba kernel release the GIL). This shortens the wall time on a second core; the work,
    # and so the CPU time and every result, is the same.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="retouch-clone-keypoints") as keypoint_thread:
        keypoints = keypoint_thread.submit(_keypoint_maps, small, min_offset, options)
        # a copy moved by whole pixels and saved without loss is found by its exact duplicate blocks, however
        # small or however alike its surroundings (a patch of patterned cloth), where random search rarely lands
        exact = exact_duplicates(levels, min_offset=min_offset) if levels is not None else None
        shifts = [np.float32([[1, 0, sx * dx], [0, 1, sx * dy]]) for dy, dx in (exact.offsets if exact else [])
                  for sx in (1, -1)]
        features = reduce_features(zernike_features(cv2.GaussianBlur(small, (0, 0), 0.7), radius), 8)
        seeds, loose, mirrored = keypoints.result()
        field = _searched_field(features, seeds, shifts, min_offset, options)
    checked = [a for a in seeds + loose if _needs_pixel_check(a, options)] + mirrored
    return DenseField(**field, seeds=seeds, checked=checked, min_offset=min_offset)


def _keypoint_maps(small: np.ndarray, min_offset: int, options: CopyMoveOptions
                   ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """From one SIFT pass and one matching: the maps that seed the dense field, the looser maps that only reach
    the pixel check (without those the seeds already hold) and the mirrored maps."""
    (seeds, loose), mirrored = plain_and_mirrored_maps(small, min_offset, ratios=(SEED_RATIO, options.loose_ratio),
                                                       own=sift_keypoints(small))
    loose = [a for a in loose if not any(same_map(a, b, small.shape) for b in seeds)]
    return seeds, loose, mirrored


def _searched_field(features: np.ndarray, seeds: list[np.ndarray], shifts: list[np.ndarray], min_offset: int,
                    options: CopyMoveOptions) -> dict[str, np.ndarray]:
    """The nearest-neighbour field of ``features`` seeded by ``seeds`` and ``shifts`` and by its own dominant
    displacements, its median filtered version, local affine residual and closeness (``DenseField``'s fields)."""
    radius = options.radius
    size = features.shape[0] * features.shape[1]
    # the search runs on the grid of every second pixel of every second row (the disc features are smooth at
    # that step, and a quarter of the image's feature vectors mostly stays in the processor's cache), then once
    # at full resolution
    grid = coarse_grid(features)
    grid_energy = np.einsum("ijk,ijk->ij", grid, grid)
    grid_min_offset = (min_offset + 1) // 2
    coarse = compiled_patchmatch(grid, min_offset=grid_min_offset, iterations=options.iterations,
                                 proposals=[halved_map(a) for a in seeds + shifts])
    # displacements shared by many unusually close matches become proposals for every pixel, so that a copied
    # area random sampling hit in a few places is filled in everywhere (each grid pixel stands for four)
    grid_closeness = _closeness(coarse[2], grid_energy, coarse[0], coarse[1])
    dominant = dominant_offsets(2 * coarse[0], 2 * coarse[1], grid_closeness < options.match_ratio,
                                min_count=-(-max(30, size // 5000) // 4))
    dominant_maps = [np.float32([[1, 0, dx], [0, 1, dy]]) for dy, dx in dominant]
    if dominant:
        coarse = compiled_patchmatch(grid, min_offset=grid_min_offset, iterations=1,
                                     proposals=[halved_map(a) for a in seeds + dominant_maps], initial=coarse,
                                     seed=1)
    oy, ox, distance = upsampled_field(features, coarse, min_offset=min_offset,
                                       proposals=seeds + shifts + dominant_maps, sweeps=options.sweeps, seed=2)
    energy = np.einsum("ijk,ijk->ij", features, features)
    closeness = _closeness(distance, energy, oy, ox)
    oy_smooth = cv2.medianBlur(oy.astype(np.float32), 5)
    ox_smooth = cv2.medianBlur(ox.astype(np.float32), 5)
    residual = local_affine_residual(oy_smooth, ox_smooth, window=2 * radius + 1)
    return {"oy": oy, "ox": ox, "oy_smooth": oy_smooth, "ox_smooth": ox_smooth, "residual": residual,
            "closeness": closeness}


def _needs_pixel_check(affine: np.ndarray, options: CopyMoveOptions) -> bool:
    """Keypoint maps the dense field finds poorly: rescaled or strongly turned ones (their discs differ)."""
    linear = affine[:, :2]
    log_scale = abs(np.log(np.sqrt(abs(np.linalg.det(linear)))))
    angle = abs(np.degrees(np.arctan2(affine[1, 0], affine[0, 0])))
    return bool(log_scale >= options.min_log_scale or angle >= options.min_angle)


# ----------------------------------------------------------------------------------------------- filtering

def _components(mask: np.ndarray, min_area: int) -> tuple[int, np.ndarray]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return count, np.where(keep[labels], labels, 0)


def candidate_pairs(small: np.ndarray, field: DenseField, options: CopyMoveOptions) -> list[Candidate]:
    """Stage 3: coherent areas of the dense field, and areas where the image equals its warped self under a
    keypoint map that needs the pixel check, each as one side with its map to the other side (a pair is listed
    once, from its larger side)."""
    radius = options.radius
    min_area = max(24, int(options.min_area_fraction * small.size))
    strong = (field.residual < options.max_affine_residual) & (field.closeness < options.match_ratio)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    strong = cv2.morphologyEx(strong.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    # hysteresis: a copy's outer pixels (whose discs straddle its outline) match less well; they join a detection
    # when their displacements still fit it and their matches are still close
    weak = (field.residual < 3 * options.max_affine_residual) & (field.closeness < 1.6 * options.match_ratio)
    weak = cv2.morphologyEx(weak.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    count, labels = cv2.connectedComponents(weak, connectivity=8)
    grown = np.zeros(count, bool)
    grown[np.unique(labels[strong])] = True
    grown[0] = False
    candidate = cv2.morphologyEx((grown[labels] | strong).astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    # features describe a disc: exact matches stop that far inside a copy's outline, so areas are grown back
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius - 1, 2 * radius - 1))
    candidate = cv2.dilate(candidate, disc).astype(bool)
    _, labels = _components(candidate, min_area)
    found: list[tuple[int, Candidate]] = []
    for label in np.unique(labels[labels > 0]):
        member = labels == label
        affine = pair_map(member, field.oy_smooth, field.ox_smooth)
        if affine is not None:
            found.append((int(member.sum()), Candidate(member, affine, "dense")))
    for affine in field.checked:
        zone = _twin_zone(affine, small.shape, field.min_offset)
        same = _components(copy_extent(small, affine, zone, zone), min_area)[1] > 0
        if same.any():
            # a keypoint map is good to a pixel or two across an area; the grain the test compares is about a
            # pixel fine, so the map is fitted to the area's own pixels first
            refined = refine_map(small, affine, same)
            found.append((int(same.sum()), Candidate(same, refined if refined is not None else affine,
                                                     "keypoint")))
    found.sort(key=lambda item: -item[0])
    kept: list[Candidate] = []
    for _, candidate in found:
        if any(_same_pair(candidate, other, small.shape) for other in kept):
            continue
        kept.append(candidate)
        if len(kept) >= options.max_candidates:
            break
    return kept


def _twin_zone(affine: np.ndarray, shape: tuple[int, int], min_offset: int) -> np.ndarray:
    """The pixels whose twin under ``affine`` lies inside the image and at least ``min_offset`` away."""
    height, width = shape
    ys, xs = np.arange(height, dtype=np.float32)[:, None], np.arange(width, dtype=np.float32)[None, :]
    twin_x = affine[0, 0] * xs + affine[0, 1] * ys + affine[0, 2]
    twin_y = affine[1, 0] * xs + affine[1, 1] * ys + affine[1, 2]
    return ((np.hypot(twin_x - xs, twin_y - ys) >= min_offset) & (twin_x >= 0) & (twin_x <= width - 1)
            & (twin_y >= 0) & (twin_y <= height - 1))


def _same_pair(a: Candidate, b: Candidate, shape: tuple[int, int]) -> bool:
    """Whether two candidates are one pair (the same map or its inverse, and overlapping sides)."""
    inverse = cv2.invertAffineTransform(b.affine.astype(np.float64))
    if not (same_map(a.affine, b.affine, shape) or same_map(a.affine, inverse, shape)):
        return False
    twin = _warped(b.member, b.affine, shape)
    overlap = (a.member & (b.member | twin)).sum()
    return bool(overlap >= 0.3 * min(a.member.sum(), b.member.sum()))


def _warped(member: np.ndarray, affine: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The other side of a pair: ``member`` carried through ``affine`` (pixel -> twin)."""
    height, width = shape
    return cv2.warpAffine(member.astype(np.uint8), affine.astype(np.float32), (width, height),
                          flags=cv2.INTER_NEAREST).astype(bool)


# --------------------------------------------------------------------------------------------- significance

def significant_pairs(small: np.ndarray, field: DenseField, candidates: list[Candidate],
                      options: CopyMoveOptions, *, quantum: float) -> tuple[list[Pair], list[tuple[Candidate,
                                                                                               PairTest]]]:
    """Stage 4: the a-contrario test of every candidate (see ``_clone_significance``); returns the decided pairs
    (redrawn at the pixels and called) and every candidate with its test."""
    evidence = cell_evidence(small, cell=options.cell, quantum=quantum, min_detail_quanta=options.min_detail)
    recurrent_list = dominant_offsets(field.oy, field.ox, np.ones(small.shape, bool),
                                      min_count=max(30, small.size // 5000), most=8)
    recurrent = recurrent_offsets(recurrent_list)
    rows, cols = evidence.grid
    excluded = np.zeros(small.shape, bool)
    for candidate in candidates:
        excluded |= candidate.member | _warped(candidate.member, candidate.affine, small.shape)
    excluded_cells = cv2.resize(excluded[: rows * options.cell, : cols * options.cell].astype(np.float32),
                                (cols, rows), interpolation=cv2.INTER_AREA) > 0
    rate, informative = null_rate(evidence, field.oy, field.ox, excluded_cells, recurrent,
                                  max_difference=options.max_difference, max_unshared=options.max_unshared,
                                  exclusivity=options.exclusivity, min_offset=field.min_offset,
                                  min_rate=options.min_rate)
    tests = float(max(informative, 2)) ** 2
    tested: list[tuple[Candidate, PairTest]] = []
    pairs: list[Pair] = []

    def supporting(region: np.ndarray, affine: np.ndarray) -> np.ndarray:
        # the cells of ``region`` that support the copy under ``affine``, by the test that decided the pair
        return pair_test(evidence, region, affine, field.oy, field.ox, recurrent, rate=rate, tests=tests,
                         max_difference=options.max_difference, max_unshared=options.max_unshared,
                         exclusivity=options.exclusivity, min_offset=field.min_offset)[2]

    for candidate in candidates:
        trials = [(member, trial) for member, affine in _sides_to_test_from(candidate, small.shape)
                  for trial in _maps_to_try(small, member, affine)]
        best: tuple[PairTest, np.ndarray, np.ndarray] | None = None
        for member, trial in trials:
            # every side and map tried is one more test: the tests are counted for each
            test, _, _ = pair_test(evidence, member, trial, field.oy, field.ox, recurrent, rate=rate,
                                   tests=tests * len(trials), max_difference=options.max_difference,
                                   max_unshared=options.max_unshared, exclusivity=options.exclusivity,
                                   min_offset=field.min_offset)
            if best is None or test.nfa < best[0].nfa:
                best = (test, member, trial)
        test, member, affine = best
        tested.append((Candidate(member, affine, candidate.origin), test))
        if test.nfa <= options.nfa_threshold:
            pairs.append(_redrawn(small, member, affine, test, options, min_offset=field.min_offset,
                                  quantum=quantum, supporting=supporting))
    return _distinct(pairs), tested


def _maps_to_try(small: np.ndarray, member: np.ndarray, affine: np.ndarray) -> list[np.ndarray]:
    """The candidate's map and its refinements: a copy matches its source to the noise only when the map is
    right to a fraction of a pixel, and a map fitted to the dense field's whole-pixel displacements is not. A
    near translation also gets the nine whole-pixel shifts around it (a digital copy moved by whole pixels is
    exact under one of them); any map gets its refinement on the area's own pixels (ECC)."""
    maps = [np.asarray(affine, np.float64)]
    if np.abs(affine[:, :2] - np.eye(2)).max() < 0.01:
        base = np.round(affine[:, 2])
        maps += [np.float64([[1, 0, base[0] + dx], [0, 1, base[1] + dy]]) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    refined = refine_map(small, affine, member)
    if refined is not None:
        maps.append(refined)
    return maps


def _sides_to_test_from(candidate: Candidate, shape: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The sides (and maps to the other side) to test a pair from. A turned or rescaled copy was resampled from
    its source, so only its source resampled the same way reproduces its grain: the test runs from the copy's
    side, which is not known yet, so from both (a shrunk copy is the smaller side, an enlarged one the larger).
    A translation by whole pixels is symmetric: one side suffices."""
    affine = np.asarray(candidate.affine, np.float64)
    if np.abs(affine[:, :2] - np.eye(2)).max() < 0.01:
        return [(candidate.member, affine)]
    return [(candidate.member, affine),
            (_warped(candidate.member, affine, shape), cv2.invertAffineTransform(affine))]


def _redrawn(small: np.ndarray, member: np.ndarray, affine: np.ndarray, test: PairTest,
             options: CopyMoveOptions, *, min_offset: int, quantum: float,
             supporting: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Pair:
    """A decided pair's sides redrawn from the pixel difference between the image and its warped self (the
    feature discs blur an outline by their radius), and its target call.

    The candidate is often only part of the copy: where the copied content is plain (grass, a wall) the dense
    field finds the twin in patches, and a turned or rescaled copy has no single displacement the field's
    dominant ones could fill in. The decided map holds across the whole copy, so the outline grows from the
    candidate over the pixels that equal their twin under that map down to the grain (``copy_extent``), connected
    to the candidate, and away from it only in cells (or next to cells) that pass the pair's own test, exact and
    exclusive (``supporting``: region, map -> cells): a second print of the same design, or a repeated pattern,
    equals the copy's twin as well as its source does and is not carried along."""
    height, width = small.shape
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * options.radius + 1, 2 * options.radius + 1))
    zone = cv2.dilate(member.astype(np.uint8), disc).astype(bool)
    wide = _twin_zone(affine, small.shape, min_offset)
    detail = options.min_detail * quantum
    refined = copy_extent(small, affine, zone, member, textured_zone=wide, min_detail=detail)
    if (refined & ~zone).any():
        cells = supporting(refined, affine).astype(np.uint8)
        cells = cv2.dilate(cells, np.ones((3, 3), np.uint8))  # an outline cell is only partly inside the region
        backed = np.zeros(small.shape, bool)
        rows, cols = cells.shape
        backed[: rows * options.cell, : cols * options.cell] = np.kron(cells, np.ones((options.cell,) * 2,
                                                                                      np.uint8)).astype(bool)
        refined = copy_extent(small, affine, zone, member, textured_zone=wide & backed, min_detail=detail)
    if refined.sum() >= 0.25 * member.sum():
        member = refined
    other = _warped(member, affine, (height, width))
    call = call_target(small, member, other, affine, min_log_scale=options.min_log_scale,
                       interpolation_margin=options.interpolation_margin, seam_margin=options.seam_margin,
                       rescale_margin=options.rescale_margin)
    return Pair(member=member, other=other, affine=affine, test=test, call=call)


def _distinct(pairs: list[Pair]) -> list[Pair]:
    """The pairs, most significant first, without those each of whose sides lies mostly inside more significant
    pairs' sides (one copy reached from two candidates, e.g. two patches of it or its two sides, grows to one
    outline); a source stamped twice keeps both pairs, as each has a side of its own."""
    kept: list[Pair] = []
    covered = np.zeros(pairs[0].member.shape, bool) if pairs else None
    for pair in sorted(pairs, key=lambda p: p.test.nfa):
        if all((side & covered).sum() >= 0.5 * side.sum() for side in (pair.member, pair.other)):
            continue
        kept.append(pair)
        covered |= pair.member | pair.other
    return kept


# --------------------------------------------------------------------------------------------------- result

def _heat(test: PairTest, threshold: float) -> float:
    """A candidate's heat from its significance: 0 with no evidence (nfa = tests), 0.6 at the threshold, 1 at
    twenty orders of magnitude beyond it."""
    evidence = np.log10(max(test.tests, 1.0)) - test.log10_nfa
    needed = np.log10(max(test.tests, 1.0)) - np.log10(threshold)
    if test.nfa > threshold:
        return float(0.6 * np.clip(evidence / max(needed, 1e-9), 0.0, 1.0) * 0.95)
    return float(0.6 + 0.4 * np.clip((np.log10(threshold) - test.log10_nfa) / 20.0, 0.0, 1.0))


def decided_score(best_nfa: float, nfa_threshold: float) -> float:
    """The image score when pairs were decided: 0.5 at the threshold, rising with how far the most significant
    pair's NFA lies below it (0.5 + 0.5 tanh of the log10 excess over 10)."""
    excess = np.log10(nfa_threshold) - np.log10(max(best_nfa, 1e-300))
    return 0.5 + 0.5 * float(np.tanh(excess / 10.0))


def false_alarm_sentence(nfa: float, megapixels: float) -> str:
    """One plain sentence on how often a match this significant occurs by chance."""
    size = f"{megapixels:.1f} MP" if megapixels >= 0.1 else f"{megapixels * 1000:.0f} kilopixel"
    if nfa >= 1:
        return f"a match this coherent occurs by chance about {nfa:.2g} times in an untouched {size} photograph"
    if nfa > 1e-12:
        return (f"a match this exact and exclusive occurs by chance in about 1 in {1 / nfa:,.0f} untouched "
                f"{size} photographs")
    return (f"a match this exact and exclusive occurs by chance in fewer than 1 in 10^12 untouched {size} "
            "photographs")


def _options(options: CopyMoveOptions | None, overrides: dict[str, Any]) -> CopyMoveOptions:
    base = options or CopyMoveOptions()
    if not overrides:
        return base
    known = {f.name for f in fields(CopyMoveOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"copy_move got unknown option(s) {', '.join(unknown)}; options are: {', '.join(sorted(known))}")
    return replace(base, **overrides)


@register("clone", title="Clone stamp (copy-move)",
          description="Areas copied from elsewhere in the same picture (also rotated), paired with their source.")
def copy_move(image: np.ndarray, *, options: CopyMoveOptions | None = None, **overrides: Any) -> AnalysisResult:
    """Copy-move detection with a-contrario false-alarm control.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image.
    options : CopyMoveOptions, optional
        Every option of the method (defaults: ``CopyMoveOptions()``).
    **overrides
        Single options by name (``copy_move(image, nfa_threshold=1e-3)``), applied over ``options``.

    Returns
    -------
    AnalysisResult
        ``mask``: both sides of every decided pair; ``regions``: the sides, with ``evidence["nfa"]``;
        ``heatmap``: every candidate graded by its significance.
    """
    opts = _options(options, overrides)
    gray = to_gray_float(image)
    quantum = 1.0 / 65535 if np.asarray(image).dtype == np.uint16 else 1.0 / 255
    shape = gray.shape
    small, scale = bounded(gray, opts.analysis_pixels)
    # exact duplicates exist only among the pixels as stored, not in a resampled copy
    levels = np.round(small / quantum).astype(np.int64) if scale == 1.0 else None
    field = dense_field(small, opts, levels=levels)
    candidates = candidate_pairs(small, field, opts)
    pairs, tested = significant_pairs(small, field, candidates, opts, quantum=quantum)
    result = _result(small, scale, shape, field, pairs, tested, opts)
    if scale < opts.full_resolution_scale:  # copies too small for the bounded copy, sought at full resolution
        result = full_resolution_tier(image, result, opts, analyse=copy_move)
    return result


def _result(small: np.ndarray, scale: float, shape: tuple[int, int], field: DenseField, pairs: list[Pair],
            tested: list[tuple[Candidate, PairTest]], opts: CopyMoveOptions) -> AnalysisResult:
    height, width = small.shape
    base = (np.clip(1.0 - field.residual / (2.0 * opts.max_affine_residual), 0, 1)
            * np.clip(1.0 - field.closeness, 0, 1))
    heat_small = 0.3 * cv2.GaussianBlur(base.astype(np.float32), (0, 0), 1.5)
    for candidate, test in tested:
        sides = candidate.member | _warped(candidate.member, candidate.affine, small.shape)
        np.maximum(heat_small, np.where(sides, _heat(test, opts.nfa_threshold), 0.0).astype(np.float32),
                   out=heat_small)
    decided = np.zeros(small.shape, bool)
    regions: list[Region] = []
    megapixels = shape[0] * shape[1] / 1e6
    for pair_id, pair in enumerate(sorted(pairs, key=lambda p: p.test.nfa), start=1):
        sides = pair.member | pair.other
        decided |= sides
        np.maximum(heat_small, np.where(sides, _heat(pair.test, opts.nfa_threshold), 0.0).astype(np.float32),
                   out=heat_small)
        regions += _pair_regions(pair, pair_id, scale, shape, megapixels, opts)
    heatmap = upscale_to(heat_small, shape)
    mask = upscale_to(decided, shape)
    copied = float(decided.mean())
    if pairs:
        best = min(pair.test.nfa for pair in pairs)
        score = decided_score(best, opts.nfa_threshold)
        summary = (f"{len(pairs)} pair(s) of copied areas found, covering {100 * copied:.2f} % of the image (both "
                   f"sides); the most significant would occur by chance in an untouched photograph of this size "
                   f"with expectation {best:.1e}.")
    else:
        strongest = max((_heat(test, opts.nfa_threshold) for _, test in tested), default=0.0)
        score = 0.45 * strongest / 0.6
        summary = ("No pair of areas met the copy test's threshold (at most "
                   f"{opts.nfa_threshold:g} such pairs expected by chance per untouched photograph).")
    return AnalysisResult(
        method="clone", heatmap=heatmap, mask=mask, regions=regions, score=float(np.clip(score, 0, 1)),
        params={**asdict(opts), "analysis_scale": round(scale, 6), "min_offset_px": field.min_offset,
                "false_alarm_control": "a contrario: number of false alarms from the image's own rate of exact, "
                                       "exclusive cell matches (binomial tail times the pairs of cells)"},
        summary=summary, explanation=EXPLANATION,
        details={"pairs": len(pairs), "candidates": len(tested), "keypoint_maps": len(field.seeds) // 2,
                 "copied_fraction": round(copied, 6),
                 "candidate_nfa": [float(f"{test.nfa:.3g}") for _, test in tested[:12]],
                 "smallest_nfa": min((float(test.nfa) for _, test in tested), default=None)},
    )


def _pair_regions(pair: Pair, pair_id: int, scale: float, shape: tuple[int, int], megapixels: float,
                  opts: CopyMoveOptions) -> list[Region]:
    """The two sides of a decided pair as regions at full size, with their evidence."""
    call = pair.call
    target, source = (pair.member, pair.other) if call.member_is_target else (pair.other, pair.member)
    affine = pair.affine if call.member_is_target else cv2.invertAffineTransform(pair.affine.astype(np.float64))
    ys, xs = np.nonzero(target)
    centre = np.array([xs.mean(), ys.mean()]) if ys.size else np.zeros(2)
    moved = affine[:, :2] @ centre + affine[:, 2] - centre  # target -> source displacement at its centre
    confident = call.cue != "undecided"
    boxes = []
    for side in (target, source):
        x, y, w, h = cv2.boundingRect(side.astype(np.uint8))
        boxes.append([int(x / scale), int(y / scale), max(1, int(round(w / scale))), max(1, int(round(h / scale)))])
    common = {"pair_id": pair_id, "offset_px": [round(float(moved[0]) / scale, 1), round(float(moved[1]) / scale, 1)],
              "target_call": call.cue, "target_call_margin": round(call.margin, 3),
              "nfa": float(f"{pair.test.nfa:.3g}"),
              "false_alarm_control": false_alarm_sentence(pair.test.nfa, megapixels),
              "cells_supporting": pair.test.supporting, "cells_informative": pair.test.informative}
    regions = []
    heat = _heat(pair.test, opts.nfa_threshold)
    for side, box, partner, kind in ((target, boxes[0], boxes[1], "clone-target" if confident else "clone-pair"),
                                     (source, boxes[1], boxes[0], "clone-source" if confident else "clone-pair")):
        area = int(round(side.sum() / scale**2))
        if area > 0:
            regions.append(Region(bbox=tuple(box), area=area, score=heat, kind=kind,
                                  evidence={**common, "partner_bbox": partner}))
    return regions
