"""Load on the web service over loopback: status-call throughput and latency, batch items per minute, the
download of a large job's zip archive (seconds, and the server's memory while it streams), and how fast
``/health`` answers while the service is healthy, degraded and besieged.

Starts a real ``retouch serve`` on 127.0.0.1, then (bounded in count and time) fires status requests from a
thread pool, runs a batch through the workers, and downloads the archive of a job of ``--archive-items`` items
while the server process's resident memory is sampled (a streamed archive leaves it about where it was, one built
in memory would raise it by the archive's size). ``/health`` is then called one request at a time, as a monitor
polls it: with the service idle, while another process holds the job database's write lock past the busy timeout
(``/health`` says ``degraded``), and while 200 slow clients each trickle a byte a second into an upload.

    python -m benchmarks.api_load [--requests 2000] [--concurrency 16] [--batch 24] [--workers 2] [--health 400]
        [--archive-items 100] [--baseline CHECKOUT]

With ``--baseline`` (a checkout of another commit, e.g. ``git worktree add /tmp/base main``), a second server is
started from that checkout and status calls go to the two in turn, twenty rounds each, so that a loaded machine
weighs on both alike: the ratio of their rates is what the change did.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
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
    parser.add_argument("--health", type=int, default=400, help="/health calls per condition")
    parser.add_argument("--archive-items", type=int, default=100)
    parser.add_argument("--baseline", type=Path, help="a checkout to compare status calls with, in turns")
    parser.add_argument("--jobs", type=int, default=0, help="single-image jobs on generated 1 MP scans, submitted "
                        "at once: jobs a minute (0: none)")
    parser.add_argument("--jobs-detectors", default="", help="the jobs' detectors, comma-separated, or '' for every "
                        "default detector; several sets with ';' between them")
    parser.add_argument("--only-jobs", action="store_true", help="measure the jobs only (into --out)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "api_load.md"))
    args = parser.parse_args()
    if args.only_jobs:
        jobs_only(args)
        return
    load = os.getloadavg()
    from retouch.samples import make_authentic
    from tests.api_server import Server

    with tempfile.TemporaryDirectory() as scratch:
        # a short busy timeout, so that the locked database shows as degraded within seconds
        data = Path(scratch) / "data"
        server = Server(data, workers=args.workers, env={"RETOUCH_DB_BUSY_TIMEOUT_S": "2"}).start()
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
                compared = against_baseline(client, job_id, args.baseline, scratch, args.concurrency) \
                    if args.baseline else None
                health = {"idle": health_latencies(client, args.health)}
                health["degraded (database locked)"] = while_locked(client, data / "jobs.sqlite3", args.health)
                health["200 slow clients connected"] = while_besieged(client, server.port, args.health)
        finally:
            server.stop()
    growth = archive["rss_peak"] - archive["rss_before"]
    lines = ["# Web service load", "", f"Command: `python -m benchmarks.api_load --requests {args.requests} "
             f"--concurrency {args.concurrency} --batch {args.batch} --workers {args.workers} "
             f"--health {args.health} --archive-items {args.archive_items}"
             + (f" --baseline {args.baseline}" if args.baseline else "") + "`", "",
             f"Machine: {os.cpu_count()} cores, load average {load[0]:.1f} when the run started (other work on a "
             "shared machine slows every figure but the memory ones).", "",
             "| measure | value |", "|---|---|",
             f"| status calls per second ({args.concurrency} concurrent clients) | "
             f"{args.requests / elapsed:.0f} |",
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
    if compared:
        lines += ["", f"Status calls in turns with a server of the baseline checkout ({args.concurrency} "
                  f"concurrent clients, {ROUNDS} rounds of {ROUND_CALLS} calls each):", "",
                  "| server | calls per second (median of rounds) | p50 (ms) | p99 (ms) |", "|---|---|---|---|"]
        for name, (rates, times) in compared.items():
            lines.append(f"| {name} | {np.median(rates):.0f} | {1000 * np.percentile(times, 50):.1f} | "
                         f"{1000 * np.percentile(times, 99):.1f} |")
        ratio = np.median(compared["this checkout"][0]) / np.median(compared["baseline"][0])
        lines.append(f"| this checkout / baseline | {ratio:.2f} | | |")
    lines += ["", f"`/health`, {args.health} calls one at a time in each condition (ms):", "",
              "| condition | status | p50 | p99 | max |", "|---|---|---|---|---|"]
    for condition, (statuses, times) in health.items():
        lines.append(f"| {condition} | {', '.join(sorted(statuses))} | {1000 * np.percentile(times, 50):.1f} | "
                     f"{1000 * np.percentile(times, 99):.1f} | {1000 * times.max():.1f} |")
    out = ROOT / "benchmarks" / "results" / "api_load.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


ROUNDS, ROUND_CALLS = 20, 200


def _resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def jobs_per_minute(server: object, client: object, scans: list[bytes], detectors: str) -> dict:
    """Submit one single-image job per scan, all at once (as a fact-checking team's script would), and wait for
    the last one: jobs a minute from the first submission to the last job done."""
    form = {"detectors": detectors} if detectors else {}
    started = time.perf_counter()
    ids = [client.post("/v1/analyses", files={"image": (f"scan{index}.jpg", scan)}, data=form).json()["job_id"]
           for index, scan in enumerate(scans)]
    states = [server.wait_job(client, job_id, timeout=3600)["state"] for job_id in ids]
    seconds = time.perf_counter() - started
    return {"detectors": detectors or "every default detector", "jobs": len(ids), "seconds": round(seconds, 1),
            "jobs_per_minute": round(60.0 * len(ids) / seconds, 1), "done": states.count("done")}


def jobs_only(args: argparse.Namespace) -> None:
    """``--only-jobs``: a server with ``--workers`` workers, ``--jobs`` single-image jobs per detector set."""
    from benchmarks import write_markdown
    from benchmarks.speed import write_scan
    from tests.api_server import Server

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        scans = [write_scan(1.0, folder, seed=100 + index, method="airbrush" if index % 2 else "none").read_bytes()
                 for index in range(args.jobs)]
        server = Server(folder / "data", workers=args.workers).start()
        try:
            with server.client() as client:
                rows = [jobs_per_minute(server, client, scans, chosen.strip())
                        for chosen in args.jobs_detectors.split(";")]
        finally:
            server.stop()
    lines = ["# Web service: jobs a minute", "",
             f"Command: `python -m benchmarks.api_load --only-jobs --jobs {args.jobs} --workers {args.workers} "
             f"--jobs-detectors '{args.jobs_detectors}'`", "",
             f"Machine: 2 cores shared with other work, load average {load[0]:.1f} at the start and "
             f"{os.getloadavg()[0]:.1f} at the end. A real `retouch serve` on loopback with {args.workers} workers; "
             f"{args.jobs} generated 1 MP scans (half airbrushed, half untouched; JPEG and PNG) submitted at once "
             "as single-image jobs (`POST /v1/analyses`), timed from the first submission to the last job done.", "",
             "| detectors | jobs | seconds | jobs a minute | done |", "|---|---|---|---|---|"]
    lines += [f"| {row['detectors']} | {row['jobs']} | {row['seconds']} | **{row['jobs_per_minute']}** | "
              f"{row['done']} of {row['jobs']} |" for row in rows]
    write_markdown(args.out, lines)


def _archive_download(server, client, items: int) -> dict[str, float]:  # noqa: ANN001 - an httpx.Client
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


def against_baseline(client, job_id: str, baseline: Path, scratch: str,  # noqa: ANN001 - an httpx.Client
                     concurrency: int) -> dict[str, tuple[list[float], np.ndarray]]:
    """Status calls to this server and to one started from the ``baseline`` checkout, in turns: per server, the
    rate of each round and every call's latency."""
    from tests.api_server import Server

    other = Server(Path(scratch) / "baseline-data", workers=1, cwd=baseline).start()
    try:
        with other.client() as other_client:
            scan_id = other_client.post("/v1/analyses", files={"image": ("s.png", _tiny_scan())},
                                        data={"detectors": "grain"}).json()["job_id"]
            other.wait_job(other_client, scan_id)
            sides = {"this checkout": (client, job_id), "baseline": (other_client, scan_id)}
            found: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in sides}
            for round_number in range(ROUNDS):
                for name in (list(sides) if round_number % 2 == 0 else list(sides)[::-1]):
                    caller, target = sides[name]

                    def call(_: int, caller=caller, target=target) -> float:  # noqa: ANN001
                        started = time.perf_counter()
                        assert caller.get(f"/v1/jobs/{target}").status_code == 200
                        return time.perf_counter() - started

                    started = time.perf_counter()
                    with ThreadPoolExecutor(concurrency) as pool:
                        found[name][1].extend(pool.map(call, range(ROUND_CALLS)))
                    found[name][0].append(ROUND_CALLS / (time.perf_counter() - started))
    finally:
        other.stop()
    return {name: (rates, np.array(times)) for name, (rates, times) in found.items()}


