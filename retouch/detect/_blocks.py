"""Block statistics and the a-contrario decision shared by the block-based detectors (ela, grain, inpaint, jpeg).

The null a block score is judged against is content-aware: before a decision, each block's score is centred and
scaled by the blocks of its own content class (texture, brightness and colourfulness terciles,
:func:`content_classes` and :func:`standardise_by_content`); a class can only ask more evidence of its blocks
than the image-wide figures do, never less.

Per-block means are computed with ``cv2.resize(..., INTER_AREA)`` (exact block averaging when the image is
cropped to whole blocks), so a 24-megapixel image is summarised in a few tens of milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from retouch.result import AnalysisResult, Region


def block_mean(values: np.ndarray, block: int) -> np.ndarray:
    """Mean of each ``block`` x ``block`` tile (the image is cropped to whole tiles), as float32."""
    rows, cols = values.shape[0] // block, values.shape[1] // block
    # OpenCV reads the cropped view through its row stride: no full-image copy unless a conversion is needed
    cropped = values[: rows * block, : cols * block]
    if cropped.dtype == np.uint8 and rows and cols:
        return _block_mean_u8(cropped, block)
    if cropped.dtype != np.float32:
        cropped = cropped.astype(np.float32)
    return cv2.resize(cropped, (cols, rows), interpolation=cv2.INTER_AREA)


def block_max(values: np.ndarray, block: int) -> np.ndarray:
    """Maximum of each ``block`` x ``block`` tile (the image is cropped to whole tiles)."""
    rows, cols = values.shape[0] // block, values.shape[1] // block
    tiles = values[: rows * block, : cols * block].reshape(rows, block, cols * block)
    # running maxima over the rows of each band of tiles, then over the columns of each tile, all with whole-row
    # vectorised operations: a reduction over axis 1 or 3 of the 4-D view walks memory in short strides and was
    # three to six times slower
    down = tiles[:, 0].copy()
    for offset in range(1, block):
        np.maximum(down, tiles[:, offset], out=down)
    peak = down[:, 0::block].copy()
    for offset in range(1, block):
        np.maximum(peak, down[:, offset::block], out=peak)
    return peak


def _block_mean_u8(cropped: np.ndarray, block: int) -> np.ndarray:
    """Exact tile means of 8-bit values without a float copy of the image: the ``block`` rows of each band of
    tiles are added in uint16 (exact up to 257 rows of 255), then the columns of each tile in uint32, each step
    a whole-row vectorised addition (numpy's reduction over the short tile axis cost twice as much)."""
    rows, cols = cropped.shape[0] // block, cropped.shape[1] // block
    bands = cropped.reshape(rows, block, cols * block).sum(axis=1, dtype=np.uint16)
    sums = bands[:, 0::block].astype(np.uint32)
    for offset in range(1, block):
        np.add(sums, bands[:, offset::block], out=sums)
    return (sums * (1.0 / (block * block))).astype(np.float32)


def median_of(values: np.ndarray) -> np.floating:
    """``np.median(values)`` of finite values, bit for bit, from one partition.

    numpy's median partitions at both middle ranks at once, which costs about six times a partition at one rank;
    on a 7,000-block map it took 70 µs of which 60 were that partition, paid several times per detector (at
    0.5 MP, a tenth of a detector's time). The lower middle value is the largest of the lower part.
    """
    flat = np.asarray(values).ravel()
    half = flat.size // 2
    part = np.partition(flat, half)
    if flat.size % 2:
        return part[half]
    return (part[:half].max() + part[half]) / 2  # the mean of the two, as np.median takes it


def percentile_of(values: np.ndarray, percent: float) -> np.floating:
    """``np.percentile(values, percent)`` (linear interpolation) of finite values, bit for bit, from one
    partition (see :func:`median_of`): numpy's index arithmetic and interpolation, without its overhead."""
    flat = np.asarray(values).ravel()
    quantile = percent / 100
    position = (flat.size - 1) * quantile  # Hyndman & Fan's type 7, numpy's default
    below = min(max(int(math.floor(position)), 0), flat.size - 1)
    part = np.partition(flat, below)
    low = part[below]
    if below + 1 >= flat.size or position >= flat.size - 1:
        return low
    high = part[below + 1:].min()
    weight = position - below
    step = high - low
    # numpy's lerp: from the nearer end, so that the result never leaves [low, high]
    return high - step * (1 - weight) if weight >= 0.5 else low + step * weight


def quantiles_of_sorted(ordered: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """``np.quantile(ordered, quantiles)`` (linear interpolation) of an already sorted 1-D array of finite values,
    bit for bit (float64), without numpy's partition of a sorted copy."""
    count = ordered.size
    position = (count - 1) * quantiles
    below = np.floor(position)
    top = position >= count - 1
    weight = position - np.where(top, -1, below)
    below = np.where(top, count - 1, below).astype(np.intp)
    above = np.where(top, count - 1, below + 1)
    low, high = ordered[below], ordered[above]
    step = high - low
    return np.where(weight >= 0.5, high - step * (1 - weight), low + step * weight)


def _grouped_quantile(values: np.ndarray, groups: np.ndarray, counts: np.ndarray, quantile: float) -> np.ndarray:
    """``np.percentile(values[groups == g], quantile)`` (linear interpolation) for every group g; NaN-free, 0 for
    empty groups. ``counts`` is ``np.bincount(groups)``."""
    # one float64 sort of "group + value scaled into [0, 1)" orders by group, then value (several times faster
    # than a lexsort); the values are recovered from the fractional part at float64 precision
    values = np.asarray(values, np.float64)
    low_value = float(values.min()) if values.size else 0.0
    scale = float(values.max()) - low_value if values.size else 0.0
    scale = scale / 0.5 if scale > 0 else 1.0
    keys = np.sort(groups + (values - low_value) / scale)
    ordered = (keys - np.floor(keys)) * scale + low_value
    starts = np.cumsum(counts) - counts
    position = starts + np.maximum(counts - 1, 0) * (quantile / 100.0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, starts + np.maximum(counts - 1, 0))
    fraction = position - low
    if ordered.size == 0:
        return np.zeros(counts.shape, np.float64)
    low, high = np.minimum(low, ordered.size - 1), np.minimum(high, ordered.size - 1)
    return np.where(counts > 0, ordered[low] + (ordered[high] - ordered[low]) * fraction, 0.0)


def binned_reference(values: np.ndarray, covariate: np.ndarray, eligible: np.ndarray, *, bins: int = 12,
                     quantile: float = 50.0, min_count: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A robust function ``values ~ f(covariate)`` from ``eligible`` blocks: per-bin ``quantile`` of values and
    robust spread (MAD); bins are covariate quantiles, sparse bins borrow the overall figures.

    Returns (expected value per block, robust spread per block).
    """
    pool = covariate[eligible]
    if pool.size < min_count:
        eligible = np.ones_like(eligible)
        pool = covariate[eligible]
    # quantiles depend on the order statistics only: selecting them from a sorted copy is exact and, with eleven
    # of them, cheaper than numpy's repeated partitioning
    edges = quantiles_of_sorted(np.sort(pool), np.linspace(0, 1, bins + 1)[1:-1])
    # the bin of each block, as searchsorted(edges, covariate, side="right") counts it, by one comparison per edge
    # counted in bytes (bins < 256): an eighth of the memory traffic of intp counts on a 12 MP image's blocks
    index = np.zeros(covariate.shape, np.uint8 if bins < 256 else np.intp)
    for edge in edges:
        index += covariate >= edge
    eligible_index = index[eligible]
    eligible_values = values[eligible]
    overall_spread = float(1.4826 * median_of(np.abs(eligible_values - median_of(eligible_values)))) + 1e-6
    # every bin's quantile, median and MAD at once from one sort by (bin, value): no Python loop over bins
    counts = np.bincount(eligible_index, minlength=bins)[:bins]
    centre = _grouped_quantile(eligible_values, eligible_index, counts, quantile)
    bin_median = centre if quantile == 50.0 else _grouped_quantile(eligible_values, eligible_index, counts, 50.0)
    mad = _grouped_quantile(np.abs(eligible_values - bin_median[eligible_index]), eligible_index, counts, 50.0)
    enough = counts >= min_count
    if not enough.all():  # sparse bins borrow the overall figure
        centre = np.where(enough, centre, float(percentile_of(eligible_values, quantile)))
    spread = np.where(enough, 1.4826 * mad + 1e-6, overall_spread)
    spread = np.maximum(spread, 0.5 * overall_spread)
    return centre[index], spread[index]


NOTHING_TO_JUDGE = ("no part of the image can be measured: every block is clipped to black or white (or, for "
                    "error levels, holds dust or scratches)")


def bonferroni_z(tests: int, false_alarms: float = 1.0) -> float:
    """One-sided Gaussian z beyond which ``tests`` null tests give ``false_alarms`` expected alarms in total."""
    from statistics import NormalDist

    p = min(0.5, false_alarms / max(tests, 1))
    return float(-NormalDist().inv_cdf(p))


def pooled_z(z: np.ndarray, radius: int) -> np.ndarray:
    """Average z over a (2 radius + 1)^2 neighbourhood of blocks, rescaled to unit variance under independence."""
    size = 2 * radius + 1
    mean = cv2.boxFilter(z.astype(np.float32, copy=False), -1, (size, size), borderType=cv2.BORDER_REFLECT)
    return mean * math.sqrt(size * size)


def standardise(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Centre and scale ``values`` by their median and MAD over ``where``: neighbouring blocks share content and
    noise, so pooled scores are not unit-variance; each map is put on its own empirical scale before a bound."""
    centre, spread = robust_scale(values, where)
    return (values - centre) / spread


def robust_scale(values: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    """The median of ``values`` over ``where`` (all of them when ``where`` holds none) and 1.4826 times their
    median absolute deviation (a Gaussian's sigma), never zero."""
    sample = values[where]
    if sample.size == 0:
        sample = values.ravel()
    centre = float(median_of(sample))
    return centre, float(1.4826 * median_of(np.abs(sample - centre))) + 1e-6


def block_saturation(image: np.ndarray, block: int, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """Mean colourfulness of each ``block`` x ``block`` tile: the spread of the RGB channels (max - min, in
    [0, 1] of full scale), computed at ``shape`` (H, W; the image's own by default); None for a gray image."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] < 3:
        return None
    rgb = array[..., :3]
    if rgb.dtype != np.uint8:
        rgb = (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else np.round(
            np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    spread = cv2.subtract(cv2.max(cv2.max(rgb[..., 0], rgb[..., 1]), rgb[..., 2]),
                          cv2.min(cv2.min(rgb[..., 0], rgb[..., 1]), rgb[..., 2]))
    if shape is not None and spread.shape != tuple(shape):
        spread = cv2.resize(spread, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return block_mean(spread, block) / np.float32(255.0)


def content_classes(where: np.ndarray, *covariates: np.ndarray | None, min_count: int = 48) -> np.ndarray:
    """Each block's content class: the product of its quantile bin (over ``where``) in every covariate given, most
    important first (texture, brightness, colourfulness...; None entries are skipped), as small integers.

    Three bins per covariate where the blocks in ``where`` fill every class with ``2 min_count`` blocks on
    average, else two, else the last covariates are dropped: a small image gets coarse classes, not empty ones.
    """
    given = [c for c in covariates if c is not None]
    available = int(where.sum())
    chosen: list[np.ndarray] = []
    levels = 1
    for kept in range(len(given), 0, -1):
        fitting = [k for k in (3, 2) if available >= 2 * min_count * k ** kept]
        if fitting:
            chosen, levels = given[:kept], fitting[0]
            break
    classes = np.zeros(where.shape, np.int32)
    for covariate in chosen:
        edges = quantiles_of_sorted(np.sort(covariate[where].astype(np.float64)),
                                    np.linspace(0, 1, levels + 1)[1:-1])
        index = np.zeros(where.shape, np.int32)
        for edge in edges:
            index += covariate >= edge
        classes = classes * levels + index
    return classes


def standardise_by_content(values: np.ndarray, where: np.ndarray, classes: np.ndarray, *,
                           min_count: int = 48) -> np.ndarray:
    """:func:`standardise`, with the null of each block taken from blocks of its own content class.

    A block score's spread on an untouched photograph depends on what the block shows: JPEG flattens skies and
    deep shadows, saturated colours clip a channel, foliage and crowds vary more from block to block than walls.
    Each class (see :func:`content_classes`) with at least ``min_count`` blocks in ``where`` gets its own median
    and MAD; a class can only ask more evidence of its blocks than the image-wide null does, never less (its
    centre is never below the image-wide median, its spread never below the image-wide MAD: no block scores higher
    above 0 than image-wide), so the image-wide null the widths were calibrated with stays an upper bound on the
    false alarms; classes too small use the image-wide figures.
    """
    centre, spread = content_null(values, where, classes, min_count=min_count)
    return (values - centre) / spread


def content_null(values: np.ndarray, where: np.ndarray, classes: np.ndarray, *, min_count: int = 48
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per block, the centre and spread :func:`standardise_by_content` judges it with (arrays shaped as
    ``values``)."""
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.float64
    centre, spread = robust_scale(values, where)
    if not where.any():
        return np.full(values.shape, centre, dtype), np.full(values.shape, spread, dtype)
    sample = values[where]
    labels = classes[where]
    count = int(classes.max()) + 1 if classes.size else 1
    counts = np.bincount(labels, minlength=count)
    class_centre = _grouped_quantile(sample, labels, counts, 50.0)
    deviation = np.abs(sample - class_centre[labels])
    class_spread = 1.4826 * _grouped_quantile(deviation, labels, counts, 50.0) + 1e-6
    enough = counts >= min_count
    block_centre = np.where(enough, np.maximum(class_centre, centre), centre).astype(dtype)
    block_spread = np.where(enough, np.maximum(class_spread, spread), spread).astype(dtype)
    return block_centre[classes], block_spread[classes]


@dataclass(frozen=True)
class GroupDecision:
    """Groups of blocks judged a-contrario: candidate groups, each with its number of false alarms.

    ``mask`` holds the decided blocks (groups with ``nfa <= nfa_threshold``); ``nfa`` holds, for every block of a
    candidate group, that group's NFA (``inf`` elsewhere); ``best_nfa`` is the smallest NFA of any block of the
    map (a single block counts as a group here), which grades the image even when nothing is decided.
    """

    mask: np.ndarray
    nfa: np.ndarray
    best_nfa: float
    threshold_z: float
    peak_z: float = 0.0
    tests: int = 1
    group_nfa: dict[float, float] | None = None

    def null_record(self, others: "list[GroupDecision]" = ()) -> dict[str, Any]:
        """What calibration needs (``details["null"]``): the tests, the peak score, and for each margin of
        :data:`CALIBRATION_MARGINS` the smallest NFA of a group that would be decided at that margin (its
        extent rule included), over all the maps judged."""
        every = [self, *others]
        groups = {str(m): min(float((d.group_nfa or {}).get(m, math.inf)) for d in every)
                  for m in CALIBRATION_MARGINS}
        return {"tests": self.tests, "peak_z": round(max(d.peak_z for d in every), 4),
                "group_nfa": {m: float(f"{v:.3g}") if math.isfinite(v) else None for m, v in groups.items()}}


# Margins at which every decision also records its smallest group NFA, so that benchmarks.false_alarms can
# calibrate a detector's margin on the decisions themselves from one run.
CALIBRATION_MARGINS = (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)


# How far a decided group of grain or inpainting evidence reaches: its connected blocks scoring above this (in the
# units of the map judged, each block against its content class). See group_decision; the JPEG-trace maps (ela,
# jpeg, grid) do not grow their groups (benchmarks/results/detector_notes.md).
EXTENT_Z = 2.5


def _smallest_group_nfa(z: np.ndarray, tests: int, margin: float, nfa_threshold: float, min_blocks: int,
                        grow: float) -> float:
    """The smallest NFA among the groups :func:`group_decision` would form at ``margin`` (inf when none)."""
    level = grow * margin * bonferroni_z(tests, nfa_threshold)
    above = z > level
    if not above.any():
        return math.inf
    count, labels, stats, _ = cv2.connectedComponentsWithStats(above.view(np.uint8), connectivity=8)
    peaks = np.full(count, -np.inf)
    np.maximum.at(peaks, labels.ravel(), z.ravel())
    qualified = stats[:, cv2.CC_STAT_AREA] >= min_blocks
    qualified[0] = False
    if not qualified.any():
        return math.inf
    return float(tests * null_tail(peaks[qualified].max(), margin))


def null_tail(z: np.ndarray | float, margin: float) -> np.ndarray | float:
    """P(Z > z) for a block score of an untouched photograph: a Gaussian on the ``z / margin`` scale, the
    calibrated model of :func:`group_decision` (``margin`` widens the Gaussian for real photographs' heavier
    tails)."""
    from scipy.special import ndtr

    return ndtr(-np.asarray(z, np.float64) / margin)


def group_decision(z: np.ndarray, *, tests: int, margin: float, nfa_threshold: float, min_blocks: int,
                   grow: float = 0.7, candidate_nfa: float = 1.0, extent_z: float | None = None
                   ) -> GroupDecision:
    """A-contrario decision on a map of block scores (Desolneux, Moisan & Morel; as ZERO and Noisesniffer use).

    A group is a connected set (8-neighbours) of at least ``min_blocks`` blocks above ``grow`` times the
    decision level, holding a block above the candidate level; its number of false alarms is
    ``NFA = tests * P(Z > peak)`` under :func:`null_tail`: the expected number of groups at least this strong on
    an untouched photograph with as many tests. Groups with ``NFA <= candidate_nfa`` are candidates (their NFA is
    reported), those with ``NFA <= nfa_threshold`` are decided.

    With ``extent_z`` (grain and inpaint pass :data:`EXTENT_Z`, 2.5 in the units of the map, whose blocks are
    each judged against their own content class, see :func:`standardise_by_content`), a decided group's extent
    then reaches every connected block above it: the NFA says whether a group is improbable, not how far it
    reaches, and the decision level left most of a decided fill unmarked. Growing a decided group changes its
    area, never the number of groups decided nor their NFA.
    """
    tests = max(int(tests), 1)
    decide_z = margin * bonferroni_z(tests, nfa_threshold)
    candidate_z = margin * bonferroni_z(tests, max(candidate_nfa, nfa_threshold))
    nfa_map = np.full(z.shape, np.inf)
    peak = float(z.max()) if z.size else 0.0
    # the groups each calibration margin would form: cheap on block maps, and only where some could be found
    reachable = peak > CALIBRATION_MARGINS[0] * bonferroni_z(tests, max(candidate_nfa, nfa_threshold))
    group_nfa = {m: (_smallest_group_nfa(z, tests, m, nfa_threshold, min_blocks, grow) if reachable else math.inf)
                 for m in CALIBRATION_MARGINS}
    best_nfa = float(tests * null_tail(peak, margin))
    mask = np.zeros(z.shape, bool)
    if peak <= candidate_z:  # most untouched images: no candidate, no labelling
        return GroupDecision(mask, nfa_map, best_nfa, decide_z, peak, tests, group_nfa)
    count, labels, stats, _ = cv2.connectedComponentsWithStats((z > grow * decide_z).view(np.uint8),
                                                               connectivity=8)
    peaks = np.full(count, -np.inf)
    np.maximum.at(peaks, labels.ravel(), z.ravel())
    nfa = tests * null_tail(peaks, margin)
    candidate = (peaks > candidate_z) & (stats[:, cv2.CC_STAT_AREA] >= min_blocks)
    candidate[0] = False
    nfa = np.where(candidate, nfa, np.inf)
    nfa_map = nfa[labels]
    mask = nfa_map <= nfa_threshold
    if mask.any() and extent_z is not None and math.isfinite(extent_z):
        mask, nfa_map = _extend_decided(z, mask, nfa_map, extent_z)
    return GroupDecision(mask, nfa_map, best_nfa, decide_z, peak, tests, group_nfa)


def _extend_decided(z: np.ndarray, mask: np.ndarray, nfa_map: np.ndarray,
                    extent_z: float) -> tuple[np.ndarray, np.ndarray]:
    """Decided groups grown over the connected blocks above ``extent_z``; a grown block takes the smallest NFA
    of the decided blocks its component holds."""
    count, labels = cv2.connectedComponents(((z > extent_z) | mask).view(np.uint8), connectivity=8)
    component_nfa = np.full(count, np.inf)
    np.minimum.at(component_nfa, labels[mask], nfa_map[mask])
    component_nfa[0] = np.inf
    grown = component_nfa[labels]
    return np.isfinite(grown), np.minimum(nfa_map, grown)


def nfa_score(nfa: float, nfa_threshold: float, *, decided: bool) -> float:
    """Image-level score from the smallest NFA: 0.5 at the threshold, a logistic of ``log10(threshold / nfa)``
    (0.73 at a tenth of it, 0.98 at 1 / 10,000 of it); capped at 0.49 unless something was decided."""
    excess = math.log10(max(nfa_threshold, 1e-300)) - math.log10(max(min(nfa, 1e300), 1e-300))
    score = 1.0 / (1.0 + math.exp(-max(min(excess, 50.0), -50.0)))
    return float(score if decided else min(score, 0.49))


def finite_or_none(value: float) -> float | None:
    """An NFA for ``report.json``: three significant digits, or None when infinite (JSON has no infinity)."""
    return float(f"{value:.3g}") if math.isfinite(value) else None


def describe_nfa(nfa: float, what: str) -> str:
    """The false-alarm sentence every region carries: how often a finding this strong occurs by chance."""
    if not math.isfinite(nfa):
        return f"this {what} was not judged against chance"
    if nfa >= 1:
        return (f"about {nfa:.2g} {what}s at least this strong are expected by chance on an untouched photograph "
                "of this size")
    if nfa < 1e-9:  # the Gaussian tail underflows long before: only the order of magnitude means anything
        return (f"a {what} at least this strong occurs by chance in fewer than 1 in a billion untouched "
                "photographs of this size")
    return (f"a {what} at least this strong occurs by chance in about 1 in {1 / nfa:,.0f} untouched photographs "
            "of this size")

def strength_to_heat(strength: np.ndarray, threshold: float) -> np.ndarray:
    """Map block evidence (z) onto [0, 1]: 0.5 at the decision threshold, strictly increasing everywhere.

    A logistic of width threshold / 4 (0.12 at half the threshold, 0.88 at 1.5 times it). An earlier linear ramp
    from half the threshold tied every block below it at 0; since the threshold includes the detector's tail
    margin, that
    tie covered much of a weak edit's area: on 6 generated forgeries per kind, ELA's median pixel AUC was
    0.73-0.91 with the ramp and 0.88-0.94 with this map. A strictly increasing map ranks pixels exactly as the
    evidence does; the decisions and image scores do not depend on it.
    """
    scaled = (np.asarray(strength, np.float32) - np.float32(threshold)) * np.float32(4.0 / max(threshold, 1e-6))
    return (1.0 / (1.0 + np.exp(-np.clip(scaled, -30.0, 30.0)))).astype(np.float32)


def blocks_to_image(values: np.ndarray, block: int, shape: tuple[int, int], *, smooth: bool) -> np.ndarray:
    """Blow a block map up to the full image (edge tiles replicate the last block)."""
    if values.dtype != bool:
        return _blow_up(values, block, shape, smooth=smooth)
    # a mask is mostly False: zeros, and only the box around its flagged blocks written (blowing up the whole
    # map cost more than the rest of a 0.5-megapixel image's decision)
    out = np.zeros(shape, bool)
    flagged_rows = np.flatnonzero(values.any(axis=1))
    if flagged_rows.size == 0:
        return out
    flagged_cols = np.flatnonzero(values.any(axis=0))
    (rows, cols), (height, width) = values.shape, shape
    first_row, end_row = int(flagged_rows[0]), int(flagged_rows[-1]) + 1
    first_col, end_col = int(flagged_cols[0]), int(flagged_cols[-1]) + 1
    top, left = first_row * block, first_col * block
    # the last block row and column also own the partial tiles at the border
    bottom = height if end_row == rows else min(end_row * block, height)
    right = width if end_col == cols else min(end_col * block, width)
    if top < bottom and left < right:
        out[top:bottom, left:right] = _blow_up(values[first_row:end_row, first_col:end_col], block,
                                               (bottom - top, right - left), smooth=False)
    return out


def _blow_up(values: np.ndarray, block: int, shape: tuple[int, int], *, smooth: bool) -> np.ndarray:
    """:func:`blocks_to_image` of a whole map."""
    rows, cols = values.shape
    height, width = shape
    inner_h, inner_w = min(rows * block, height), min(cols * block, width)
    if values.dtype == bool:
        source, dtype, interpolation = values.view(np.uint8), np.uint8, cv2.INTER_NEAREST
    else:
        source, dtype = values.astype(np.float32, copy=False), np.float32
        interpolation = cv2.INTER_LINEAR if smooth else cv2.INTER_NEAREST
    out = np.empty((height, width), dtype)
    if inner_h < rows * block or inner_w < cols * block:  # a map larger than the image: resize, then crop
        big = cv2.resize(source, (cols * block, rows * block), interpolation=interpolation)
        out[:inner_h, :inner_w] = big[:inner_h, :inner_w]
    elif inner_h and inner_w:
        # resized straight into the output (nearest-neighbour by an integer factor is an exact block repeat),
        # then the partial edge tiles copy the last full row and column: no padded copy of the whole image
        cv2.resize(source, (inner_w, inner_h), dst=out[:inner_h, :inner_w], interpolation=interpolation)
    if inner_h < height:
        out[inner_h:, :inner_w] = out[inner_h - 1: inner_h, :inner_w]
    if inner_w < width:
        out[:, inner_w:] = out[:, inner_w - 1: inner_w]
    return out.view(bool) if values.dtype == bool else out


def block_regions(blocks: np.ndarray, heatmap: np.ndarray, block: int, *, kind: str,
                  min_area: int, nfa: np.ndarray | None = None, what: str = "region") -> list[Region]:
    """Connected groups of flagged blocks as regions, found on the block grid rather than on the full image.

    Gives the same regions as ``regions_from_mask`` on the blown-up mask (8-connected blocks touch by a corner
    pixel, so they stay 8-connected at full size; edge tiles own the partial rows and columns), in time that
    grows with the number of blocks, not pixels: on a 24-megapixel scan the full-size labelling cost seconds.
    Each region's score is the mean of ``heatmap`` over its pixels, as for every other detector; with a block map
    of ``nfa`` (see :func:`group_decision`) each region's evidence holds its smallest NFA and the sentence saying
    what that means (``what`` names the finding).
    """
    if not blocks.any():  # often one of a detector's kinds: no labelling
        return []
    height, width = heatmap.shape
    count, labels, stats, _ = cv2.connectedComponentsWithStats(blocks.astype(np.uint8), connectivity=8)
    rows, cols = blocks.shape
    # pixel extent of every block row and column; the last ones take the partial tiles at the border
    row_end = np.minimum((np.arange(rows) + 1) * block, height)
    row_end[-1] = height
    col_end = np.minimum((np.arange(cols) + 1) * block, width)
    col_end[-1] = width
    row_size = np.diff(row_end, prepend=0)
    col_size = np.diff(col_end, prepend=0)
    areas = np.bincount(labels.ravel(), weights=np.outer(row_size, col_size).ravel(), minlength=count)
    regions = []
    for label in range(1, count):
        area = int(areas[label])
        if area < min_area:
            continue
        bx, by, bw, bh = (int(v) for v in stats[label, :4])
        x0, y0 = bx * block, by * block
        x1, y1 = int(col_end[bx + bw - 1]), int(row_end[by + bh - 1])
        inside = blocks_to_image(labels[by:by + bh, bx:bx + bw] == label, block, (y1 - y0, x1 - x0), smooth=False)
        score = float(heatmap[y0:y1, x0:x1][inside].mean())
        evidence = {}
        if nfa is not None:
            value = float(nfa[by:by + bh, bx:bx + bw][labels[by:by + bh, bx:bx + bw] == label].min())
            evidence = {"nfa": finite_or_none(value), "false_alarm_control": describe_nfa(value, what)}
        regions.append(Region(bbox=(x0, y0, x1 - x0, y1 - y0), area=area, score=score, kind=kind,
                              evidence=evidence))
    return regions


def block_result(method: str, *, heat_blocks: np.ndarray, mask_blocks: np.ndarray, block: int,
                 shape: tuple[int, int], kind_of: dict[str, np.ndarray], score: float, params: dict,
                 summary: str, explanation: str, details: dict, min_area: int, nfa: np.ndarray | None = None,
                 what: str = "region") -> AnalysisResult:
    """Build the common result from block maps; ``kind_of`` maps a region kind to the blocks of that kind, ``nfa``
    holds each block's number of false alarms (see :func:`block_regions`)."""
    heatmap = blocks_to_image(heat_blocks, block, shape, smooth=True)
    mask = blocks_to_image(mask_blocks, block, shape, smooth=False)
    regions = []
    for kind, blocks in kind_of.items():
        regions += block_regions(blocks & mask_blocks, heatmap, block, kind=kind, min_area=min_area, nfa=nfa,
                                 what=what)
    regions.sort(key=lambda r: (-r.score, -r.area))
    return AnalysisResult(method=method, heatmap=heatmap, mask=mask, regions=regions, score=score, params=params,
                          summary=summary, explanation=explanation, details=details)


def placed_at_origin(part: AnalysisResult, shape: tuple[int, int], origin: tuple[int, int]) -> AnalysisResult:
    """A result built on the part of a picture from its JPEG grid's ``origin`` (row, column) on, placed in the
    whole picture of ``shape``: the heatmap's missing rows and columns repeat the nearest ones, the mask is empty
    there and the regions are shifted."""
    top, left = origin
    if not (top or left):
        return part
    heatmap = np.empty(shape, np.float32)
    heatmap[top:, left:] = part.heatmap
    heatmap[:top, left:] = part.heatmap[:1]
    heatmap[:, :left] = heatmap[:, left: left + 1]
    mask = np.zeros(shape, bool)
    mask[top:, left:] = part.mask
    return replace(part, heatmap=heatmap, mask=mask, regions=[r.shifted(left, top) for r in part.regions])
