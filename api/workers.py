"""The worker pool: a dispatcher thread claims queued items and runs them on the shared executor.

Work never runs in a request handler. Each item runs on :func:`retouch.run.item.run_item`, as a command-line batch
item does: its reports are written under a staging name of its own and renamed into place when complete, so an
item interrupted by a crash leaves no half-written artifacts and simply runs again.

Every claim of an item is an attempt, numbered in the store, and the attempt's number is its fencing token: the
worker publishes the item's folder only while the store says this attempt still runs the item, and holds the
store's write lock while it renames (:class:`AttemptFence`), so no other attempt can take the item over
meanwhile. A worker whose job was deleted, or orphaned by a killed server while the restarted one ran the item
again, throws its output away. Workers may run in other processes or on a Dask cluster sharing the data folder,
so the fence reads the store's file, not the dispatcher's memory.

The dispatcher never dies of a fault it can outlive: a database it cannot write (locked by another process past
the busy timeout, a full disk) or a full data folder pauses it, with back-off, and is reported once per episode
in the log and by ``/health`` (:class:`ServiceHealth`) until it is over; results it could not record wait in
memory and are recorded then. A worker process that dies fails its own item only (see
:class:`retouch.run.executor.LocalExecutor`).
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.logs import JobEvents
from api.store import JobStore
from retouch.run.executor import WorkerDied, WorkerStopped, make_executor
from retouch.run.item import Item, ItemOptions, ItemOutcome, run_item

log = logging.getLogger("retouch.api")

CANCELLED = "cancelled: the job was deleted, or another attempt took the item over"
INPUT_OUTSIDE = "an input is not among this data folder's uploads"
BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)  # waits between retries while the store or the disk refuses work
DISK_CHECK_S = 0.5  # how often the data folder's free space is looked at
MAX_ATTEMPTS = 5  # an item whose results could not be kept this often fails (instead of running for ever)
NO_SPACE = "the service's disk had no space left for this item's reports, five times; submit it again later"


def job_folder(data_dir: Path, job_id: str) -> Path:
    return data_dir / "jobs" / job_id


def item_folder(data_dir: Path, job_id: str, item_id: str) -> Path:
    return job_folder(data_dir, job_id) / "items" / item_id


def free_bytes(folder: Path) -> int:
    """Free space for the service on the disk holding ``folder`` (0 when it cannot be read)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


@dataclass(frozen=True)
class AttemptFence:
    """The fence of a web-service item (:class:`retouch.run.item.Fence`): it holds while the store records the
    item as running under this ``attempt``; a deleted job, an item queued again after a restart or taken over
    by a newer attempt no longer holds it. Publishing happens inside the store's write lock (``BEGIN
    IMMEDIATE``), which claims and restarts wait for."""

    database: str
    job_id: str
    item_id: str
    attempt: int
    busy_timeout_s: float = 30.0
    reason: str = CANCELLED

    def _owns(self, db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM items WHERE job_id = ? AND item_id = ? AND state = 'running' "
                          "AND attempt = ?", (self.job_id, self.item_id, self.attempt)).fetchone() is not None

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.database, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def holds(self) -> bool:
        try:
            with self._connection() as db:
                return self._owns(db)
        except sqlite3.Error:  # unknown for now: the item runs, and publishing asks again
            return True

    @contextmanager
    def publishing(self) -> Iterator[bool]:
        with self._connection() as db:  # closing it ends the transaction, should ROLLBACK fail
            db.execute("BEGIN IMMEDIATE")
            try:
                yield self._owns(db)
            finally:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")


