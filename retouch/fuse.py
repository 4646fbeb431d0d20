"""Fusion of single-image detectors into one decision (``suspect_mask.png``).

Each detector's mask is already an a-contrario decision: it keeps only regions whose number of false alarms (NFA,
the expected number of regions at least as strong on an untouched photograph of this size) is at most that
detector's ``nfa_threshold``. The fused mask is their union after a closing; a fused region is kept when

- a detector that decided on a copy bounded to a fixed number of pixels (it states ``analysis_pixels`` in its
  params: inpaint, clone) and at least one other detector support it, whatever its size: such a detector judges
  the same number of blocks on a 24 MP scan as on a 1 MP one, so its false regions per image do not grow with
  the scan, and a second cue on the same area keeps out its own false groups on real photographs (inpaint's null
  underflows to NFA 0 on some); or
- it holds a region that a detector confirmed at full resolution with its NFA counted over the whole scan
  (``evidence["full_resolution"]``: clone's pairs on scans above its bounded size), whatever its size: its
  tests, every window it tried included, are counted against the scan's own cells, so its false regions per
  scan stay its threshold; or
- it is at least ``min_area_fraction`` of the image (0.2 %): the detectors that judge every pixel at full
  resolution (ela, grain, grid, jpeg) test more blocks on a larger scan, and their small false groups grow in
  number with it (``benchmarks/results/small_edits.md``), so their regions must be large against the image.

A detector that outlines its regions on coarse pooled blocks states how far they may reach past what they outline
(``params["outline_reach"]``, settling: 16 px); it adds to the fused mask only its pixels farther than that from
another detector's decision, so that near one the closer outline is kept and what it found alone stays.

Where each detector's null holds, the expected number of false fused regions per untouched image is at most the
sum of the detectors' thresholds (a union bound), which the summary states; the area rule is what keeps the
full-resolution detectors' small groups out on large scans, where their null was measured not to hold. Each
fused region reports the smallest NFA of the detector regions that support it. The fused heatmap is the per-pixel
maximum of the detectors' heatmaps. Every fused region lists which detectors support it and how much of the region
each one covers.

The image-level score follows the fused decision. It exceeds 0.5 only when a fused region survives, and then
combines, by a noisy-OR (:func:`fused_score`), each supporting detector's smallest NFA among the regions fusion
kept (0.5 at its threshold, higher as the NFA falls); below 0.5 it is the strongest candidate the decision admits,
so it still ranks images where nothing was decided. A detector that did not judge the picture, or whose decision
fusion dropped for a reason its NFA does not cover, gives no candidate (:func:`candidate_scores`): evidence the
decision itself set aside does not outrank a candidate with a measured NFA.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from retouch.detect._blocks import describe_nfa, nfa_score
from retouch.result import AnalysisResult, Region, regions_from_mask

UNDECIDED_CAP = 0.49  # the image score of a picture where nothing was decided stays below one half

FUSED_EXPLANATION = (
    "The suspect map combines every detector that ran: a pixel is suspect when at least one detector flagged it "
    "at that detector's own threshold, which keeps only findings that would arise by chance in fewer than about 1 "
    "in 100 untouched photographs of this size (each region states this number of false alarms, NFA). Regions "
    "under 0.2 % of the image are kept only where a detector that works on a copy of fixed size (inpainting, "
    "copy-move) and a second detector both flag them: the detectors that examine every pixel (error levels, "
    "grain, JPEG traces) find more small chance patches on a large scan, and one cue alone on a small area is "
    "too often a false alarm on real photographs. Copy-move pairs confirmed at full resolution on a large scan, "
    "whose chance rate is counted over every place of the whole scan, are kept on their own. Regions "
    "list the detectors that support them; a region backed "
    "by several independent cues (for example missing grain and copied texture) is stronger evidence than one "
    "backed by a single cue. None of these maps proves a forgery on its own: each one marks a statistical "
    "anomaly that an expert should examine against the photograph's history (damage, restoration, scanning)."
)


def fused_score(scores: Sequence[float], *, decided: bool) -> float:
    """Image-level score from the detectors' own image-level scores (each calibrated: above 0.5 exactly when
    that detector decided, growing with how far its evidence passed its own threshold).

    Each detector's excess ``e = 2 s - 1`` (0 at its threshold, 1 at certainty) is combined by a noisy-OR,
    ``0.5 + 0.5 (1 - prod(1 - e))``: one cue far beyond its threshold scores high, two independent cues score
    higher than either. The fused score follows the fused decision: above 0.5 only when a suspect region
    survived fusion (``decided``), otherwise it is the strongest score given, capped at 0.49.

    Why not the mean heat of the fused regions (the earlier rule): a single small false alarm of one detector
    (dust read as an error-level anomaly) then scored as high as a forgery backed by several detectors.
    """
    strongest = max(scores, default=0.0)
    if not decided:
        return float(min(strongest, UNDECIDED_CAP))
    excess = np.clip(2.0 * np.asarray(scores, np.float64) - 1.0, 0.0, 1.0)
    return float(0.5 + 0.5 * (1.0 - np.prod(1.0 - excess)))


def judged_picture(result: AnalysisResult) -> bool:
    """False when ``result`` states that its detector did not judge this picture (``details["judged"]`` False:
    grain on a picture whose noise is not film grain, settling on one with no earlier compression): its map is
    kept, but no decision, and so no candidate, stands for it."""
    return result.details.get("judged") is not False


def candidate_scores(results: Sequence[AnalysisResult], kept: np.ndarray) -> list[float]:
    """Each detector's image-level evidence as the fused decision ``kept`` admits it, 0.5 at the detector's NFA
    threshold (:func:`retouch.detect._blocks.nfa_score`: a logistic of ``log10(threshold / NFA)``).

    - A detector that did not judge the picture (:func:`judged_picture`) gives none.
    - A detector with regions in the fused decision (``kept``) gives the smallest NFA among those regions.
    - A detector that decided only regions the fused decision dropped: one that judges every pixel at full
      resolution gives none (its small groups grow in number with the scan: its NFA does not hold at that size,
      and its candidates below its threshold are not reported apart from them); one that decided on a bounded
      copy (:func:`decides_on_bounded_copy`: its NFA holds at any size, and fusion asks a second cue) gives the
      highest undecided score, ``UNDECIDED_CAP``.
    - A detector that decided nothing gives its own score for its strongest candidate (below 0.5; the block
      detectors' is the same logistic of their smallest NFA, clone's its strongest pair's share of the evidence
      its threshold needs).
    """
    scores = []
    for result in results:
        if not judged_picture(result):
            continue
        threshold = result.params.get("nfa_threshold")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or threshold <= 0:
            scores.append(float(result.score))  # no NFA scale stated: its own score, as it gives it
            continue
        if result.mask.any():
            surviving = [float(r.evidence["nfa"]) for r in result.regions
                         if isinstance(r.evidence.get("nfa"), (int, float)) and _overlaps(r, result.mask, kept)]
            if surviving:
                scores.append(nfa_score(min(surviving), float(threshold), decided=True))
            elif decides_on_bounded_copy(result):
                scores.append(UNDECIDED_CAP)
            continue
        scores.append(min(float(result.score), UNDECIDED_CAP))
    return scores


def _overlaps(region: Region, mask: np.ndarray, kept: np.ndarray) -> bool:
    """True when the pixels of ``mask`` inside ``region``'s box reach the fused decision ``kept``."""
    x, y, w, h = region.bbox
    return bool((mask[y:y + h, x:x + w] & kept[y:y + h, x:x + w]).any())


