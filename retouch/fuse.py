"""Fusion of single-image detectors into one decision (``suspect_mask.png``).

Each detector's mask is already a calibrated decision (few false alarms on untouched scans), so the fused mask
is their union after a closing and a minimum area (0.2 % of the image: small isolated flags are where the
detectors' individual false alarms accumulate); the fused heatmap is the per-pixel maximum of the detectors'
heatmaps. The image-level score exceeds 0.5 only when a fused region survives, and then combines the
detectors' own calibrated image-level scores by a noisy-OR (see :func:`fused_score`). Every fused region lists
which detectors support it and how much of the region each one covers, so a reader can weigh single-cue
against multi-cue findings.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from retouch.result import AnalysisResult, Region, regions_from_mask

FUSED_EXPLANATION = (
    "The suspect map combines every detector that ran: a pixel is suspect when at least one detector flagged it "
    "at that detector's own calibrated threshold. Regions list the detectors that support them; a region backed "
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
    survived fusion (``decided``), otherwise it is the strongest detector's score, capped at 0.49.

    Why not the mean heat of the fused regions (the earlier rule): a single small false alarm of one detector
    (dust read as an error-level anomaly) then scored as high as a forgery backed by several detectors.
    """
    strongest = max(scores, default=0.0)
    if not decided:
        return float(min(strongest, 0.49))
    excess = np.clip(2.0 * np.asarray(scores, np.float64) - 1.0, 0.0, 1.0)
    return float(0.5 + 0.5 * (1.0 - np.prod(1.0 - excess)))


def fuse_results(results: Sequence[AnalysisResult], *, shape: tuple[int, int], min_area_fraction: float = 2e-3
                 ) -> AnalysisResult:
    """Union of the detectors' masks, max of their heatmaps and scores, regions annotated with support."""
    height, width = shape
    active = [r for r in results if r.skipped is None]
    heatmap = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    for result in active:
        np.maximum(heatmap, result.heatmap, out=heatmap)
        mask |= result.mask
    min_area = max(16, int(min_area_fraction * height * width))
    if mask.any():
        # Close hairline gaps between neighbouring detections so one forged area becomes one region.
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    regions = regions_from_mask(mask, heatmap, kind="suspect", min_area=min_area)
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
                support.append({"detector": result.method, "coverage": round(covered / region.area, 3),
                                "detector_score": round(result.score, 4)})
        support.sort(key=lambda item: -item["coverage"])
        annotated.append(Region(bbox=region.bbox, area=region.area, score=region.score, kind="suspect",
                                evidence={"detectors": [s["detector"] for s in support], "support": support}))
    score = fused_score([r.score for r in active], decided=bool(annotated))
    names = ", ".join(r.method for r in active) or "none"
    flagged = 100.0 * kept.mean()
    if annotated:
        summary = (f"{len(annotated)} suspect region(s) covering {flagged:.2f} % of the image; "
                   f"combined image-level score {score:.2f} (detectors run: {names}).")
    else:
        summary = f"No suspect region at the detectors' thresholds (detectors run: {names}); score {score:.2f}."
    return AnalysisResult(
        method="fused",
        heatmap=heatmap,
        mask=kept,
        regions=annotated,
        score=score,
        params={"rule": "union of detector masks", "score": "noisy-OR of detector scores beyond 0.5",
                "min_area": min_area, "closing_px": 5},
        summary=summary,
        explanation=FUSED_EXPLANATION,
        details={"detectors": [r.method for r in active],
                 "skipped": {r.method: r.skipped for r in results if r.skipped is not None}},
    )
