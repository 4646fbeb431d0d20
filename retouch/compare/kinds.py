"""Name what happened in each changed region: removed, added, retouched, or damage to one of the prints.

Method
------
1. Parts. One changed region can hold two edits over the same pixels: a figure painted out and another figure
   extended over where it was. Each pixel of a region is asked what the two scans' tones there (both
   smoothed by 3 analysis pixels, the reference's through the pair model, corrected for the slow local tone
   drift the unchanged pixels around show) say happened. Content is *replaced* where the tone of one scan
   appears nowhere in the other scan's neighbourhood (a square reaching a fifth of the region's side, 4 to 24
   pixels, either way) within three robust standard deviations of the pair's own residual: the reference
   showed something the questioned scan lacks there, or the opposite. Content is *reshaped* where each scan's
   tone is found in the other's neighbourhood: the same content, moved, stretched or repainted in its own
   tones. The two classes are smoothed over the neighbourhood (a Gaussian of half its reach), and each connected
   part keeps its class on its own evidence: the share of its pixels read "replaced" must lie on its side of
   one half by at least ``PART_MARGIN`` (3) binomial standard errors, counted over the part's core (its pixels
   farther than the smoothing's reach from the other class, where the two are not mixed) in independent
   readings of one per 4 pi s^2 pixels for tones smoothed by s (``SPLIT_SMOOTHING``), and it must be as large
   as a region may be. A part that fails joins the other class (the class holding the weakest part gives
   first, and the evidence is read again); when no part stands, the region is the class most of its pixels
   read. A thin fringe has no core and so no evidence; no share of the region decides, so a part does not
   vanish as its share of the change crosses a cut.
2. Direction. The region's kind is read where content was replaced (on the whole region when no replaced part
   stands): the image structure above the grain (detail of the grain-smoothed image at a coarser scale) in
   both frames, relative to what the two scans show elsewhere: much less structure in the questioned frame is
   ``removed`` (content erased and filled), much more is ``added``; otherwise the frame in which the part
   stands out from its surroundings decides, and failing that it is ``retouched`` (an altered surface). The
   region is the whole change: what the reference showed there was taken out (or what the questioned image
   shows was put in) over all of it.
3. Reshaped parts. A removed or added region in which both a replaced and a reshaped part stand lists each
   reshaped part again, inside it, as ``retouched`` (evidence ``within``: the box of the change it
   lies in): content both scans show, moved or extended over where the reference's content was taken out. Its
   pixels belong to both regions; the regions' areas therefore add up to more than the marked area.
Specks and scratches present in one scan only (found before the comparison, see
:mod:`retouch.compare.evidence`) are ``damage``: a fact about the prints, never an edit and never the headline.

Limits: a clone stamp swaps one content for another, so removed, added and retouched can all be argued for it;
a faint speck that the defect test misses and that grows into a region of its own is judged like any region;
the tone test cannot tell a figure extended into a gap from background continued over it (water closing over
a figure painted out is "reshaped" as much as a coat lengthened), and in a textured neighbourhood almost any
tone is found, so the reshaped part's extent varies with the copy compared. The readings of the parts test
share their neighbourhood's tone range beyond the smoothing, so its standard error is a lower bound: a part's
margin orders the evidence more than it states a chance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from retouch.result import Region, regions_from_mask

SPLIT_SMOOTHING = 3.0  # analysis px: the tones compared are smoothed by this, averaging grain away
TONE_DRIFT_PX = 32.0  # the slow local tone difference of the unchanged pixels is estimated over this scale
NEIGHBOURHOOD_SHARE = 0.2  # the neighbourhood searched for a tone, as a share of the square root of region area
NEIGHBOURHOOD_PX = (4, 24)
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


@dataclass
class _Frames:
    """What judging a region needs from the pair: the grain-smoothed images and their detail, the two scans' tones
    for the parts test, the scans' overall detail ratio and the residual spread of their tones."""

    smooth_r: np.ndarray
    smooth_q: np.ndarray
    detail_r: np.ndarray
    detail_q: np.ndarray
    tone_r: np.ndarray
    tone_q: np.ndarray
    overall: float
    tone_spread: float


