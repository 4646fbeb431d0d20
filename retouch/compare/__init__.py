"""Paired differencing: register two scans of one photograph and localise what was removed, added or retouched.

``compare_pair(reference, questioned)`` returns a :class:`PairComparison` whose ``result`` is the common
:class:`~retouch.result.AnalysisResult` in the questioned image's frame and size. Uniform margins around either
picture (a scanner bed, a frame) are left out, as ``analyze`` leaves them out (``retouch.imaging.content_box``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from retouch.compare.agreement import OverlapAgreement, overlap_agreement
from retouch.compare.composite import SharedPiece, grown_piece, shared_pieces
from retouch.compare.decision import GROW_SHARE, Decision, DecisionOptions, decide
from retouch.compare.evidence import (
    ChangeEvidence,
    Defects,
    change_evidence,
    find_defects,
    grain_decorrelation,
    without_defects,
)
from retouch.compare.kinds import classify_regions, damage_regions
from retouch.compare.model import ModelOptions, PairModel, fit_pair_model
from retouch.compare.register import Registration, overlap_share, register
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
EDIT_KINDS = ("removed", "added", "retouched")
MIN_SHARED_SHARE = 0.5  # a mirrored fit is one print only when its shared piece covers this share of the overlap
# two-stage pieces between unrelated photographs: pairs measured and chance pieces kept (results/unrelated_pieces.md)
UNRELATED_PAIRS, UNRELATED_KEPT = 69, 0
# the pair model refitted without the decided change (``_detect_changes``): fits in all, a margin of the widest
# evidence scale's reach (three times its 4 px) left out around the change, and a refit only while the overlap
# left is a majority (the robust fits' breakdown point)
FIT_ROUNDS = 2
FIT_MARGIN_PX = 12
MIN_FIT_SHARE = 0.5

EXPLANATION = (
    "The reference scan was aligned onto the questioned scan (features, a robust geometric fit and a sub-pixel "
    "refinement). A model of everything two scans of one print differ by was then fitted to the pair itself: "
    "a tone curve, uneven lighting, which scan is sharper and by how much, and the questioned file's JPEG "
    "compression where its pixels show one. From the reference, that model predicts the questioned scan; the "
    "map shows where the questioned scan departs from the prediction, at three scales and in its fine grain, "
    "against how much the rest of this pair departs. A region is reported where whole blocks of it depart far "
    "more than this pair's blocks do elsewhere: each region's 'nfa' is the number of regions as extreme that "
    "the pair's own background would produce by chance (reported below 1). A region is 'removed' when the "
    "reference shows something distinct there that the questioned scan lacks, 'added' for the opposite, and "
    "'retouched' when the surface changed without such a clear direction; specks and scratches found in one "
    "scan only are 'damage', not edits. Limits: areas outside the overlap of the two scans, and uniform margins "
    "(a scanner bed, a frame), are not compared; changes smaller than about 0.2 % of the compared area (the "
    "min_area_fraction parameter), or fainter than the pair's own differences, are not reported; a damaged or "
    "restored print shows as a change too: the map says what differs, an expert says why."
)
COMPOSITE_EXPLANATION = (
    "No single transform maps the whole reference onto the questioned image (a mirrored fit that holds over "
    "less than half of their overlap counts as none), so they are not one photograph edited. "
    "Their shared pieces were sought instead: matching features of the two images, grouped by the scale, turn "
    "and shift each group agrees on, one group after another, in the questioned image as it is and mirrored "
    "(a piece pasted facing the other way). Each piece is shown on the questioned image and, "
    "with its scale and turn, where it comes from on the reference; the swipe view lays the reference over the "
    "first piece. Limits: a piece needs several distinct textured places in common (a piece repainted all over "
    "keeps few); its outline is the hull of the matched places, grown over the cells around them where the "
    "two pictures' fine edges point the same way under the piece's transform beyond chance (a painted-over part "
    "shares few such edges and is not reached), not the paste's traced edge; what lies outside the pieces was "
    "not compared."
)
REGISTERED_COMPOSITE_EXPLANATION = (
    "One transform maps the reference onto the questioned image, but the questioned picture is not that "
    "photograph edited: over square cells of it, the two pictures' fine edges (gradient orientations, wherever "
    "either picture has a clear edge) point the same way under the transform beyond chance in a minority of "
    "the cells that can tell, and the rest of those cells are new content: edges shown not to agree as the "
    "shared part does (the picture beyond the reference is not compared). A photograph with an edit of a "
    "quarter or a third of it keeps the rest agreeing; a piece of the reference placed into a new picture does "
    "not. So the pair is a composite, and its edits are not judged against a background that is mostly new "
    "content. The part that agrees is shown as a piece on the questioned image and, through the transform, "
    "where it comes from on the reference; the swipe view lays the reference over it. Limits: the outline "
    "follows cells (a sixteenth of the overlap), grown where the fine edges agree beyond chance, not the "
    "paste's traced edge; new content as smooth as sky, or with edges running the same way as the reference's "
    "there, counts for neither side; what lies outside the piece was not compared."
)
FALSE_ALARM_CONTROL = (
    "Reported because a region this far beyond the pair's own differences, over this many blocks, would appear "
    "by chance in fewer than {expected} pair(s) in {per}: the expected number of such false regions (NFA) is "
    "{nfa}."
)


@dataclass(frozen=True)
class CompareOptions:
    """Calibration of the change model and the decision (see :mod:`retouch.compare.model` and
    :mod:`retouch.compare.decision`)."""

    model: ModelOptions = ModelOptions()
    decision: DecisionOptions = DecisionOptions()


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
    false_alarms: float = 1.0,
    min_area_fraction: float = 5e-4,
    analysis_pixels: int = ANALYSIS_PIXELS,
    options: CompareOptions | None = None,
) -> PairComparison:
    """Register ``reference`` onto ``questioned`` and localise content changes.

    Parameters
    ----------
    reference, questioned : ndarray
        uint8/uint16 gray or RGB scans of (supposedly) one photograph.
    false_alarms : float
        Expected number of regions per pair that the pair's own background (all that the fitted model of its
        global differences leaves) would produce by chance; a region is reported when its NFA is below this.
    min_area_fraction : float
        Smallest reported region, as a fraction of the compared overlap.
    analysis_pixels : int
        Change detection runs on the questioned image scaled to at most this many pixels; maps are returned
        at full size.
    options : CompareOptions, optional
        Calibration of the change model and the decision (defaults documented there).

    Raises
    ------
    NotSamePhotographError
        The two images do not show the same photograph.
    InputError
        Either image is not a gray or RGB image with pixels (the message names which).
    """
    reference = checked_image(reference, role="reference")
    questioned = checked_image(questioned, role="questioned")
    chosen = options or CompareOptions()
    chosen = replace(chosen, decision=replace(chosen.decision, false_alarms=false_alarms))
    settings = {"min_area_fraction": min_area_fraction, "analysis_pixels": analysis_pixels, "options": chosen}
    # A scanner bed (or a digital frame) around either picture is no part of the print. Where the other scan
    # shows more of the print, its picture lay over that margin and was compared with it. As ``analyze`` does,
    # each scan's uniform margins are left out and the pictures inside them compared; the result is placed back
    # in the questioned image's whole frame.
    r_top, r_bottom, r_left, r_right = content_box(reference)
    q_top, q_bottom, q_left, q_right = content_box(questioned)
    reference_whole = (r_top, r_left, r_bottom, r_right) == (0, 0, *reference.shape[:2])
    questioned_whole = (q_top, q_left, q_bottom, q_right) == (0, 0, *questioned.shape[:2])
    too_small = min(r_bottom - r_top, r_right - r_left, q_bottom - q_top, q_right - q_left) < MIN_PICTURE_SIDE
    if too_small or (reference_whole and questioned_whole):
        return _compare_pictures(reference, questioned, **settings)
    inner = _compare_pictures(np.ascontiguousarray(reference[r_top:r_bottom, r_left:r_right]),
                              np.ascontiguousarray(questioned[q_top:q_bottom, q_left:q_right]), **settings,
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
        for key, (dx, dy) in (("outline_questioned", (q_left, q_top)), ("outline_reference", (r_left, r_top))):
            if key in evidence:
                evidence[key] = [[px + dx, py + dy] for px, py in evidence[key]]
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


@dataclass
class _Frame:
    """The pair at analysis resolution: the reference warped onto the questioned frame, the questioned image,
    where the reference covers it, and the questioned image's scale."""

    reference: np.ndarray
    questioned: np.ndarray
    valid: np.ndarray
    scale: float


