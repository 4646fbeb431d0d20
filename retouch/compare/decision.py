"""Decide which differences are edits: an a-contrario test of regions against the pair's own background.

Method
------
The evidence map (:mod:`retouch.compare.evidence`) is a z-score against what the fitted pair model leaves
everywhere, but its tails depend on the pair: two generated scans of one print leave little besides grain, a
re-photographed and repainted print leaves texture and local tone differences over whole figures. The decision
is therefore made against the pair's own background:

1. Blocks. The overlap is cut into ``block`` x ``block`` analysis-pixel blocks; each block's statistic is the
   median evidence over it (a speck, a misregistered edge or a scratch moves a few of its pixels, not the median).
   The logarithm of ``median + 0.5`` is standardised by its median and robust spread over all blocks (the spread
   never below ``min_spread``): this is the background a pair of scans of one print produces, edits being a
   minority of the blocks.
2. Regions. For each level ``t`` of a ladder (3 to 8 robust standard deviations), the 4-connected components of
   the blocks above ``t`` are candidate regions. Under the background model a block exceeds ``t`` with
   probability ``p = Phi(-t)`` (Gaussian tail), independently of other blocks; the number of 4-connected shapes of
   ``n`` blocks holding a given block is at most about ``4.06^n`` (lattice animals), so the expected number of
   regions at least as extreme among all tests is ``NFA = N x L x (4.06 p)^n`` for ``N`` blocks and ``L``
   levels. A region is kept when ``NFA < false_alarms`` (default 1: in expectation, at most one region per pair
   would be reported from the background alone), and its smallest NFA over the levels is reported.
   Real backgrounds have heavier tails than Gaussian ones, so ``p`` is the larger of the Gaussian tail and the
   share of the pair's blocks exceeding ``t``. An edit is not its own background: a region holding an edit beyond
   doubt (a region at least three blocks thick significant at the highest levels, ``edit_level``, 6 robust
   standard deviations and up where a Gaussian tail is 1e-9, tested against the rest of the pair) is judged at
   every level against the share of the blocks outside it. Otherwise an edit covering a quarter of an otherwise
   identical pair raises the share above 1 / 4.06 and can never be reported. Every other region is judged
   against the share of all blocks, its own and the edits' included, as before: the strongest bump of a
   heavy-tailed background is not measured against a background that has just lost it, and texture beside an
   edit is not measured against a background that has lost the edit.
3. Outline. Within the kept regions (one block of margin), pixels whose evidence exceeds the level of the
   lowest rung (``pixel_threshold``) are the change; morphological opening and closing clean it, components
   smaller than ``min_area`` are dropped; each region is then cut back to where the fine-scale evidence confirms
   it within a pixel, its holes are filled, and it grows a pixel a step through weaker fine evidence (the
   feathered edge of a soft brush).

Limits: the test assumes edits cover a minority of the overlap; a change covering most of it (a whole print
repainted) raises the background and is not reported as a region. A region judged as an edit must exceed 6
robust standard deviations over at least a 3 x 3 block area: a background whose only heavy-tailed part is one
coherent region that strong (texture re-saved differently in one area only) is reported as a change. Blocks are
independent under the background model only approximately: texture that both the pair model and the block median
miss over a large area (a figure repainted in another texture) can be reported, which is what a censor's brush is.

References
----------
A. Desolneux, L. Moisan, J.-M. Morel, "From Gestalt Theory to Image Analysis: A Probabilistic Approach",
Springer 2008 (the number of false alarms). D. A. Klarner, "Cell growth problems", Canad. J. Math. 19, 1967
(growth constant of lattice animals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import NormalDist

import cv2
import numpy as np
from scipy import ndimage

LATTICE_ANIMAL_GROWTH = 4.0626  # Klarner's constant: 4-connected shapes of n cells grow as this to the n
LEVELS = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0)
LOCAL_SHARE = 0.4  # the fine evidence that confirms an outline, as a share of the pixel threshold
GROW_SHARE = 1.0 / 3.0  # the weaker fine evidence an outline may grow into, likewise
GROW_PX = 6


@dataclass(frozen=True)
class DecisionOptions:
    """Calibration of the decision (module docstring)."""

    false_alarms: float = 1.0
    block: int = 8
    min_spread: float = 0.25
    min_location: float = 0.0  # log(median + 0.5) of the background never below this (a median z of 0.5)
    min_pixel_threshold: float = 3.0  # z; the half-grey-level floor of the noise scale makes this 1.5 levels
    levels: tuple[float, ...] = LEVELS
    confirm_level: float = 3.0  # a region must be significant at this level or above (see significant_regions)
    edit_level: float = 6.0  # a region significant at this level or above is judged against the rest of the pair
    closing_share: float = 0.04  # closing radius, as a share of the square root of a region's area
    extension_level: float = 2.0  # outlines extend through connected pixels above this level's evidence
    pixel_level: float = 3.0  # the level (robust standard deviations) whose evidence outlines a region in pixels
    peak_share: float = 0.15  # a region is outlined above this share of its own 90th-percentile evidence


@dataclass
class Background:
    """The pair's block background: location and spread of log(median evidence + 0.5) over the blocks."""

    location: float
    spread: float
    blocks: int
    block: int
    pixel_threshold: float  # the evidence at the level that outlines regions in pixels
    clumping: float = 1.0  # independent blocks per block of a region (see ``clumping``)

    def level_to_evidence(self, level: float) -> float:
        return float(math.exp(self.location + level * self.spread) - 0.5)


