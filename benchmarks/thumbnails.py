"""Registration of thumbnail pairs: how small may the smaller scan be before ``compare`` must refuse?

For each size, generated pairs of one photograph (reference print and re-photographed, cropped, turned copy, as
in the quality benchmark) and pairs of two different photographs (the reference of one case against the
questioned scan of another whose source photograph differs) go through ``register``. Reported: how many pairs of
one photograph are registered (the rest are refused as not the same photograph), their registration error
(RMS distance in questioned pixels between the true and the found transform over the overlap, as in
``benchmarks/quality.py``), and how many pairs of different photographs were wrongly accepted.

    python -m benchmarks.thumbnails [--sizes 64,96,128,192] [--pairs 40] [--seed 90000] [--workers 2]
"""

from __future__ import annotations

import argparse
import importlib
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.quality import registration_error_px

ROOT = Path(__file__).resolve().parents[1]
OTHER = 1000  # the other case of a pair of different photographs is this many seeds on


def _case(task: tuple[int, int, bool]) -> dict:
    from retouch.errors import NotSamePhotographError
    from retouch.samples import make_pair

    register = importlib.import_module("retouch.compare.register").register  # the module, not the function
    seed, size, same = task
    case = make_pair(seed, size=size)
    row = {"seed": seed, "size": size, "same": same}
    if same:
        reference, questioned = case.reference, case.questioned
    else:
        other = make_pair(seed + OTHER, size=size)
        if other.info["source"] == case.info["source"]:
            return {**row, "outcome": "skipped"}  # one photograph after all
        reference, questioned = case.reference, other.questioned
    try:
        found = register(reference, questioned)
    except NotSamePhotographError:
        return {**row, "outcome": "refused"}
    row["outcome"] = "registered"
    if same:
        row["error_px"] = registration_error_px(reference.shape[:2], questioned.shape[:2], case.transform,
                                                found.transform)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,96,128,192", help="longest sides of the generated prints (px)")
    parser.add_argument("--pairs", type=int, default=40, help="pairs per size and kind")
    parser.add_argument("--seed", type=int, default=90000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    started = time.time()
    tasks = [(args.seed + i, size, same) for size in sizes for same in (True, False) for i in range(args.pairs)]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(_case, tasks, chunksize=4))
    lines = ["# Thumbnail registration", "",
             f"Command: `python -m benchmarks.thumbnails --sizes {args.sizes} --pairs {args.pairs} --seed "
             f"{args.seed}` ({(time.time() - started) / 60:.1f} min on this machine)", "",
             "Registration error: RMS distance in questioned pixels between the true and the found transform over "
             "the overlap (a 16-pixel grid of the reference), for the pairs registered.", "",
             "| size (px) | one photograph: registered | error px (median / max) | different photographs: "
             "accepted |", "|---|---|---|---|"]
    for size in sizes:
        same = [r for r in rows if r["size"] == size and r["same"]]
        errors = [r["error_px"] for r in same if r["outcome"] == "registered"]
        different = [r for r in rows if r["size"] == size and not r["same"] and r["outcome"] != "skipped"]
        accepted = sum(r["outcome"] == "registered" for r in different)
        spread = f"{np.median(errors):.2f} / {max(errors):.2f}" if errors else "-"
        lines.append(f"| {size} | {len(errors)} of {len(same)} | {spread} | {accepted} of {len(different)} |")
    text = "\n".join(lines) + "\n"
    (ROOT / "benchmarks" / "results" / "thumbnails.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