def _analysis_frame(reference: np.ndarray, questioned: np.ndarray, transform: np.ndarray,
                    analysis_pixels: int) -> _Frame:
    """Both images in the questioned frame at analysis resolution (gray, float [0, 1])."""
    from retouch.errors import NotSamePhotographError

    scale = analysis_scale(questioned.shape[:2], analysis_pixels)
    q_gray = to_gray_float(questioned)
    q_small = cv2.resize(q_gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else q_gray
    h_small = np.diag([scale, scale, 1.0]) @ transform
    r_small = _warp_to(to_gray_float(reference), h_small, q_small.shape)
    valid = cv2.warpPerspective(np.ones(reference.shape[:2], np.uint8), h_small,
                                (q_small.shape[1], q_small.shape[0]), flags=cv2.INTER_NEAREST) > 0
    valid = cv2.erode(valid.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    if valid.sum() < 0.05 * valid.size:
        raise NotSamePhotographError("these images do not show the same photograph: the scans barely overlap")
    return _Frame(reference=r_small, questioned=q_small, valid=valid, scale=scale)


@dataclass
class _Changes:
    """What the change detection found at analysis resolution."""

    mask: np.ndarray
    heatmap: np.ndarray
    regions: list[Region]
    damage: list[Region]
    damage_count: int
    model: PairModel
    decision: Decision
    region_pixels: list[np.ndarray]  # each region's own pixels within its box


def _scored(frame: _Frame, support: np.ndarray, defects: Defects, *, min_area: int, options: CompareOptions,
            timings: dict[str, float]) -> tuple[PairModel, np.ndarray, np.ndarray, ChangeEvidence, Decision]:
    """One round: the pair model fitted over ``support``, the evidence of change scored against the noise scales
    measured over the whole overlap, and the decision against the whole overlap's background. Returns the model,
    the cleaned prediction and questioned image, the evidence and the decision."""
    started = time.perf_counter()
    model = fit_pair_model(frame.reference, frame.questioned, support, options=options.model,
                           full_resolution=frame.scale >= 1.0)
    prediction = model.compressed(model.predict(frame.reference))
    questioned = model.questioned_view(frame.questioned)
    # outside the overlap the prediction is the questioned image itself, so that smoothing near the overlap's
    # border does not mix in the reference's reflected edge as a difference
    prediction = np.where(frame.valid, prediction, questioned).astype(np.float32)
    timings["model"] = timings.get("model", 0.0) + time.perf_counter() - started
    started = time.perf_counter()
    clean_p, clean_q = without_defects(prediction, questioned, defects)
    grain = grain_decorrelation(prediction, questioned, frame.valid, cv2.GaussianBlur(clean_p, (0, 0), 2.0),
                                defects=defects.either, specks=defects.specks)
    cues = change_evidence(clean_p, clean_q, frame.valid, grain=grain)
    timings["evidence"] = timings.get("evidence", 0.0) + time.perf_counter() - started
    started = time.perf_counter()
    decision = decide(cues.evidence, cues.local, frame.valid, min_area=min_area, options=options.decision)
    timings["decision"] = timings.get("decision", 0.0) + time.perf_counter() - started
    return model, clean_p, clean_q, cues, decision


def _near(mask: np.ndarray) -> np.ndarray:
    """``mask`` and a margin of ``FIT_MARGIN_PX`` around it."""
    size = 2 * FIT_MARGIN_PX + 1
    return cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))) > 0


