"""The quality benchmark's clone rows with the copy-move detector alone (fast to rerun while changing it).

Same cases as ``python -m benchmarks.quality`` with the same ``--per-method``, ``--size`` and ``--seed``: clone
stamps on prints and digital files, untouched generated scans, and the untouched sample photographs in every way
``benchmarks.quality`` saves them. Only ``clone`` runs, as ``retouch analyze --detectors clone`` does.

    python -m benchmarks.clone_generated [--per-method 10] [--size 768] [--seed 7] [--workers 1]

Conventions: pixel metrics per case against the stamped pixels, the stamp's source left out (it is the copy's
other side: marking it is neither a hit nor a false alarm), then the median over cases; ``F1 own`` is the
detector's own decision, ``F1 best`` the best over thresholds of its heatmap (an oracle), ``>= 0.5`` the cases
whose own F1 reaches 0.5; ``both sides`` scores the own decision against the stamp and its source together (what
the detector is meant to mark). Untouched scans and photographs: mean marked area and images with anything marked.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks.quality import PHOTO_SAVES


def _stamp_case(task: tuple[str, str, int, int]) -> dict:
    from retouch.io import load_image_bytes
    from retouch.metrics import f1_score, localisation_scores
    from retouch.run.pipeline import analyze_image
    from retouch.samples import make_authentic, make_forgery, stamp_source

    method, history, seed, size = task
    case = make_authentic(seed, size=size) if method == "none" else make_forgery(seed, method=method, size=size,
                                                                                 history=history)
    loaded = load_image_bytes(case.file_bytes, name=f"case-{seed}")
    started = time.perf_counter()
    result = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors=["clone"],
                           orientation=loaded.exif_orientation).results[0]
    row = {"set": f"{method}/{history}", "seed": seed, "flagged": float(result.mask.mean()),
           "seconds": time.perf_counter() - started}
    if method != "none":
        source = stamp_source(case)
        row.update(localisation_scores(result.heatmap, result.mask, case.mask, valid=~source))
        row["both_sides"] = f1_score(result.mask, case.mask | source)
    return row


def _photo_case(task: tuple[str, str, int | None, int | None]) -> dict:
    from retouch.io import load_image_bytes
    from retouch.run.pipeline import analyze_image
    from retouch.samples.archive import encode
    from retouch.samples.sources import load_source

    source, save, first, last = task
    pixels = load_source(source)
    if first is not None:
        pixels = encode(pixels, first)[0]
    loaded = load_image_bytes(encode(pixels, last)[1], name=f"{source}.jpg")
    result = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors=["clone"],
                           orientation=loaded.exif_orientation).results[0]
    return {"set": "photo", "source": source, "save": save, "flagged": float(result.mask.mean())}


def tables(rows: list[dict]) -> str:
    lines = ["| manipulation | n | F1 own | F1 best | pixel AUC | own F1 >= 0.5 | F1 own, both sides |",
             "|---|---|---|---|---|---|---|"]
    for name in ("clone/print", "clone/digital"):
        chosen = [r for r in rows if r["set"] == name]
        if chosen:
            lines.append(f"| {name} | {len(chosen)} | {np.median([r['f1_fixed'] for r in chosen]):.3f} | "
                         f"{np.median([r['f1_best'] for r in chosen]):.3f} | "
                         f"{np.median([r['pixel_auc'] for r in chosen]):.3f} | "
                         f"{sum(r['f1_fixed'] >= 0.5 for r in chosen)} of {len(chosen)} | "
                         f"{np.median([r['both_sides'] for r in chosen]):.3f} |")
    lines += ["", "| untouched | n | mean marked area | anything marked |", "|---|---|---|---|"]
    for name, label in (("none/print", "generated scans"), ("photo", "sample photographs, every save")):
        chosen = [r for r in rows if r["set"] == name]
        if chosen:
            marked = [r for r in chosen if r["flagged"] > 0]
            which = ", ".join(f"{r['source']} ({r['save']})" for r in marked if "source" in r)
            lines.append(f"| {label} | {len(chosen)} | {100 * np.mean([r['flagged'] for r in chosen]):.3f} % | "
                         f"{len(marked)} of {len(chosen)}{(': ' + which) if which else ''} |")
    seconds = [r["seconds"] for r in rows if "seconds" in r]
    if seconds:
        lines += ["", f"clone's time per generated case: median {np.median(seconds):.1f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from retouch.samples.sources import SOURCES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-method", type=int, default=10)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    base = args.seed * 100_000  # as benchmarks.quality numbers its cases
    stamps = [("clone", history, base + i, args.size) for history in ("print", "digital")
              for i in range(args.per_method)]
    stamps += [("none", "print", base + 50_000 + i, args.size) for i in range(2 * args.per_method)]
    photos = [(source, save, first, last) for source in SOURCES for save, first, last in PHOTO_SAVES]
    if args.workers <= 1:
        rows = [_stamp_case(t) for t in stamps] + [_photo_case(t) for t in photos]
    else:
        with ProcessPoolExecutor(args.workers) as pool:
            rows = list(pool.map(_stamp_case, stamps)) + list(pool.map(_photo_case, photos))
    print(f"Command: `python -m benchmarks.clone_generated --per-method {args.per_method} --size {args.size} "
          f"--seed {args.seed}`\n\n{tables(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
