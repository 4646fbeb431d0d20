"""Fusion's region rule: a region under the minimum share of the image is kept only where a detector that decided
on a bounded copy (its false regions do not grow with the scan) and a second detector agree."""

from __future__ import annotations

import numpy as np

from retouch.detect._blocks import nfa_score
from retouch.fuse import decides_on_bounded_copy, fuse_results
from retouch.result import AnalysisResult, regions_from_mask


def _decided(method: str, mask: np.ndarray, *, bounded: bool) -> AnalysisResult:
    heatmap = mask.astype(np.float32) * 0.8
    regions = [region.__class__(region.bbox, region.area, region.score, region.kind,
                                {"nfa": 1e-4, "false_alarm_control": "stated"})
               for region in regions_from_mask(mask, heatmap, kind="noise-low")]
    params = {"nfa_threshold": 0.01, **({"analysis_pixels": 1_000_000} if bounded else {})}
    return AnalysisResult(method, heatmap, mask, regions, 0.8, params=params)


def _square(shape: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_a_small_region_is_kept_where_a_bounded_detector_and_another_one_agree() -> None:
    shape = (400, 400)  # the minimum share, 0.2 %, is 320 px; each region is 225 px (0.14 %)
    small = _square(shape, 100, 100, 15)
    elsewhere = _square(shape, 300, 250, 15)
    fused = fuse_results([_decided("inpaint", small, bounded=True), _decided("ela", small, bounded=False),
                          _decided("grid", elsewhere, bounded=False)], shape=shape)
    [region] = fused.regions
    assert region.bbox == (100, 100, 15, 15) and sorted(region.evidence["detectors"]) == ["ela", "inpaint"]
    assert region.evidence["nfa"] == 1e-4
    # suspect_mask.png holds exactly the kept region: grid's small one is in neither the mask nor the regions
    assert fused.mask.sum() == 225 and not fused.mask[300:315, 250:265].any()
    assert fused.params["bounded_detectors"] == ["inpaint"] and fused.score > 0.5


def test_a_small_region_of_one_detector_alone_is_dropped_bounded_or_not() -> None:
    shape = (400, 400)
    for bounded in (True, False):
        alone = fuse_results([_decided("inpaint", _square(shape, 100, 100, 15), bounded=bounded)], shape=shape)
        assert alone.regions == [] and not alone.mask.any() and alone.score < 0.5, bounded
    # two full-resolution detectors agreeing on a small area are not enough either
    both = fuse_results([_decided("ela", _square(shape, 100, 100, 15), bounded=False),
                         _decided("grain", _square(shape, 100, 100, 15), bounded=False)], shape=shape)
    assert both.regions == []


def test_a_full_resolution_region_joined_to_a_bounded_one_is_kept_with_both_supports() -> None:
    shape = (400, 400)
    fused = fuse_results([_decided("inpaint", _square(shape, 100, 100, 15), bounded=True),
                          _decided("grain", _square(shape, 110, 110, 15), bounded=False)], shape=shape)
    [region] = fused.regions
    assert sorted(region.evidence["detectors"]) == ["grain", "inpaint"]
    assert region.area >= 225 + 225 - 25


def test_large_regions_are_kept_from_any_detector_and_nothing_below_the_share_without_a_bounded_detector() -> None:
    shape = (400, 400)
    large = _decided("grid", _square(shape, 50, 50, 30), bounded=False)  # 900 px
    small = _decided("jpeg", _square(shape, 200, 200, 15), bounded=False)
    fused = fuse_results([large, small], shape=shape)
    assert [r.bbox for r in fused.regions] == [(50, 50, 30, 30)]
    alone = fuse_results([small], shape=shape)
    assert alone.regions == [] and not alone.mask.any() and alone.score < 0.5


def test_a_detector_is_bounded_only_when_it_states_a_positive_pixel_bound() -> None:
    mask = np.zeros((40, 40), bool)
    for params, expected in [({"analysis_pixels": 1_000_000}, True), ({"analysis_pixels": 0}, False),
                             ({"analysis_pixels": True}, False), ({"analysis_pixels": "1e6"}, False), ({}, False)]:
        result = AnalysisResult("x", mask.astype(np.float32), mask, [], 0.1, params=params)
        assert decides_on_bounded_copy(result) is expected, params


def test_a_coarse_outline_gives_way_near_a_finer_decision_and_stands_alone_elsewhere() -> None:
    shape = (400, 400)
    piece = _square(shape, 100, 100, 60)
    coarse_ring = _square(shape, 88, 88, 84)  # the same piece outlined a block and a half too wide
    alone = _square(shape, 280, 250, 64)  # a piece only the coarse detector found
    coarse = _decided("settling", coarse_ring | alone, bounded=False)
    coarse = AnalysisResult(coarse.method, coarse.heatmap, coarse.mask, coarse.regions, coarse.score,
                            params={**coarse.params, "outline_reach": 16})
    fused = fuse_results([_decided("inpaint", piece, bounded=False), coarse], shape=shape)
    np.testing.assert_array_equal(fused.mask, piece | alone)
    near, far = sorted(fused.regions, key=lambda region: region.bbox[1])
    assert sorted(near.evidence["detectors"]) == ["inpaint", "settling"]  # both still support the piece
    assert far.evidence["detectors"] == ["settling"]
    # without a stated reach every detector's outline is united, as before
    wide = fuse_results([_decided("inpaint", piece, bounded=False), _decided("settling", coarse_ring, bounded=False)],
                        shape=shape)
    np.testing.assert_array_equal(wide.mask, coarse_ring)


def test_a_small_region_confirmed_at_full_resolution_over_the_scan_is_kept_alone() -> None:
    shape = (400, 400)
    small = _square(shape, 100, 100, 15)
    other = _square(shape, 300, 250, 15)
    clone = _decided("clone", small | other, bounded=True)
    # only the region that states it was confirmed at full resolution over the whole scan stands alone
    regions = [region.__class__(region.bbox, region.area, region.score, region.kind,
                                {**region.evidence, "full_resolution": region.bbox[1] == 100})
               for region in clone.regions]
    clone = AnalysisResult("clone", clone.heatmap, clone.mask, regions, 0.8, params=clone.params)
    fused = fuse_results([clone], shape=shape)
    [region] = fused.regions
    assert region.bbox == (100, 100, 15, 15) and region.evidence["detectors"] == ["clone"]
    assert fused.mask.sum() == 225 and not fused.mask[300:315, 250:265].any()


def _undecided(method: str, shape: tuple[int, int], score: float, **details: object) -> AnalysisResult:
    """A detector that ran and decided nothing; its strongest candidate scores ``score`` (below 0.5)."""
    return AnalysisResult(method, np.full(shape, score, np.float32), np.zeros(shape, bool), [], score,
                          params={"nfa_threshold": 0.01}, details=dict(details))


def test_a_detector_that_did_not_judge_the_picture_does_not_set_its_score() -> None:
    """Grain on a digital photograph (or settling on a picture saved once) keeps its map but decides nothing:
    its candidate has no stated chance rate there and must not outrank another detector's measured one."""
    shape = (200, 200)
    unjudged = _undecided("grain", shape, 0.49, judged=False)
    measured = _undecided("settling", shape, 0.2, judged=True, smallest_nfa=0.04)
    fused = fuse_results([unjudged, measured], shape=shape)
    assert abs(fused.score - 0.2) < 1e-9
    # judged, the same candidate is the strongest
    assert fuse_results([_undecided("grain", shape, 0.49, judged=True), measured], shape=shape).score == 0.49


def test_a_decision_that_fusion_dropped_does_not_set_the_image_score() -> None:
    """ela's small region (0.14 % of the picture: under the fused minimum share, and no bounded detector
    agrees) is not a suspect region, so its NFA does not lift the picture over one that kept a candidate of NFA
    4: the image score follows the fused decision."""
    shape = (400, 400)
    dropped = _decided("ela", _square(shape, 100, 100, 15), bounded=False)
    other = _undecided("grid", shape, 0.1)
    fused = fuse_results([dropped, other], shape=shape)
    assert fused.regions == [] and abs(fused.score - 0.1) < 1e-9


def test_the_image_score_counts_only_the_regions_that_survived_fusion() -> None:
    """A detector with a large kept region (NFA 1e-4) and a small dropped one (NFA 1e-12) scores by the kept one."""
    shape = (400, 400)
    mask = _square(shape, 20, 20, 100) | _square(shape, 300, 300, 10)
    result = _decided("ela", mask, bounded=False)
    regions = [region.__class__(region.bbox, region.area, region.score, region.kind,
                                {"nfa": 1e-4 if region.area > 1000 else 1e-12}) for region in result.regions]
    result = AnalysisResult("ela", result.heatmap, mask, regions, 0.99, params=result.params)
    fused = fuse_results([result], shape=shape)
    [kept] = fused.regions
    assert kept.evidence["nfa"] == 1e-4
    assert abs(fused.score - nfa_score(1e-4, 0.01, decided=True)) < 1e-9  # 0.98, not 0.99's 1e-12
