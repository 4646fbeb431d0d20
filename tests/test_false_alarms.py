"""The false-alarm convention: every region says how improbable it is by chance, decisions keep only improbable
ones, untouched photographs are not marked; the newcomer's painted-out flag is a known miss of the default
detectors."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from retouch.fuse import fuse_results
from retouch.io import load_image_bytes
from retouch.run.pipeline import analyze_image
from retouch.registry import detectors
from retouch.result import AnalysisResult, Region
from retouch.samples import make_forgery

# what `retouch analyze` runs by default, but copy-move: clone has its own tests (test_clone_inpaint.py)
BLOCK_DETECTORS = ",".join(name for name, spec in detectors().items() if spec.default and name != "clone")


def _saved(pixels: np.ndarray, quality: int | None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG" if quality is None else "JPEG",
                                 **({} if quality is None else {"quality": quality}))
    return buffer.getvalue()


def _analyse(file_bytes: bytes, detectors: str = BLOCK_DETECTORS):
    loaded = load_image_bytes(file_bytes, name="photo")
    return analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors=detectors)


def _stars_painted_out(first_quality: int) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut saved as JPEG, the white stars of the flag (top left) painted out with cv2.inpaint."""
    first = np.asarray(Image.open(io.BytesIO(_saved(data.astronaut(), first_quality))).convert("RGB"))
    canton = np.zeros(first.shape[:2], bool)
    canton[:115, :62] = True  # the flag's blue field with its stars
    stars = cv2.dilate((canton & (first[..., 0] > 90)).astype(np.uint8), np.ones((5, 5), np.uint8))
    return cv2.inpaint(first, stars, 3, cv2.INPAINT_TELEA), stars > 0


def test_the_newcomers_painted_out_stars_are_found_with_an_improbable_region() -> None:
    """Issue 23's newcomer: the painted stars were never compressed at the first quality, so they do not settle
    there as the rest of the photograph does."""
    painted, stars = _stars_painted_out(75)
    run = _analyse(_saved(painted, 90))
    fused = run.fused
    assert fused.regions, fused.summary
    assert fused.score > 0.5
    found = max(fused.regions, key=lambda r: np.count_nonzero(stars[r.bbox[1]:r.bbox[1] + r.bbox[3],
                                                                    r.bbox[0]:r.bbox[0] + r.bbox[2]]))
    x, y, w, h = found.bbox
    # the region lies on the flag's blue field and holds a good part of the painted stars (a third or more)
    assert x + w / 2 < 62 and y + h / 2 < 115
    assert np.count_nonzero(stars[y:y + h, x:x + w]) > stars.sum() / 3
    assert found.evidence["nfa"] <= 0.01
    assert "untouched" in found.evidence["false_alarm_control"]
    # the untouched photograph saved the same way scores lower and has no region
    untouched = _analyse(_saved(np.asarray(Image.open(io.BytesIO(_saved(data.astronaut(), 75))).convert("RGB")),
                                90)).fused
    assert not untouched.regions and untouched.score < 0.5 < fused.score


@pytest.mark.parametrize(("name", "quality"), [("astronaut", 90), ("coffee", 85), ("chelsea", None),
                                               ("rocket", None)])
def test_untouched_photographs_from_scikit_image_are_not_marked(name: str, quality: int | None) -> None:
    run = _analyse(_saved(getattr(data, name)(), quality))
    assert not run.fused.mask.any(), run.fused.summary
    assert run.fused.score < 0.5
    text = run.fused.summary.lower()
    assert "authentic" not in text and "clean" not in text
    assert "expected false regions per untouched image" in text


def test_every_decided_block_region_states_its_nfa_under_the_threshold() -> None:
    case = make_forgery(6, method="diffusion", size=768, history="digital")  # found by ela (test_jpeg_ela)
    run = _analyse(case.file_bytes)
    regions = [(result, region) for result in run.results for region in result.regions]
    assert regions
    for result, region in regions:
        assert 0 <= region.evidence["nfa"] <= result.params["nfa_threshold"]
        assert region.evidence["false_alarm_control"]
        assert result.params["false_alarm_control"]


def _decided(method: str, mask: np.ndarray, nfa: float | None) -> AnalysisResult:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    regions = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        evidence = {} if nfa is None else {"nfa": nfa, "false_alarm_control": "stated"}
        regions.append(Region((x, y, w, h), area, 0.8, "noise-low", evidence))
    params = {} if nfa is None else {"nfa_threshold": 0.01}
    return AnalysisResult(method, mask.astype(np.float32) * 0.8, mask, regions, 0.8, params=params)


def test_fused_region_reports_the_smallest_nfa_of_its_supporters_and_the_expected_false_regions() -> None:
    mask = np.zeros((100, 100), bool)
    mask[20:50, 20:50] = True
    other = np.zeros_like(mask)
    other[30:60, 30:60] = True
    fused = fuse_results([_decided("grain", mask, 1e-3), _decided("ela", other, 2e-5),
                          _decided("clone", np.zeros_like(mask), None)], shape=mask.shape)
    assert len(fused.regions) == 1
    evidence = fused.regions[0].evidence
    assert evidence["nfa"] == pytest.approx(2e-5)
    assert {item["detector"]: item["nfa"] for item in evidence["support"]} == {"grain": 1e-3, "ela": 2e-5}
    assert "1 in 50,000" in evidence["false_alarm_control"]
    assert fused.params["expected_false_regions"] == pytest.approx(0.02)
    assert "at most 0.02" in fused.summary and "(clone does not)" in fused.summary


def test_options_are_typed_and_unknown_ones_are_refused() -> None:
    from retouch.detect.ela import ElaOptions, error_level_analysis

    image = data.camera()[:128, :128]
    result = error_level_analysis(image, options=ElaOptions(quality=80), nfa_threshold=0.001)
    assert result.params["quality"] == 80 and result.params["nfa_threshold"] == 0.001
    with pytest.raises(TypeError, match="unknown option false_alarms.*quality"):
        error_level_analysis(image, false_alarms=0.5)
