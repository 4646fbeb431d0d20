"""False-alarm calibration of the single-image detectors on untouched photographs made in code.

Every detector decides a-contrario: a region's number of false alarms (NFA) is ``tests * P(Z > peak)`` under a
null model of one block's score (``retouch.detect._blocks.null_tail``, a Gaussian widened by the detector's
``tail_margin``). This script checks that model where it can be checked: on untouched photographs (those that
scikit-image and matplotlib ship, each saved in the ways archives and the web save pictures: camera JPEG at
several qualities, saved twice, PNG, a resized web copy, a crop of a JPEG), the share of images whose smallest
NFA is at most ``x`` should be at most ``x``. For each detector it prints that share at x = 1, 0.1 and 0.01 for
the margin in use and the smallest margin that keeps the shares near what is expected. Each detector records, for
a few margins, the smallest NFA of a group it would decide there (``_blocks.CALIBRATION_MARGINS``), so one run
calibrates the decisions themselves, their extent rule included. ``clone`` decides by a test of its own (the
image's own rate of exact, exclusive cell matches), with no margin: its rows hold the smallest NFA of the
candidates it tested, and the table checks its shares at its own decision. At 0.01 the set is too small for more than a
check: about 1 image in 100 is expected there.

    python -m benchmarks.false_alarms [--workers 2] [--real bench-out/real/single.jsonl]

``--real`` adds the same figures for the unedited originals of a ``benchmarks.real`` run (whose rows record each
detector's ``details["null"]``), as a check on material the calibration did not see. ``--resaved FOLDER`` adds
them for those originals saved again (a central crop of at most 1024 px on their 8-pixel grid, saved at JPEG
quality 75, 90 or 95, or twice at 75 then 90): authentic photographs compressed twice, the null a double-JPEG
detector must hold; the pictures are made in memory from the folder and never kept. Results go to
``benchmarks/results/false_alarms.md``.
"""

from __future__ import annotations

import argparse
import functools
import math
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "false_alarms.md"
DETECTORS = ["ela", "grain", "inpaint", "jpeg", "grid", "residual", "dq", "settling", "clone"]
# detectors that decide by a test of their own rather than a block null with a tail margin: their row records the
# smallest NFA of any candidate they tested, the same at every margin
OWN_TEST = {"clone"}
# photographs only: scikit-image's microscopy (immunohistochemistry, retina, cell) and its page of text are not
# pictures of the kinds the tool claims to handle, and were left out of the calibration
EXTRA_PHOTOS = ["brick", "grass", "gravel", "moon"]
EXCLUDED = {"page", "immunohistochemistry", "retina", "cell"}
# (label, first JPEG quality or None, last JPEG quality or None, resize factor, crop offset in pixels)
SAVES = [("camera JPEG q75", None, 75, 1.0, 0), ("camera JPEG q90", None, 90, 1.0, 0),
         ("camera JPEG q95", None, 95, 1.0, 0), ("saved twice 70 then 90", 70, 90, 1.0, 0),
         ("saved twice 90 then 90", 90, 90, 1.0, 0), ("PNG", None, None, 1.0, 0),
         ("web copy: q90, resized 0.7, q85", 90, 85, 0.7, 0), ("crop of a q85 JPEG, saved q92", 85, 92, 1.0, 3),
         ("JPEG q85 saved as PNG", 85, None, 1.0, 0), ("crop of a q95 JPEG saved as PNG", 95, None, 1.0, 5)]
MARGINS = [1.0, 1.2, 1.4, 1.6, 1.8, 2.0]


@functools.cache
def _photos() -> dict[str, np.ndarray]:
    import warnings

    import skimage.data

    from retouch.samples.sources import SOURCES, load_source

    photos = {name: load_source(name) for name in SOURCES}
    for name in EXTRA_PHOTOS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                photos[name] = np.asarray(getattr(skimage.data, name)())
        except Exception:  # a picture that needs a download is left out
            continue
    return photos


def _saved(pixels: np.ndarray, first: int | None, last: int | None, factor: float, offset: int
           ) -> tuple[np.ndarray, dict | None]:
    import io

    from PIL import Image

    from retouch.io import load_image_bytes

    image = Image.fromarray(pixels if pixels.dtype == np.uint8 else (pixels / 257).astype(np.uint8))
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if first is not None:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=first)
        image = Image.open(io.BytesIO(buffer.getvalue()))
        image.load()
    if factor != 1.0:
        image = image.resize((max(32, round(image.width * factor)), max(32, round(image.height * factor))),
                             Image.LANCZOS)
    if offset:
        image = image.crop((offset, offset, image.width, image.height))
    buffer = io.BytesIO()
    if last is None:
        image.save(buffer, "PNG")
    else:
        image.save(buffer, "JPEG", quality=last)
    loaded = load_image_bytes(buffer.getvalue(), name="calibration")
    return loaded.pixels, loaded.jpeg_quantization


