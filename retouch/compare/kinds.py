"""Name what happened in each changed region: removed, added, retouched, or damage to one of the prints.

Method
------
A region is judged by the image structure above the grain (detail of the grain-smoothed image at a coarser
scale) in both frames, relative to what the two scans show elsewhere: much less structure in the questioned
frame is ``removed`` (content erased and filled), much more is ``added``; otherwise the frame in which the
region stands out from its surroundings decides, and failing that it is ``retouched`` (an altered surface).
Specks and scratches present in one scan only (found before the comparison, see
:mod:`retouch.compare.evidence`) are ``damage``: a fact about the prints, never an edit and never the headline.

Limits: a clone stamp swaps one content for another, so removed, added and retouched can all be argued for it;
a faint speck that the defect test misses and that grows into a region of its own is judged like any region.
"""

from __future__ import annotations

import cv2
import numpy as np

from retouch.result import Region, regions_from_mask

DAMAGE_MIN_PX = 4  # specks smaller than this (analysis pixels) are not listed
DAMAGE_LISTED = 25  # at most this many damage regions are listed (largest first); the rest are counted


def _stand_out(image: np.ndarray, region: np.ndarray, ring: np.ndarray) -> float:
    """How far a region's mean departs from its surroundings, in units of the surroundings' spread."""
    inside, around = image[region], image[ring]
    if inside.size < 10 or around.size < 10:
        return 0.0
    return abs(float(inside.mean()) - float(around.mean())) / (float(around.std()) + 1e-3)


def _kind(texture_ratio: float, out_r: float, out_q: float) -> str:
    # structure lost (a figure painted out) or gained (something pasted in) decides first; otherwise which
    # frame's region stands out from its surroundings, and failing both, an altered surface
    if texture_ratio < 0.85 or (texture_ratio < 1.0 and out_r > 1.5 * out_q + 0.1):
        return "removed"
    if texture_ratio > 1.25 or (texture_ratio >= 1.0 and out_q > 1.5 * out_r + 0.1):
        return "added"
    return "retouched"


def classify_regions(mask: np.ndarray, heatmap: np.ndarray, reference: np.ndarray, questioned: np.ndarray,
                     *, min_area: int, valid: np.ndarray) -> list[Region]:
    """Regions of ``mask`` labelled removed / added / retouched from how each frame's content stands out."""
    regions = regions_from_mask(mask, heatmap, kind="retouched", min_area=min_area)
    smooth_r = cv2.GaussianBlur(reference, (0, 0), 1.5)
    smooth_q = cv2.GaussianBlur(questioned, (0, 0), 1.5)
    detail_r = np.abs(smooth_r - cv2.GaussianBlur(smooth_r, (0, 0), 4.0))
    detail_q = np.abs(smooth_q - cv2.GaussianBlur(smooth_q, (0, 0), 4.0))
    # the two scans differ in sharpness and grain overall; a region's structure ratio is judged against that
    unchanged = valid & ~mask
    overall = (float(np.median(detail_q[unchanged])) + 1e-4) / (float(np.median(detail_r[unchanged])) + 1e-4)
    labelled = []
    for region in regions:
        x, y, w, h = region.bbox
        pad = max(w, h) // 2 + 4
        y0, y1 = max(0, y - pad), min(mask.shape[0], y + h + pad)
        x0, x1 = max(0, x - pad), min(mask.shape[1], x + w + pad)
        local = mask[y0:y1, x0:x1]
        ring = cv2.dilate(local.astype(np.uint8), np.ones((2 * (pad // 2) + 1,) * 2, np.uint8)).astype(bool) & ~local
        out_r = _stand_out(smooth_r[y0:y1, x0:x1], local, ring)
        out_q = _stand_out(smooth_q[y0:y1, x0:x1], local, ring)
        texture_r = float(detail_r[y0:y1, x0:x1][local].mean())
        texture_q = float(detail_q[y0:y1, x0:x1][local].mean())
        texture_ratio = (texture_q + 1e-4) / (texture_r + 1e-4) / overall
        labelled.append(Region(bbox=region.bbox, area=region.area, score=region.score,
                               kind=_kind(texture_ratio, out_r, out_q), evidence={
                                   "stand_out_reference": round(out_r, 3), "stand_out_questioned": round(out_q, 3),
                                   "texture_ratio_questioned_to_reference": round(texture_ratio, 3)}))
    return labelled


DAMAGE_CONTROL = ("Listed as damage, not as an edit: a small or thin spot departing from its neighbourhood by more "
                  "than five robust standard deviations in one scan and absent from the other. It carries no "
                  "evidence of an edit, so no number of false alarms is given for it.")


def damage_regions(reference_only: np.ndarray, questioned_only: np.ndarray, valid: np.ndarray
                   ) -> tuple[list[Region], int]:
    """Damage regions (specks and scratches in one scan only), the largest first, at most ``DAMAGE_LISTED``, and
    how many there were in all."""
    found = []
    for where, frame in ((questioned_only & valid, "questioned"), (reference_only & valid, "reference")):
        for region in regions_from_mask(where, where.astype(np.float32), kind="damage", min_area=DAMAGE_MIN_PX):
            found.append(Region(bbox=region.bbox, area=region.area, score=0.0, kind="damage",
                                evidence={"seen_in": frame, "what": "a speck or scratch in one scan only",
                                          "false_alarm_control": DAMAGE_CONTROL}))
    found.sort(key=lambda r: -r.area)
    return found[:DAMAGE_LISTED], len(found)
