"""Paired differencing: register two scans of one photograph and localise what was removed, added or retouched.

``compare_pair(reference, questioned)`` returns a :class:`PairComparison` whose ``result`` is the common
:class:`~retouch.result.AnalysisResult` in the questioned image's frame and size. Uniform margins around either
picture (a scanner bed, a frame) are left out, as ``analyze`` leaves them out (``retouch.imaging.content_box``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import cv2
import numpy as np

from retouch.compare.changes import (
    DEFAULT_THRESHOLD,
    GRAIN_HIGHPASS_PX,
    GRAIN_WEIGHT,
    GRAIN_WINDOW_PX,
    GROW_PX,
    GROW_THRESHOLD,
    LOCAL_THRESHOLD,
    change_evidence,
    classify_regions,
    decide,
    grain_decorrelation,
    localised,
    match_sharpness,
    match_tones,
    remove_defects,
)
from retouch.compare.register import Registration, register
from retouch.imaging import (
    analysis_scale,
    checked_image,
    content_box,
    inverted_tones,
    to_gray_float,
    to_uint8,
    upscale_to,
)
from retouch.result import AnalysisResult, Region

ANALYSIS_PIXELS = 2_500_000
MIN_PICTURE_SIDE = 32  # px; a picture inside margins smaller than this is compared with its margins, as before

EXPLANATION = (
    "The reference scan was aligned onto the questioned scan (features, a robust geometric fit and a sub-pixel "
    "refinement), its tones were matched to the questioned scan's, and the two were compared at three scales "
    "after smoothing away film grain; where the print is untouched both scans also record its own grain, so a "
    "local loss of that shared grain (paint, a fill, a stamped or pasted piece) is evidence too. Each pixel's "
    "difference is expressed against what grain, dust and compression alone produce between these two scans at "
    "that brightness; the map shows that normalised difference, and regions are where it is far above chance "
    "over an area larger than dust, outlined where the finest scales confirm it. A region is "
    "'removed' when the reference shows something distinct there that the questioned scan lacks, 'added' for the "
    "opposite, and 'retouched' when the surface changed without such a clear direction. Limits: areas outside "
    "the overlap of the two scans, and uniform margins (a scanner bed, a frame), are not compared; changes "
    "smaller than about 0.2 % of the compared area (the min_area_fraction parameter), or fainter "
    "than the grain, are not reported; a damaged or restored print shows as a change too: the map says what "
    "differs, an expert says why."
)


@dataclass
class PairComparison:
    """A comparison's result (questioned frame), the transform and what registration achieved."""

    result: AnalysisResult
    transform: np.ndarray
    registration: Registration
    aligned_reference: np.ndarray
    valid_mask: np.ndarray