def _frames(mask: np.ndarray, reference: np.ndarray, questioned: np.ndarray, valid: np.ndarray) -> _Frames:
    smooth_r = cv2.GaussianBlur(reference, (0, 0), 1.5)
    smooth_q = cv2.GaussianBlur(questioned, (0, 0), 1.5)
    detail_r = np.abs(smooth_r - cv2.GaussianBlur(smooth_r, (0, 0), 4.0))
    detail_q = np.abs(smooth_q - cv2.GaussianBlur(smooth_q, (0, 0), 4.0))
    # the two scans differ in sharpness and grain overall; a region's structure ratio is judged against that
    unchanged = valid & ~mask
    overall = (float(np.median(detail_q[unchanged])) + 1e-4) / (float(np.median(detail_r[unchanged])) + 1e-4) \
        if unchanged.any() else 1.0
    tone_r = cv2.GaussianBlur(reference, (0, 0), SPLIT_SMOOTHING)
    tone_q = cv2.GaussianBlur(questioned, (0, 0), SPLIT_SMOOTHING)
    # a re-photographed or repainted print drifts in tone slowly (uneven exposure, a retoucher's wash over a whole
    # side) beyond what the global pair model maps; the drift is estimated from the unchanged pixels around
    # (a slow field: estimated on a grid an eighth of the size, where a Gaussian of 4 px is one of 32)
    step = 8
    small = (max(1, mask.shape[1] // step), max(1, mask.shape[0] // step))
    weight = cv2.resize(unchanged.astype(np.float32), small, interpolation=cv2.INTER_AREA)
    offset = cv2.resize((tone_q - tone_r) * unchanged, small, interpolation=cv2.INTER_AREA)
    support = cv2.GaussianBlur(weight, (0, 0), TONE_DRIFT_PX / step)
    drift = cv2.GaussianBlur(offset, (0, 0), TONE_DRIFT_PX / step) / np.maximum(support, 1e-3)
    drift = np.where(support > 0.01, drift, 0.0).astype(np.float32)
    tone_r = (tone_r + cv2.resize(drift, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR))
    residual = (tone_q - tone_r)[unchanged] if unchanged.any() else np.zeros(1, np.float32)
    spread = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    return _Frames(smooth_r, smooth_q, detail_r, detail_q, tone_r, tone_q, overall, max(spread, 1.0 / 255.0))


def _judged(frames: _Frames, mask: np.ndarray, part: np.ndarray, bbox: tuple[int, int, int, int]
            ) -> tuple[str, dict]:
    """The kind of ``part`` (within its ``bbox``; the whole ``mask`` for an unsplit region) by its structure and how
    it stands out from what lies around the change (module docstring, 2)."""
    x, y, w, h = bbox
    pad = max(w, h) // 2 + 4
    y0, y1 = max(0, y - pad), min(mask.shape[0], y + h + pad)
    x0, x1 = max(0, x - pad), min(mask.shape[1], x + w + pad)
    local = part[y0:y1, x0:x1]
    # the ring around a part is what lies outside the whole change, not the neighbouring part of another kind
    ring = cv2.dilate(local.astype(np.uint8), np.ones((2 * (pad // 2) + 1,) * 2, np.uint8)).astype(bool)
    ring &= ~mask[y0:y1, x0:x1]
    out_r = _stand_out(frames.smooth_r[y0:y1, x0:x1], local, ring)
    out_q = _stand_out(frames.smooth_q[y0:y1, x0:x1], local, ring)
    texture_r = float(frames.detail_r[y0:y1, x0:x1][local].mean())
    texture_q = float(frames.detail_q[y0:y1, x0:x1][local].mean())
    texture_ratio = (texture_q + 1e-4) / (texture_r + 1e-4) / frames.overall
    return _kind(texture_ratio, out_r, out_q), {
        "stand_out_reference": round(out_r, 3), "stand_out_questioned": round(out_q, 3),
        "texture_ratio_questioned_to_reference": round(texture_ratio, 3)}


PART_MARGIN = 3.0  # a part keeps its own class when its replaced rate clears one half by this many sampling spreads
SETTLING_ROUNDS = 8  # at most this many rounds of weak parts joining the other class


def _part_evidence(classes: np.ndarray, inside: np.ndarray, replaced: np.ndarray, reach: float,
                   reading: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Components of ``classes`` (replaced, within ``inside``): the labels, each component's lead (how far its
    replaced rate lies on its own side of one half) in sampling spreads, and its area."""
    out_labels = np.zeros(inside.shape, np.int32)
    leads, areas = [np.zeros(1)], [np.zeros(1)]
    offset = 0
    for which in (True, False):
        own = classes if which else inside & ~classes
        count, labels = cv2.connectedComponents(own.astype(np.uint8), connectivity=8)
        if count <= 1:
            continue
        other = inside & ~own
        far = cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, 3) > reach
        area = np.bincount(labels.ravel(), minlength=count).astype(np.float64)
        core = np.bincount(labels.ravel(), weights=far.ravel().astype(np.float64), minlength=count)
        rate = np.bincount(labels.ravel(), weights=replaced.ravel().astype(np.float64), minlength=count) \
            / np.maximum(area, 1.0)
        spread = 0.5 / np.sqrt(np.maximum(core / reading, 1e-9))
        lead = ((rate - 0.5) if which else (0.5 - rate)) / spread
        out_labels[own] = labels[own] + offset
        leads.append(lead[1:])
        areas.append(area[1:])
        offset += count - 1
    return out_labels, np.concatenate(leads), np.concatenate(areas)


def _settled(part: np.ndarray, inside: np.ndarray, replaced: np.ndarray, radius: int, min_area: int
             ) -> np.ndarray:
    """``part`` (the replaced class within ``inside``) after the components of either class that their own evidence
    does not carry have joined the other class, the weakest class's first (module docstring, 1)."""
    reach = radius / 2.0  # the two classes are smoothed over this: nearer the other class a pixel is mixed
    # pixels per independent reading: a field smoothed by a Gaussian of sigma s holds one per 4 pi s^2 of area
    reading = 4.0 * np.pi * SPLIT_SMOOTHING ** 2
    for _ in range(SETTLING_ROUNDS):
        labels, lead, area = _part_evidence(part, inside, replaced, reach, reading)
        is_replaced = np.zeros(len(lead), bool)
        is_replaced[np.unique(labels[part])] = True
        weak = (lead < PART_MARGIN) | (area < min_area)
        weak[0] = is_replaced[0] = False
        if not weak.any():
            break
        if weak.sum() == len(weak) - 1:  # no part stands on its own: the region is the class most of it reads
            return inside & (float(replaced[inside].mean()) >= 0.5)
        # the class holding the weakest part gives its weak parts to the other class; the evidence of what
        # remains is read again before the other class's weak parts move
        weakest = np.argmin(np.where(weak, lead, np.inf))
        moving = weak & (is_replaced == is_replaced[weakest])
        moving[0] = False
        part = (part & ~moving[labels]) if is_replaced[weakest] else (part | (moving[labels] & inside))
    return part


def replaced_parts(frames: _Frames, region: np.ndarray, area: int, min_area: int = 1) -> np.ndarray:
    """Within ``region`` (a bool mask), where content was replaced rather than reshaped (module docstring, 1); a part
    of either class whose own evidence does not clear ``PART_MARGIN``, or smaller than a region may be
    (``min_area``), joins the other class."""
    radius = int(np.clip(round(NEIGHBOURHOOD_SHARE * np.sqrt(area)), *NEIGHBOURHOOD_PX))
    ys, xs = np.nonzero(region)
    pad = radius + 1
    y0, y1 = max(0, ys.min() - pad), min(region.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(region.shape[1], xs.max() + pad + 1)
    inside = region[y0:y1, x0:x1]
    tone_r, tone_q = frames.tone_r[y0:y1, x0:x1], frames.tone_q[y0:y1, x0:x1]
    # a square neighbourhood: OpenCV's rectangular erosion and dilation are separable, a disc's are not
    disc = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    margin = 3.0 * frames.tone_spread
    reference_absent = (tone_r < cv2.erode(tone_q, disc) - margin) | (tone_r > cv2.dilate(tone_q, disc) + margin)
    questioned_absent = (tone_q < cv2.erode(tone_r, disc) - margin) | (tone_q > cv2.dilate(tone_r, disc) + margin)
    replaced = (reference_absent | questioned_absent) & inside
    weight = inside.astype(np.float32)
    share = cv2.GaussianBlur(replaced.astype(np.float32), (0, 0), radius / 2.0) / np.maximum(
        cv2.GaussianBlur(weight, (0, 0), radius / 2.0), 1e-6)
    part = _settled((share >= 0.5) & inside, inside, replaced, radius, min_area)
    out = np.zeros(region.shape, bool)
    out[y0:y1, x0:x1] = part
    return out


def _own(where: np.ndarray, bbox: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = bbox
    return np.ascontiguousarray(where[y:y + h, x:x + w])


def _box(where: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(where)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def classify_regions(mask: np.ndarray, heatmap: np.ndarray, reference: np.ndarray, questioned: np.ndarray,
                     *, min_area: int, valid: np.ndarray) -> tuple[list[Region], list[np.ndarray]]:
    """Regions of ``mask`` labelled removed / added / retouched, with the reshaped parts of a removed or added
    change listed again, inside it, as ``retouched`` (module docstring), and each region's own pixels (a bool
    array the size of its box)."""
    frames = _frames(mask, reference, questioned, valid)
    _, components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    labelled: list[Region] = []
    owns: list[np.ndarray] = []
    for region in regions_from_mask(mask, heatmap, kind="retouched", min_area=min_area):
        x, y, w, h = region.bbox
        # the component this region is (its box may cut into a neighbour's pixels)
        ids = np.bincount(components[y:y + h, x:x + w][mask[y:y + h, x:x + w]].ravel())
        whole = components == int(np.argmax(ids))
        replaced = replaced_parts(frames, whole, region.area, min_area)
        reshaped = whole & ~replaced
        if replaced.any():  # the direction is read where content was replaced
            kind, evidence = _judged(frames, mask, replaced, _box(replaced))
        else:  # judged as whole regions always were, against what lies around them
            kind, evidence = _judged(frames, mask, mask, region.bbox)
        evidence["reshaped_share"] = round(float(reshaped.sum()) / float(whole.sum()), 3)
        labelled.append(replace(region, kind=kind, evidence=evidence))
        owns.append(_own(whole, region.bbox))
        # a region of one class is one part: nothing to list inside it
        if kind == "retouched" or not reshaped.any() or not replaced.any():
            continue
        for piece in regions_from_mask(reshaped, heatmap, kind="retouched", min_area=min_area):
            px, py, pw, ph = piece.bbox
            _, labels_p = cv2.connectedComponents(reshaped[py:py + ph, px:px + pw].astype(np.uint8),
                                                  connectivity=8)
            crop = labels_p == np.argmax(np.bincount(labels_p[labels_p > 0].ravel()))
            labelled.append(replace(piece, kind="retouched",
                                    evidence={"reshaped": True, "within": [int(v) for v in region.bbox],
                                              "within_kind": kind}))
            owns.append(crop)
    return labelled, owns


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
