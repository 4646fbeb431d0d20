"""Detection quality on generated archive-style forgeries with exact ground truth.

Runs every registered detector, their fusion, and ``compare`` over a generated set (seed fixed, size
configurable), and every detector over the untouched photographs the samples are made from, saved in six ways
(their false-positive area outside the generator's world), and writes Markdown tables to
``benchmarks/results/quality.md``, and two headline lines into README.md between the ``quality-table`` markers.

    python -m benchmarks.quality [--per-method 30] [--size 768] [--seed 7] [--workers 2] [--no-readme]

Conventions (also printed with the tables):
- Pixel metrics are per image against the ground-truth mask of changed pixels, then the median over images. For
  clone stamps the stamp's source (unchanged, the other side of the copy) is left out of the pixel scores.
  ``F1 own`` uses the detector's own decision (its mask at its own, fixed threshold); ``F1 best`` is the best F1
  over all thresholds of its heatmap on that image (an oracle, an upper bound); ``MCC`` is of the own decision;
  ``AUC`` is the pixel ROC AUC of the heatmap.
- ``image AUC``: ROC AUC of the image-level score, forged images of that manipulation (positives) against the
  untouched scans (negatives). The row ``all of the above`` pools every forged image of the table (each
  manipulation equally often) against the same untouched scans; its medians are over all those images.
- ``FP area``: mean fraction of the image marked by the own decision on untouched scans.
- Manipulations: removals by diffusion inpainting, exemplar inpainting, clone stamp, airbrush, and paste-ups,
  edited on the print before scanning ("print"); and the same done digitally on a JPEG scan that is saved again
  ("digital", where JPEG traces exist).
- Pairs: registration error is the RMS distance, in questioned pixels, between the recovered and the true
  transform over points of the overlap; F1 is computed over the compared overlap, for edits covering at least
  1 % of the image; ``FP area`` is the changed area reported on pairs with no edit.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from retouch.samples.sources import SOURCES

ROOT = Path(__file__).resolve().parents[1]
MANIPULATIONS = [("diffusion", "print"), ("exemplar", "print"), ("clone", "print"), ("airbrush", "print"),
                 ("pasteup", "print"), ("diffusion", "digital"), ("exemplar", "digital"), ("clone", "digital")]
PAIR_EDITS = ["diffusion", "clone", "exemplar", "airbrush", "added", "none"]
# Untouched photographs as they are, not generated archival scans: how each was saved (first and last JPEG
# quality; None = not compressed at that step)
PHOTO_SAVES = [("once, quality 75", None, 75), ("once, quality 90", None, 90), ("once, quality 95", None, 95),
               ("twice, 65 then 92", 65, 92), ("twice, 80 then 90", 80, 90), ("PNG, never compressed", None, None)]


def _single_case(task: tuple[str, str, int, int]) -> list[dict]:
    from retouch.detect import default_detectors
    from retouch.io import load_image_bytes
    from retouch.metrics import localisation_scores
    from retouch.run.pipeline import analyze_image
    from retouch.samples import make_authentic, make_forgery, stamp_source

    method, history, seed, size = task
    case = make_authentic(seed, size=size) if method == "none" else make_forgery(seed, method=method, size=size,
                                                                                 history=history)
    loaded = load_image_bytes(case.file_bytes, name=f"case-{seed}")
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors=default_detectors(),
                        orientation=loaded.exif_orientation)
    # a clone stamp's source is the copy's other side: unchanged, yet rightly marked by a copy-move detector, so
    # it is left out of every map's pixel scores (neither a hit nor a false alarm)
    scored = ~stamp_source(case) if method == "clone" else None
    rows = []
    for result in [*run.results, run.fused]:
        row = {"detector": result.method, "manipulation": f"{method}/{history}" if method != "none" else "none",
               "score": result.score, "seconds": run.timings.get(result.method, 0.0),
               "flagged": float(result.mask.mean()), "megapixels": case.mask.size / 1e6}
        if method != "none":
            row.update(localisation_scores(result.heatmap, result.mask, case.mask, valid=scored))
        rows.append(row)
    return rows


def _photo_case(task: tuple[str, str, int | None, int | None]) -> list[dict]:
    """An untouched photograph of the sample sources, saved as ``PHOTO_SAVES`` says, through ``analyze``."""
    from retouch.detect import default_detectors
    from retouch.io import load_image_bytes
    from retouch.run.pipeline import analyze_image
    from retouch.samples.archive import encode
    from retouch.samples.sources import load_source

    source, save, first, last = task
    pixels = load_source(source)
    if first is not None:
        pixels = encode(pixels, first)[0]
    loaded = load_image_bytes(encode(pixels, last)[1], name=f"{source}.jpg")
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors=default_detectors(),
                        orientation=loaded.exif_orientation)
    return [{"detector": result.method, "save": save, "source": source, "flagged": float(result.mask.mean())}
            for result in [*run.results, run.fused]]


def photo_table(rows: list[dict]) -> str:
    """Mean area marked on untouched photographs, per detector and way of saving; the worst image in brackets."""
    detectors = list(dict.fromkeys(r["detector"] for r in rows))
    saves = list(dict.fromkeys(r["save"] for r in rows))
    lines = ["| saved | n | " + " | ".join(detectors) + " | anything marked |",
             "|---|---|" + "---|" * (len(detectors) + 1)]
    for save in saves:
        cells = []
        for detector in detectors:
            flagged = [r["flagged"] for r in rows if r["save"] == save and r["detector"] == detector]
            cells.append(f"{100 * np.mean(flagged):.2f} ({100 * max(flagged):.1f})")
        count = len({r["source"] for r in rows if r["save"] == save})
        # the image-level false alarm: photographs where the fused decision marks any pixel at all
        marked = len({r["source"] for r in rows if r["save"] == save and r["detector"] == "fused"
                      and r["flagged"] > 0})
        lines.append(f"| {save} | {count} | " + " | ".join(cells) + f" | {marked} of {count} |")
    return "\n".join(lines)


def registration_error_px(reference_shape: tuple[int, int], questioned_shape: tuple[int, int], true: np.ndarray,
                          found: np.ndarray, *, step: int = 16) -> float:
    """RMS distance, in questioned pixels, between where the true and the found transform put the points of a
    ``step``-pixel grid over the reference, over the points the true transform puts inside the questioned image."""
    import cv2

    height, width = reference_shape
    ys, xs = np.mgrid[0:height:step, 0:width:step]
    points = np.float32(np.stack([xs.ravel(), ys.ravel()], 1)).reshape(-1, 1, 2)
    true_points = cv2.perspectiveTransform(points, np.asarray(true, np.float64)).reshape(-1, 2)
    found_points = cv2.perspectiveTransform(points, np.asarray(found, np.float64)).reshape(-1, 2)
    qh, qw = questioned_shape
    inside = ((true_points[:, 0] >= 0) & (true_points[:, 0] < qw) & (true_points[:, 1] >= 0)
              & (true_points[:, 1] < qh))
    return float(np.sqrt(np.mean(np.sum((true_points - found_points)[inside] ** 2, axis=1))))


def _pair_case(task: tuple[str, int, int]) -> dict:
    from retouch.compare import compare_pair
    from retouch.errors import NotSamePhotographError
    from retouch.metrics import localisation_scores
    from retouch.samples import make_pair

    edit, seed, size = task
    pair = make_pair(seed, size=size, edit=edit)
    row = {"edit": edit, "truth_fraction": float(pair.mask_questioned.mean())}
    try:
        comparison = compare_pair(pair.reference, pair.questioned)
    except NotSamePhotographError:
        row["refused"] = True
        return row
    row["registration_px"] = registration_error_px(pair.reference.shape[:2], pair.questioned.shape[:2],
                                                   pair.transform, comparison.transform)
    row["refused"] = False
    row["flagged"] = float(comparison.result.mask[comparison.valid_mask].mean())
    if edit != "none":
        row.update(localisation_scores(comparison.result.heatmap, comparison.result.mask, pair.mask_questioned,
                                       valid=comparison.valid_mask))
        edits = [r for r in comparison.result.regions if r.kind != "damage"]  # a speck is never the headline
        row["main_kind"] = max(edits, key=lambda r: r.area).kind if edits else ""
    return row


SCORE_KEYS = ("f1_fixed", "f1_best", "mcc", "pixel_auc")  # the per-image localisation scores, in table order


def finite_median(values: list[float]) -> float:
    """Median of the values that are not NaN (NaN when none is)."""
    finite = [v for v in values if v == v]
    return float(np.median(finite)) if finite else float("nan")


def single_tables(rows: list[dict]) -> str:
    from retouch.metrics import roc_auc

    detectors = list(dict.fromkeys(r["detector"] for r in rows))
    lines = []
    for detector in detectors:
        mine = [r for r in rows if r["detector"] == detector]
        negatives = [r for r in mine if r["manipulation"] == "none"]
        lines += [f"\n**{detector}**  (false-positive area on untouched scans: "
                  f"{100 * np.mean([r['flagged'] for r in negatives]):.2f} %, over {len(negatives)} scans; "
                  f"anything marked on {sum(r['flagged'] > 0 for r in negatives)} of them)\n",
                  "| manipulation | n | F1 own | F1 best | MCC | pixel AUC | image AUC |",
                  "|---|---|---|---|---|---|---|"]
        forged = [r for r in mine if r["manipulation"] != "none"]
        kinds = dict.fromkeys(r["manipulation"] for r in forged)
        groups = {kind: [r for r in forged if r["manipulation"] == kind] for kind in kinds}
        for name, chosen in [*groups.items(), ("all of the above", forged)]:
            scores = [r["score"] for r in chosen] + [r["score"] for r in negatives]
            labels = [1] * len(chosen) + [0] * len(negatives)
            medians = [finite_median([r[key] for r in chosen]) for key in SCORE_KEYS]
            lines.append(f"| {name} | {len(chosen)} | " + " | ".join(f"{m:.3f}" for m in medians)
                         + f" | {roc_auc(np.array(scores), np.array(labels)):.3f} |")
    return "\n".join(lines)


def pair_table(rows: list[dict]) -> str:
    lines = ["| edit | n | refused | registration px (median / max) | F1 own (edits >= 1 %) | F1 best | MCC | "
             "pixel AUC | flagged area | main region kind |", "|---|---|---|---|---|---|---|---|---|---|"]
    for edit in PAIR_EDITS:
        chosen = [r for r in rows if r["edit"] == edit]
        done = [r for r in chosen if not r["refused"]]
        big = [r for r in done if r["truth_fraction"] >= 0.01]
        kinds = {}
        for r in done:
            if r.get("main_kind"):
                kinds[r["main_kind"]] = kinds.get(r["main_kind"], 0) + 1
        kind_text = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])) or "-"
        errors = [r["registration_px"] for r in done]
        if edit == "none":
            lines.append(f"| none | {len(chosen)} | {len(chosen) - len(done)} | {finite_median(errors):.2f} / "
                         f"{max(errors, default=float('nan')):.2f} | - | - | - | - | "
                         f"{100 * np.mean([r['flagged'] for r in done]):.3f} % | - |")
            continue
        medians = [finite_median([r[key] for r in big]) for key in SCORE_KEYS]
        scores = " | ".join(f"{m:.3f}" for m in medians)
        lines.append(f"| {edit} | {len(chosen)} | {len(chosen) - len(done)} | {finite_median(errors):.2f} / "
                     f"{max(errors, default=float('nan')):.2f} | {scores} | "
                     f"{100 * np.mean([r['flagged'] for r in done]):.2f} % | {kind_text} |")
    return "\n".join(lines)


def headline_table(single_rows: list[dict], pair_rows: list[dict]) -> str:
    """The two lines README.md shows: ``compare`` and the fused ``analyze`` decision, forged against untouched.

    Forged: the median F1 of the analysis' own decision per kind of edit (pairs: edits covering at least 1 % of
    the image, as in :func:`pair_table`), as a range, and for ``analyze`` also over all forged scans; untouched:
    the mean area marked, and on how many untouched scans anything is marked.
    """
    edits = [edit for edit in PAIR_EDITS if edit != "none"]
    done = [r for r in pair_rows if not r["refused"]]
    by_edit = [finite_median([r["f1_fixed"] for r in done if r["edit"] == edit and r["truth_fraction"] >= 0.01])
               for edit in edits]
    pairs_each = len([r for r in pair_rows if r["edit"] == edits[0]])
    unedited = [r for r in done if r["edit"] == "none"]
    fused = [r for r in single_rows if r["detector"] == "fused"]
    forged = [r for r in fused if r["manipulation"] != "none"]
    untouched = [r for r in fused if r["manipulation"] == "none"]
    manipulations = list(dict.fromkeys(r["manipulation"] for r in forged))
    by_manipulation = [finite_median([r["f1_fixed"] for r in forged if r["manipulation"] == manipulation])
                       for manipulation in manipulations]
    scans_each = len([r for r in forged if r["manipulation"] == manipulations[0]])
    marked = sum(r["flagged"] > 0 for r in untouched)
    return "\n".join([
        "| analysis | forged: median F1 of its own decision | untouched: area marked |",
        "|---|---|---|",
        f"| `compare`, {len(edits)} kinds of edit, {pairs_each} pairs each | {min(by_edit):.3f} to "
        f"{max(by_edit):.3f} by kind | {100 * np.mean([r['flagged'] for r in unedited]):.3f} % over "
        f"{len(unedited)} pairs without an edit |",
        f"| `analyze` (fused), {len(manipulations)} manipulations, {scans_each} scans each | "
        f"{finite_median([r['f1_fixed'] for r in forged]):.3f} over all; {min(by_manipulation):.3f} to "
        f"{max(by_manipulation):.3f} by manipulation | {100 * np.mean([r['flagged'] for r in untouched]):.2f} % "
        f"over {len(untouched)} scans; something marked on {marked} |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-method", type=int, default=30, help="cases per manipulation (and untouched)")
    parser.add_argument("--size", type=int, default=768, help="longest side of generated prints")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-readme", action="store_true", help="do not update README.md")
    args = parser.parse_args()
    started = time.time()
    base = args.seed * 100_000
    single_tasks = [(m, h, base + i, args.size) for m, h in MANIPULATIONS for i in range(args.per_method)]
    single_tasks += [("none", "print", base + 50_000 + i, args.size) for i in range(2 * args.per_method)]
    pair_tasks = [(edit, base + 80_000 + i, args.size) for edit in PAIR_EDITS for i in range(args.per_method)]
    photo_tasks = [(source, save, first, last) for source in SOURCES for save, first, last in PHOTO_SAVES]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        single_rows = [row for rows in pool.map(_single_case, single_tasks, chunksize=2) for row in rows]
        pair_rows = list(pool.map(_pair_case, pair_tasks, chunksize=2))
        photo_rows = [row for rows in pool.map(_photo_case, photo_tasks, chunksize=2) for row in rows]
    elapsed = time.time() - started
    conventions = __doc__.split("Conventions (also printed with the tables):")[1].strip()
    body = (f"Generated set: seed {args.seed}, prints {args.size} px on the longest side, {args.per_method} cases "
            f"per manipulation, {2 * args.per_method} untouched scans, {len(pair_tasks)} pairs "
            f"({elapsed / 60:.1f} min on this machine).\n\n"
            f"Command: `python -m benchmarks.quality --per-method {args.per_method} --size {args.size} "
            f"--seed {args.seed}`\n\n### Paired differencing (`retouch compare`)\n\n{pair_table(pair_rows)}\n\n"
            f"### Single-image detectors (`retouch analyze`)\n{single_tables(single_rows)}\n\n"
            f"### Untouched photographs (not generated scans)\n\nPercent of the image marked by each detector's "
            f"own decision on the {len(SOURCES)} photographs the samples are made from ({', '.join(SOURCES)}; "
            f"digital photographs and scans of prints, untouched), saved in each way; mean over the photographs, "
            f"the worst in brackets. Their own history before they were shipped is unknown: scikit-image's grass "
            f"and gravel textures hold copied patches (in grass, a patch 162 px below another differs from it by a "
            f"median of 9 grey levels, as texture synthesis leaves), so clone's marks on them are copies the "
            f"pictures really hold, counted here all the same.\n\n"
            f"{photo_table(photo_rows)}\n\n"
            f"Conventions:\n\n{conventions}\n")
    # every image's figures, for questions the tables do not answer (not committed: bench-out is ignored)
    raw = ROOT / "bench-out" / "quality-rows.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"single": single_rows, "pairs": pair_rows, "photos": photo_rows}, default=float),
                   encoding="utf-8")
    out = ROOT / "benchmarks" / "results" / "quality.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Detection quality\n\n" + body, encoding="utf-8")
    print(body)
    if not args.no_readme:  # README.md shows the two headline lines; the tables are in quality.md
        readme = ROOT / "README.md"
        text = readme.read_text(encoding="utf-8")
        headline = (f"Generated set: seed {args.seed}, prints {args.size} px on the longest side "
                    f"(`python -m benchmarks.quality --per-method {args.per_method} --size {args.size} --seed "
                    f"{args.seed}`).\n\n{headline_table(single_rows, pair_rows)}")
        replaced = re.sub(r"(<!-- quality-table:start -->\n).*?(\n<!-- quality-table:end -->)",
                          lambda m: m.group(1) + headline + m.group(2), text, flags=re.S)
        readme.write_text(replaced, encoding="utf-8")


if __name__ == "__main__":
    main()