def _case(task: tuple[str, int, tuple[str, ...]]) -> list[dict]:
    from retouch.detect import detectors

    name, save, chosen = task
    if name.startswith("scan-"):  # an untouched generated archival scan, as the project's samples make them
        from retouch.io import load_image_bytes
        from retouch.samples import make_authentic

        loaded = load_image_bytes(make_authentic(int(name[5:]), size=768).file_bytes, name=name)
        pixels, tables, label = loaded.pixels, loaded.jpeg_quantization, "generated scan"
    else:
        label, first, last, factor, offset = SAVES[save]
        pixels, tables = _saved(_photos()[name], first, last, factor, offset)
    return [row for detector in chosen
            if (row := _null_row(detector, detectors()[detector].run(pixels, jpeg_quantization=tables), name,
                                 label))]


def _null_row(detector: str, result, photo: str, save: str) -> dict | None:
    """What calibration reads from one detector's result: its null record, or for a detector with a test of
    its own (``OWN_TEST``) the smallest NFA of its candidates, recorded alike at every margin."""
    if result.skipped is not None:
        return None
    if detector in OWN_TEST:
        null = {"tests": None, "peak_z": None,
                "group_nfa": {str(m): result.details.get("smallest_nfa") for m in MARGINS}}
    elif "null" in result.details:
        null = result.details["null"]
    else:
        return None
    return {"photo": photo, "save": save, "detector": detector, **null, "marked": float(result.mask.mean()),
            "tail_margin": result.params.get("tail_margin")}


# how the real originals are saved again for --resaved: (label, JPEG qualities in order)
RESAVES = [("saved again at 75", (75,)), ("saved again at 90", (90,)), ("saved again at 95", (95,)),
           ("saved again at 75, then 90", (75, 90))]
RESAVED_SETS = ["casia1", "noso", "psbattles"]


