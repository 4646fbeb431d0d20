"""The copy-move detector alone on real, independently made material (``../shared/realdata``).

``benchmarks.real`` scores the fused decision of every detector; this one isolates ``clone``, so that its own
share of the fused figures is visible: on the copy-moves (NoSo, CoMoFoD, the copy-move rows of CASIA v1 and v2)
the F1 of its own decision and of the fused decision it alone would make, and on every unedited original (CASIA
v1, NoSo, CoMoFoD 001_O, PS-Battles sources) whether it marks anything. Nothing of the material is copied into
the repository: it is read from ``--data``.

    python -m benchmarks.clone_real [--data ../shared/realdata] [--sets noso,comofod,casia1,casia2,psbattles]
                                    [--workers 2] [--only ID,ID] [--out bench-out/clone-real] [--no-write]

Conventions: pixel metrics per image, against the published mask (NoSo and CoMoFoD mark source and copy; the
CASIA masks by Pham et al. mark the pasted copy only, so there marking both sides halves precision), summarised by
the median over images. ``own``: the detector's mask; ``fused``: the fused decision of a run with ``clone`` as
the only detector (the union after fusion's closing and minimum area, which is what ``benchmarks.real`` scores
of this detector); ``best``: best F1 over thresholds of its heatmap (an oracle); ``>0.5``: images with own F1
above 0.5 (the CoMoFoD convention). Originals: images with anything marked by the detector's own mask, the mean
marked area, and the smallest ``nfa`` among the regions it reported there. Results go to
``benchmarks/results/clone.md`` between the ``clone-real`` markers, and the raw rows to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.real import SETS, Case, chosen_sets, read_cases, read_mask

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "clone.md"


def _run_case(case: Case) -> dict:
    from retouch.io import load_image
    from retouch.metrics import best_f1, f1_score, pixel_auc
    from retouch.run.pipeline import analyze_image

    loaded = load_image(case.path, max_pixels=400_000_000)
    started = time.perf_counter()
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors=["clone"],
                        orientation=loaded.exif_orientation)
    seconds = time.perf_counter() - started
    result = run.results[0]
    nfas = [r.evidence.get("nfa") for r in result.regions if r.evidence.get("nfa") is not None]
    row = {"dataset": case.dataset, "case_id": case.case_id, "kind": case.kind, "seconds": round(seconds, 2),
           "marked": float(result.mask.mean()), "fused_marked": float(run.fused.mask.mean()),
           "regions": len(result.regions), "min_nfa": min(nfas) if nfas else None,
           "calls": [r.evidence.get("target_call") for r in result.regions if r.kind == "clone-target"]}
    if case.mask:
        truth = read_mask(case.mask, result.mask.shape)
        row.update(f1=f1_score(result.mask, truth), fused_f1=f1_score(run.fused.mask, truth),
                   best=best_f1(result.heatmap, truth), auc=pixel_auc(result.heatmap, truth),
                   truth_area=float(truth.mean()))
    return row


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def tables(rows: list[dict]) -> str:
    lines = ["| set | n | F1 own (median) | own F1 > 0.5 | F1 fused, clone only | pixel AUC | F1 best | "
             "marked (mean) |", "|---|---|---|---|---|---|---|---|"]
    forged = [r for r in rows if r["kind"] == "copy-move"]
    for dataset in sorted({r["dataset"] for r in forged}):
        chosen = [r for r in forged if r["dataset"] == dataset]
        lines.append(f"| {dataset} | {len(chosen)} | {_median([r['f1'] for r in chosen]):.2f} | "
                     f"{sum(r['f1'] > 0.5 for r in chosen)} of {len(chosen)} | "
                     f"{_median([r['fused_f1'] for r in chosen]):.2f} | {_median([r['auc'] for r in chosen]):.2f} | "
                     f"{_median([r['best'] for r in chosen]):.2f} | "
                     f"{100 * np.mean([r['marked'] for r in chosen]):.2f} % |")
    pooled = [r for r in forged if r["dataset"] in ("noso", "comofod")]
    if pooled:
        lines.append(f"| NoSo + CoMoFoD | {len(pooled)} | {_median([r['f1'] for r in pooled]):.2f} | "
                     f"{sum(r['f1'] > 0.5 for r in pooled)} of {len(pooled)} "
                     f"({100 * np.mean([r['f1'] > 0.5 for r in pooled]):.0f} %) | "
                     f"{_median([r['fused_f1'] for r in pooled]):.2f} | {_median([r['auc'] for r in pooled]):.2f} | "
                     f"{_median([r['best'] for r in pooled]):.2f} | "
                     f"{100 * np.mean([r['marked'] for r in pooled]):.2f} % |")
    lines += ["", "| originals | n | anything marked | mean marked area | marked images (area) |",
              "|---|---|---|---|---|"]
    originals = [r for r in rows if r["kind"] == "original"]
    for dataset in sorted({r["dataset"] for r in originals}):
        chosen = [r for r in originals if r["dataset"] == dataset]
        marked = [r for r in chosen if r["marked"] > 0]
        listed = ", ".join(f"{r['case_id'].removeprefix('original:')} ({100 * r['marked']:.2f} %)"
                           for r in marked) or "none"
        lines.append(f"| {dataset} | {len(chosen)} | {len(marked)} of {len(chosen)} | "
                     f"{100 * np.mean([r['marked'] for r in chosen]):.3f} % | {listed} |")
    if originals:
        marked = sum(r["marked"] > 0 for r in originals)
        lines.append(f"| all | {len(originals)} | {marked} of {len(originals)} | "
                     f"{100 * np.mean([r['marked'] for r in originals]):.3f} % | |")
    seconds = [r["seconds"] for r in rows]
    lines += ["", f"clone's time per image: median {_median(seconds):.2f} s, max {max(seconds):.2f} s "
              f"({len(rows)} images)."]
    return "\n".join(lines)


def per_image(rows: list[dict]) -> str:
    lines = ["| case | truth area | F1 own | F1 fused | F1 best | marked | target calls |", "|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in rows if r["kind"] == "copy-move"), key=lambda r: (r["dataset"], r["case_id"])):
        lines.append(f"| {r['dataset']}:{r['case_id']} | {100 * r['truth_area']:.2f} % | {r['f1']:.2f} | "
                     f"{r['fused_f1']:.2f} | {r['best']:.2f} | {100 * r['marked']:.2f} % | "
                     f"{', '.join(map(str, r['calls'])) or '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "realdata")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated case ids (as in the manifests)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "clone-real")
    parser.add_argument("--no-write", action="store_true", help="print the tables, do not write results/clone.md")
    args = parser.parse_args(argv)
    sets = chosen_sets(args.data, args.sets, "benchmarks.clone_real")
    if sets is None:
        return 2
    cases = [c for c in read_cases(args.data, sets) if (c.kind == "copy-move" and c.mask) or c.kind == "original"]
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c.case_id in wanted or c.case_id.removeprefix("original:") in wanted]
    started = time.perf_counter()
    if args.workers <= 1:
        rows = [_run_case(c) for c in cases]
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(_run_case, cases, chunksize=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    command = f"python -m benchmarks.clone_real --sets {args.sets}" + (f" --only {args.only}" if args.only else "")
    text = (f"Command: `{command}` ({time.perf_counter() - started:.0f} s, {args.workers} workers)\n\n"
            + tables(rows) + "\n\nPer image:\n\n" + per_image(rows) + "\n")
    print(text)
    if not args.no_write and not args.only:
        previous = RESULTS.read_text() if RESULTS.exists() else "# Copy-move detection\n"
        block = f"<!-- clone-real -->\n{text}<!-- /clone-real -->"
        if "<!-- clone-real -->" in previous:
            updated = re.sub(r"<!-- clone-real -->.*?<!-- /clone-real -->", lambda _: block, previous, flags=re.S)
        else:
            updated = previous.rstrip("\n") + "\n\n" + block + "\n"
        RESULTS.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