def _supporting_nfa(result: AnalysisResult, bbox: tuple[int, int, int, int]) -> float | None:
    """The smallest NFA stated by ``result``'s regions that overlap ``bbox`` (None when none states one)."""
    x, y, w, h = bbox
    values = []
    for region in result.regions:
        rx, ry, rw, rh = region.bbox
        if rx < x + w and x < rx + rw and ry < y + h and y < ry + rh:
            nfa = region.evidence.get("nfa")
            if isinstance(nfa, (int, float)):
                values.append(float(nfa))
    return min(values) if values else None


def expected_false_regions(results: Sequence[AnalysisResult]) -> tuple[float, list[str]]:
    """Upper bound on the fused decision's expected false regions per untouched image (the sum of the detectors'
    ``nfa_threshold``), and the detectors that state no threshold."""
    total, unstated = 0.0, []
    for result in results:
        threshold = result.params.get("nfa_threshold")
        if isinstance(threshold, (int, float)):
            total += float(threshold)
        else:
            unstated.append(result.method)
    return total, unstated


def decides_on_bounded_copy(result: AnalysisResult) -> bool:
    """True when ``result`` states that its detector decided on a copy bounded to a fixed number of pixels
    (``params["analysis_pixels"]``): its tests, and so its false regions per image, do not grow with the scan."""
    bound = result.params.get("analysis_pixels")
    return isinstance(bound, (int, float)) and not isinstance(bound, bool) and bound > 0


