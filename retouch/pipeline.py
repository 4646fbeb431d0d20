"""Run analyses on decoded images: the detectors plus fusion, or a paired comparison.

Pure orchestration (arrays in, results out, no files): the CLI, the API workers, batch runs and the benchmarks
all call these functions, so every front end reports the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from retouch.detect.fuse import fuse_results
from retouch.detect.registry import detectors as registered_detectors
from retouch.imaging import content_box
from retouch.result import AnalysisResult

if TYPE_CHECKING:
    from retouch.compare import PairComparison


MIN_SIDE = 32


@dataclass
class AnalyzeRun:
    """Results of ``retouch analyze`` on one image: one result per detector and their fusion."""

    results: list[AnalysisResult]
    fused: AnalysisResult
    timings: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def resolve_detectors(names: Sequence[str] | str | None) -> list[str]:
    """Detector names to run: the defaults when ``names`` is empty, else the given ones, validated.

    Raises ``ValueError`` naming the unknown detector and the available ones.
    """
    available = registered_detectors()
    if names is None or names == "" or names == []:
        return [name for name, spec in available.items() if spec.default]
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",") if part.strip()]
    if list(names) == ["all"]:
        return list(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"unknown detector {', '.join(unknown)}; available: {', '.join(available)}")
    return list(dict.fromkeys(names))


def analyze_image(
    image: np.ndarray,
    *,
    jpeg_quantization: Mapping[int, Sequence[int]] | None = None,
    detectors: Sequence[str] | str | None = None,
    detector_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> AnalyzeRun:
    """Run the chosen detectors (default: every default detector) on ``image`` and fuse their decisions.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray (H, W) or RGB (H, W, 3), display orientation.
    jpeg_quantization : mapping, optional
        The file's JPEG quantization tables (natural order); ``None`` for non-JPEG inputs.
    detectors : sequence of str or comma-separated str, optional
        Registry names; ``None`` runs the default set.
    detector_options : mapping, optional
        Per-detector keyword options, e.g. ``{"ela": {"quality": 90}}``.
    """
    names = resolve_detectors(detectors)
    available = registered_detectors()
    options = {name: dict((detector_options or {}).get(name, {})) for name in names}
    shape = (int(image.shape[0]), int(image.shape[1]))
    tables = {int(k): list(v) for k, v in jpeg_quantization.items()} if jpeg_quantization else None
    results: list[AnalysisResult] = []
    timings: dict[str, float] = {}
    # Uniform margins (frames, padding, a scanner bed clipped to white) hold no evidence, but their straight
    # borders and flat blocks skew every detector's image-wide statistics: a padded untouched scan had 11 % of
    # its area marked. The detectors see the picture inside them; their results are placed back on the whole.
    top, bottom, left, right = content_box(image)
    inside = (bottom - top, right - left)
    cropped = inside != shape and min(inside) >= MIN_SIDE
    picture = np.ascontiguousarray(image[top:bottom, left:right]) if cropped else image
    for name in names:
        started = time.perf_counter()
        if min(shape) < MIN_SIDE:
            results.append(AnalysisResult.skipped_result(
                name, shape, f"the image is too small ({shape[1]}x{shape[0]}); detectors need at least "
                f"{MIN_SIDE} pixels on each side"))
            continue
        result = available[name].run(picture, jpeg_quantization=tables, **options[name])
        if result.heatmap.shape != picture.shape[:2]:
            raise RuntimeError(f"detector {name} returned a {result.heatmap.shape} map for a "
                               f"{picture.shape[:2]} image")
        if cropped:
            result = result.placed_in(shape, top, left)
        timings[name] = round(time.perf_counter() - started, 4)
        results.append(result)
    started = time.perf_counter()
    fused = fuse_results(results, shape=shape)
    if cropped:
        note = (f"Uniform margins were left out: the picture analysed is the {inside[1]}x{inside[0]} px area at "
                f"({left}, {top}).")
        fused = replace(fused, summary=f"{fused.summary} {note}".strip())
    timings["fusion"] = round(time.perf_counter() - started, 4)
    area = {"bbox": [left, top, inside[1], inside[0]] if cropped else [0, 0, shape[1], shape[0]],
            "uniform_margins_excluded": bool(cropped)}
    return AnalyzeRun(results=results, fused=fused, timings=timings,
                      params={"detectors": names, "detector_options": options, "analysed_area": area})


def compare_images(reference: np.ndarray, questioned: np.ndarray, **options: Any) -> PairComparison:
    """Register ``reference`` onto ``questioned`` and localise what differs (see :func:`retouch.compare.compare_pair`)."""
    from retouch.compare import compare_pair

    return compare_pair(reference, questioned, **options)
