"""The one result shape every retouch analysis returns.

A result is a float heatmap in [0, 1] at the input's size, the analysis' own binary decision (``mask``),
a list of :class:`Region` and an image-level ``score`` in [0, 1]. Reports, the CLI, the API and the web page
render this shape; none of them re-derives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from retouch.imaging import display_box, display_vector, to_display

REGION_KINDS = frozenset(
    {
        "removed",  # content of the reference absent from the questioned image
        "added",  # content in the questioned image absent from the reference
        "retouched",  # same content, altered surface (paint, airbrush, tone)
        "damage",  # a speck, dust or a scratch on one print or scan only: a fact about the copies, not an edit
        "shared",  # a piece of the questioned image taken from the reference (a composite), placed anew
        "clone-target",  # filled with material copied from elsewhere in the image
        "clone-source",  # where that material came from
        "clone-pair",  # one of two areas that are copies of each other, the copy not told from its source
        "inpainted",  # a diffusion fill or airbrush
        "noise-low",  # grain far below what the image's noise-level function predicts
        "noise-high",  # grain far above, or of a different texture
        "noise-residual",  # fine noise pattern (residual co-occurrences) unlike the rest: another source
        "jpeg-ghost",  # region compressed at a different quality than the rest
        "jpeg-grid",  # region whose 8x8 grid origin differs from the image's
        "jpeg-single",  # region compressed once where the rest of the image was compressed twice
        "error-level",  # error-level outlier
        "suspect",  # fused decision supported by one or more detectors
    }
)


@dataclass(frozen=True)
class Region:
    """A connected area flagged by an analysis.

    ``bbox`` is ``(x, y, width, height)`` in pixels of the analysed image; ``area`` counts flagged pixels
    (not the bbox area); ``score`` is in [0, 1]; ``evidence`` holds JSON-serialisable facts behind the call
    (e.g. supporting detectors, the matching bbox in the other frame, the paired clone source).
    """

    bbox: tuple[int, int, int, int]
    area: int
    score: float
    kind: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in REGION_KINDS:
            raise ValueError(f"unknown region kind {self.kind!r}; expected one of {sorted(REGION_KINDS)}")
        x, y, w, h = (int(v) for v in self.bbox)
        if w <= 0 or h <= 0 or x < 0 or y < 0:
            raise ValueError(f"region bbox must have x, y >= 0 and positive size, got {self.bbox}")
        object.__setattr__(self, "bbox", (x, y, w, h))
        object.__setattr__(self, "area", int(self.area))
        object.__setattr__(self, "score", float(np.clip(self.score, 0.0, 1.0)))

    def shifted(self, dx: int, dy: int) -> Region:
        """The same region in a frame whose origin lies ``(dx, dy)`` pixels before this one's (bounding boxes in
        the evidence, keys ending in ``_bbox``, move with it)."""
        evidence = {key: ([value[0] + dx, value[1] + dy, *value[2:]] if key.endswith("_bbox") else value)
                    for key, value in self.evidence.items()}
        x, y, w, h = self.bbox
        return replace(self, bbox=(x + dx, y + dy, w, h), evidence=evidence)

    def oriented(self, stored_shape: tuple[int, int], orientation: int) -> Region:
        """The same region, found on stored pixels of ``stored_shape``, in the display frame of an EXIF
        ``orientation`` (evidence boxes, keys ending in ``_bbox``, and displacements ending in ``_px`` turn too)."""
        evidence = {}
        for key, value in self.evidence.items():
            if key.endswith("_bbox"):
                value = display_box(value, stored_shape, orientation)
            elif key.endswith("_px") and isinstance(value, list) and len(value) == 2:
                value = list(display_vector(value[0], value[1], orientation))
            evidence[key] = value
        return replace(self, bbox=tuple(display_box(self.bbox, stored_shape, orientation)), evidence=evidence)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bbox": list(self.bbox),
            "area": self.area,
            "score": round(self.score, 4),
            "kind": self.kind,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Finding:
    """A fact an analysis read from the file rather than found in its pixels (its metadata, its history): listed
    in reports, never painted on the image.

    ``kind`` groups findings (``"software"``, ``"history"``, ``"dates"``, ``"thumbnail"``...); ``text`` is one
    plain sentence for a non-programmer; ``fields`` are the raw, JSON-serialisable values it rests on (tag names
    and values as the file stores them); ``notable`` marks what an examiner should look at first (dates that
    contradict each other, a content credential that no longer validates), which is still not a finding of
    forgery.
    """

    kind: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    notable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "fields": self.fields, "notable": self.notable}


@dataclass
class AnalysisResult:
    """What one analysis found in one image (or one pair).

    Attributes
    ----------
    method : str
        Registry name of the analysis (``"ela"``, ``"grain"``, ``"compare"``, ``"fused"``...).
    heatmap : ndarray of float32, shape (H, W)
        Per-pixel suspicion in [0, 1] at the analysed image's full size.
    mask : ndarray of bool, shape (H, W)
        The analysis' own decision at its own threshold.
    regions : list of Region
        Connected components of ``mask`` with their score and kind.
    score : float
        Image-level suspicion in [0, 1].
    params : dict
        Every parameter the analysis used, JSON-serialisable, for the report.
    summary : str
        One or two sentences of what was found, for a non-programmer.
    explanation : str
        What the map means, how it was made and where it fails (rendered in the HTML report).
    details : dict
        Further JSON-serialisable facts (quantization tables, noise-level function, transform, ...).
    images : dict of str to ndarray
        Extra visualisations as uint8 RGB or gray images (e.g. ``aligned_reference``) for reports.
    skipped : str or None
        Why the analysis did not apply to this input (e.g. JPEG cues on a PNG); heatmap is then all zero.
    findings : list of Finding
        Facts read from the file rather than its pixels (metadata, provenance), listed in reports, never painted.
    """

    method: str
    heatmap: np.ndarray
    mask: np.ndarray
    regions: list[Region]
    score: float
    params: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    explanation: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def __post_init__(self) -> None:
        heatmap = np.asarray(self.heatmap)
        if heatmap.ndim != 2:
            raise ValueError(f"{self.method}: heatmap must be 2-D (H, W), got shape {heatmap.shape}")
        # clipping already sends +inf to 1 and -inf to 0; only NaN needs replacing (checked in one pass, where
        # nan_to_num made a copy and three passes on every full-size map)
        heatmap = heatmap.astype(np.float32, copy=False)
        # most maps are already in range: two reductions prove it (NaN fails both comparisons) and save the
        # full-size copy that clipping makes; the caller's array is never modified either way
        if not (heatmap.size == 0 or (heatmap.min() >= 0.0 and heatmap.max() <= 1.0)):
            heatmap = np.clip(heatmap, 0.0, 1.0)
            if np.isnan(heatmap).any():
                np.nan_to_num(heatmap, copy=False, nan=0.0)
        self.heatmap = heatmap
        mask = np.asarray(self.mask, dtype=bool)
        if mask.shape != self.heatmap.shape:
            raise ValueError(f"{self.method}: mask shape {mask.shape} differs from heatmap {self.heatmap.shape}")
        self.mask = mask
        self.score = float(np.clip(self.score, 0.0, 1.0))

    @property
    def shape(self) -> tuple[int, int]:
        return self.heatmap.shape  # type: ignore[return-value]

    @property
    def flagged_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def placed_in(self, shape: tuple[int, int], top: int, left: int) -> AnalysisResult:
        """This result, computed on a part of a larger image whose corner is at (``top``, ``left``), on the whole
        ``shape``: maps are zero (nothing found) outside the part and regions move to the whole image's frame."""
        height, width = self.shape
        heatmap = np.zeros(shape, np.float32)
        heatmap[top:top + height, left:left + width] = self.heatmap
        mask = np.zeros(shape, bool)
        mask[top:top + height, left:left + width] = self.mask
        return replace(self, heatmap=heatmap, mask=mask, regions=[r.shifted(left, top) for r in self.regions])

    def oriented(self, orientation: int) -> AnalysisResult:
        """This result, computed on the pixels as the file stores them, in the display frame of an EXIF
        ``orientation`` (1 = as stored: returned unchanged)."""
        if orientation == 1:
            return self
        return replace(self, heatmap=np.ascontiguousarray(to_display(self.heatmap, orientation)),
                       mask=np.ascontiguousarray(to_display(self.mask, orientation)),
                       regions=[r.oriented(self.shape, orientation) for r in self.regions],
                       images={name: np.ascontiguousarray(to_display(picture, orientation))
                               for name, picture in self.images.items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (without the pixel arrays)."""
        return {
            "method": self.method,
            "score": round(self.score, 4),
            "flagged_fraction": round(self.flagged_fraction, 6),
            "regions": [r.to_dict() for r in self.regions],
            "summary": self.summary,
            "params": self.params,
            "details": self.details,
            "skipped": self.skipped,
            "findings": [finding.to_dict() for finding in self.findings],
        }

    @classmethod
    def skipped_result(cls, method: str, shape: tuple[int, int], reason: str, **kwargs: Any) -> AnalysisResult:
        """An empty result for an analysis that does not apply to this input."""
        return cls(
            method=method,
            heatmap=np.zeros(shape, np.float32),
            mask=np.zeros(shape, bool),
            regions=[],
            score=0.0,
            summary=f"Not applicable: {reason}",
            skipped=reason,
            **kwargs,
        )


def regions_from_mask(
    mask: np.ndarray,
    heatmap: np.ndarray,
    *,
    kind: str,
    min_area: int = 1,
    evidence: dict[str, Any] | None = None,
) -> list[Region]:
    """Connected components (8-connectivity) of ``mask`` as regions, scored by the mean heatmap inside.

    Components smaller than ``min_area`` pixels are dropped. Regions are sorted by score, then area.
    """
    mask_u8 = np.ascontiguousarray(mask, dtype=np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask_u8, connectivity=8)
    regions = []
    # each kept component is scored inside its own box: a full-image weighted bincount cost seconds at 24 MP
    for label in np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= max(min_area, 1)):
        if label == 0:
            continue
        x, y, w, h, area = (int(v) for v in stats[label])
        inside = labels[y:y + h, x:x + w] == label
        score = float(np.asarray(heatmap[y:y + h, x:x + w], np.float64)[inside].mean())
        regions.append(Region(bbox=(x, y, w, h), area=area, score=score, kind=kind, evidence=dict(evidence or {})))
    regions.sort(key=lambda r: (-r.score, -r.area))
    return regions
