"""Whole jobs on files: load, analyse, write every artifact. The CLI, batch runs and the API workers call these.

Each task writes into its output folder with atomic file writes and writes ``report.json`` last, so the
presence of ``report.json`` means the item is complete; a stale ``report.json`` is removed before any other
file is touched, together with the outputs of an earlier run that this run will not rewrite, so a folder never
mixes two runs. Inputs are only read, and a task refuses an output folder where it would overwrite an input.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retouch.errors import ImageTooLargeError, InputError, NotSamePhotographError
from retouch.io import (
    MAX_PIXELS_VARIABLE,
    ImageHeader,
    LoadedImage,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    encode_png,
    heatmap_to_uint8,
    load_image,
    probe_image,
)
from retouch.io.folders import prepared_folder
from retouch.report import build_report, flicker_gif, overlay, render_html
from retouch.result import AnalysisResult
from retouch.run.budget import concurrent_detectors, require_within_budget
from retouch.run.checks import require_analysable
from retouch.run.pipeline import analyze_image, compare_images, resolve_detectors

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"

ANALYZE_ARTIFACTS = {
    "suspect_mask.png": "fused decision: 255 where at least one detector flagged the pixel (input size)",
    "suspect_heatmap.png": "fused heatmap: per-pixel maximum of the detectors' maps, 0..255 (input size)",
    "overlay.png": "the image with the fused heatmap tinted and suspect regions boxed",
}
REPORT_ARTIFACTS = {
    REPORT_HTML: "this report for people (self-contained)",
    REPORT_JSON: "this report for programs",
}
COMPARE_ARTIFACTS = {
    "changes_mask.png": "255 where the content differs (questioned image's size and frame)",
    "changes_heatmap.png": "change strength 0..255 (questioned image's size and frame)",
    "aligned_reference.png": "the reference warped into the questioned image's frame",
    "overlay.png": "the questioned image with changes tinted and regions boxed by kind",
    "flicker.gif": "animation alternating the aligned reference and the questioned image",
}


@dataclass
class TaskOutcome:
    """What a finished task produced (also the row a batch or the API records)."""

    command: str
    out_dir: str
    score: float
    region_count: int
    artifacts: list[str]
    inputs: list[dict[str, Any]]
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _retouch_output_names() -> set[str]:
    """Every file name an analyze or compare run can write into its output folder."""
    from retouch.detect import detector_names

    detector_maps = {f"{name}{suffix}.png" for name in detector_names() for suffix in ("", "_mask")}
    return detector_maps | set(ANALYZE_ARTIFACTS) | set(COMPARE_ARTIFACTS) | {REPORT_HTML, REPORT_JSON}


def _writing(out_dir: str | os.PathLike[str], inputs: Sequence[LoadedImage], names: Sequence[str]
             ) -> AbstractContextManager[Path]:
    """The report folder ``out_dir`` prepared for this run's files ``names``, report.json written last
    (:func:`retouch.io.folders.prepared_folder`): a failed write leaves none of them."""
    return prepared_folder(out_dir, list(names), last=REPORT_JSON, owned=_retouch_output_names(),
                           inputs=[image.path for image in inputs if image.path])


# OpenCV encodes PNG outside the GIL: two pictures at once on two cores, while the page is rendered
ENCODING_THREADS = 2
# each file is fsynced before it is renamed into place; fsyncs waiting together are committed together by the
# file system's journal (17 files of 200 kB on the development machine: 27-140 ms one after the other, 4-6 ms
# eight at once)
SYNCING_THREADS = 8


@contextmanager
def _file_writer(folder: Path) -> Iterator[Callable[[str, Callable[[], bytes]], None]]:
    """``write(name, make)`` queues ``folder/name`` with the bytes of ``make()``, made on a small thread pool and
    written (atomically, fsynced) on another, so that one file's fsync never holds up the next one's encoding.
    Leaving the block waits for every file and raises the first failure; after a failure no queued file is
    begun (the other threads may be finishing their own), and ``report.json``, written after the block, is not."""
    writes: list[Future[Path | None]] = []
    failed = threading.Event()

    def stored(name: str, data: bytes) -> Path | None:
        if failed.is_set():
            return None
        try:
            return atomic_write_bytes(folder / name, data)
        except BaseException:
            failed.set()
            raise

    def made(name: str, make: Callable[[], bytes]) -> None:
        if failed.is_set():
            return
        try:
            data = make()
        except BaseException:
            failed.set()
            raise
        writes.append(syncing.submit(stored, name, data))

    with ThreadPoolExecutor(SYNCING_THREADS, thread_name_prefix="retouch-sync") as syncing, \
            ThreadPoolExecutor(ENCODING_THREADS, thread_name_prefix="retouch-write") as encoding:
        makes: list[Future[None]] = []

        def write(name: str, make: Callable[[], bytes]) -> None:
            makes.append(encoding.submit(made, name, make))

        try:
            yield write
        except BaseException:  # the page failed: the queued files are not begun either
            failed.set()
            raise
        for future in makes:
            future.result()
        for future in writes:
            future.result()


def _write_report(folder: Path, report: dict[str, Any], page: str | None, write_started: float) -> None:
    """The two reports, ``report.json`` last: its presence says every file of the folder is written (``page``
    None: ``report.html`` was written with the other files)."""
    if page is not None:
        atomic_write_text(folder / REPORT_HTML, page)
    report["timings_s"]["write"] = round(time.perf_counter() - write_started, 4)
    atomic_write_json(folder / REPORT_JSON, report)


def _outcome(command: str, folder: Path, result: AnalysisResult, report: dict[str, Any], seconds: float,
             params: dict[str, Any]) -> TaskOutcome:
    return TaskOutcome(command=command, out_dir=str(folder), score=result.score, region_count=len(result.regions),
                       artifacts=list(report["artifacts"]), inputs=report["inputs"], seconds=round(seconds, 4),
                       params=params, summary=result.summary)


def _input_record(image: LoadedImage, role: str) -> dict[str, Any]:
    record = image.describe()
    record["role"] = role
    return record


def analyze_loaded(
    image: LoadedImage,
    out_dir: str | os.PathLike[str],
    *,
    detectors: Sequence[str] | str | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    load_seconds: float = 0.0,
    threads: int = 1,
) -> TaskOutcome:
    """Run ``retouch analyze`` on an already loaded image and write its artifacts into ``out_dir``
    (``threads``: detectors run at once, see :func:`retouch.run.pipeline.analyze_image`)."""
    require_analysable(image)
    started = time.perf_counter()
    run = analyze_image(image.pixels, jpeg_quantization=image.jpeg_quantization, detectors=detectors,
                        detector_options=options, orientation=image.exif_orientation, file_data=image.data,
                        threads=threads)
    analyse_seconds = time.perf_counter() - started
    artifacts = {f"{r.method}.png": f"{r.method} heatmap, 0..255 (input size)" for r in run.results}
    artifacts.update({f"{r.method}_mask.png": f"{r.method}'s own decision: 255 where it flagged the pixel (input size)"
                      for r in run.results if r.skipped is None})
    artifacts.update(ANALYZE_ARTIFACTS)
    artifacts.update(REPORT_ARTIFACTS)
    with _writing(out_dir, [image], artifacts) as folder:
        write_started = time.perf_counter()
        fused = run.fused
        with _file_writer(folder) as write:
            for result in run.results:
                write(f"{result.method}.png", lambda heatmap=result.heatmap: encode_png(heatmap_to_uint8(heatmap)))
                if result.skipped is None:  # each method's decision, so its finding can be checked against a truth
                    write(f"{result.method}_mask.png", lambda mask=result.mask: encode_png(mask))
            write("suspect_mask.png", lambda: encode_png(fused.mask))
            write("suspect_heatmap.png", lambda: encode_png(heatmap_to_uint8(fused.heatmap)))
            write("overlay.png", lambda: encode_png(overlay(image.pixels, fused.heatmap, fused.mask,
                                                            fused.regions)))
            timings = {"load": load_seconds, **run.timings, "analysis_total": analyse_seconds}
            report = build_report(
                command="analyze",
                inputs=[_input_record(image, "image")],
                result=fused,
                analyses=run.results,
                parameters=run.params,
                timings=timings,
                artifacts=artifacts,
            )
            layers = {r.method: r.heatmap for r in run.results if r.skipped is None}
            layers = {"suspect": fused.heatmap, **layers}
            pictures = {r.method: r.images for r in run.results if r.images}
            # the pixels as loaded: the page shrinks them before anything else (a full-size RGB copy of a gray
            # scan would cost three bytes a pixel for a 1600 px preview); the map is shown over the photograph
            # from the start, found or not: a reader sees where it is bright
            page = render_html(report, photo=image.pixels, layers=layers, default_layer="suspect",
                               pictures=pictures)
            write(REPORT_HTML, lambda: page.encode("utf-8"))
        _write_report(folder, report, None, write_started)
    return _outcome("analyze", folder, fused, report, load_seconds + time.perf_counter() - started, run.params)


def _header(path: str | os.PathLike[str], max_pixels: int | None, max_pixels_name: str) -> ImageHeader | None:
    """The image's header, for the memory budget; None when it cannot be read (the loader then says why, in its
    own words, naming the file). Beyond the pixel limit it is refused here already."""
    try:
        return probe_image(path, max_pixels=max_pixels, max_pixels_name=max_pixels_name)
    except ImageTooLargeError:
        raise
    except InputError:
        return None


def analyze_file(
    image_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    detectors: Sequence[str] | str | None = None,
    max_pixels: int | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    max_pixels_name: str = MAX_PIXELS_VARIABLE,
    max_memory: int | None = None,
    threads: int = 1,
) -> TaskOutcome:
    """Load ``image_path``, run the detectors and fusion, write ``report.json``, ``report.html``, one
    ``<detector>.png`` per detector, ``suspect_mask.png``, ``suspect_heatmap.png`` and ``overlay.png``.

    The image is refused from its header, before it is decoded, when the analysis would need more memory than
    ``max_memory`` bytes (None: ``RETOUCH_MAX_MEMORY``, see :mod:`retouch.run.budget`). Up to ``threads``
    detectors run at once while the budget allows it (:func:`retouch.run.budget.concurrent_detectors`)."""
    # resolved (the detectors' modules imported) before the clock starts: "load" is the file's reading only
    names = resolve_detectors(detectors)
    started = time.perf_counter()
    header = _header(image_path, max_pixels, max_pixels_name)
    if header is not None:
        require_within_budget("analyze", header.width * header.height, detectors=names, name=str(image_path),
                              budget=max_memory)
    image = load_image(image_path, max_pixels=max_pixels, max_pixels_name=max_pixels_name)
    pixels = int(image.pixels.shape[0]) * int(image.pixels.shape[1])
    return analyze_loaded(image, out_dir, detectors=names, options=options,
                          load_seconds=time.perf_counter() - started,
                          threads=concurrent_detectors(threads, pixels, names, budget=max_memory))


def compare_loaded(
    reference: LoadedImage,
    questioned: LoadedImage,
    out_dir: str | os.PathLike[str],
    *,
    options: Mapping[str, Any] | None = None,
    load_seconds: float = 0.0,
) -> TaskOutcome:
    """Run ``retouch compare`` on loaded images and write its artifacts into ``out_dir``."""
    require_analysable(reference)
    require_analysable(questioned)
    started = time.perf_counter()
    try:
        comparison = compare_images(reference.pixels, questioned.pixels, **dict(options or {}))
    except NotSamePhotographError as error:
        # the registration knows why it failed, not which files it was given nor what a user can do about it
        reason = str(error).removeprefix("these images do not show the same photograph").lstrip(": ")
        because = f" ({reason})" if reason else ""
        names = f"{reference.path or reference.name} and {questioned.path or questioned.name}"
        raise NotSamePhotographError(
            f"{names}: these images do not show the same photograph{because}; check that both are scans of the "
            "same print. If one shows only a small part of the other (heavily cropped), crop the larger scan to "
            "about the same area and compare again") from None
    compare_seconds = time.perf_counter() - started
    artifacts = {**COMPARE_ARTIFACTS, **REPORT_ARTIFACTS}
    with _writing(out_dir, [reference, questioned], artifacts) as folder:
        write_started = time.perf_counter()
        result = comparison.result
        aligned = comparison.aligned_reference
        with _file_writer(folder) as write:
            write("changes_mask.png", lambda: encode_png(result.mask))
            write("changes_heatmap.png", lambda: encode_png(heatmap_to_uint8(result.heatmap)))
            write("aligned_reference.png", lambda: encode_png(aligned))
            write("overlay.png", lambda: encode_png(overlay(questioned.pixels, result.heatmap, result.mask,
                                                            result.regions)))
            write("flicker.gif", lambda: flicker_gif(aligned, questioned.pixels))
            # the page is rendered while the files above are encoded on the writer's threads
            timings = {"load": load_seconds, **result.details.get("timings_s", {}),
                       "compare_total": compare_seconds}
            registration = comparison.registration.to_dict()
            report = build_report(
                command="compare",
                inputs=[_input_record(reference, "reference"), _input_record(questioned, "questioned")],
                result=result,
                analyses=[],
                parameters=result.params,
                timings=timings,
                artifacts=artifacts,
                extra={
                    "registration": registration,
                    "transform": {
                        "maps": "reference pixel (x, y, 1) -> questioned pixel, homogeneous 3x3",
                        "matrix": np.asarray(comparison.transform, float).round(8).tolist(),
                    },
                    "compared_fraction": round(float(np.mean(comparison.valid_mask)), 6),
                },
            )
            page = render_html(report, photo=questioned.pixels, layers={"changes": result.heatmap},
                               pair=(aligned, questioned.pixels), default_layer="changes",
                               reference=reference.rgb8 if result.details.get("composite") else None)
            write(REPORT_HTML, lambda: page.encode("utf-8"))
        _write_report(folder, report, None, write_started)
    return _outcome("compare", folder, result, report, load_seconds + time.perf_counter() - started, result.params)


def compare_files(
    reference_path: str | os.PathLike[str],
    questioned_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    max_pixels: int | None = None,
    options: Mapping[str, Any] | None = None,
    max_pixels_name: str = MAX_PIXELS_VARIABLE,
    max_memory: int | None = None,
) -> TaskOutcome:
    """Load both scans, register and compare them, write ``report.json``, ``report.html``, ``changes_mask.png``,
    ``changes_heatmap.png``, ``aligned_reference.png``, ``overlay.png`` and ``flicker.gif``; refused from the
    headers when the comparison would need more memory than ``max_memory`` (as :func:`analyze_file`)."""
    started = time.perf_counter()
    headers = [_header(path, max_pixels, max_pixels_name) for path in (reference_path, questioned_path)]
    if None not in headers:
        require_within_budget("compare", sum(header.width * header.height for header in headers),
                              name=f"{reference_path} and {questioned_path}", budget=max_memory)
    reference = load_image(reference_path, max_pixels=max_pixels, max_pixels_name=max_pixels_name)
    questioned = load_image(questioned_path, max_pixels=max_pixels, max_pixels_name=max_pixels_name)
    return compare_loaded(reference, questioned, out_dir, options=options,
                          load_seconds=time.perf_counter() - started)