def _fit_support(valid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The overlap without the decided change and a margin of ``FIT_MARGIN_PX`` around it."""
    return valid & ~_near(mask)


def _touching(mask: np.ndarray, found: np.ndarray) -> np.ndarray:
    """The components of ``mask`` that touch ``found``."""
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[mask & found])] = True
    keep[0] = False
    return keep[labels]


def _detect_changes(frame: _Frame, *, min_area_fraction: float, options: CompareOptions,
                    timings: dict[str, float]) -> _Changes:
    """Fit the pair model, score the questioned image against its prediction, decide and classify.

    The model is fitted on all of the overlap first; a large edit pulls it toward itself (an edit filling a tone
    range bends the tone curve there, so the unedited pixels of that tone are predicted wrong and marked). When
    a change is decided, the model (tone curve, lighting, sharpness) is fitted again without it and a margin
    (``_fit_support``), and the pair is scored and decided once more (``FIT_ROUNDS`` in all). The noise scales
    and the block background the evidence is judged against stay measured over the whole overlap in every
    round: measured without the change they are narrower, and whatever differs a little more near it (water
    repainted or re-photographed around a figure painted out) would then clear them. The refitted round keeps
    only the changes touching what the first round found: a refit sharpens an outline and a kind, it does not
    find new regions.
    """
    started = time.perf_counter()
    defects = find_defects(frame.reference, frame.questioned)
    timings["evidence"] = time.perf_counter() - started
    min_area = max(30, int(min_area_fraction * frame.valid.sum()))
    support = frame.valid
    overlap = max(int(frame.valid.sum()), 1)
    rounds = 0
    first_found: np.ndarray | None = None
    while True:
        rounds += 1
        model, clean_p, clean_q, cues, decision = _scored(frame, support, defects, min_area=min_area,
                                                          options=options, timings=timings)
        if first_found is None:
            first_found = _near(decision.mask)
        else:
            decision.mask = _touching(decision.mask, first_found)
        if rounds >= FIT_ROUNDS or not decision.mask.any():
            break
        refit = _fit_support(frame.valid, decision.mask)
        if refit.sum() < MIN_FIT_SHARE * overlap:  # the change is no minority: nothing left to fit without it
            break
        support = refit
    model.fit_rounds = rounds
    model.fit_share = round(float(support.sum()) / overlap, 4)
    started = time.perf_counter()
    threshold = decision.background.pixel_threshold
    confirmed = cv2.dilate(cues.local, np.ones((3, 3), np.uint8))
    capped = np.minimum(cues.evidence, confirmed / max(GROW_SHARE, 1e-6))
    heatmap = np.clip(capped / (2.0 * max(threshold, 1e-6)), 0.0, 1.0).astype(np.float32)
    regions, region_pixels = classify_regions(decision.mask, heatmap, clean_p, clean_q, min_area=min_area,
                                              valid=frame.valid)
    regions = [_with_false_alarm_control(region, decision, options.decision.false_alarms) for region in regions]
    # a speck inside an edit belongs to the edit
    outside = frame.valid & ~cv2.dilate(decision.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    damage, damage_count = damage_regions(defects.reference_only, defects.questioned_only, outside)
    timings["decision"] += time.perf_counter() - started
    return _Changes(mask=decision.mask, heatmap=heatmap, regions=regions, damage=damage, damage_count=damage_count,
                    model=model, decision=decision, region_pixels=region_pixels)


def _with_false_alarm_control(region: Region, decision: Decision, false_alarms: float) -> Region:
    x, y, w, h = region.bbox
    inside = np.zeros(decision.mask.shape, bool)
    inside[y:y + h, x:x + w] = decision.mask[y:y + h, x:x + w]
    log_nfa = decision.nfa_of(inside)
    nfa = float(10.0 ** max(log_nfa, -300.0))
    sentence = FALSE_ALARM_CONTROL.format(expected=f"{false_alarms:g}", per="1" if false_alarms >= 1 else
                                          f"{1 / false_alarms:g}", nfa=f"{nfa:.2g}")
    evidence = {**region.evidence, "nfa": float(f"{nfa:.3g}"), "log10_nfa": round(log_nfa, 2),
                "false_alarm_control": sentence}
    return replace(region, evidence=evidence)


def _compare_pictures(reference: np.ndarray, questioned: np.ndarray, *, min_area_fraction: float,
                      analysis_pixels: int, options: CompareOptions, frame: str = "questioned image"
                      ) -> PairComparison:
    """:func:`compare_pair` of two pictures without margins; ``frame`` names the questioned one in the summary."""
    from retouch.errors import NotSamePhotographError

    timings: dict[str, float] = {}
    started = time.perf_counter()
    # registration, the shared pieces and the analysis frame all work on gray: each picture is converted once
    gray_r, gray_q = to_gray_float(reference), to_gray_float(questioned)
    try:
        registration = register(gray_r, gray_q)
    except NotSamePhotographError as error:
        pieces = shared_pieces(gray_r, gray_q, grow=False)
        if not pieces:  # they share nothing that could be found: refused, for the reason registration gave
            raise error from None
        timings["shared_pieces"] = time.perf_counter() - started
        return _composite(reference, questioned, pieces, str(error), timings)
    if registration.mirrored and not registration.inverted and not registration.inlier_cover >= MIN_SHARED_SHARE:
        # a mirrored fit is a whole print reproduced mirrored, or a piece pasted facing the other way
        # (PS-Battles' cats and foxes): it is compared as one print only when what the pair shares covers at least
        # half of the overlap, the breakdown point of the robust pair model and background the comparison rests on
        # (the fit's own inlier matches spreading over half of it show that without a search for pieces)
        pieces = shared_pieces(gray_r, gray_q, grow=False)
        if pieces and max(_shared_share(piece, registration.transform, reference.shape[:2], questioned.shape[:2])
                          for piece in pieces) < MIN_SHARED_SHARE:
            timings["shared_pieces"] = time.perf_counter() - started
            why = ("the mirrored questioned image matches the reference over less than half of where they "
                   "overlap, not as a whole print")
            return _composite(reference, questioned, pieces, why, timings, why)
    if registration.inverted:  # a film negative of the print: compared as a positive from here on
        reference = inverted_tones(reference)
        gray_r = to_gray_float(reference)
    timings.update({f"register_{k}": v for k, v in registration.timings_s.items()})
    timings["register"] = time.perf_counter() - started
    # an edit is judged against the pair's own differences, which presumes that most of the questioned picture is
    # the registered photograph; a piece of it placed into a new picture, which the transform maps, is not
    started = time.perf_counter()
    agreement = overlap_agreement(gray_r, gray_q, registration.transform)
    timings["overlap_agreement"] = time.perf_counter() - started
    if agreement is not None and agreement.composite:
        telling = agreement.agreeing + agreement.differing
        why = (f"the reference registers on it with one transform, yet their fine edges agree under it over only "
               f"{agreement.agreeing} of the {telling} cells of their overlap that can tell (the rest is new "
               "content)")
        piece = _registered_piece(agreement, registration)
        return _composite(reference, questioned, [piece], why, timings, why,
                          explanation=REGISTERED_COMPOSITE_EXPLANATION)

    full_shape = questioned.shape[:2]
    started = time.perf_counter()
    pair = _analysis_frame(gray_r, gray_q, registration.transform, analysis_pixels)
    timings["warp_analysis"] = time.perf_counter() - started
    changes = _detect_changes(pair, min_area_fraction=min_area_fraction, options=options, timings=timings)

    started = time.perf_counter()
    heatmap = upscale_to(changes.heatmap, full_shape)
    mask = upscale_to(changes.mask.astype(np.float32), full_shape) >= 0.5
    valid_full = upscale_to(pair.valid, full_shape)
    edits = _regions_to_full(changes.regions, mask, pair.scale, registration.transform, reference.shape[:2],
                             pixels=changes.region_pixels)
    damage = _regions_to_full(changes.damage, None, pair.scale, registration.transform, reference.shape[:2],
                              full_shape)
    aligned = _warp_to(to_uint8(reference), registration.transform, full_shape)
    timings["map_back"] = time.perf_counter() - started

    counts = {kind: sum(r.kind == kind for r in edits) for kind in EDIT_KINDS}
    counts["damage"] = changes.damage_count
    changed = float(mask.sum()) / max(float(valid_full.sum()), 1.0)
    summary = _summary(edits, counts, changed, float(valid_full.mean()), registration, frame)
    score = max([r.score for r in edits], default=0.0)
    score = max(score, 0.5 * float(np.percentile(changes.heatmap[pair.valid], 99.9)))
    background = changes.decision.background
    result = AnalysisResult(
        method="compare",
        heatmap=heatmap,
        mask=mask,
        regions=edits + damage,
        score=score,
        params={"false_alarms": options.decision.false_alarms, "min_area_fraction": min_area_fraction,
                "analysis_pixels": analysis_pixels, "analysis_scale": round(pair.scale, 6),
                "model_options": asdict(options.model), "decision_options": asdict(options.decision)},
        summary=summary,
        explanation=EXPLANATION,
        details={"timings_s": {k: round(v, 4) for k, v in timings.items()}, "changed_fraction": round(changed, 6),
                 "compared_fraction": round(float(valid_full.mean()), 6), "counts": counts,
                 "pair_model": changes.model.to_dict(),
                 "background": {"location": round(background.location, 4), "spread": round(background.spread, 4),
                                "blocks": background.blocks, "block_px": background.block,
                                "pixel_threshold": round(background.pixel_threshold, 3),
                                "tests": changes.decision.tests}},
        images={"aligned_reference": aligned, "questioned": to_uint8(questioned)},
    )
    return PairComparison(result=result, transform=registration.transform, registration=registration,
                          aligned_reference=aligned, valid_mask=valid_full)


def _shared_share(piece: SharedPiece, transform: np.ndarray, reference_shape: tuple[int, int],
                  questioned_shape: tuple[int, int]) -> float:
    """The share of the registered overlap (where ``transform`` lands the reference in the questioned frame) that
    ``piece``'s outline covers."""
    return overlap_share(piece.questioned_outline, transform, reference_shape, questioned_shape)


PIECE_FALSE_ALARM_CONTROL = (
    "{matches} distinct places agree on one scale, turn and shift; between two unrelated pictures of this size, "
    "the expected number of pieces that agree as well by chance (NFA) is {nfa}, and a piece is reported only "
    "below 0.01 (about one false piece in 100 pairs)."
)
PIECE_CONFIRMATION_CONTROL = (
    "{matches} distinct places agree on one scale, turn and shift, fewer than 8 a piece needs on its own (NFA "
    "{nfa}); it is reported because a second test confirms it: over the piece, the two pictures' fine edges point "
    "the same way under its transform far more often than chance allows (binomial tail 1e{tail:.0f}) and more "
    "than with the reference moved to any of 999 wrong places (at best 1e{null:.0f}){parts}. Measured on {pairs} "
    "pairs of unrelated photographs, the two tests together kept {kept} chance piece(s): a piece confirmed this "
    "way is weaker evidence than one its places alone carry."
)
PIECE_HALVES = ", in each half of the piece too"
PIECE_CUT = ("; the edges agreed over one half of the outline all its places drew, not the other, so the piece is "
             "cut to the places in that half: {left_out} matched place(s) beyond it agreed by chance and are left "
             "out")
PIECE_OUTLINE_CUT = (
    " Its outline is cut to the part where the two pictures' fine edges agree under its transform (beyond chance and "
    "beyond the reference moved to wrong places); over the part that {left_out} further matched place(s) stretched "
    "it to, the edges agree no more than chance allows and less often, so those places are taken as chance matches "
    "and left out (a cut only shrinks the outline)."
)
PIECE_REGISTERED_CONTROL = (
    "The pair registers on this piece with one transform ({inliers} matching points). Over cells of {cell:.0f} px "
    "of the questioned picture, the fine edges of both pictures point the same way under it beyond chance (1 % "
    "level per cell) in {agreeing} cells, the piece being the largest connected group of them (its agreement's "
    "NFA {nfa}); in {differing} cells of the overlap they are shown not to agree as there (below the agreeing "
    "cells' rate, 1 % level): new content. Were at most half of the {telling} cells that tell new content (one "
    "photograph with an edit), {new} or more would be new with chance 1e{p:.1f} (binomial, cells taken as "
    "independent); a composite needs at most 1e-2. The picture beyond the reference is not compared."
)
PIECE_GROWTH_CONTROL = (
    " Its outline was grown beyond the matched places by {grown:.0%} of their area, over cells where the two "
    "pictures' fine edges point the same way under the piece's transform more often than chance allows (NFA at "
    "most 0.01 over all cells) and more than any cell does with the reference moved to 49 wrong places."
)


def _registered_piece(agreement: OverlapAgreement, registration: Registration) -> SharedPiece:
    """The agreeing part of a registered pair the structure test found to be a composite, as a shared piece under
    the registration's transform."""
    outline = np.asarray(agreement.piece, np.float64)
    inverse = np.linalg.inv(registration.transform)
    back = cv2.perspectiveTransform(outline.reshape(-1, 1, 2), inverse).reshape(-1, 2)
    return SharedPiece(transform=registration.transform, scale=registration.scale,
                       rotation_deg=registration.rotation_deg, questioned_outline=outline, reference_outline=back,
                       matches=registration.inliers, nfa=float(10.0 ** max(agreement.piece_log10_nfa, -300.0)),
                       mirrored=registration.mirrored, agreement=agreement.to_dict())


def _piece_control(piece: SharedPiece) -> str:
    """The false-alarm control sentence of a shared piece."""
    if piece.agreement is not None:
        record = piece.agreement
        new = record["differing_cells"]
        return PIECE_REGISTERED_CONTROL.format(
            inliers=piece.matches, cell=record["cell_px"], agreeing=record["agreeing_cells"],
            nfa=f"{piece.nfa:.2g}",
            differing=record["differing_cells"],
            telling=record["agreeing_cells"] + new, new=new, p=record["log10_p"])
    if piece.confirmed:
        return PIECE_CONFIRMATION_CONTROL.format(
            matches=piece.matches, nfa=f"{piece.nfa:.2g}", tail=piece.structure_log10_tail,
            null=piece.structure_null_log10_tail, pairs=UNRELATED_PAIRS, kept=UNRELATED_KEPT,
            parts=PIECE_CUT.format(left_out=piece.places_left_out) if piece.places_left_out else PIECE_HALVES)
    return (PIECE_FALSE_ALARM_CONTROL.format(matches=piece.matches, nfa=f"{piece.nfa:.2g}")
            + (PIECE_OUTLINE_CUT.format(left_out=piece.places_left_out) if piece.places_left_out else ""))


def _composite(reference: np.ndarray, questioned: np.ndarray, pieces: list[SharedPiece], refusal: str,
               timings: dict[str, float],
               why: str = "no single transform maps the reference onto the questioned image", *,
               explanation: str = COMPOSITE_EXPLANATION) -> PairComparison:
    """The comparison of a composite: no single transform maps the reference onto the questioned image (or, in
    the words of ``why``, the one that does maps only a piece), but ``pieces`` of it were found in the questioned
    image, each placed with its own scale and turn. The mask and
    the regions are the pieces (kind ``shared``), each with its outline and box in the reference too; nothing
    outside them is compared. Each piece's outline is first grown where the pictures share fine structure
    under its transform (:func:`~retouch.compare.composite.grown_piece`)."""
    started = time.perf_counter()
    pieces = [grown_piece(reference, questioned, piece) for piece in pieces]
    timings["grow_pieces"] = time.perf_counter() - started
    shape = questioned.shape[:2]
    mask = np.zeros(shape, np.uint8)
    regions = []
    for piece in pieces:
        own = np.zeros(shape, np.uint8)
        cv2.fillPoly(own, [np.round(piece.questioned_outline).astype(np.int32)], 1)
        mask |= own
        score = float(np.clip(-np.log10(max(piece.nfa, 1e-300)) / 20.0, 0.0, 1.0))
        evidence = {
            "bbox_reference": list(piece.reference_box(reference.shape[:2])),
            "scale": round(piece.scale, 3), "rotation_deg": round(piece.rotation_deg, 1), "mirrored": piece.mirrored,
            "matched_places": piece.matches, "nfa": float(f"{piece.nfa:.3g}"),
            "grown_fraction": piece.grown_fraction, "confirmed_by_structure": piece.confirmed,
            "places_left_out": piece.places_left_out,
            "false_alarm_control": _piece_control(piece)
            + (PIECE_GROWTH_CONTROL.format(grown=piece.grown_fraction) if piece.grown_fraction else ""),
            "outline_questioned": np.round(piece.questioned_outline).astype(int).tolist(),
            "outline_reference": np.round(piece.reference_outline).astype(int).tolist(),
        }
        if piece.agreement is not None:
            evidence["overlap_agreement"] = piece.agreement
        regions.append(Region(bbox=piece.questioned_box(shape), area=int(own.sum()), score=score, kind="shared",
                              evidence=evidence))
    first = pieces[0]
    aligned = _warp_to(to_uint8(reference), first.transform, shape)
    words = "; ".join(
        f"the piece at x={r.bbox[0]}, y={r.bbox[1]} ({r.bbox[2]}x{r.bbox[3]} px) comes from the reference's "
        f"x={r.evidence['bbox_reference'][0]}, y={r.evidence['bbox_reference'][1]} "
        f"({r.evidence['bbox_reference'][2]}x{r.evidence['bbox_reference'][3]} px), scaled "
        f"{r.evidence['scale']:g}, {_turn_words(r.evidence['rotation_deg'])}"
        f"{', mirrored' if r.evidence['mirrored'] else ''}" for r in regions)
    summary = (f"Not one photograph edited: {why}, but "
               f"{len(regions)} piece(s) of it come from the reference (a composite): {words}. Nothing outside "
               "the pieces was compared.")
    registration = Registration(
        transform=first.transform, model="similarity", method="shared pieces (composite)", mirrored=first.mirrored,
        matches=sum(p.matches for p in pieces), inliers=first.matches, inlier_ratio=float("nan"),
        residual_px=float("nan"), rotation_deg=first.rotation_deg, scale=first.scale, refined=False,
        timings_s=dict(timings))
    pieces_record = [{"bbox": list(r.bbox), **{k: r.evidence[k] for k in
                                               ("bbox_reference", "scale", "rotation_deg", "mirrored", "nfa")}}
                     for r in regions]
    result = AnalysisResult(
        method="compare", heatmap=mask.astype(np.float32), mask=mask.astype(bool), regions=regions,
        score=max(r.score for r in regions),
        params={"composite_nfa_threshold": 0.01},
        summary=summary, explanation=explanation,
        details={"composite": True, "pieces": pieces_record, "not_one_photograph": refusal,
                 "timings_s": {k: round(v, 4) for k, v in timings.items()},
                 "changed_fraction": 0.0, "compared_fraction": round(float(mask.mean()), 6),
                 "counts": {"shared": len(regions)}},
        images={"aligned_reference": aligned, "questioned": to_uint8(questioned)},
    )
    return PairComparison(result=result, transform=first.transform, registration=registration,
                          aligned_reference=aligned, valid_mask=mask.astype(bool))


def _turn_words(degrees: float) -> str:
    """``rotation_deg`` (image coordinates, y down: positive turns clockwise as seen) in words."""
    if abs(degrees) < 0.5:
        return "not turned"
    return f"turned {abs(degrees):g} degrees {'clockwise' if degrees > 0 else 'anticlockwise'}"


def _summary(edits: list[Region], counts: dict[str, int], changed: float, overlap: float,
             registration: Registration, frame: str) -> str:
    alignment = _alignment_words(registration)
    if edits:
        listed = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n and kind in EDIT_KINDS)
        summary = (f"{len(edits)} changed region(s) ({listed}) covering {100 * changed:.2f} % of the compared "
                   f"area; the scans were aligned with {alignment}.")
        nested = sum("within" in r.evidence for r in edits)
        if nested:
            summary += (f" {nested} of the retouched region(s) lie inside a removed or added change: content both "
                        "scans show, reshaped or extended over where the reference's content was taken out.")
    else:
        summary = (f"No region met the threshold over the {100 * overlap:.0f} % of the {frame} that both "
                   f"scans show; aligned with {alignment}.")
    if counts.get("damage"):
        summary += (f" {counts['damage']} speck(s) or scratch(es) appear in one scan only (damage to a print or "
                    "scan, not counted as edits).")
    if registration.inverted:
        summary += (" The two scans' tones are inverted (one is a film negative of the other): the reference was "
                    "compared with its tones inverted.")
    return summary