class ServiceHealth:
    """What keeps the service from working, by component (``store``, ``disk``, ``workers``): the reason and since
    when. Each episode is logged once as it starts and once as it ends; ``/health`` reports the ones in force."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._problems: dict[str, tuple[str, float]] = {}

    def report(self, component: str, reason: str) -> None:
        with self._lock:
            known = self._problems.get(component)
            self._problems[component] = (reason, known[1] if known else time.time())
        if known is None:
            log.warning("%s: %s (retrying until it clears)", component, reason)

    def clear(self, component: str) -> None:
        with self._lock:
            known = self._problems.pop(component, None)
        if known is not None:
            log.warning("%s: recovered after %.1f s (%s)", component, time.time() - known[1], known[0])

    def problems(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"component": component, "reason": reason, "since": since}
                    for component, (reason, since) in sorted(self._problems.items())]


def describe_store_error(error: BaseException) -> str:
    """A store failure in words for the log and ``/health``."""
    text = str(error) or type(error).__name__
    if "locked" in text or "busy" in text:
        return f"the job database is locked by another process ({text}); claims and results wait"
    if "full" in text:
        return f"the job database cannot be written: its disk is full ({text}); claims and results wait"
    return f"the job database cannot be written ({text}); claims and results wait"


def client_message(message: str, inputs: list[str], final: Path) -> str:
    """An item's error as its client may see it: server paths replaced by the bare file names.

    The loader names a file by the path it was given or by its resolved absolute path; either way only the last
    part (the client's own file name, see api.uploads) is kept. The item's folder becomes its name.
    """
    replacements = {str(final): final.name}
    for path in inputs:
        replacements[path] = Path(path).name
        replacements[os.path.realpath(path)] = Path(path).name
        replacements[str(Path(path).absolute())] = Path(path).name
    for server_path in sorted(replacements, key=len, reverse=True):  # longest first: no partial replacements
        message = message.replace(server_path, replacements[server_path])
    return message


WORKER_DIED = ("the worker process running this item ended unexpectedly ({cause}); nothing was kept. Submit it "
               "again; if it fails again, the machine may lack the memory for this scan beside the other workers' "
               "(the operator can run fewer workers, or lower RETOUCH_MAX_MEMORY so that such scans are refused "
               "at once)")


def _result(outcome: ItemOutcome) -> tuple[dict[str, Any] | None, str | None]:
    """An item's outcome as the store records it: (result, None) when it succeeded, else (None, the error as
    the client sees it). An internal error names only its kind: its text may hold server paths."""
    if outcome.status == "ok":
        return {"score": outcome.score, "regions": outcome.regions, "summary": outcome.summary,
                "artifacts": outcome.artifacts, "seconds": outcome.seconds, "sha256": outcome.sha256,
                "note": outcome.note}, None
    if outcome.internal:
        log.error("item %s failed: %s", outcome.folder, outcome.error)
        return None, f"internal error: {outcome.error_type}"
    return None, client_message(outcome.error, outcome.inputs, Path(outcome.folder))


@dataclass
class _Finished:
    """An attempt whose worker has answered (or died), waiting to be recorded by the dispatcher's thread."""

    claimed: dict[str, Any]
    future: Future