@dataclass
class Decision:
    """The change mask, the pixel threshold that outlined it and each kept block region's NFA (a label map of the
    block regions at analysis resolution and their log10 NFA)."""

    mask: np.ndarray
    background: Background
    region_labels: np.ndarray
    log10_nfa: dict[int, float] = field(default_factory=dict)
    tests: int = 0

    def nfa_of(self, region_mask: np.ndarray) -> float:
        """log10 NFA of the block region a pixel region lies in (the most significant one it touches)."""
        labels = np.unique(self.region_labels[region_mask])
        values = [self.log10_nfa[int(k)] for k in labels if int(k) in self.log10_nfa]
        return min(values) if values else 0.0


def block_statistics(evidence: np.ndarray, valid: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Median evidence of each block (rows x cols) and whether at least half of it lies in the overlap."""
    rows, cols = evidence.shape[0] // block, evidence.shape[1] // block
    height, width = rows * block, cols * block
    tiles = np.where(valid, evidence, np.nan)[:height, :width].reshape(rows, block, cols, block)
    tiles = tiles.transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    inside = np.isfinite(tiles).mean(axis=2) >= 0.5
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks outside the overlap
            medians = np.nanmedian(tiles, axis=2)
    return np.where(inside, medians, 0.0), inside


def fit_background(statistics: np.ndarray, inside: np.ndarray, *, block: int, min_spread: float,
                   min_location: float, lowest_level: float, min_pixel_threshold: float) -> Background:
    """The background of the block statistics. Two files identical but for an edit have a background of zero
    change, against which a rounding difference would be significant: the location and spread have floors, and
    so does the pixel threshold."""
    values = np.log(statistics[inside] + 0.5)
    median = float(np.median(values)) if values.size else 0.0
    spread = max(1.4826 * float(np.median(np.abs(values - median))) if values.size else 0.0, min_spread)
    location = max(median, min_location)
    background = Background(location=location, spread=spread, blocks=int(inside.sum()), block=block,
                            pixel_threshold=0.0)
    background.pixel_threshold = max(background.level_to_evidence(lowest_level), min_pixel_threshold)
    return background


def clumping(standard: np.ndarray, inside: np.ndarray, *, share: float = 0.1, ignore: int = 5) -> float:
    """The extremal index of the block scores: clusters per exceeding block above the ``1 - share`` quantile
    (4-connected), the ``ignore`` largest clusters (edits, when there are any) left out; in [0.1, 1]. Blocks of a
    spatially smooth background exceed in clumps, so a region of n blocks holds about ``n x clumping``
    independent ones."""
    values = standard[inside]
    if values.size < 20:
        return 1.0
    above = (standard > np.quantile(values, 1.0 - share)) & inside
    labels, count = ndimage.label(above, structure=ndimage.generate_binary_structure(2, 1))
    if count == 0:
        return 1.0
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1][ignore:]
    if sizes.size == 0 or sizes.sum() == 0:
        return 1.0
    return float(np.clip(sizes.size / sizes.sum(), 0.1, 1.0))


def _log10_exceedance(tail: float, exceeding: int, blocks: int) -> float:
    """log10 of a block's chance, times Klarner's constant, of exceeding a level: the larger of the Gaussian
    ``tail`` and the share of the background's ``blocks`` that exceed it."""
    share = exceeding / max(blocks, 1)
    return math.log10(min(1.0, LATTICE_ANIMAL_GROWTH * max(tail, share)))


def edit_blocks(standard: np.ndarray, inside: np.ndarray, *, levels: tuple[float, ...], edit_level: float,
                theta: float, tests: int, false_alarms: float) -> np.ndarray:
    """The blocks of the regions that are edits beyond doubt: at a level at or above ``edit_level``, components
    at least three blocks thick whose NFA is below ``false_alarms`` against the *rest* of the pair (their own
    blocks left out of the exceeding share, as ``clumping`` leaves the largest clusters out)."""
    cross = ndimage.generate_binary_structure(2, 1)
    blocks = int(inside.sum())
    edits = np.zeros(standard.shape, bool)
    for level in (lv for lv in levels if lv >= edit_level):
        exceed = standard > level
        labels, count = ndimage.label(exceed, structure=cross)
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        thick = np.unique(labels[ndimage.binary_erosion(exceed, structure=np.ones((3, 3)))])
        exceeding = int(exceed.sum())
        for component in thick[thick > 0]:
            own = int(sizes[component])
            per_block = _log10_exceedance(NormalDist().cdf(-level), exceeding - own, blocks - own)
            if math.log10(tests) + own * theta * per_block < math.log10(false_alarms):
                edits |= labels == component
    return edits


def significant_regions(statistics: np.ndarray, inside: np.ndarray, background: Background, *,
                        levels: tuple[float, ...], false_alarms: float, confirm_level: float,
                        edit_level: float = 6.0) -> tuple[np.ndarray, dict[int, float]]:
    """Block label map of the regions whose NFA is below ``false_alarms`` and their log10 NFA.

    A block exceeds a level with the larger of the Gaussian tail and the share of this pair's blocks that exceed
    it (real backgrounds have heavier tails than Gaussian ones; for a region holding one of the edits
    ``edit_blocks`` finds, the share of the blocks outside it), and a region of ``n`` blocks
    counts as ``n x clumping`` independent blocks. Levels are visited from the highest down: a region significant
    at a level below ``confirm_level`` is kept only as the extension of one significant at or above it (hysteresis:
    a figure's weaker parts join its stronger ones; a faint patch of background on its own does not count)."""
    standard = np.where(inside, (np.log(statistics + 0.5) - background.location) / background.spread, -np.inf)
    tests = max(background.blocks, 1) * len(levels)
    theta = clumping(standard, inside)
    background.clumping = theta
    edits = edit_blocks(standard, inside, levels=levels, edit_level=edit_level, theta=theta, tests=tests,
                        false_alarms=false_alarms)
    kept = np.zeros(statistics.shape, np.int32)
    nfas: dict[int, float] = {}
    next_label = 1
    cross = ndimage.generate_binary_structure(2, 1)
    for level in sorted(levels, reverse=True):  # a handful of levels, each a labelling of the block grid
        exceed = standard > level
        exceeding = int(exceed.sum())
        tail = NormalDist().cdf(-level)
        labels, count = ndimage.label(exceed, structure=cross)
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        # a region must be at least three blocks thick somewhere: a scratch, a misregistered edge or a seam is
        # a line of blocks, an edit an area
        thick = np.unique(labels[ndimage.binary_erosion(exceed, structure=np.ones((3, 3)))])
        holding_edits = set(np.unique(labels[edits & exceed]).tolist())
        for component in thick[thick > 0]:
            # a component holding an edit is judged against the rest of the pair; any other against all of it,
            # the edits included (leaving them out too put a coat's re-photographed grain beside Yezhov on report)
            own = int(sizes[component]) if int(component) in holding_edits else 0
            per_block = _log10_exceedance(tail, exceeding - own, background.blocks - own)
            log_nfa = math.log10(tests) + sizes[component] * theta * per_block
            if log_nfa >= math.log10(false_alarms):
                continue
            where = labels == component
            existing = [int(k) for k in np.unique(kept[where]) if k > 0]
            if not existing and level < confirm_level:
                continue
            if not existing:
                kept[where] = next_label
                nfas[next_label] = log_nfa
                next_label += 1
                continue
            main = existing[0]  # the region grows at this level, absorbing any it now touches
            for other in existing[1:]:
                kept[kept == other] = main
                nfas[main] = min(nfas[main], nfas.pop(other))
            kept[where] = main
            nfas[main] = min(nfas[main], log_nfa)
    return kept, nfas


def _drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def region_thresholds(evidence: np.ndarray, labels: np.ndarray, floor: float, share: float) -> np.ndarray:
    """A per-pixel threshold map: in each region (``labels`` > 0), the larger of ``floor`` and ``share`` times the
    region's 90th-percentile evidence; elsewhere infinity. A strong change is outlined where it is strong, not
    where the ringing and the coarse scales' halo around it still clear the pair's background."""
    thresholds = np.full(evidence.shape, np.inf, np.float32)
    for label in np.unique(labels[labels > 0]):  # a handful of regions
        where = labels == label
        peak = float(np.percentile(evidence[where], 90))
        thresholds[where] = max(floor, share * peak)
    return thresholds


def _hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """The components of ``weak`` that hold a pixel of ``strong``."""
    labels, count = ndimage.label(weak, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros(weak.shape, bool)
    keep = np.zeros(count + 1, bool)
    keep[np.unique(labels[strong & weak])] = True
    keep[0] = False
    return keep[labels]


def outline(evidence: np.ndarray, local: np.ndarray, valid: np.ndarray, thresholds: np.ndarray, *,
            min_area: int, grow_threshold: float, extension: np.ndarray | None = None) -> np.ndarray:
    """The change where ``evidence`` exceeds the ``thresholds`` map, extended through connected pixels above the
    ``extension`` map (module docstring, step 3)."""
    mask = (evidence > thresholds) & valid
    if extension is not None:
        mask = _hysteresis(mask, (evidence > extension) & valid)
    size = max(3, int(round(np.sqrt(min_area) / 4)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    cleaned = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    cleaned = cv2.morphologyEx(cleaned, cv2.MORPH_CLOSE, kernel)
    regions = _drop_small(cleaned, min_area) & valid
    if not regions.any():
        return regions
    confirmed = cv2.dilate((local > LOCAL_SHARE * thresholds).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    cut = cv2.morphologyEx((regions & confirmed).astype(np.uint8), cv2.MORPH_OPEN, kernel)
    cut = cv2.morphologyEx(cut, cv2.MORPH_CLOSE, kernel)
    cut = _drop_small(ndimage.binary_fill_holes(cut), min_area) & valid
    grow_into = (local > np.maximum(grow_threshold, GROW_SHARE * thresholds)).astype(np.uint8)
    ring = cut.astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    for _ in range(GROW_PX):  # a few whole-image dilations, not a per-pixel loop
        ring = cv2.dilate(ring, cross) & (grow_into | ring)
    grown = cv2.morphologyEx((cut | ring.astype(bool)).astype(np.uint8), cv2.MORPH_OPEN,
                             np.ones((3, 3), np.uint8)).astype(bool)
    return (grown | cut) & valid


def closed_within(mask: np.ndarray, support: np.ndarray, valid: np.ndarray, *, share: float) -> np.ndarray:
    """Each region of ``support`` (labels > 0) with the parts of ``mask`` inside it joined: a closing by a disc of
    ``share`` times the square root of the region's area, then its holes filled. A figure painted out differs from
    what replaced it strongly in some parts (a dark coat on light water) and hardly at all in others (a light
    collar on the same water); the region is the figure, not the patches."""
    out = mask.copy()
    for label in np.unique(support[support > 0]):  # a handful of regions
        where = support == label
        part = mask & where
        if not part.any():
            continue
        radius = int(round(share * np.sqrt(where.sum())))
        if radius >= 2:
            disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
            part = cv2.morphologyEx(part.astype(np.uint8), cv2.MORPH_CLOSE, disc).astype(bool) & where
        part = ndimage.binary_fill_holes(part) & where
        out &= ~where
        out |= _main_parts(part)
    return out & valid


def _main_parts(part: np.ndarray) -> np.ndarray:
    """The components of ``part`` holding at least a tenth of its largest one: a region's stray fragments (the
    fringe of its halo) are no region of their own."""
    labels, count = ndimage.label(part, structure=np.ones((3, 3)))
    if count <= 1:
        return part
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= 0.1 * sizes.max()
    keep[0] = False
    return keep[labels]


def decide(evidence: np.ndarray, local: np.ndarray, valid: np.ndarray, *, min_area: int,
           options: DecisionOptions = DecisionOptions()) -> Decision:
    """The change mask of a pair: block regions significant against the pair's background, outlined in pixels."""
    block = options.block
    statistics, inside = block_statistics(evidence, valid, block)
    background = fit_background(statistics, inside, block=block, min_spread=options.min_spread,
                                min_location=options.min_location, lowest_level=options.pixel_level,
                                min_pixel_threshold=options.min_pixel_threshold)
    labels, nfas = significant_regions(statistics, inside, background, levels=options.levels,
                                       false_alarms=options.false_alarms, confirm_level=options.confirm_level,
                                       edit_level=options.edit_level)
    full_labels = np.zeros(evidence.shape, np.int32)
    rows, cols = labels.shape
    full_labels[:rows * block, :cols * block] = np.kron(labels, np.ones((block, block), np.int32))
    # one block of margin around each region: an outline may cross a block it only partly covers
    grown = cv2.dilate(full_labels.astype(np.float32), np.ones((2 * block + 1, 2 * block + 1), np.uint8))
    full_labels = np.where(full_labels > 0, full_labels, grown.astype(np.int32))
    if nfas:
        thresholds = region_thresholds(evidence, full_labels, background.pixel_threshold, options.peak_share)
        extension = region_thresholds(evidence, full_labels, background.level_to_evidence(options.extension_level),
                                      options.peak_share / 2.0)
        mask = outline(evidence, local, valid, thresholds, min_area=min_area,
                       grow_threshold=GROW_SHARE * background.pixel_threshold, extension=extension)
        mask = closed_within(mask, full_labels, valid, share=options.closing_share)
    else:
        mask = np.zeros(evidence.shape, bool)
    return Decision(mask=mask, background=background, region_labels=full_labels, log10_nfa=nfas,
                    tests=max(background.blocks, 1) * len(options.levels))