def _alignment_words(registration: Registration) -> str:
    """How the scans were aligned, for the summary: "an affine (1359 matching points; the questioned scan at 1.61
    times the reference's scale, turned 180 degrees clockwise), mirrored"."""
    article = "an" if registration.model[:1] in "aeiou" else "a"
    geometry = []
    if abs(registration.scale - 1.0) >= 0.01:
        geometry.append(f"the questioned scan at {registration.scale:.2f} times the reference's scale")
    if abs(registration.rotation_deg) >= 0.5:
        geometry.append(_turn_words(round(registration.rotation_deg, 1)))
    where = f"; {', '.join(geometry)}" if geometry else ""
    words = f"{article} {registration.model} ({registration.inliers} matching points{where})"
    return words + ", mirrored (one print is the other's mirror image)" if registration.mirrored else words


def _regions_to_full(regions: list[Region], mask: np.ndarray | None, scale: float, transform: np.ndarray,
                     reference_shape: tuple[int, int], shape: tuple[int, int] | None = None, *,
                     pixels: list[np.ndarray] | None = None) -> list[Region]:
    """Scale analysis-resolution regions to full size; bbox in the reference. A region whose own ``pixels`` (within
    its box) are given has its area and outline from them (the reshaped part listed inside a removed change shares
    its pixels); otherwise the area is counted on the full-size mask (scaled when there is none, as for damage,
    which is not part of the mask)."""
    inverse = np.linalg.inv(transform)
    height, width = mask.shape if mask is not None else shape
    out = []
    for index, region in enumerate(regions):
        x, y, w, h = region.bbox
        x0, y0 = int(np.floor(x / scale)), int(np.floor(y / scale))
        x1, y1 = min(width, int(np.ceil((x + w) / scale))), min(height, int(np.ceil((y + h) / scale)))
        evidence = dict(region.evidence)
        if pixels is not None:
            own = pixels[index]
            area = int(round(np.count_nonzero(own) / scale**2))
            contours, _ = cv2.findContours(own.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            if contours:
                ring = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 1.0, True).reshape(-1, 2)
                evidence["outline_questioned"] = np.round((ring + [x, y]) / scale).astype(int).tolist()
            if "within" in evidence:
                px, py, pw, ph = evidence["within"]
                evidence["within"] = [int(px / scale), int(py / scale), int(np.ceil(pw / scale)),
                                      int(np.ceil(ph / scale))]
        elif mask is not None:
            area = int(np.count_nonzero(mask[y0:y1, x0:x1]))
        else:
            area = int(round(region.area / scale**2))
        if area == 0 or x1 <= x0 or y1 <= y0:
            continue
        corners = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]).reshape(-1, 1, 2)
        mapped = cv2.perspectiveTransform(corners, inverse).reshape(-1, 2)
        rx0, ry0 = np.clip(mapped.min(axis=0), 0, [reference_shape[1] - 1, reference_shape[0] - 1])
        rx1, ry1 = np.clip(mapped.max(axis=0), 0, [reference_shape[1], reference_shape[0]])
        evidence["bbox_reference"] = [int(rx0), int(ry0), max(1, int(rx1 - rx0)), max(1, int(ry1 - ry0))]
        out.append(Region(bbox=(x0, y0, x1 - x0, y1 - y0), area=area, score=region.score, kind=region.kind,
                          evidence=evidence))
    return out


__all__ = ["PairComparison", "Registration", "compare_pair", "register"]
