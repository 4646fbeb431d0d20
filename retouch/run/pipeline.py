"""Run analyses on decoded images: the detectors plus fusion, or a paired comparison.

Pure orchestration (arrays in, results out, no files): the CLI, the API workers, batch runs and the benchmarks
all call these functions, so every front end reports the same numbers. :mod:`retouch.run.tasks` wraps them with
files: loading, and writing the report folder.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from retouch.errors import InputError
from retouch.fuse import fuse_results
from retouch.imaging import checked_image, content_box, display_box, to_stored
from retouch.registry import default_detectors, detector_names, get_detector
from retouch.registry import detectors as registered_detectors
from retouch.result import AnalysisResult

if TYPE_CHECKING:
    from retouch.compare import PairComparison


MIN_SIDE = 32  # px: the detectors' blocks and windows, and registration's features, need this much


@dataclass
class AnalyzeRun:
    """Results of ``retouch analyze`` on one image: one result per detector and their fusion."""

    results: list[AnalysisResult]
    fused: AnalysisResult
    timings: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


class DetectorChoiceError(InputError):
    """The detectors asked for are unknown, or the choice names none."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_detectors")


def resolve_detectors(names: Sequence[str] | str | None) -> list[str]:
    """Detector names to run: the defaults when ``names`` is empty or blank (as if not given), else the given
    ones (a comma-separated string or a sequence), validated.

    Raises :class:`DetectorChoiceError` naming the unknown detector, or saying that a non-blank choice such as
    ``","`` names none, with the available ones.
    """
    if names is None or (isinstance(names, str) and not names.strip()) or (not isinstance(names, str) and
                                                                             not names):
        return default_detectors()
    available = detector_names()  # a choice imports only the detectors it names
    chosen = [part.strip() for part in (names.split(",") if isinstance(names, str) else names)]
    chosen = [name for name in chosen if name]
    if not chosen:
        raise DetectorChoiceError(f"the detector choice {names!r} names no detector; name one or more of: "
                                  f"{', '.join(available)} (or leave it out for the defaults)")
    if chosen == ["all"]:
        return list(registered_detectors())
    unknown = [name for name in chosen if name not in available]
    if unknown:
        raise DetectorChoiceError(f"unknown detector {', '.join(unknown)}; available: {', '.join(available)}")
    for name in chosen:  # imported now, not inside the first image's timings
        get_detector(name)
    return list(dict.fromkeys(chosen))


