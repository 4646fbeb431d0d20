"""Load on the web service over loopback: status-call throughput and latency, batch items per minute, and the
download of a large job's zip archive (seconds, and the server's memory while it streams).

Starts a real ``retouch serve`` on 127.0.0.1, then (bounded in count and time) fires status requests from a
thread pool, runs a batch through the workers, and downloads the archive of a job of ``--archive-items`` items
while the server process's resident memory is sampled: a streamed archive leaves it about where it was, one
built in memory would raise it by the archive's size.

    python -m benchmarks.api_load [--requests 2000] [--concurrency 16] [--batch 24] [--workers 2]
                                  [--archive-items 100]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
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
    parser.add_argument("--archive-items", type=int, default=100)
    args = parser.parse_args()
    load = os.getloadavg()
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
                archive = _archive_download(server, client, args.archive_items)
        finally:
            server.stop()
    growth = archive["rss_peak"] - archive["rss_before"]
    lines = ["# Web service load", "", f"Command: `python -m benchmarks.api_load --requests {args.requests} "
             f"--concurrency {args.concurrency} --batch {args.batch} --workers {args.workers} "
             f"--archive-items {args.archive_items}`", "",
             f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} when the run started (other work on a "
             "shared machine slows every figure but the memory ones).", "",
             "| measure | value |", "|---|---|",
             f"| status calls per second ({args.concurrency} concurrent clients) | {args.requests / elapsed:.0f} |",
             f"| status call latency p50 / p95 / p99 (ms) | {1000 * np.percentile(latencies, 50):.1f} / "
             f"{1000 * np.percentile(latencies, 95):.1f} / {1000 * np.percentile(latencies, 99):.1f} |",
             f"| batch of {args.batch} scans (768 px, all default detectors), {args.workers} workers | "
             f"{60 * args.batch / batch_seconds:.1f} items per minute ({job['state']}) |",
             f"| zip archive of a {args.archive_items}-item job ({archive['megabytes']:.0f} MB, "
             f"{archive['members']} files): download | {archive['seconds']:.1f} s "
             f"({archive['megabytes'] / archive['seconds']:.0f} MB/s) |",
             "| server memory while it streams: resident before / peak during (MB) | "
             f"{archive['rss_before']:.0f} / {archive['rss_peak']:.0f}: +{growth:.0f} MB, "
             f"{growth / archive['megabytes']:.2f} of the archive's size |"]
    out = ROOT / "benchmarks" / "results" / "api_load.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def _resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _archive_download(server, client, items: int) -> dict[str, float]:
    """Run a job of ``items`` scans (1024 px, grain only: the reports are what counts here), then download its
    archive while a thread samples the server process's resident memory every 5 ms."""
    import io
    import zipfile

    from retouch.samples import make_authentic

    files = [("files", (f"page{i}.jpg", make_authentic(500 + i, size=1024).file_bytes)) for i in range(items)]
    job_id = client.post("/v1/batches", files=files, data={"detectors": "grain"}).json()["job_id"]
    server.wait_job(client, job_id, timeout=3600)
    pid = server.process.pid
    before = _resident_mb(pid)
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(_resident_mb(pid))
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    started = time.perf_counter()
    size, buffer = 0, io.BytesIO()
    with client.stream("GET", f"/v1/jobs/{job_id}/archive") as response:
        for chunk in response.iter_bytes():
            size += len(chunk)
            buffer.write(chunk)
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    members = len(zipfile.ZipFile(buffer).namelist())  # a whole, readable archive
    return {"seconds": seconds, "megabytes": size / 1e6, "members": members, "rss_before": before,
            "rss_peak": max(peak)}


if __name__ == "__main__":
    main()
