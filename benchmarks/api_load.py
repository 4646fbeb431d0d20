"""Load on the web service over loopback: status-call throughput and latency, and batch items per minute.

Starts a real ``retouch serve`` on 127.0.0.1, then (bounded in count and time) fires status requests from a
thread pool and runs a batch through the workers.

    python -m benchmarks.api_load [--requests 2000] [--concurrency 16] [--batch 24] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from retouch.samples import make_authentic
    from tests.api_server import Server

    with tempfile.TemporaryDirectory() as scratch:
        server = Server(Path(scratch) / "data", workers=args.workers).start()
        try:
            with server.client() as client:
                scan = make_authentic(1, size=256).file_bytes
                job_id = client.post("/v1/analyses", files={"image": ("s.jpg", scan)},
                                     data={"detectors": "grain"}).json()["job_id"]
                server.wait_job(client, job_id)

                def status(_: int) -> float:
                    started = time.perf_counter()
                    assert client.get(f"/v1/jobs/{job_id}").status_code == 200
                    return time.perf_counter() - started

                started = time.perf_counter()
                with ThreadPoolExecutor(args.concurrency) as pool:
                    latencies = np.array(list(pool.map(status, range(args.requests))))
                elapsed = time.perf_counter() - started
                files = [("files", (f"scan{i}.jpg", make_authentic(100 + i, size=768).file_bytes))
                         for i in range(args.batch)]
                started = time.perf_counter()
                batch_id = client.post("/v1/batches", files=files).json()["job_id"]
                job = server.wait_job(client, batch_id, timeout=3600)
                batch_seconds = time.perf_counter() - started
        finally:
            server.stop()
    lines = ["# Web service load", "", f"Command: `python -m benchmarks.api_load --requests {args.requests} "
             f"--concurrency {args.concurrency} --batch {args.batch} --workers {args.workers}`", "",
             "| measure | value |", "|---|---|",
             f"| status calls per second ({args.concurrency} concurrent clients) | {args.requests / elapsed:.0f} |",
             f"| status call latency p50 / p95 / p99 (ms) | {1000 * np.percentile(latencies, 50):.1f} / "
             f"{1000 * np.percentile(latencies, 95):.1f} / {1000 * np.percentile(latencies, 99):.1f} |",
             f"| batch of {args.batch} scans (768 px, all default detectors), {args.workers} workers | "
             f"{60 * args.batch / batch_seconds:.1f} items per minute ({job['state']}) |"]
    out = ROOT / "benchmarks" / "results" / "api_load.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
