"""Batch throughput: items per minute for a fixed sample batch at 1 and 2 local workers and on a Dask
LocalCluster with 2 workers.

    python -m benchmarks.batch_throughput [--items 16] [--size 768]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--size", type=int, default=768)
    args = parser.parse_args()
    from retouch.run.batch import run_batch
    from retouch.samples import make_authentic, make_forgery

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in"
        source.mkdir()
        for index in range(args.items):
            case = make_forgery(index, method="airbrush", size=args.size) if index % 2 else \
                make_authentic(index, size=args.size)
            (source / f"scan{index:03d}{'.jpg' if case.file_format == 'JPEG' else '.png'}").write_bytes(case.file_bytes)
        for label, workers, scheduler in (("local, 1 worker", 1, None), ("local, 2 workers", 2, None),
                                          ("Dask LocalCluster, 2 workers", 2, "local")):
            out = Path(scratch) / label.replace(" ", "_").replace(",", "")
            started = time.perf_counter()
            report = run_batch(source, out, workers=workers, scheduler=scheduler)
            seconds = time.perf_counter() - started
            rows.append(f"| {label} | {report.ok + report.failed} | {seconds:.1f} | {60 * args.items / seconds:.1f} |")
            print(rows[-1], flush=True)
    lines = ["# Batch throughput", "", f"Command: `python -m benchmarks.batch_throughput --items {args.items} "
             f"--size {args.size}` (all default detectors, start-up of the pool included)", "",
             "| executor | items | seconds | items per minute |", "|---|---|---|---|", *rows]
    out = ROOT / "benchmarks" / "results" / "batch.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