def outline_reach(result: AnalysisResult) -> int:
    """How far (pixels) ``result`` states that its regions may reach past what they outline
    (``params["outline_reach"]``: a detector that pools coarse blocks spreads a piece's evidence past its edge);
    0 when it states none."""
    reach = result.params.get("outline_reach")
    return int(reach) if isinstance(reach, int) and not isinstance(reach, bool) and reach > 0 else 0


def _beyond(mask: np.ndarray, other: np.ndarray, reach: int) -> np.ndarray:
    """The pixels of ``mask`` farther than ``reach`` pixels (chessboard distance) from every pixel of ``other``."""
    near = cv2.dilate(other.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1,) * 2))
    return mask & (near == 0)


def full_resolution_pixels(result: AnalysisResult) -> np.ndarray | None:
    """The pixels of ``result``'s regions confirmed at full resolution with an NFA counted over the whole scan
    (``evidence["full_resolution"]``), or None when it has none."""
    chosen = None
    for region in result.regions:
        if region.evidence.get("full_resolution") is True:
            x, y, w, h = region.bbox
            chosen = np.zeros(result.mask.shape, bool) if chosen is None else chosen
            chosen[y:y + h, x:x + w] = result.mask[y:y + h, x:x + w]
    return chosen


def _kept_components(mask: np.ndarray, min_area: int, bounded: np.ndarray | None,
                     masks: Sequence[np.ndarray], confirmed: np.ndarray | None = None) -> np.ndarray:
    """The connected components (8-neighbours) of ``mask`` of at least ``min_area`` pixels, or holding a pixel of
    ``confirmed`` (regions confirmed at full resolution over the whole scan), or holding a pixel of ``bounded``
    (the regions of detectors that decided on a bounded copy) and pixels of at least two of the detectors'
    ``masks``."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    if confirmed is not None:
        keep[np.unique(labels[confirmed])] = True
    if bounded is not None:
        supporters = np.zeros(count, np.int32)
        for detector_mask in masks:
            supporters[np.unique(labels[detector_mask])] += 1
        small = np.zeros(count, bool)
        small[np.unique(labels[bounded])] = True
        keep |= small & (supporters >= 2)
    keep[0] = False
    if keep[1:].all():
        return mask
    return keep[labels]


def fuse_results(results: Sequence[AnalysisResult], *, shape: tuple[int, int], min_area_fraction: float = 2e-3
                 ) -> AnalysisResult:
    """Union of the detectors' masks, max of their heatmaps and scores, regions annotated with support.

    A fused region is kept when it is at least ``min_area_fraction`` of the image, when it holds a region
    confirmed at full resolution over the whole scan (:func:`full_resolution_pixels`), or when a detector that
    decided on a bounded copy (:func:`decides_on_bounded_copy`) and another detector flagged parts of it (see the
    module's notes).
    """
    height, width = shape
    active = [r for r in results if r.skipped is None]
    heatmap = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    bounded = None
    confirmed = None
    finer = np.zeros(shape, bool)
    for result in active:
        if not outline_reach(result):
            finer |= result.mask
    for result in active:
        np.maximum(heatmap, result.heatmap, out=heatmap)
        # a coarse outline adds only what lies beyond its reach from a finer detector's decision: near one, the
        # finer outline is kept
        reach = outline_reach(result)
        mask |= _beyond(result.mask, finer, reach) if reach and finer.any() else result.mask
        if decides_on_bounded_copy(result) and result.mask.any():
            bounded = result.mask.copy() if bounded is None else bounded | result.mask
        own = full_resolution_pixels(result)
        if own is not None:
            confirmed = own if confirmed is None else confirmed | own
    min_area = max(16, int(min_area_fraction * height * width))
    if mask.any():
        # Close hairline gaps between neighbouring detections so one forged area becomes one region.
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
        mask = _kept_components(mask, min_area, bounded, [r.mask for r in active if r.mask.any()], confirmed)
    regions = regions_from_mask(mask, heatmap, kind="suspect")
    kept = np.zeros(shape, bool)
    annotated: list[Region] = []
    for region in regions:
        x, y, w, h = region.bbox
        window = mask[y:y + h, x:x + w]
        kept[y:y + h, x:x + w] |= window
        support = []
        for result in active:
            covered = int(np.count_nonzero(result.mask[y:y + h, x:x + w] & window))
            if covered:
                item = {"detector": result.method, "coverage": round(covered / region.area, 3),
                        "detector_score": round(result.score, 4)}
                nfa = _supporting_nfa(result, region.bbox)
                if nfa is not None:
                    item["nfa"] = nfa
                support.append(item)
        support.sort(key=lambda item: -item["coverage"])
        stated = [item["nfa"] for item in support if "nfa" in item]
        evidence = {"detectors": [s["detector"] for s in support], "support": support}
        if stated:
            smallest = min(stated)
            evidence["nfa"] = smallest
            evidence["false_alarm_control"] = describe_nfa(smallest, "suspect region")
        else:
            evidence["nfa"] = None
            evidence["false_alarm_control"] = ("no supporting detector states how often such a region occurs by "
                                               "chance")
        annotated.append(Region(bbox=region.bbox, area=region.area, score=region.score, kind="suspect",
                                evidence=evidence))
    score = fused_score(candidate_scores(active, kept), decided=bool(annotated))
    names = ", ".join(r.method for r in active) or "none"
    flagged = 100.0 * kept.mean()
    expected, unstated = expected_false_regions(active)
    verb = "does" if len(unstated) == 1 else "do"
    control = (f"expected false regions per untouched image at these thresholds: at most {expected:.2g}"
               + (f" from the detectors that state it ({', '.join(unstated)} {verb} not)" if unstated else ""))
    if annotated:
        strongest = min((r.evidence["nfa"] for r in annotated if r.evidence.get("nfa") is not None), default=None)
        strength = f"; the strongest has NFA {strongest:.2g}" if strongest is not None else ""
        summary = (f"{len(annotated)} suspect region(s) covering {flagged:.2f} % of the image{strength}; "
                   f"combined image-level score {score:.2f} (detectors run: {names}; {control}).")
    else:
        summary = (f"No region met the detectors' thresholds (detectors run: {names}; {control}); score "
                   f"{score:.2f}. This does not show that the image is unaltered.")
    return AnalysisResult(
        method="fused",
        heatmap=heatmap,
        mask=kept,
        regions=annotated,
        score=score,
        params={"rule": "union of detector masks (a coarse outline only beyond its stated reach from the others' "
                        "decisions); regions of at least min_area pixels, or supported by a detector that decided on "
                        "a bounded copy and another detector",
                "score": "noisy-OR of the supporting detectors' NFAs over the regions kept, beyond 0.5; below it "
                         "the strongest candidate the decision admits",
                "min_area": min_area, "closing_px": 5, "expected_false_regions": round(expected, 4),
                "bounded_detectors": [r.method for r in active if decides_on_bounded_copy(r)],
                "false_alarm_control": "union bound: the sum of the detectors' NFA thresholds"},
        summary=summary,
        explanation=FUSED_EXPLANATION,
        details={"detectors": [r.method for r in active],
                 "skipped": {r.method: r.skipped for r in results if r.skipped is not None}},
    )
