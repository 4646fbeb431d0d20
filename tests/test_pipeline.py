"""How a choice of detectors is read, the same for the CLI, batch runs and the API, and which arrays
``analyze_image`` takes."""

from __future__ import annotations

import numpy as np
import pytest

from retouch.errors import InputError
from retouch.io import load_image_bytes
from retouch.registry import detectors
from retouch.run.pipeline import DetectorChoiceError, analyze_image, resolve_detectors
from retouch.samples import make_forgery


def test_blank_choice_means_the_defaults_and_a_choice_naming_none_is_an_error() -> None:
    defaults = [name for name, spec in detectors().items() if spec.default]
    for blank in (None, "", "   ", [], ()):
        assert resolve_detectors(blank) == defaults
    for naming_none in (",", " , ,", [" ", ""]):
        with pytest.raises(DetectorChoiceError, match="names no detector"):
            resolve_detectors(naming_none)
    assert resolve_detectors(" ela, grain,ela ,") == ["ela", "grain"]
    assert resolve_detectors("all") == list(detectors())
    with pytest.raises(DetectorChoiceError, match="unknown detector nope; available: "):
        resolve_detectors("ela,nope")


def _gray_case() -> tuple[np.ndarray, dict[int, list[int]] | None]:
    loaded = load_image_bytes(make_forgery(3, method="clone", size=96).file_bytes, name="case.jpg")
    pixels = loaded.pixels if loaded.pixels.ndim == 2 else loaded.pixels[:, :, 0]
    return np.ascontiguousarray(pixels), loaded.jpeg_quantization


def test_one_and_two_channel_arrays_are_analysed_as_gray() -> None:
    # (H, W, 1) arrays (what many array libraries give for gray) and gray with alpha reached OpenCV's colour
    # conversion inside the clone detector and failed there with its "bad number of channels" error
    gray, tables = _gray_case()
    expected = analyze_image(gray, jpeg_quantization=tables)
    alpha = np.full_like(gray, 255)
    for variant in (gray[:, :, None], np.dstack([gray, alpha])):
        run = analyze_image(variant, jpeg_quantization=tables)
        for got, want in zip([*run.results, run.fused], [*expected.results, expected.fused], strict=True):
            assert got.method == want.method and got.score == want.score
            assert np.array_equal(got.heatmap, want.heatmap) and np.array_equal(got.mask, want.mask)


def test_arrays_that_hold_no_image_are_refused_with_a_clear_error() -> None:
    gray, _ = _gray_case()
    # each of these failed deep inside the analysis (numpy's reshape in the margin search, an index error, a rint
    # TypeError on object samples) or, a batch of one image and complex samples, quietly gave an answer ("no
    # suspect region", with no detector run for the batch) instead of saying what was wrong with the argument
    with pytest.raises(InputError, match="image: the image has no pixels"):
        analyze_image(gray[:0])
    with pytest.raises(InputError, match="image: the image has no pixels"):
        analyze_image(np.zeros((40, 0, 3), np.uint8))
    with pytest.raises(InputError, match=r"must be \(H, W\) gray or \(H, W, 3\) RGB, got shape \(\d+,\)"):
        analyze_image(gray.ravel())
    with pytest.raises(InputError, match="got shape"):
        analyze_image(gray[None, :, :, None].repeat(3, axis=3))
    for samples in (np.complex64, object):
        with pytest.raises(InputError, match="not grey levels"):
            analyze_image(gray.astype(samples))
    # integers without an agreed scale and floats outside [0, 1] were read as [0, 1] floats: a meaningless answer
    with pytest.raises(InputError, match="int32 have no agreed grey scale"):
        analyze_image(gray.astype(np.int32))
    with pytest.raises(InputError, match=r"float samples must be finite grey levels in \[0, 1\]"):
        analyze_image(gray.astype(np.float32))
    with pytest.raises(InputError, match="finite grey levels"):
        analyze_image(np.full((64, 64), np.nan, np.float32))


def test_a_quantization_table_without_64_entries_is_refused() -> None:
    # a 10-entry table failed in the JPEG detector's quality estimate with numpy's broadcast error
    gray, _ = _gray_case()
    with pytest.raises(InputError, match="JPEG quantization table 0 has 10 entries; a table holds 64"):
        analyze_image(gray, jpeg_quantization={0: [16] * 10})


def _choice_in_a_fresh_process(choice: str) -> tuple[str, list[str], str]:
    """``resolve_detectors(choice)`` in a new interpreter: what it returned, the detector modules it imported, and
    the registry's order of every detector afterwards."""
    import subprocess
    import sys

    script = ("import sys\n"
              "from retouch.run.pipeline import resolve_detectors\n"
              "from retouch.registry import detectors\n"
              f"print(resolve_detectors({choice!r}))\n"
              "print(sorted(m for m in sys.modules if m.startswith('retouch.detect.') and '._' not in m))\n"
              "print(list(detectors()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    chosen, imported, order = done.stdout.strip().splitlines()
    return chosen, imported, order


def test_a_choice_of_detectors_imports_only_theirs_and_the_order_stays_the_registry_s() -> None:
    # a run of the fast detectors must not pay for importing the slow ones (clone's libraries took about a
    # second on a loaded machine); whatever was imported first, every detector is listed in the same order
    chosen, imported, order = _choice_in_a_fresh_process("grain,ela")
    assert chosen == "['grain', 'ela']"
    assert imported == "['retouch.detect.ela', 'retouch.detect.grain']"
    assert order == str(list(detectors()))


def test_detectors_run_at_once_give_the_same_results_in_the_same_order() -> None:
    case = make_forgery(11, method="airbrush", size=320)
    names = ["grain", "ela", "inpaint", "jpeg"]
    one = analyze_image(case.image, detectors=names, threads=1)
    several = analyze_image(case.image, detectors=names, threads=3)
    assert [r.method for r in several.results] == names
    for alone, together in zip(one.results, several.results, strict=True):
        assert np.array_equal(alone.heatmap, together.heatmap) and np.array_equal(alone.mask, together.mask)
        assert [r.bbox for r in alone.regions] == [r.bbox for r in together.regions]
    assert np.array_equal(one.fused.mask, several.fused.mask) and one.fused.score == several.fused.score
    assert set(several.timings) == {*names, "fusion"}


def test_detectors_run_one_after_another_when_two_at_once_would_break_the_memory_budget() -> None:
    from retouch.run.budget import concurrent_detectors, estimated_bytes

    pixels = 24_000_000
    alone = estimated_bytes("analyze", pixels)
    assert concurrent_detectors(2, pixels, budget=4 * alone) == 2
    assert concurrent_detectors(2, pixels, budget=alone) == 1
    assert concurrent_detectors(1, pixels, budget=4 * alone) == 1


def test_detectors_registered_under_another_name_than_their_module_can_be_chosen_first() -> None:
    # dq lives in double_jpeg.py and residual in noise_residual.py: in a fresh process, before any detector module
    # is imported, `--detectors dq,residual` must be accepted (it was refused as unknown)
    chosen, imported, _ = _choice_in_a_fresh_process("dq,residual")
    assert chosen == "['dq', 'residual']"
    assert imported == "['retouch.detect.double_jpeg', 'retouch.detect.noise_residual']"
