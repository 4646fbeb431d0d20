"""Robustness of the ``clone`` (copy-move) detector to the transformations it promises to tolerate.

The promise: "Tolerant to film grain, mild blur and JPEG at quality >= 80, and to rotation and scaling of the
copied region." Clone stamps are made on the print before scanning (``history="print"``), then scanned. One axis is
varied at a time from a baseline (stamp turned 0 degrees, scale 1; scan blur 0.6, JPEG quality 90, every other
``ScanStyle`` field at its default): the stamp's rotation, the stamp's scale, the scan's JPEG quality, the
scanner's blur, and a stamp flipped left to right (at a few angles and scales). Every setting uses the same seeds,
so the photograph, print, figure removed and scan noise are the same across a table and only the varied quantity
changes (the stamp's source position is drawn anew for each geometry, to keep the turned or rescaled block inside
the picture). The detector runs as ``retouch analyze --detectors clone`` does (file bytes decoded by the loader,
then ``analyze_image``).

    python -m benchmarks.clone_robustness [--per-setting 10] [--authentic 40] [--size 768] [--seed 9] [--workers 1]
        [--axes angle,scale,jpeg,blur,mirror]

Conventions (also written with the tables):
- Per case, against the ground-truth mask of changed pixels (the stamped target), with the stamp's source left
  out of the scores (the detector marks both sides of a copy: the source is neither a hit nor a false alarm);
  then the median over cases.
  ``F1 own`` uses the detector's own decision (its mask at its fixed threshold); ``F1 best`` is the best F1 over
  all thresholds of its heatmap on that case (an oracle); ``AUC`` is the pixel ROC AUC of the heatmap.
- ``F1 own >= 0.5``: fraction of the cases whose own decision reaches F1 0.5.
- ``target marked``: median share of the stamped target covered by the decision; ``source marked``: median
  share of the stamp's source area covered (the detector marks both sides when it cannot tell which is the
  copy, which costs precision); ``missed``: cases with less than 10 % of the target marked.
- ``FP area`` (untouched scans, same baseline scan style): mean fraction of the image marked by the decision,
  and the number of scans with anything marked.
- Settings outside the promise (JPEG 70, blur above about 1) are shown for context.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.quality import finite_median

ROOT = Path(__file__).resolve().parents[1]
BASELINE = {"angle": 0.0, "scale": 1.0, "jpeg": 90, "blur": 0.6, "mirror": False}
AXES: dict[str, tuple[str, list]] = {
    "angle": ("Rotation of the stamp (degrees)", [0.0, 10.0, 25.0, 45.0, 90.0, 180.0]),
    "scale": ("Scale of the stamp", [0.6, 0.75, 0.9, 1.0, 1.1, 1.33, 1.7]),
    "jpeg": ("JPEG quality of the scan (None: lossless PNG)", [None, 95, 90, 85, 80, 70]),
    "blur": ("Scanner blur (Gaussian sigma, px)", [0.3, 0.6, 0.9, 1.2, 1.5]),
    # (angle, scale) of a stamp flipped left to right; the other fields at the baseline
    "mirror": ("Mirrored stamp (flipped left to right; angle degrees, scale)",
               [(0.0, 1.0), (10.0, 1.0), (45.0, 1.0), (180.0, 1.0), (0.0, 0.75), (0.0, 1.33)]),
}


def _setting_key(setting: dict) -> tuple:
    return (setting["angle"], setting["scale"], setting["jpeg"], setting["blur"], setting["mirror"])


def _at(axis: str, value) -> dict:
    """The setting that varies ``axis`` to ``value`` from the baseline (a mirror value is (angle, scale))."""
    if axis == "mirror":
        return {**BASELINE, "angle": value[0], "scale": value[1], "mirror": True}
    return {**BASELINE, axis: value}


def _case(task: tuple[dict | None, int, int]) -> dict:
    from retouch.io import load_image_bytes
    from retouch.metrics import localisation_scores
    from retouch.run.pipeline import analyze_image
    from retouch.samples import ScanStyle, make_authentic, make_forgery, stamp_source

    setting, seed, size = task
    base = setting or BASELINE
    style = ScanStyle(blur=base["blur"], jpeg_quality=base["jpeg"])
    if setting is None:
        case = make_authentic(seed, size=size, scan_style=style)
    else:
        case = make_forgery(seed, method="clone", size=size, history="print", scan_style=style,
                            stamp=(setting["angle"], setting["scale"], setting["mirror"]))
    loaded = load_image_bytes(case.file_bytes, name=f"case-{seed}")
    started = time.perf_counter()
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors=["clone"])
    seconds = time.perf_counter() - started
    result = run.results[0]
    row = {"setting": None if setting is None else _setting_key(setting), "seed": seed, "seconds": seconds,
           "flagged": float(result.mask.mean())}
    if setting is None:
        return row
    # the stamp's source is the copy's other side: marking it is neither right nor wrong (left out of the scores)
    source = stamp_source(case)
    row.update(localisation_scores(result.heatmap, result.mask, case.mask, valid=~source))
    row["target_marked"] = float(result.mask[case.mask].mean())
    row["source_marked"] = float(result.mask[source].mean()) if source.any() else float("nan")
    row["stamp_inside"] = bool(case.info.get("stamp_inside", True))
    row["calls"] = [r.evidence.get("target_call", "") for r in result.regions if r.kind == "clone-target"]
    return row


def axis_table(axis: str, rows_by_key: dict[tuple, list[dict]]) -> str:
    title, values = AXES[axis]
    lines = [f"**{title}**\n", "| setting | n | F1 own | F1 best | pixel AUC | F1 own >= 0.5 | target marked | "
             "source marked | missed | target call (interp./seam/undecided) | s per case |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for value in values:
        setting = _at(axis, value)
        rows = rows_by_key[_setting_key(setting)]
        if axis == "mirror":
            label = f"{value[0]:g} deg, x{value[1]:g}"
        else:
            label = "lossless" if value is None else f"{value:g}"
        if setting == BASELINE:
            label += " (baseline)"
        calls = [c for r in rows for c in r["calls"]]
        call_text = "/".join(str(calls.count(c)) for c in ("interpolation", "seam", "undecided"))
        lines.append(
            f"| {label} | {len(rows)} | {finite_median([r['f1_fixed'] for r in rows]):.3f} | "
            f"{finite_median([r['f1_best'] for r in rows]):.3f} | {finite_median([r['pixel_auc'] for r in rows]):.3f} | "
            f"{np.mean([r['f1_fixed'] >= 0.5 for r in rows]):.2f} | "
            f"{finite_median([r['target_marked'] for r in rows]):.2f} | "
            f"{finite_median([r['source_marked'] for r in rows]):.2f} | "
            f"{sum(r['target_marked'] < 0.1 for r in rows)}/{len(rows)} | {call_text} | "
            f"{np.mean([r['seconds'] for r in rows]):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-setting", type=int, default=10, help="clone cases per setting")
    parser.add_argument("--authentic", type=int, default=40, help="untouched scans for the false-positive row")
    parser.add_argument("--size", type=int, default=768, help="longest side of generated prints")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--axes", default=",".join(AXES),
                        help="comma-separated axes to run (the untouched scans are always run)")
    args = parser.parse_args()
    axes = [axis for axis in args.axes.split(",") if axis]
    unknown = sorted(set(axes) - set(AXES))
    if unknown:
        parser.error(f"unknown axes {unknown}; choose from {', '.join(AXES)}")
    started = time.time()
    base = args.seed * 100_000
    settings: dict[tuple, dict] = {}
    for axis in axes:
        for value in AXES[axis][1]:
            setting = _at(axis, value)
            settings.setdefault(_setting_key(setting), setting)  # the baseline is run once, shown in every table
    tasks: list[tuple[dict | None, int, int]] = [(setting, base + i, args.size) for setting in settings.values()
                                                 for i in range(args.per_setting)]
    tasks += [(None, base + 50_000 + i, args.size) for i in range(args.authentic)]
    if args.workers > 1:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            rows = list(pool.map(_case, tasks, chunksize=2))
    else:
        rows = [_case(task) for task in tasks]
    elapsed = time.time() - started
    rows_by_key: dict[tuple, list[dict]] = {key: [] for key in settings}
    for row in rows:
        if row["setting"] is not None:
            rows_by_key[row["setting"]].append(row)
    negatives = [r for r in rows if r["setting"] is None]
    outside = sum(not r["stamp_inside"] for r in rows if r["setting"] is not None)
    conventions = __doc__.split("Conventions (also written with the tables):")[1].strip()
    tables = "\n\n".join(axis_table(axis, rows_by_key) for axis in axes)
    fp_text = (f"{100 * np.mean([r['flagged'] for r in negatives]):.3f} % of the image on average, "
               f"{sum(r['flagged'] > 0 for r in negatives)} of {len(negatives)} scans with anything marked, "
               f"largest {100 * max((r['flagged'] for r in negatives), default=0.0):.2f} %")
    body = (f"Generated set: seed {args.seed}, prints {args.size} px on the longest side, "
            f"{args.per_setting} clone cases per setting ({len(settings)} distinct settings), "
            f"{len(negatives)} untouched scans; "
            f"{elapsed / 60:.1f} min on this machine with {args.workers} worker(s).\n\n"
            f"Command: `python -m benchmarks.clone_robustness --per-setting {args.per_setting} "
            f"--authentic {args.authentic} --size {args.size} --seed {args.seed} --workers {args.workers}"
            f"{'' if axes == list(AXES) else ' --axes ' + ','.join(axes)}`\n\n"
            f"Baseline: stamp angle 0, scale 1; scan blur 0.6, JPEG quality 90, other `ScanStyle` fields at their "
            f"defaults. Stamps whose turned or rescaled source could not be placed inside the picture: "
            f"{outside}.\n\n"
            f"{tables}\n\n**Untouched scans** (baseline scan style): FP area {fp_text}.\n\n"
            f"Conventions:\n\n{conventions}\n")
    out = ROOT / "benchmarks" / "results" / "clone_robustness.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Clone detector robustness\n\n" + body, encoding="utf-8")
    print(body)


if __name__ == "__main__":
    main()