def _warp_to(image: np.ndarray, h: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Warp with pre-shrinking when the map reduces the image a lot, so fine detail does not alias."""
    linear = h[:2, :2] / h[2, 2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    if scale < 0.7:
        shrunk = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h = h @ np.diag([1 / scale, 1 / scale, 1.0])
        image = shrunk
    return cv2.warpPerspective(image, h, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def compare_pair(
    reference: np.ndarray,
    questioned: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_area_fraction: float = 2e-3,
    analysis_pixels: int = ANALYSIS_PIXELS,
) -> PairComparison:
    """Register ``reference`` onto ``questioned`` and localise content changes.

    Parameters
    ----------
    reference, questioned : ndarray
        uint8/uint16 gray or RGB scans of (supposedly) one photograph.
    threshold : float
        Decision threshold on the noise-normalised change z-score.
    min_area_fraction : float
        Smallest reported region, as a fraction of the compared overlap.
    analysis_pixels : int
        Change detection runs on the questioned image scaled to at most this many pixels; maps are returned
        at full size.

    Raises
    ------
    NotSamePhotographError
        The two images do not show the same photograph.
    InputError
        Either image is not a gray or RGB image with pixels (the message names which).
    """
    reference = checked_image(reference, role="reference")
    questioned = checked_image(questioned, role="questioned")
    # A scanner bed (or a digital frame) around either picture is no part of the print. Where the other scan
    # shows more of the print, its picture lay over that margin and was compared with it: an untouched pair with
    # a white bed around the questioned scan was refused as two different photographs, and a black one marked
    # along the margin as changed. As ``analyze`` does, each scan's uniform margins are left out and the pictures
    # inside them compared; the result is placed back in the questioned image's whole frame.
    r_top, r_bottom, r_left, r_right = content_box(reference)
    q_top, q_bottom, q_left, q_right = content_box(questioned)
    reference_whole = (r_top, r_left, r_bottom, r_right) == (0, 0, *reference.shape[:2])
    questioned_whole = (q_top, q_left, q_bottom, q_right) == (0, 0, *questioned.shape[:2])
    too_small = min(r_bottom - r_top, r_right - r_left, q_bottom - q_top, q_right - q_left) < MIN_PICTURE_SIDE
    if too_small or (reference_whole and questioned_whole):
        return _compare_pictures(reference, questioned, threshold=threshold, min_area_fraction=min_area_fraction,
                                 analysis_pixels=analysis_pixels)
    inner = _compare_pictures(np.ascontiguousarray(reference[r_top:r_bottom, r_left:r_right]),
                              np.ascontiguousarray(questioned[q_top:q_bottom, q_left:q_right]),
                              threshold=threshold, min_area_fraction=min_area_fraction,
                              analysis_pixels=analysis_pixels,
                              frame="questioned image" if questioned_whole
                              else "questioned picture inside its uniform margins")
    return _placed(inner, reference, questioned, (r_top, r_bottom, r_left, r_right), (q_top, q_left))


def _placed(inner: PairComparison, reference: np.ndarray, questioned: np.ndarray,
            reference_box: tuple[int, int, int, int], questioned_corner: tuple[int, int]) -> PairComparison:
    """A comparison of the pictures inside the margins (the reference's ``(top, bottom, left, right)``, the
    questioned picture's corner ``(top, left)``) in the whole questioned frame: maps are zero outside the
    picture, the transform and the reference boxes are in whole-scan pixels."""
    (r_top, r_bottom, r_left, r_right), (q_top, q_left) = reference_box, questioned_corner
    full_shape = questioned.shape[:2]
    from_reference = np.array([[1.0, 0.0, -r_left], [0.0, 1.0, -r_top], [0.0, 0.0, 1.0]])
    to_questioned = np.array([[1.0, 0.0, q_left], [0.0, 1.0, q_top], [0.0, 0.0, 1.0]])
    transform = to_questioned @ inner.transform @ from_reference
    transform /= transform[2, 2]
    result = inner.result.placed_in(full_shape, q_top, q_left)
    regions = []
    for region in result.regions:
        evidence = dict(region.evidence)
        if "bbox_reference" in evidence:
            x, y, w, h = evidence["bbox_reference"]
            evidence["bbox_reference"] = [x + r_left, y + r_top, w, h]
        regions.append(replace(region, evidence=evidence))
    valid = np.zeros(full_shape, bool)
    height, width = inner.valid_mask.shape
    valid[q_top:q_top + height, q_left:q_left + width] = inner.valid_mask
    shown = inverted_tones(reference) if inner.registration.inverted else reference
    aligned = _warp_to(to_uint8(shown), transform, full_shape)
    details = dict(result.details)
    details["compared_fraction"] = round(float(valid.mean()), 6)
    picture = {"reference": [r_left, r_top, r_right - r_left, r_bottom - r_top],
               "questioned": [q_left, q_top, width, height]}
    params = {**result.params, "compared_pictures": picture}
    x, y, w, h = picture["questioned"]
    if (w, h) == (full_shape[1], full_shape[0]):
        note = "The reference scan's uniform margins were left out."
    else:
        note = (f"Uniform margins were left out: the questioned picture compared is the {w}x{h} px area at "
                f"({x}, {y}).")
    summary = f"{result.summary} {note}"
    result = replace(result, regions=regions, details=details, params=params, summary=summary,
                     images={"aligned_reference": aligned, "questioned": to_uint8(questioned)})
    return PairComparison(result=result, transform=transform,
                          registration=replace(inner.registration, transform=transform), aligned_reference=aligned,
                          valid_mask=valid)


def _compare_pictures(reference: np.ndarray, questioned: np.ndarray, *, threshold: float,
                      min_area_fraction: float, analysis_pixels: int, frame: str = "questioned image"
                      ) -> PairComparison:
    """:func:`compare_pair` of two pictures without margins; ``frame`` names the questioned one in the summary."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    registration = register(reference, questioned)
    if registration.inverted:  # a film negative of the print: compared as a positive from here on
        reference = inverted_tones(reference)
    timings.update({f"register_{k}": v for k, v in registration.timings_s.items()})
    timings["register"] = time.perf_counter() - started

    full_shape = questioned.shape[:2]
    q_scale = analysis_scale(full_shape, analysis_pixels)
    started = time.perf_counter()
    q_gray = to_gray_float(questioned)
    q_small = cv2.resize(q_gray, None, fx=q_scale, fy=q_scale, interpolation=cv2.INTER_AREA) if q_scale < 1 else q_gray
    small_shape = q_small.shape
    h_small = np.diag([q_scale, q_scale, 1.0]) @ registration.transform
    r_small = _warp_to(to_gray_float(reference), h_small, small_shape)
    valid = cv2.warpPerspective(np.ones(reference.shape[:2], np.uint8), h_small, (small_shape[1], small_shape[0]),
                                flags=cv2.INTER_NEAREST) > 0
    valid = cv2.erode(valid.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    timings["warp_analysis"] = time.perf_counter() - started
    if valid.sum() < 0.05 * valid.size:
        from retouch.errors import NotSamePhotographError

        raise NotSamePhotographError("these images do not show the same photograph: the scans barely overlap")

    started = time.perf_counter()
    # the raw images are kept for the shared-grain cue, which the dust filter's median would erase
    r_raw, q_raw = r_small, q_small
    r_small, q_small, defects = remove_defects(r_raw, q_raw)
    timings["dust"] = time.perf_counter() - started
    started = time.perf_counter()
    r_toned = match_tones(r_small, q_small, valid)
    grain = grain_decorrelation(r_raw, q_raw, valid, cv2.GaussianBlur(q_small, (0, 0), 2.0),
                                defects=defects)
    r_toned, q_small, sharpness = match_sharpness(r_toned, q_small, valid)
    timings["tone_and_sharpness"] = time.perf_counter() - started
    started = time.perf_counter()
    cues = change_evidence(r_toned, q_small, valid, grain=grain)
    evidence = cues.evidence
    heat_small = np.clip(localised(evidence, cues.local, threshold=threshold) / (2.0 * threshold), 0.0, 1.0)
    min_area_small = max(30, int(min_area_fraction * valid.sum()))
    mask_small = decide(evidence, valid, threshold=threshold, min_area=min_area_small, local=cues.local)
    small_regions = classify_regions(mask_small, heat_small, r_toned, q_small, min_area=min_area_small,
                                     valid=valid)
    timings["change_detection"] = time.perf_counter() - started

    started = time.perf_counter()
    heatmap = upscale_to(heat_small, full_shape)
    mask = upscale_to(mask_small.astype(np.float32), full_shape) >= 0.5
    valid_full = upscale_to(valid, full_shape)
    regions = _regions_to_full(small_regions, mask, q_scale, registration.transform, reference.shape[:2])
    aligned = _warp_to(to_uint8(reference), registration.transform, full_shape)
    timings["map_back"] = time.perf_counter() - started

    overlap = float(valid_full.mean())
    counts = {kind: sum(r.kind == kind for r in regions) for kind in ("removed", "added", "retouched")}
    changed = float(mask.sum()) / max(float(valid_full.sum()), 1.0)
    alignment = _alignment_words(registration)
    if regions:
        listed = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        summary = (f"{len(regions)} changed region(s) ({listed}) covering {100 * changed:.2f} % of the compared "
                   f"area; the scans were aligned with {alignment}.")
    else:
        summary = (f"No content change found over the {100 * overlap:.0f} % of the {frame} that both "
                   f"scans show; aligned with {alignment}.")
    if registration.inverted:
        summary += (" The two scans' tones are inverted (one is a film negative of the other): the reference was "
                    "compared with its tones inverted.")
    score = max([r.score for r in regions], default=0.0)
    score = max(score, 0.5 * float(np.percentile(heat_small[valid], 99.9)))
    result = AnalysisResult(
        method="compare",
        heatmap=heatmap,
        mask=mask,
        regions=regions,
        score=score,
        params={"threshold": threshold, "min_area_fraction": min_area_fraction, "analysis_pixels": analysis_pixels,
                "analysis_scale": round(q_scale, 6), "scales_px": [1.0, 2.0, 4.0],
                "sharpness_matching_sigma": sharpness,
                "outline": {"local_threshold": LOCAL_THRESHOLD, "grow_threshold": GROW_THRESHOLD,
                            "grow_px": GROW_PX},
                "shared_grain": {"highpass_px": GRAIN_HIGHPASS_PX, "window_px": GRAIN_WINDOW_PX,
                                 "weight": GRAIN_WEIGHT}},
        summary=summary,
        explanation=EXPLANATION,
        details={"timings_s": {k: round(v, 4) for k, v in timings.items()}, "changed_fraction": round(changed, 6),
                 "compared_fraction": round(overlap, 6), "counts": counts},
        images={"aligned_reference": aligned, "questioned": to_uint8(questioned)},
    )
    return PairComparison(result=result, transform=registration.transform, registration=registration,
                          aligned_reference=aligned, valid_mask=valid_full)


def _alignment_words(registration: Registration) -> str:
    """How the scans were aligned, for the summary: "an affine (1359 matching points), mirrored"."""
    article = "an" if registration.model[:1] in "aeiou" else "a"
    words = f"{article} {registration.model} ({registration.inliers} matching points)"
    return words + ", mirrored (one print is the other's mirror image)" if registration.mirrored else words


def _regions_to_full(regions: list[Region], mask: np.ndarray, scale: float, transform: np.ndarray,
                     reference_shape: tuple[int, int]) -> list[Region]:
    """Scale analysis-resolution regions to full size; area counted on the full-size mask; bbox in the reference."""
    inverse = np.linalg.inv(transform)
    height, width = mask.shape
    out = []
    for region in regions:
        x, y, w, h = region.bbox
        x0, y0 = int(np.floor(x / scale)), int(np.floor(y / scale))
        x1, y1 = min(width, int(np.ceil((x + w) / scale))), min(height, int(np.ceil((y + h) / scale)))
        area = int(np.count_nonzero(mask[y0:y1, x0:x1]))
        if area == 0 or x1 <= x0 or y1 <= y0:
            continue
        corners = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]).reshape(-1, 1, 2)
        mapped = cv2.perspectiveTransform(corners, inverse).reshape(-1, 2)
        rx0, ry0 = np.clip(mapped.min(axis=0), 0, [reference_shape[1] - 1, reference_shape[0] - 1])
        rx1, ry1 = np.clip(mapped.max(axis=0), 0, [reference_shape[1], reference_shape[0]])
        evidence = dict(region.evidence)
        evidence["bbox_reference"] = [int(rx0), int(ry0), max(1, int(rx1 - rx0)), max(1, int(ry1 - ry0))]
        out.append(Region(bbox=(x0, y0, x1 - x0, y1 - y0), area=area, score=region.score, kind=region.kind,
                          evidence=evidence))
    return out


__all__ = ["PairComparison", "Registration", "compare_pair", "register"]
