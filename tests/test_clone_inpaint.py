"""The inpainting detector on generated forgeries, and the PatchMatch field it shares with copy-move detection."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retouch.detect import get_detector
from retouch.detect.inpaint import inpainting_traces
from retouch.io import load_image_bytes
from retouch.metrics import f1_score
from retouch.samples import make_authentic, make_forgery
from tests.helpers import assert_offset_field


def test_inpaint_finds_a_diffusion_fill_and_names_the_cue() -> None:
    case = make_forgery(2, method="diffusion", size=768, area_fraction=0.04)
    result = get_detector("inpaint").run(load_image_bytes(case.file_bytes, name="d").pixels)
    assert f1_score(result.mask, case.mask) > 0.6
    assert any(r.evidence["cue"] == "diffusion" for r in result.regions)


def test_inpaint_quiet_on_untouched_scans() -> None:
    flagged = [get_detector("inpaint").run(load_image_bytes(make_authentic(seed, size=640).file_bytes,
                                                            name="a").pixels).mask.mean() for seed in (710, 711)]
    assert np.mean(flagged) < 0.01


@pytest.mark.parametrize(("seed", "method"), [(2, "diffusion"), (2, "airbrush"), (3, "airbrush")])
def test_inpaint_outlines_a_fill_decided_on_the_bounded_copy_at_full_resolution(seed: int, method: str) -> None:
    # a copy bounded to 0.2 MP of a 0.8 MP scan: 16-pixel blocks at full size, whose outline overshoots the fill
    case = make_forgery(seed, method=method, size=1024, area_fraction=0.01)
    coarse = inpainting_traces(case.image, analysis_pixels=200_000, full_resolution_outline=False)
    outlined = inpainting_traces(case.image, analysis_pixels=200_000)
    assert coarse.regions and all(r.evidence["outline"] == "analysis copy" for r in coarse.regions)
    assert outlined.regions and all(r.evidence["outline"] == "full resolution" for r in outlined.regions)
    assert f1_score(outlined.mask, case.mask) > max(0.75, f1_score(coarse.mask, case.mask) + 0.05)
    # the outline redraws the decided regions: the decision, its NFA and the score are the coarse pass's
    assert {r.evidence["nfa"] for r in outlined.regions} == {r.evidence["nfa"] for r in coarse.regions}
    assert outlined.score == coarse.score and outlined.details["smallest_nfa"] == coarse.details["smallest_nfa"]
    assert outlined.details["regions_outlined_at_full_resolution"] == len(coarse.regions)
    # every region lies inside the mask, which holds nothing else
    drawn = np.zeros_like(outlined.mask)
    for region in outlined.regions:
        x, y, w, h = region.bbox
        drawn[y:y + h, x:x + w] |= outlined.mask[y:y + h, x:x + w]
    assert (drawn == outlined.mask).all()


def test_patchmatch_returns_exact_distances_of_allowed_offsets() -> None:
    from retouch.detect._patchmatch import compiled_patchmatch as patchmatch

    rng = np.random.default_rng(5)
    # smooth random fields, like real patch features: near misses are close, so the search can home in
    features = cv2.GaussianBlur(rng.standard_normal((60, 80, 6)).astype(np.float32), (0, 0), 2.0)
    features[10:30, 50:70] = features[30:50, 10:30]  # a copy 40 px right, 20 px up: its twins are exact
    oy, ox, distance = patchmatch(features, min_offset=8, iterations=3, seed=1)
    assert_offset_field(features, oy, ox, distance, 8)
    copied = (slice(12, 28), slice(52, 68))
    assert (distance[copied] == 0).mean() > 0.9
    assert (oy[copied] == 20).mean() > 0.9 and (ox[copied] == -40).mean() > 0.9


def test_patchmatch_takes_a_strip_wider_than_opencvs_remap_limit() -> None:
    from retouch.detect._patchmatch import compiled_patchmatch as patchmatch

    # a 65000 x 32 strip scan keeps a side over 32767 pixels at analysis scale, where cv2.remap stops with an
    # assertion: retouch analyze ended with an internal error (exit 1) in the clone and inpaint detectors
    rng = np.random.default_rng(6)
    features = rng.standard_normal((4, 33000, 2)).astype(np.float32)
    oy, ox, distance = patchmatch(features, min_offset=8, iterations=1, seed=1)
    ys, xs = np.mgrid[0:4, 0:33000]
    ty, tx = ys + oy, xs + ox
    assert ((ty >= 0) & (ty < 4) & (tx >= 0) & (tx < 33000)).all()
    expected = ((features - features[ty, tx]) ** 2).sum(axis=2, dtype=np.float32)
    np.testing.assert_allclose(distance, expected, rtol=1e-6, atol=1e-6)