def _tiny_scan() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def health_latencies(client, calls: int) -> tuple[set[str], np.ndarray]:  # noqa: ANN001 - an httpx.Client
    """``calls`` sequential GET /health: the statuses answered and the latencies (s)."""
    statuses, times = set(), []
    for _ in range(calls):
        started = time.perf_counter()
        answer = client.get("/health")
        times.append(time.perf_counter() - started)
        statuses.add(f"{answer.status_code} {answer.json()['status']}")
    return statuses, np.array(times)


def while_locked(client, database: Path, calls: int) -> tuple[set[str], np.ndarray]:  # noqa: ANN001
    """:func:`health_latencies` while this process holds the database's write lock, once /health says degraded
    (the dispatcher's next write has waited past the busy timeout)."""
    locker = sqlite3.connect(database, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        deadline = time.time() + 120
        while client.get("/health").json()["status"] != "degraded":
            if time.time() > deadline:
                raise RuntimeError("/health did not say degraded within 120 s of the database being locked")
            time.sleep(0.1)
        return health_latencies(client, calls)
    finally:
        locker.execute("ROLLBACK")
        locker.close()


SLOW_HEAD = (b"POST /v1/analyses HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
             b"Content-Length: 100000000\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image\"; "
             b"filename=\"a.png\"\r\n\r\n")


def while_besieged(client, port: int, calls: int) -> tuple[set[str], np.ndarray]:  # noqa: ANN001
    """:func:`health_latencies` while 200 clients announce 100 MB uploads and send a byte a second (calls stop
    being made once the server cuts them off, after 20 s: the result holds the calls made until then)."""
    deadline = time.time() + 120  # the degraded episode before this one over first
    while client.get("/health").json()["status"] != "ok" and time.time() < deadline:
        time.sleep(0.1)
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(200)]
    for sock in sockets:
        sock.sendall(SLOW_HEAD)
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(1.0):
            for sock in sockets:
                try:
                    sock.send(b"x")
                except OSError:  # cut off by the server
                    pass

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    try:
        statuses, times, started = set(), [], time.time()
        while len(times) < calls and time.time() - started < 15:  # well within the 20 s the clients last
            found, elapsed = health_latencies(client, 1)
            statuses |= found
            times.append(elapsed[0])
        return statuses, np.array(times)
    finally:
        stop.set()
        dripper.join()
        for sock in sockets:
            sock.close()


if __name__ == "__main__":
    main()