def analyze_image(
    image: np.ndarray,
    *,
    jpeg_quantization: Mapping[int, Sequence[int]] | None = None,
    detectors: Sequence[str] | str | None = None,
    detector_options: Mapping[str, Mapping[str, Any]] | None = None,
    orientation: int = 1,
    file_data: bytes | None = None,
    threads: int = 1,
) -> AnalyzeRun:
    """Run the chosen detectors (default: every default detector) on ``image`` and fuse their decisions.

    The stages: the pixels are turned back as the file stores them (:func:`retouch.imaging.to_stored`); uniform
    margins are left out (:func:`retouch.imaging.content_box`); each detector runs on the picture inside them
    and its result is placed back on the whole image; the results are fused where the detectors worked, then
    everything is turned to display orientation.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray (H, W) or RGB (H, W, 3), display orientation.
    jpeg_quantization : mapping, optional
        The file's JPEG quantization tables (natural order, 64 entries each); ``None`` for non-JPEG inputs.
    detectors : sequence of str or comma-separated str, optional
        Registry names; ``None`` runs the default set.
    detector_options : mapping, optional
        Per-detector keyword options, e.g. ``{"ela": {"quality": 90}}``.
    orientation : int
        The file's EXIF orientation (1-8) by which ``image`` was turned for display. The detectors see the pixels
        as stored, on the file's own JPEG block grid (turning an image whose sides are not multiples of 8 moves
        that grid, which the JPEG evidence is measured on); results come back in display orientation.
    file_data : bytes, optional
        The file's bytes, for the detectors that read the file itself (``metadata``); without them those
        detectors return a skipped result.
    threads : int
        How many detectors run at once, each in its own thread (their heavy steps, OpenCV, numpy on whole arrays
        and the compiled kernels, release the GIL). 1 (the default) runs them one after another, as a batch or
        service worker should, since it already has a process per core; results are the same either way.

    Returns
    -------
    AnalyzeRun
        Each detector's result and their fusion, at the input's size and orientation, with the stages' timings
        and the parameters used (``params["analysed_area"]`` gives the picture inside the margins).

    Raises
    ------
    InputError
        ``image`` is not a gray or RGB image with pixels, or a quantization table does not hold 64 entries.
    DetectorChoiceError
        The detectors asked for are unknown, or the choice names none.

    Notes
    -----
    An image under ``MIN_SIDE`` pixels on a side gets a skipped result from every detector: their blocks and
    windows do not fit. Uniform margins (frames, padding, a scanner bed clipped to white) hold no evidence, but
    their straight borders and flat blocks would skew every detector's image-wide statistics.

    Examples
    --------
    >>> from retouch.samples import make_forgery
    >>> case = make_forgery(7, method="airbrush", size=320)
    >>> run = analyze_image(case.image, detectors="grain,inpaint")
    >>> [result.method for result in run.results], run.fused.heatmap.shape == case.image.shape[:2]
    (['grain', 'inpaint'], True)
    """
    image = checked_image(image)
    names = resolve_detectors(detectors)
    options = {name: dict((detector_options or {}).get(name, {})) for name in names}
    tables = _checked_tables(jpeg_quantization)
    display_shape = (int(image.shape[0]), int(image.shape[1]))
    orientation = orientation if orientation in range(1, 9) else 1
    image = to_stored(image, orientation)
    shape = (int(image.shape[0]), int(image.shape[1]))
    top, bottom, left, right = content_box(image)
    inside = (bottom - top, right - left)
    cropped = inside != shape and min(inside) >= MIN_SIDE
    picture = np.ascontiguousarray(image[top:bottom, left:right] if cropped else image)
    def detected(name: str) -> tuple[AnalysisResult, float | None]:
        started = time.perf_counter()
        if min(shape) < MIN_SIDE:
            return AnalysisResult.skipped_result(
                name, shape, f"the image is too small ({display_shape[1]}x{display_shape[0]}); detectors need "
                f"at least {MIN_SIDE} pixels on each side"), None
        result = _detected(name, picture, tables, options[name], file_data)
        return (result.placed_in(shape, top, left) if cropped else result), round(time.perf_counter() - started, 4)

    if threads > 1 and len(names) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(threads, len(names)), thread_name_prefix="retouch-detector") as pool:
            outcomes = list(pool.map(detected, names))
    else:
        outcomes = [detected(name) for name in names]
    results = [result for result, _ in outcomes]
    timings = {name: seconds for name, (_, seconds) in zip(names, outcomes) if seconds is not None}
    started = time.perf_counter()
    # fused where the detectors worked (its closing kernel is not symmetric under a quarter turn), then turned
    fused = fuse_results(results, shape=shape).oriented(orientation)
    results = [result.oriented(orientation) for result in results]
    area_box = display_box([left, top, inside[1], inside[0]] if cropped else [0, 0, shape[1], shape[0]], shape,
                           orientation)
    if cropped:
        note = (f"Uniform margins were left out: the picture analysed is the {area_box[2]}x{area_box[3]} px area "
                f"at ({area_box[0]}, {area_box[1]}).")
        fused = replace(fused, summary=f"{fused.summary} {note}".strip())
    timings["fusion"] = round(time.perf_counter() - started, 4)
    area = {"bbox": area_box, "uniform_margins_excluded": bool(cropped)}
    return AnalyzeRun(results=results, fused=fused, timings=timings,
                      params={"detectors": names, "detector_options": options, "analysed_area": area})


def _checked_tables(jpeg_quantization: Mapping[int, Sequence[int]] | None) -> dict[int, list[int]] | None:
    """The quantization tables as lists; refused, naming the table, unless each holds 64 entries (one per DCT
    coefficient, as in every JPEG file), which only a caller passing its own tables can get wrong."""
    if not jpeg_quantization:
        return None
    tables = {int(key): list(table) for key, table in jpeg_quantization.items()}
    for key, table in tables.items():
        if len(table) != 64:
            raise InputError(f"JPEG quantization table {key} has {len(table)} entries; a table holds 64 (pass the "
                             "file's tables as read, or None)")
    return tables


def _detected(name: str, picture: np.ndarray, tables: dict[int, list[int]] | None,
              options: Mapping[str, Any], file_data: bytes | None) -> AnalysisResult:
    """One detector's result on ``picture``, checked to be at the picture's size."""
    result = get_detector(name).run(picture, jpeg_quantization=tables, file_data=file_data, **options)
    if result.heatmap.shape != picture.shape[:2]:
        raise RuntimeError(f"detector {name} returned a {result.heatmap.shape} map for a {picture.shape[:2]} "
                           "image")
    return result


def compare_images(reference: np.ndarray, questioned: np.ndarray, **options: Any) -> PairComparison:
    """Register ``reference`` onto ``questioned`` and localise what differs
    (:func:`retouch.compare.compare_pair`)."""
    from retouch.compare import compare_pair

    return compare_pair(reference, questioned, **options)
