"""Faults and hostile input, as an operator meets them: worker processes killed, a server killed alone and
restarted while its orphaned workers run on, a database locked past its busy timeout, a full disk, a kill while a
zip is unpacked, slow and bloated clients, memory bombs under the pixel limit, and ``retouch batch`` killed at
random moments. Real processes throughout; the service tests run a real ``retouch serve`` (uvicorn) where only it
shows the fault.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import random
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from retouch.run.batch import RESULTS, SUMMARY, read_results, run_batch
from retouch.samples import make_authentic, make_forgery
from tests.api_server import Server
from tests.helpers import image_bytes, in_process_service, retouch_process, zip_bytes

SLOW_DETECTORS = "grain,ela,clone"  # about a second on a 448 px scan: long enough to be caught running
BOUND_S = 120  # how long a test waits for what must happen (a bound for a loaded machine, not a measurement)


def jpeg_bomb(width: int, height: int) -> bytes:
    """A JPEG of a few hundred bytes whose header claims ``width`` x ``height`` (libjpeg decodes it whole: the
    first block is data, the rest filled in)."""
    data = bytearray(image_bytes(np.full((16, 16), 128, np.uint8), "JPEG", quality=90))
    position = 2
    while data[position + 1] not in (0xC0, 0xC1, 0xC2):  # to the frame header
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    data[position + 5:position + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def slow_scan(seed: int = 300) -> tuple[str, bytes]:
    case = make_forgery(seed, method="diffusion", size=448)
    return ("scan.jpg" if case.file_format == "JPEG" else "scan.png"), case.file_bytes


def small_scan(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return image_bytes(np.clip(rng.normal(120, 15, (96, 96)), 0, 255).astype(np.uint8))


def until(condition, what: str, bound: float = BOUND_S, every: float = 0.05):  # noqa: ANN001, ANN201
    """Poll ``condition()`` until it returns something true; that value (fails naming ``what`` after ``bound``)."""
    deadline = time.time() + bound
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {bound} s: {what}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def item_state(client: httpx.Client, job_id: str) -> str:
    return client.get(f"/v1/jobs/{job_id}").json()["items"][0]["state"]


def assert_item_folders_whole(data: Path, job: dict) -> None:
    """Every finished item's published folder holds every artifact its result lists, and no staging folder or
    temp file is left anywhere under the job."""
    items = data / "jobs" / job["id"] / "items"
    for item in job["items"]:
        if item["state"] == "done":
            missing = [name for name in item["result"]["artifacts"] if not (items / item["id"] / name).is_file()]
            assert not missing, (item["id"], missing)
    assert not list(items.glob(".*.partial")) and not list(items.rglob("*.part")), list(items.iterdir())


# --- worker processes -------------------------------------------------------------------------------------------

def _sleep_then_answer(seconds: float, answer: str) -> str:
    time.sleep(seconds)
    return answer


def _note_pid_then_sleep(note: str, seconds: float, answer: str) -> str:
    Path(note).write_text(str(os.getpid()))
    time.sleep(seconds)
    return answer


def _blas_thread_settings() -> dict[str, str | None]:
    from retouch.run.executor import BLAS_THREAD_VARIABLES

    return {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}


@pytest.mark.parametrize(("workers", "expected"), [(2, "1"), (1, None)])
def test_workers_of_a_shared_pool_ask_for_one_blas_thread_unless_the_user_chose(
        monkeypatch: pytest.MonkeyPatch, workers: int, expected: str | None) -> None:
    from retouch.run.executor import BLAS_THREAD_VARIABLES, LocalExecutor

    for name in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with LocalExecutor(workers) as pool:
        assert set(pool.submit(_blas_thread_settings).result(timeout=BOUND_S).values()) == {expected}
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # a user's own choice is kept
    with LocalExecutor(2) as pool:
        assert pool.submit(_blas_thread_settings).result(timeout=BOUND_S)["OPENBLAS_NUM_THREADS"] == "2"


@pytest.mark.slow
def test_a_killed_worker_fails_only_its_own_item_and_is_replaced(tmp_path: Path) -> None:
    from retouch.run.executor import LocalExecutor, WorkerDied

    with LocalExecutor(2) as pool:
        note = tmp_path / "doomed.pid"
        doomed = pool.submit(_note_pid_then_sleep, str(note), 120, "never")
        innocent = pool.submit(_sleep_then_answer, 4, "fine")
        victim = int(until(lambda: note.is_file() and note.read_text(), "the doomed item to start"))
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(WorkerDied, match="ended unexpectedly .*SIGKILL"):
            doomed.result(timeout=BOUND_S)
        assert innocent.result(timeout=BOUND_S) == "fine"  # the other worker's item was not touched
        replaced = until(lambda: len(pool.processes()) == 2 and pool.processes(), "a replacement worker")
        assert victim not in {process.pid for process in replaced}
        assert pool.submit(_sleep_then_answer, 0.01, "again").result(timeout=BOUND_S) == "again"


COORDINATOR = """
import sys, time
from retouch.run.executor import LocalExecutor
from tests.test_faults import _sleep_then_answer
pool = LocalExecutor(2)
futures = [pool.submit(_sleep_then_answer, 300, "never") for _ in range(2)]
print(" ".join(str(p.pid) for p in pool.processes()), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_workers_end_when_their_coordinator_is_killed_alone() -> None:
    # an OOM kill or a kill -9 of the coordinator alone left its workers running their items for ever
    coordinator = subprocess.Popen([sys.executable, "-c", COORDINATOR], stdout=subprocess.PIPE, text=True,
                                   cwd=Path(__file__).resolve().parents[1])
    workers = [int(pid) for pid in coordinator.stdout.readline().split()]
    assert len(workers) == 2
    time.sleep(1)
    assert not any(gone(pid) for pid in workers)
    coordinator.kill()
    coordinator.wait()
    until(lambda: all(gone(pid) for pid in workers), "the orphaned workers to end", bound=60)


# --- the item fence --------------------------------------------------------------------------------------------

def test_a_superseded_attempt_throws_its_output_away_and_cannot_publish_meanwhile(tmp_path: Path) -> None:
    from api.store import JobStore
    from api.workers import AttemptFence
    from retouch.run.item import Item, ItemOptions, run_item

    data = tmp_path / "data"
    name, scan = slow_scan()
    upload = data / "uploads" / ("a" * 32) / name
    upload.parent.mkdir(parents=True)
    upload.write_bytes(scan)
    store = JobStore(data / "jobs.sqlite3", data_dir=data, busy_timeout_s=0.2)
    item = Item("image", "analyze", (str(upload),))
    job_id = store.create_job("analysis", [item], ItemOptions())
    first = store.claim()
    fence = AttemptFence(str(store.path), job_id, "image", first["attempt"], busy_timeout_s=0.2)
    assert fence.holds()
    with fence.publishing() as holds:  # while an attempt publishes, no restart or claim can take the item
        assert holds
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.requeue_attempt(job_id, "image", first["attempt"])
    # the attempt runs; meanwhile a restart queues the item again and a new attempt takes it
    folder = data / "jobs" / job_id / "items" / "image"
    outcomes = []
    running = threading.Thread(target=lambda: outcomes.append(run_item(
        item, folder, ItemOptions(detectors=tuple(SLOW_DETECTORS.split(","))), fence=fence)))
    running.start()
    until(lambda: list(folder.parent.glob(".image.*.partial")), "the attempt to start writing")
    assert store.requeue_interrupted() == 1 and store.claim()["attempt"] == first["attempt"] + 1
    assert not fence.holds()
    running.join(BOUND_S)
    [outcome] = outcomes
    assert outcome.status == "fenced" and outcome.error == fence.reason
    assert not folder.exists() and not list(folder.parent.iterdir()), "published, or its staging folder left"
    store.close()


# --- the service: workers, restarts, the store, the disk ---------------------------------------------------

@pytest.mark.server
def test_a_worker_killed_mid_item_fails_that_item_only_and_is_replaced(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", workers=1).start()
    try:
        with server.client() as client:
            name, data = slow_scan()
            doomed = client.post("/v1/analyses", files={"image": (name, data)},
                                 data={"detectors": SLOW_DETECTORS}).json()["job_id"]
            until(lambda: item_state(client, doomed) == "running", "the item to run")
            [worker] = server.worker_pids()
            os.kill(worker, signal.SIGKILL)
            job = server.wait_job(client, doomed)
            item = job["items"][0]
            assert job["state"] == "failed" and item["completions"] == 1
            assert "ended unexpectedly" in item["error"] and "SIGKILL" in item["error"], item["error"]
            assert "RETOUCH_MAX_MEMORY" in item["error"]
            after = server.wait_job(client, client.post("/v1/analyses", files={"image": ("s.png", small_scan(2))},
                                                        data={"detectors": "grain"}).json()["job_id"])
            assert after["state"] == "done" and server.worker_pids() != [worker]
            assert client.get("/health").json()["queue"].get("running", 0) == 0
            assert_item_folders_whole(server.data_dir, job)
    finally:
        server.stop()


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in folder.iterdir()}


@pytest.mark.server
@pytest.mark.timeout(1800)  # 40 server starts and 40 slow items: several minutes on a loaded machine
def test_a_server_killed_alone_and_restarted_loses_and_doubles_nothing_over_20_restarts(tmp_path: Path) -> None:
    # the server alone is killed mid-item (as the out-of-memory killer does) and started again at once: its
    # orphaned worker must neither publish over the new attempt nor leave files behind. Every other round the
    # orphan is frozen (SIGSTOP) until the restarted server has finished the item, then let go: the widest race
    data = tmp_path / "data"
    server = Server(data, workers=1)
    name, scan = slow_scan()
    for round_number in range(20):
        frozen = round_number % 2 == 1
        server.start()
        with server.client() as client:
            job_id = client.post("/v1/analyses", files={"image": (name, scan)},
                                 data={"detectors": SLOW_DETECTORS}).json()["job_id"]
            until(lambda: item_state(client, job_id) == "running", "the item to run")
            orphans = server.worker_pids()
            if frozen:
                for pid in orphans:
                    os.kill(pid, signal.SIGSTOP)
        server.kill_server_only()
        server.start()
        with server.client() as client:
            job = server.wait_job(client, job_id)
            folder = data / "jobs" / job_id / "items" / "image"
            published = _snapshot(folder)
            if frozen:
                for pid in orphans:
                    os.kill(pid, signal.SIGCONT)
            until(lambda: all(gone(pid) for pid in orphans), "the orphaned worker to end", bound=60)
            job = client.get(f"/v1/jobs/{job_id}").json()
        item = job["items"][0]
        assert (job["state"], item["completions"]) == ("done", 1), (round_number, item)
        assert _snapshot(folder) == published, f"round {round_number}: the orphan published over the new attempt"
        assert_item_folders_whole(data, job)
        with server.client() as client:
            for artifact in item["result"]["artifacts"]:
                assert client.get(f"/v1/jobs/{job_id}/items/image/files/{artifact}").status_code == 200
        server.stop()
    assert not list((data / "uploads").glob("*/*.part"))


@pytest.mark.server
def test_a_database_locked_past_its_busy_timeout_degrades_health_and_work_resumes_once_released(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data, workers=1, env={"RETOUCH_DB_BUSY_TIMEOUT_S": "1"}).start()
    try:
        with server.client() as client:
            name, scan = slow_scan()
            running = client.post("/v1/analyses", files={"image": (name, scan)},
                                  data={"detectors": SLOW_DETECTORS}).json()["job_id"]
            until(lambda: item_state(client, running) == "running", "the first item to run")
            queued = client.post("/v1/analyses", files={"image": ("q.png", small_scan(3))},
                                 data={"detectors": "grain"}).json()["job_id"]
            locker = sqlite3.connect(data / "jobs.sqlite3", isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")  # another program holds the database's write lock
            try:
                health = until(lambda: (lambda h: h if h["status"] == "degraded" else None)(
                    client.get("/health").json()), "/health to say degraded")
                [problem] = health["problems"]
                assert problem["component"] == "store" and "locked" in problem["reason"]
                assert time.time() - 600 < problem["since"] <= time.time()
                refused = client.post("/v1/analyses", files={"image": ("r.png", small_scan(4))})
                assert refused.status_code == 503 and refused.json()["error"]["code"] == "store_busy"
                assert client.get("/health").status_code == 200  # readable: degraded, not unavailable
                time.sleep(3)  # past the busy timeout several times: the dispatcher carries on retrying
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            for job_id in (running, queued):
                job = server.wait_job(client, job_id)
                assert job["state"] == "done" and job["items"][0]["completions"] == 1, job
            until(lambda: client.get("/health").json()["status"] == "ok", "/health to say ok again")
            assert len(client.get("/v1/jobs").json()["jobs"]) == 2
        log = server.log()
        assert log.count("store: the job database is locked") == 1, log  # once per episode
        assert "store: recovered after" in log
        assert len(list((data / "uploads").iterdir())) == 2  # the refused upload left nothing
    finally:
        server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs, mounted where this machine allows it (root); else the test is skipped, and
    ``test_a_full_disk_injected_...`` covers the same paths with a fault-injected disk."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()[:80]})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    """A file filling the disk holding ``folder`` to its last byte."""
    filler = folder / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 1 << 12, 1):
            while True:
                try:
                    os.write(handle, b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC
                    break
    finally:
        os.close(handle)
    return filler


@pytest.mark.server
def test_a_full_data_disk_gets_507_degrades_health_and_work_resumes_when_freed(small_disk: Path) -> None:
    data = small_disk / "data"
    server = Server(data, workers=1, env={"RETOUCH_MIN_FREE_BYTES": "4000000"}, logs=small_disk.parent).start()
    try:
        with server.client() as client:
            name, scan = slow_scan()
            running = client.post("/v1/analyses", files={"image": (name, scan)},
                                  data={"detectors": SLOW_DETECTORS}).json()["job_id"]
            until(lambda: item_state(client, running) == "running", "the item to run")
            filler = _fill(small_disk)
            refused = client.post("/v1/analyses", files={"image": ("r.png", small_scan(5))})
            assert refused.status_code == 507, refused.text
            assert refused.json()["error"]["code"] == "insufficient_storage"
            health = until(lambda: (lambda h: h if any(p["component"] == "disk" for p in h["problems"]) else None)(
                client.get("/health").json()), "/health to name the disk")
            assert health["status"] == "degraded"
            time.sleep(8)  # the running item's reports cannot be written: it must wait, not fail
            assert client.get(f"/v1/jobs/{running}").json()["state"] in ("queued", "running")
            filler.unlink()
            until(lambda: client.get("/health").json()["status"] == "ok", "/health to say ok again")
            job = server.wait_job(client, running)
            assert job["state"] == "done" and job["items"][0]["completions"] == 1, job
            assert_item_folders_whole(data, job)
            after = client.post("/v1/analyses", files={"image": ("a.png", small_scan(6))},
                                data={"detectors": "grain"})
            assert after.status_code == 202 and server.wait_job(client, after.json()["job_id"])["state"] == "done"
        assert len(list((data / "uploads").iterdir())) == 2  # nothing of the refused upload
    finally:
        server.stop()


def test_a_full_disk_injected_gets_507_degrades_health_and_work_resumes_when_freed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the same paths as on a real full disk, where no tmpfs can be mounted: the free space the service reads,
    # and the error its writes get
    import api.uploads

    real_usage, full = shutil.disk_usage, threading.Event()

    def usage(path):  # noqa: ANN001, ANN202
        found = real_usage(path)
        return found._replace(free=0) if full.is_set() else found

    monkeypatch.setattr(shutil, "disk_usage", usage)
    data = tmp_path / "data"
    with in_process_service(data, workers=1, min_free_bytes=1_000_000) as server, server.client() as client:
        full.set()
        refused = client.post("/v1/analyses", files={"image": ("r.png", small_scan(7))})
        assert refused.status_code == 507 and refused.json()["error"]["code"] == "insufficient_storage"
        health = until(lambda: (lambda h: h if h["problems"] else None)(client.get("/health").json()),
                       "/health to name the disk")
        assert health["status"] == "degraded" and health["problems"][0]["component"] == "disk"
        full.clear()
        until(lambda: client.get("/health").json()["status"] == "ok", "/health to say ok again")

        def no_space(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the disk fills while the upload is written
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(api.uploads, "open", no_space, raising=False)
        refused = client.post("/v1/analyses", files={"image": ("r.png", small_scan(8))})
        assert refused.status_code == 507 and "disk is full" in refused.json()["error"]["message"]
        monkeypatch.delattr(api.uploads, "open")
        job_id = client.post("/v1/analyses", files={"image": ("a.png", small_scan(9))},
                             data={"detectors": "grain"}).json()["job_id"]
        assert server.wait_job(client, job_id)["state"] == "done"
    assert len(list((data / "uploads").iterdir())) == 1


def test_health_answers_503_while_the_store_cannot_be_read(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from api.store import JobStore

    with in_process_service(tmp_path / "data") as server, server.client() as client:
        assert client.get("/health").json()["status"] == "ok"
        with monkeypatch.context() as broken:
            broken.setattr(JobStore, "counts", lambda *args, **kwargs: (_ for _ in ()).throw(
                sqlite3.DatabaseError("file is not a database")))
            answer = client.get("/health")
            assert answer.status_code == 503 and answer.json()["status"] == "unavailable"
            assert "file is not a database" in answer.json()["problems"][0]["reason"]
        assert client.get("/health").json()["status"] == "ok"


@pytest.mark.server
def test_a_kill_while_a_zip_is_unpacked_leaves_nothing_after_the_restart(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    members = {f"scan{index:04d}.png": image_bytes(rng.integers(0, 256, (32, 32), dtype=np.uint8))
               for index in range(2000)}
    archive = zip_bytes(members)
    data = tmp_path / "data"
    server = Server(data, workers=1).start()

    def submit() -> None:
        try:
            httpx.post(server.url + "/v1/batches", files={"archive": ("scans.zip", archive)}, timeout=BOUND_S)
        except httpx.HTTPError:
            pass  # the server died under it

    sender = threading.Thread(target=submit, daemon=True)
    sender.start()
    until(lambda: len(list(data.glob("uploads/*/members/*"))) >= 50, "the unpacking to be under way", every=0.01)
    server.kill()
    sender.join(BOUND_S)
    assert list((data / "uploads").iterdir()), "the kill came before anything was unpacked"
    server.start()
    try:
        until(lambda: not list((data / "uploads").iterdir()), "the start-up sweep to remove the upload")
        assert "start-up sweep: removed" in server.log()
        with server.client() as client:
            assert client.get("/v1/jobs").json()["total"] == 0
    finally:
        server.stop()


# --- slow and bloated clients ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("plain") / "data", workers=1).start()
    yield running
    running.stop()


def _answer(sock: socket.socket, bound: float = 60) -> bytes:
    sock.settimeout(bound)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:  # refused while we were still sending: the answer came before the reset
        pass
    return answer


def _status(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]["code"]


@pytest.mark.server
def test_bloated_and_unfinished_request_heads_are_refused(plain_server: Server) -> None:
    address = ("127.0.0.1", plain_server.port)
    cases = [(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n", 431),
             (b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(10_000))
              + b"\r\n", 431),
             (b"GET /health HTTP/1.1\r\nHost: x\r\n", 408),  # the head never ends
             (b"", 408)]  # nothing at all
    for request, expected in cases:
        with socket.create_connection(address) as sock:
            try:
                sock.sendall(request)
            except OSError:  # refused and closed while the rest was being sent
                pass
            status, code = _status(_answer(sock))
        assert (status, code) == (expected, "headers_too_large" if expected == 431 else "request_timeout")
    # what follows a head in the same reads is no part of it: a 2 MB body sent in one write with its head, and
    # 500 requests pipelined in one write (230 kB of heads in all), are read as they are
    body = b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.txt\"\r\n\r\n"
    body += b"not an image " * 160_000 + b"\r\n--XyZ--\r\n"
    with socket.create_connection(address) as sock:
        sock.sendall(b"POST /v1/analyses HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                     b"boundary=XyZ\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        assert _status(_answer(sock)) == (415, "not_an_image")
    with socket.create_connection(address) as sock:
        sock.sendall((b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 400 + b"\r\n\r\n") * 500)
        sock.settimeout(60)
        answers = b""
        while answers.count(b"HTTP/1.1 200") < 500 and (chunk := sock.recv(65536)):
            answers += chunk
        assert answers.count(b"HTTP/1.1 200") == 500 and b"headers_too_large" not in answers
    assert httpx.get(plain_server.url + "/health").status_code == 200


@pytest.mark.server
def test_two_hundred_slow_clients_are_cut_off_while_health_answers(plain_server: Server) -> None:
    # each announces a 100 MB upload and sends a byte a second: all are cut off with 408 once 20 s have passed
    # (RETOUCH_BODY_TIMEOUT_S, plus a second per 500 bytes received), and /health answers meanwhile
    head = (b"POST /v1/analyses HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n"
            b"Content-Length: 100000000\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image\"; "
            b"filename=\"a.png\"\r\n\r\n")
    clients, first_sent = [], time.time()
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", plain_server.port))
        sock.sendall(head)
        sock.setblocking(False)
        clients.append(sock)
    started, answers, closed, healths = time.time(), {}, set(), []
    selector = selectors.DefaultSelector()
    for sock in clients:
        selector.register(sock, selectors.EVENT_READ)
    last_drip = 0.0
    while len(closed) < len(clients) and time.time() - started < 60:
        if time.time() - last_drip >= 1:
            last_drip = time.time()
            for sock in clients:
                if sock not in answers:
                    try:
                        sock.send(b"x")
                    except OSError:
                        pass
            healths.append(httpx.get(plain_server.url + "/health", timeout=10).status_code)
        for key, _ in selector.select(timeout=0.2):
            sock = key.fileobj
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:  # not readable after all: asked again
                continue
            except ConnectionResetError:
                chunk = b""
            answers[sock] = answers.get(sock, b"") + chunk
            if not chunk:  # the server closed it: the answer is whole (a response may come in several reads)
                closed.add(sock)
                selector.unregister(sock)
    for sock in clients:
        sock.close()
    assert len(closed) == 200, f"{200 - len(closed)} slow clients were still connected after 60 s"
    assert Counter(_status(answer) for answer in answers.values()) == {(408, "request_timeout"): 200}
    assert healths and set(healths) == {200}
    assert time.time() - first_sent >= 19.5  # none was cut off before its deadline


def test_more_files_than_a_request_may_hold_and_more_zip_members_than_a_batch_get_too_many_files(
        tmp_path: Path) -> None:
    png = small_scan(10)
    with in_process_service(tmp_path / "data") as server, server.client() as client:
        parts = client.post("/v1/batches", files=[("files", (f"s{i}.png", png)) for i in range(1001)])
        assert parts.status_code == 400 and parts.json()["error"]["code"] == "too_many_files", parts.text
        fields = client.post("/v1/batches", data={f"f{i}": "x" for i in range(1001)},
                             files={"files": ("s.png", png)})
        assert fields.status_code == 400 and fields.json()["error"]["code"] == "invalid_request", fields.text
        archive = zip_bytes({f"s{i}.png": b"" for i in range(10_000)})
        members = client.post("/v1/batches", files={"archive": ("many.zip", archive)})
        assert members.status_code == 400 and members.json()["error"]["code"] == "too_many_files", members.text
        assert "10000 files" in members.json()["error"]["message"]
        assert not list((tmp_path / "data" / "uploads").iterdir())


def test_a_zip_unpacking_to_more_than_a_file_or_a_job_may_store_is_refused_before_it_is_written(
        tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, 400_000, dtype=np.uint8).tobytes()  # keeps the ratio under the bomb guard
    big = b"\x89PNG\r\n\x1a\n" + (noise + b"\0" * 1_600_000) * 2  # 4 MB, over the 3 MB a file may be
    medium = b"\x89PNG\r\n\x1a\n" + noise + b"\0" * 1_500_000  # 1.9 MB each
    with in_process_service(tmp_path / "data", max_upload_bytes=3_000_000, max_job_bytes=5_000_000) as server, \
            server.client() as client:
        one = client.post("/v1/batches", files={"archive": ("one.zip", zip_bytes({"big.png": big}))})
        assert one.status_code == 413 and one.json()["error"]["code"] == "upload_too_large", one.text
        assert "'big.png' unpacks to 4 MB" in one.json()["error"]["message"]
        three = client.post("/v1/batches", files={"archive": ("three.zip", zip_bytes(
            {f"m{i}.png": medium for i in range(3)}))})
        assert three.status_code == 413 and "RETOUCH_MAX_JOB_BYTES" in three.json()["error"]["message"], three.text
        assert not list((tmp_path / "data" / "uploads").iterdir())


# --- memory ------------------------------------------------------------------------------------------------

# a child process's peak resident size in KB, as it prints it (VmHWM: ru_maxrss would carry over the peak of the
# process that started it, through fork and exec)
PEAK_KB = ("next(int(line.split()[1]) for line in __import__('pathlib').Path('/proc/self/status').read_text()"
           ".splitlines() if line.startswith('VmHWM:'))")

def test_a_jpeg_claiming_196_megapixels_is_refused_by_the_memory_budget_before_it_is_decoded(
        tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(jpeg_bomb(14000, 14000))
    probe = ("import sys\nfrom retouch.cli.app import main\ncode = main(sys.argv[1:])\n"
             f"print({PEAK_KB}, file=sys.stderr)\nsys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", probe, "analyze", str(bomb), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    message, peak_kb = done.stderr.splitlines()[0], int(done.stderr.splitlines()[-1])
    assert done.returncode == 2, done.stderr
    assert "196 MP" in message and "over the budget of 4.0 GB" in message and "RETOUCH_MAX_MEMORY" in message
    assert peak_kb < 1_000_000, "it was decoded (196 MP take at least 196 MB, the analysis some 15 GB)"
    assert not (tmp_path / "out").exists()


def test_the_service_refuses_a_memory_bomb_at_submission_with_its_code(tmp_path: Path) -> None:
    with in_process_service(tmp_path / "data") as server, server.client() as client:
        bomb = jpeg_bomb(14000, 14000)
        for response in (client.post("/v1/analyses", files={"image": ("bomb.jpg", bomb)}),
                         client.post("/v1/batches", files={"files": ("bomb.jpg", bomb)}),
                         client.post("/v1/batches", files={"archive": ("b.zip", zip_bytes({"bomb.jpg": bomb}))})):
            assert response.status_code == 413, response.text
            error = response.json()["error"]
            assert error["code"] == "over_memory_budget" and "bomb.jpg" in error["message"]
            assert "RETOUCH_MAX_MEMORY" in error["message"] and "fewer detectors" in error["message"]


def test_a_large_damaged_upload_is_refused_without_being_decoded_whole(tmp_path: Path) -> None:
    from retouch.io import check_image
    from retouch.errors import InputError

    rng = np.random.default_rng(2)
    picture = rng.integers(0, 256, (2400, 2000), dtype=np.uint8)  # 4.8 MP: over the whole-decode bound
    for fmt in ("JPEG", "PNG"):
        data = image_bytes(picture, fmt)
        path = tmp_path / f"scan.{fmt.lower()}"
        path.write_bytes(data)
        assert check_image(path).width == 2000
        path.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(InputError) as refused:
            check_image(path, name="scan")
        assert refused.value.code == "unreadable" and "truncated or corrupt" in str(refused.value)
    # a PNG whose compressed stream was damaged before its CRCs were computed
    damaged = bytearray(image_bytes(picture, "PNG"))
    start = damaged.index(b"IDAT") + 4
    damaged[start:start + 64] = bytes(64)
    path.write_bytes(_png_with_crcs(bytes(damaged)))
    with pytest.raises(InputError, match="inflated"):
        check_image(path)
    probe = f"from retouch.io import check_image\ncheck_image({str(tmp_path / 'b.jpg')!r})\nprint({PEAK_KB})\n"
    (tmp_path / "b.jpg").write_bytes(jpeg_bomb(14000, 14000))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 300_000, "the 196 MP JPEG was decoded at full size to check it"


def _png_with_crcs(data: bytes) -> bytes:
    """``data`` with every chunk's CRC made right again."""
    import zlib

    out, position = bytearray(data[:8]), 8
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        body = data[position + 4:position + 8 + length]
        out += data[position:position + 4] + body + zlib.crc32(body).to_bytes(4, "big")
        position += 12 + length
    return bytes(out)


# --- start-up sweeps and the data folder's lock -----------------------------------------------------------------

def test_start_up_sweeps_what_a_crash_left_and_keeps_what_jobs_use(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with in_process_service(data) as server, server.client() as client:
        job_id = client.post("/v1/analyses", files={"image": ("s.png", small_scan(11))},
                             data={"detectors": "grain"}).json()["job_id"]
        server.wait_job(client, job_id)
    kept_upload = next((data / "uploads").iterdir())
    items = data / "jobs" / job_id / "items"
    left = [data / "uploads" / ("f" * 32) / "members" / "00001" / "x.png",  # an interrupted unpack
            items / ".image.0123456789abcdef.partial" / "grain.png",  # an interrupted attempt
            items / "image" / ".overlay.png.0011223344556677.part",  # an interrupted write
            data / "jobs" / ("e" * 32) / "items" / "x" / "report.json"]  # a job deleted but for its folder
    for path in left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by a crash")
    with in_process_service(data) as server, server.client() as client:
        until(lambda: not any(path.exists() for path in left), "the start-up sweep")
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "done"
        assert client.get(f"/v1/jobs/{job_id}/items/image/files/overlay.png").status_code == 200
    assert kept_upload.is_dir() and (items / "image" / "report.json").is_file()
    assert not (data / "uploads" / ("f" * 32)).exists() and not (data / "jobs" / ("e" * 32)).exists()


def test_two_services_cannot_share_a_data_folder(tmp_path: Path) -> None:
    from api.recovery import DataFolderInUse

    data = tmp_path / "data"
    with in_process_service(data):
        with pytest.raises(DataFolderInUse, match="another retouch serve"), in_process_service(data):
            pass
        refused = retouch_process("serve", "--data-dir", str(data), "--port", "1")
        assert refused.returncode == 2 and "another retouch serve" in refused.stderr, refused.stderr


# --- retouch batch ----------------------------------------------------------------------------------------------

def test_pipes_and_devices_in_a_batch_folder_are_named_in_the_summary(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "good.png").write_bytes(small_scan(12))
    os.mkfifo(scans / "scanner-pipe")
    (scans / "zero.jpg").symlink_to("/dev/zero")
    report = run_batch(scans, tmp_path / "out", detectors=["grain"], workers=1)
    assert (report.ok, report.failed) == (1, 2)
    records = read_results(tmp_path / "out")
    assert "named pipe" in records["scanner-pipe"]["error"] and "scanner-pipe" in records["scanner-pipe"]["error"]
    assert "character device" in records["zero.jpg"]["error"] and "zero.jpg" in records["zero.jpg"]["error"]
    with open(tmp_path / "out" / SUMMARY, newline="") as handle:
        assert {row["id"] for row in csv.DictReader(handle)} == {"good.png", "scanner-pipe", "zero.jpg"}


def test_a_second_batch_on_the_same_output_folder_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    from retouch.errors import InputError
    from retouch.run.batch import RunLock

    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.png").write_bytes(small_scan(13))
    out = tmp_path / "out"
    out.mkdir()
    running = RunLock(out)  # as the first run holds it
    try:
        with pytest.raises(InputError) as refused:
            run_batch(scans, out, detectors=["grain"], workers=1)
        assert refused.value.code == "busy_output" and f"process {os.getpid()}" in str(refused.value)
    finally:
        running.release()
    assert run_batch(scans, out, detectors=["grain"], workers=1).ok == 1


@pytest.mark.slow
def test_retouch_batch_killed_at_random_moments_loses_and_doubles_nothing(tmp_path: Path) -> None:
    # kill -9 ten times at random moments over 30 scans (the coordinator alone, or with its workers), then let
    # a run finish: every scan recorded as done exactly once, in results.jsonl and summary.csv, with whole folders
    scans = tmp_path / "scans"
    scans.mkdir()
    for index in range(30):
        case = make_authentic(400 + index, size=192)
        (scans / f"scan{index:02d}.{'jpg' if case.file_format == 'JPEG' else 'png'}").write_bytes(case.file_bytes)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "retouch", "batch", str(scans), "-o", str(out), "-w", "2", "-d", "grain,ela"]
    moments, results = random.Random(27), out / RESULTS

    def recorded() -> int:
        return len(results.read_text().splitlines()) if results.exists() else 0

    for kill in range(10):
        # the moment: after 0 to 2 more items are recorded, then up to a second more (mid-item, mid-write,
        # mid-publish: wherever it falls)
        wanted = recorded() + moments.randint(0, 2)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        until(lambda: recorded() >= wanted or process.poll() is not None, "the run to record items")
        time.sleep(moments.uniform(0.0, 1.0))
        workers = ([child.pid for child in psutil.Process(process.pid).children(recursive=True)]
                   if process.poll() is None else [])
        if kill % 2 == 0:
            process.kill()  # the coordinator alone: its workers must notice and end
        elif process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        until(lambda: all(gone(pid) for pid in workers), "the killed run's workers to end", bound=60)
    assert read_results(out), "the kills must fall while the runs record items"
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    lines = [json.loads(line) for line in (out / RESULTS).read_text().splitlines() if line.strip()]
    done = Counter(line["id"] for line in lines if line["status"] == "ok")
    assert len(done) == 30 and set(done.values()) == {1}, done
    with open(out / SUMMARY, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["id"] for row in rows) == sorted(done) and {row["status"] for row in rows} == {"ok"}
    for item_id in done:
        folder = out / "items" / item_id
        report = json.loads((folder / "report.json").read_text())
        assert all((folder / name).is_file() for name in report["artifacts"]), item_id
    assert not list((out / "items").glob(".*.partial")) and not list(out.rglob("*.part"))
