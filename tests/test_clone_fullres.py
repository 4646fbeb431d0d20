"""Copy-move's full-resolution tier: a small stamp on a scan above the bounded size is found at full resolution
(and not by the bounded copy), an untouched scan is not marked, and the tier never runs at or below the bounded
size (1 MP decisions unchanged)."""

from __future__ import annotations

import numpy as np
import pytest

import retouch.detect.clone as clone
from retouch.detect._clone_fullres import WindowPair, _composite, grain_keypoints, matched_pairs
from retouch.detect.clone import copy_move
from retouch.fuse import fuse_results
from retouch.metrics import f1_score
from retouch.result import AnalysisResult
from retouch.samples import make_authentic, make_forgery, stamp_source

# A 3.4 MP print of grace_hopper (2000 px) analysed with a bounded copy of 0.25 MP: the 0.2 % stamp (about 45 x
# 100 px) is 12 x 27 px in the bounded copy, where the print's grain is averaged away, the same ratio as a 0.1 %
# stamp on a 24 MP scan with the default 1 MP copy.
SCAN = {"size": 2000, "source": "grace_hopper"}
BOUND = 250_000


@pytest.mark.slow
def test_a_small_stamp_on_a_large_scan_is_found_at_full_resolution_and_not_by_the_bounded_copy() -> None:
    case = make_forgery(1, method="clone", area_fraction=0.002, **SCAN)
    result = copy_move(case.image, analysis_pixels=BOUND)
    assert result.params["analysis_scale"] < 0.3 and result.params["full_resolution"] is True
    targets = [r for r in result.regions if r.kind == "clone-target"]
    assert targets and all(r.evidence["full_resolution"] is True for r in result.regions)
    x, y, w, h = targets[0].bbox
    assert case.mask[y:y + h, x:x + w].mean() > 0.5  # the stamp itself is called the target
    assert targets[0].evidence["nfa"] <= 0.01
    assert f1_score(result.mask, case.mask, valid=~stamp_source(case)) >= 0.6
    # the partner is the stamp's source, at the stamp's own displacement
    dx, dy = case.info["offset"]
    assert np.allclose(targets[0].evidence["offset_px"], [dx, dy], atol=3)
    # fused on its own: a region under 0.2 % of the image confirmed at full resolution stands alone
    fused = fuse_results([result], shape=case.mask.shape)
    assert fused.regions and case.mask[fused.mask].mean() > 0.4


@pytest.mark.slow
def test_an_untouched_large_scan_is_not_marked() -> None:
    case = make_authentic(2000, **SCAN)
    result = copy_move(case.image, analysis_pixels=BOUND)
    assert result.params["full_resolution"] is True and "full_resolution_windows" in result.details
    assert result.regions == [] and not result.mask.any() and result.score < 0.5


def test_the_tier_does_not_run_within_twice_the_bounded_size_per_side(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> AnalysisResult:
        raise AssertionError("the full-resolution tier ran on an image within the bounded size")

    monkeypatch.setattr(clone, "full_resolution_tier", refuse)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (240, 320), dtype=np.uint8)
    image[20:80, 200:280] = image[140:200, 20:100]
    result = copy_move(image, analysis_pixels=240 * 320)  # exactly the bounded size: analysed as it is
    assert result.params["analysis_scale"] == 1.0 and "full_resolution" not in result.params
    assert len(result.regions) == 2
    # a copy bounded at more than half the scan's resolution per side (a "1 MP" scan of 1.0007 MP) is enough
    near = copy_move(image, analysis_pixels=200 * 270)
    assert 0.5 < near.params["analysis_scale"] < 1.0 and "full_resolution" not in near.params


def test_matched_pairs_keeps_near_copies_and_drops_ambiguous_ones() -> None:
    rng = np.random.default_rng(3)
    count = 4000
    descriptors = rng.standard_normal((count, 64)).astype(np.float32)
    points = rng.uniform(0, 3000, (count, 2)).astype(np.float32)
    # 40 copies (descriptor plus a little noise), and one descriptor repeated three times (a repeated pattern)
    copies = np.arange(40)
    descriptors[count - 40:] = descriptors[copies] + 0.15 * rng.standard_normal((40, 64)).astype(np.float32)
    descriptors[100:103] = descriptors[100] + 0.05 * rng.standard_normal((3, 64)).astype(np.float32)
    descriptors -= descriptors.mean(axis=1, keepdims=True)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    first, second = matched_pairs(points, descriptors, tables=8, bits=12, min_correlation=0.8, ratio=0.6,
                                  min_distance=0.0)
    found = {(int(a), int(b)) for a, b in zip(first, second, strict=True)}
    expected = {(int(i), int(count - 40 + i)) for i in copies}
    assert len(found & expected) >= 36  # hashing finds nearly all of them
    assert found <= expected  # nothing else: the repeated descriptor has two equal partners and is dropped


def test_keypoints_repeat_on_a_copied_patch() -> None:
    rng = np.random.default_rng(5)
    gray = np.clip(0.5 + 0.08 * rng.standard_normal((600, 800)), 0, 1).astype(np.float32)
    gray[300:400, 500:620] = gray[100:200, 100:220]  # moved by (400, 200)
    points, descriptors = grain_keypoints(gray, per_megapixel=20_000, band=256)
    assert np.allclose(np.linalg.norm(descriptors, axis=1), 1, atol=1e-4)
    first, second = matched_pairs(points, descriptors, tables=8, bits=16, min_correlation=0.8, ratio=0.6,
                                  min_distance=48)
    moves = np.abs(points[second] - points[first])
    assert len(first) >= 10 and np.all(np.isclose(moves, [400, 200]).all(axis=1))


def test_overlapping_windows_are_never_set_side_by_side() -> None:
    image = np.arange(400 * 500, dtype=np.int64).reshape(400, 500)
    overlapping = WindowPair((0, 0, 200, 200), (150, 150, 350, 350), inliers=8)
    composite, placements = _composite(image, overlapping, 60_000)
    assert len(placements) == 1 and composite.size <= 60_000
    assert np.unique(composite).size == composite.size  # no pixel of the scan appears twice
    apart = WindowPair((0, 0, 100, 100), (300, 300, 400, 400), inliers=8)
    composite, placements = _composite(image, apart, 30_000)
    assert composite.shape == (100, 200) and np.unique(composite).size == composite.size