class Dispatcher:
    def __init__(self, store: JobStore, data_dir: Path, *, workers: int | None, scheduler: str | None,
                 poll_interval: float, min_free_bytes: int = 0, health: ServiceHealth | None = None,
                 recover: Callable[[], None] | None = None) -> None:
        """``recover`` runs first, before any claim, until it succeeds (the start-up recovery: items a dead
        process was running queued again, what it left swept away, see :mod:`api.recovery`)."""
        self.store = store
        self._recover = recover
        self.data_dir = data_dir
        self.executor = make_executor(scheduler, workers=workers)
        self.capacity = max(1, workers or getattr(self.executor, "workers", 2))
        self.poll_interval = poll_interval
        self.min_free_bytes = min_free_bytes
        self.health = health or ServiceHealth()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._in_flight: set[Future] = set()
        self._finished: collections.deque[_Finished] = collections.deque()
        self._lock = threading.Lock()
        self._disk_low = False
        self._disk_checked = 0.0
        self._thread = threading.Thread(target=self._loop, name="retouch-dispatcher", daemon=True)
        self.events = JobEvents(store)  # logs each job's start and end

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.executor.shutdown(cancel=True)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self._recover is not None:
                    self._recover()
                    self._recover = None
                disk_low = self._disk_is_low()
                self._record_finished()
                claimed = self._claim() if self._room() and not disk_low else None
                self.health.clear("store")
                failures = 0
            except (sqlite3.Error, OSError) as error:
                self.health.report("store", describe_store_error(error))
                self._pause(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1
                continue
            except Exception as error:  # noqa: BLE001 - a defect: logged, and the service carries on
                log.exception("dispatcher: unexpected error")
                self.health.report("dispatcher", f"unexpected error: {type(error).__name__}; see the log")
                self._pause(BACKOFF_S[-1])
                continue
            self.health.clear("dispatcher")
            if claimed is None:
                self._pause(self.poll_interval)

    def _pause(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _room(self) -> bool:
        with self._lock:
            return len(self._in_flight) < self.capacity

    def _disk_is_low(self) -> bool:
        """Whether the data folder's disk has less than ``min_free_bytes`` free: no item is started then (its
        reports would fail to be written), and ``/health`` says so."""
        now = time.monotonic()
        if now - self._disk_checked >= DISK_CHECK_S:
            self._disk_checked = now
            free = free_bytes(self.data_dir)
            self._disk_low = free < self.min_free_bytes
            if self._disk_low:
                self.health.report("disk", f"the data folder's disk has {free / 1e6:.0f} MB free, under the "
                                           f"{self.min_free_bytes / 1e6:.0f} MB the service keeps "
                                           "(RETOUCH_MIN_FREE_BYTES); uploads get 507 and no item starts")
            else:
                self.health.clear("disk")
        return self._disk_low

    def _claim(self) -> dict[str, Any] | None:
        """Claim the next queued item and hand it to a worker; None when nothing is queued."""
        claimed = self.store.claim()
        if claimed is None:
            return None
        if None in claimed["inputs"]:  # recorded outside the data folder (see api.store): never read
            self.store.finish(claimed["job_id"], claimed["item_id"], claimed["attempt"], result=None,
                              error=INPUT_OUTSIDE)
            self.events.item_recorded(claimed["job_id"])
            return claimed
        self.events.item_started(claimed["job_id"])
        out_dir = item_folder(self.data_dir, claimed["job_id"], claimed["item_id"])
        item = Item(claimed["item_id"], claimed["command"], tuple(str(path) for path in claimed["inputs"]))
        fence = AttemptFence(str(self.store.path), claimed["job_id"], claimed["item_id"], claimed["attempt"],
                             self.store.busy_timeout_s)
        future = self.executor.submit(run_item, item, str(out_dir), ItemOptions.from_json(claimed["options"]),
                                      fence=fence)
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(lambda done, claimed=claimed: self._done(claimed, done))
        return claimed

    def _done(self, claimed: dict[str, Any], future: Future) -> None:
        """A worker answered (in the executor's thread): recorded by the dispatcher's thread, which retries."""
        self._finished.append(_Finished(claimed, future))
        with self._lock:
            self._in_flight.discard(future)
        self._wake.set()

    def _record_finished(self) -> None:
        """Record every answered attempt; one the store refuses stays first in line (and the error is raised)."""
        while self._finished:
            finished = self._finished[0]
            try:
                self._record(finished.claimed, finished.future)
                self.events.item_recorded(finished.claimed["job_id"])  # the job's end, if it was its last
            except (sqlite3.Error, OSError):
                raise
            except Exception:  # noqa: BLE001 - a defect must not hold up the others: logged, and the item stays
                log.exception("could not record item %s/%s", finished.claimed["job_id"],
                              finished.claimed["item_id"])  # running until the next start queues it again
            self._finished.popleft()

    def _record(self, claimed: dict[str, Any], future: Future) -> None:
        job_id, item_id, attempt = claimed["job_id"], claimed["item_id"], claimed["attempt"]
        if future.cancelled():
            return
        failure = future.exception()
        if isinstance(failure, WorkerStopped):
            if not self._stop.is_set():  # a worker stopped alone (SIGTERM): the item runs again
                self.store.requeue_attempt(job_id, item_id, attempt)
            return  # stopping: the item stays running and is queued again when the service starts
        if isinstance(failure, WorkerDied):
            log.error("item %s/%s (attempt %d): %s", job_id, item_id, attempt, failure)
            cause = str(failure).partition("(")[2].rpartition(")")[0] or "no reason given"
            self.store.finish(job_id, item_id, attempt, result=None, error=WORKER_DIED.format(cause=cause))
            return
        if failure is not None:
            log.error("item %s/%s (attempt %d): worker failed: %r", job_id, item_id, attempt, failure)
            self.store.finish(job_id, item_id, attempt, result=None,
                              error=f"internal error: worker failed ({type(failure).__name__})")
            return
        outcome: ItemOutcome = future.result()
        if outcome.status == "fenced" or outcome.code == "no_space":
            if outcome.code == "no_space":  # the server's disk, not the client's file: run it again later
                self._disk_checked = 0.0
                given_up = NO_SPACE
            else:
                log.warning("item %s/%s (attempt %d): result discarded: %s", job_id, item_id, attempt,
                            outcome.error)
                given_up = f"internal error: the item's results could not be published ({outcome.error})"
            if attempt >= MAX_ATTEMPTS:  # (a no-op when another attempt owns the item)
                self.store.finish(job_id, item_id, attempt, result=None, error=given_up)
                return
            requeued = self.store.requeue_attempt(job_id, item_id, attempt)
            if not requeued and self.store.job(job_id) is None:
                # the job was deleted while this item ran; the worker may still have written (a delete can fall
                # between its fence and its rename), so whatever is there goes now
                shutil.rmtree(job_folder(self.data_dir, job_id), ignore_errors=True)
            return
        result, error = _result(outcome)
        recorded = self.store.finish(job_id, item_id, attempt, result=result, error=error)
        if not recorded and self.store.job(job_id) is None:
            shutil.rmtree(job_folder(self.data_dir, job_id), ignore_errors=True)