def _resaved_case(task: tuple[str, int, tuple[str, ...]]) -> list[dict]:
    """An unedited real original (``path``), cropped and saved again as ``RESAVES[save]`` says, judged by each
    chosen detector."""
    import io

    from PIL import Image

    from retouch.detect import detectors
    from retouch.io import load_image_bytes

    path, save, chosen = task
    label, qualities = RESAVES[save]
    with Image.open(path) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    height, width = pixels.shape[:2]
    top, left = max((height - 1024) // 2, 0) // 8 * 8, max((width - 1024) // 2, 0) // 8 * 8
    image = Image.fromarray(np.ascontiguousarray(pixels[top: top + 1024, left: left + 1024]))
    for quality in qualities:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        image = Image.open(io.BytesIO(buffer.getvalue()))
    loaded = load_image_bytes(buffer.getvalue(), name=Path(path).name)
    return [row for detector in chosen
            if (row := _null_row(detector, detectors()[detector].run(loaded.pixels,
                                                                     jpeg_quantization=loaded.jpeg_quantization),
                                 Path(path).name, label))]


def resaved_tasks(data: Path, chosen: tuple[str, ...]) -> list[tuple[str, int, tuple[str, ...]]]:
    """Every distinct unedited original of ``RESAVED_SETS`` in ``data``, in each way of ``RESAVES``."""
    from benchmarks.real import SETS, read_cases

    sets = [key for key in RESAVED_SETS if (data / SETS[key] / "manifest.json").exists()]
    originals = sorted({case.path for case in read_cases(data, sets) if case.kind == "original"})
    return [(path, save, chosen) for path in originals for save in range(len(RESAVES))]


def smallest_nfa(row: dict, margin: float) -> float:
    """The smallest NFA of a region the detector would decide at ``margin`` (its groups as recorded by the
    detector for each calibration margin; a margin between them takes the nearest recorded one). Rows of an
    earlier run without group records fall back on the peak block alone (a stricter count: no extent rule)."""
    recorded = row.get("group_nfa")
    if recorded is None:
        from retouch.detect._blocks import null_tail

        return float(row["tests"] * null_tail(row["peak_z"], margin))
    nearest = min(recorded, key=lambda m: abs(float(m) - margin))
    value = recorded[nearest]
    return math.inf if value is None else float(value)


def _default_margin(detector: str) -> float:
    """The detector's null width for digital photographs, from its options' defaults."""
    from retouch.detect.double_jpeg import DoubleJpegOptions
    from retouch.detect.ela import ElaOptions
    from retouch.detect.grain import GrainOptions
    from retouch.detect.grid import GridOptions
    from retouch.detect.inpaint import InpaintOptions
    from retouch.detect.jpeg import JpegOptions
    from retouch.detect.noise_residual import ResidualOptions
    from retouch.detect.settling import SettlingOptions

    options = {"ela": ElaOptions, "grain": GrainOptions, "inpaint": InpaintOptions, "jpeg": JpegOptions,
               "grid": GridOptions, "residual": ResidualOptions,
               "dq": DoubleJpegOptions, "settling": SettlingOptions}[detector]()
    return float(options.tail_margin)


def calibration_table(rows: list[dict], title: str) -> str:
    lines = [f"**{title}** ({len({(r['photo'], r['save']) for r in rows})} images)", "",
             "| detector | margin in use | share with smallest NFA <= 1 / 0.1 / 0.01 | smallest margin keeping "
             "the shares near 1 - 1/e, 0.1 and 0.01 | at that margin: <= 1 / 0.1 / 0.01 | images marked by the "
             "decision of the run that made the rows |", "|---|---|---|---|---|---|"]
    for detector in DETECTORS:
        chosen = [r for r in rows if r["detector"] == detector]
        if not chosen:
            continue
        in_use = MARGINS[0] if detector in OWN_TEST else _default_margin(detector)

        def shares(margin: float) -> list[float]:
            values = np.array([smallest_nfa(r, margin) for r in chosen])
            return [float(np.mean(values <= x)) for x in (1.0, 0.1, 0.01)]

        # P(at least one) <= 1 - 1/e at an expectation of 1; at most 0.1 and 0.02 where 0.1 and 0.01 are expected
        fitting = next((m for m in MARGINS if shares(m)[0] <= 0.63 and shares(m)[1] <= 0.1 and
                        shares(m)[2] <= 0.02), MARGINS[-1])
        fmt = lambda s: " / ".join(f"{100 * v:.0f} %" for v in s)  # noqa: E731
        if detector in OWN_TEST:  # no margin to fit: the test's own NFA, as the detector decides it
            lines.append(f"| {detector} | its own test | {fmt(shares(in_use))} | - | - | "
                         f"{sum(r['marked'] > 0 for r in chosen)} of {len(chosen)} |")
            continue
        lines.append(f"| {detector} | {in_use} | {fmt(shares(in_use))} | {fitting} | {fmt(shares(fitting))} | "
                     f"{sum(r['marked'] > 0 for r in chosen)} of {len(chosen)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scans", type=int, default=24, help="untouched generated scans to add")
    parser.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated detectors to check")
    parser.add_argument("--reuse", type=Path, default=None, help="render from the rows of an earlier run")
    parser.add_argument("--real", type=Path, default=None, help="rows of a benchmarks.real run (single.jsonl)")
    parser.add_argument("--resaved", type=Path, default=None,
                        help="the real material's folder: its unedited originals saved again (see RESAVES)")
    args = parser.parse_args()
    started = time.time()
    chosen = tuple(d for d in args.detectors.split(",") if d)
    if args.reuse:
        rows = [r for r in json.loads(args.reuse.read_text()) if r["detector"] in chosen
                and r["photo"] not in EXCLUDED]
    else:
        tasks = [(name, save, chosen) for name in _photos() for save in range(len(SAVES))]
        tasks += [(f"scan-{seed}", 0, chosen) for seed in range(900_000, 900_000 + args.scans)]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            rows = [row for part in pool.map(_case, tasks, chunksize=2) for row in part]
        (ROOT / "bench-out").mkdir(exist_ok=True)
        (ROOT / "bench-out" / f"false-alarm-rows-{'-'.join(chosen)}.json").write_text(json.dumps(rows))
    body = [calibration_table(rows, "Untouched photographs made in code (calibration)")]
    if args.real and args.real.exists():
        real_rows = []
        for line in args.real.read_text().splitlines():
            row = json.loads(line)
            if row["kind"] != "original":
                continue
            for detector, null in (row.get("detector_null") or {}).items():
                if detector in DETECTORS and null:
                    real_rows.append({"photo": row["case_id"], "save": row["dataset"], "detector": detector,
                                      **null,
                                      "marked": row["detector_marked"].get(detector, 0.0),
                                      "tail_margin": (row.get("detector_margin") or {}).get(detector),
                                      "group_nfa": null.get("group_nfa")})
        body.append(calibration_table(real_rows, f"Unedited originals of {args.real} (check, not calibration)"))
    if args.resaved:
        if not (args.resaved / "README.md").exists():
            raise SystemExit(f"{args.resaved}: no real material there (give the folder with its README.md)")
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            resaved_rows = [row for part in pool.map(_resaved_case, resaved_tasks(args.resaved, chosen), chunksize=2)
                            for row in part]
        (ROOT / "bench-out").mkdir(exist_ok=True)
        (ROOT / "bench-out" / f"false-alarm-resaved-{'-'.join(chosen)}.json").write_text(json.dumps(resaved_rows))
        body.append(calibration_table(resaved_rows, "Unedited real originals saved again (check, not calibration; "
                                      "only the pictures each detector judged)"))
    when = f"rendered from {args.reuse.name}" if args.reuse else f"{(time.time() - started) / 60:.1f} min"
    text = ("# False-alarm calibration of the single-image detectors\n\nWritten by "
            f"`python -m benchmarks.false_alarms` ({when}); the conventions are in its docstring. The share of "
            "images whose smallest NFA is at most x should be at most x; a decision is taken at NFA <= 0.01.\n\n"
            + "\n\n".join(body) + "\n")
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
