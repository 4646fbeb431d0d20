"""The worker pool: a dispatcher thread claims queued items and runs them on the shared executor.

Work never runs in a request handler. Each item runs on :func:`retouch.run.item.run_item`, as a command-line batch
item does: its reports are written under a staging name and renamed into place when complete, so an item
interrupted by a crash leaves no half-written artifacts and simply runs again.

A job is being worked on while its folder holds the :data:`LIVE_MARKER` file, written by the dispatcher before it
hands an item to a worker. Deleting a job removes its folder, marker included: a worker still running one of its
items then finds the marker gone (its :class:`LiveJob` fence no longer holds) and throws its output away instead
of putting it in place, and the dispatcher removes whatever a worker wrote for a job that no longer exists.
Workers may run in other processes or on a Dask cluster sharing the data folder, so the signal is a file, not
memory or the database.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.logs import JobEvents
from api.store import JobStore
from retouch.run.executor import make_executor
from retouch.run.item import Item, ItemOptions, ItemOutcome, run_item

log = logging.getLogger("retouch.api")

LIVE_MARKER = ".live"
CANCELLED = "cancelled: the job was deleted"
INPUT_OUTSIDE = "an input is not among this data folder's uploads"


def job_folder(data_dir: Path, job_id: str) -> Path:
    return data_dir / "jobs" / job_id


def item_folder(data_dir: Path, job_id: str, item_id: str) -> Path:
    return job_folder(data_dir, job_id) / "items" / item_id


@dataclass(frozen=True)
class LiveJob:
    """The fence of an item of a web-service job: it holds while the job's folder holds its live marker (a
    deleted job's folder is gone), so a worker whose job was deleted throws its output away."""

    folder: str  # the job's folder
    reason: str = CANCELLED

    def holds(self) -> bool:
        return (Path(self.folder) / LIVE_MARKER).exists()


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


class Dispatcher:
    def __init__(self, store: JobStore, data_dir: Path, *, workers: int | None, scheduler: str | None,
                 poll_interval: float) -> None:
        self.store = store
        self.data_dir = data_dir
        self.executor = make_executor(scheduler, workers=workers)
        self.capacity = max(1, workers or getattr(self.executor, "workers", 2))
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._in_flight: set[Future] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="retouch-dispatcher", daemon=True)
        self.events = JobEvents(store)  # logs each job's start and end

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.executor.shutdown(cancel=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                room = self.capacity - len(self._in_flight)
            claimed = self.store.claim() if room > 0 else None
            if claimed is None:
                self._stop.wait(self.poll_interval)
                continue
            if None in claimed["inputs"]:  # recorded outside the data folder (see api.store): never read
                self.store.finish(claimed["job_id"], claimed["item_id"], claimed["attempt"], result=None,
                                  error=INPUT_OUTSIDE)
                self.events.item_recorded(claimed["job_id"])
                continue
            self.events.item_started(claimed["job_id"])
            out_dir = item_folder(self.data_dir, claimed["job_id"], claimed["item_id"])
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            job = job_folder(self.data_dir, claimed["job_id"])
            (job / LIVE_MARKER).touch()
            item = Item(claimed["item_id"], claimed["command"], tuple(str(path) for path in claimed["inputs"]))
            future = self.executor.submit(run_item, item, str(out_dir), ItemOptions.from_json(claimed["options"]),
                                          fence=LiveJob(str(job)))
            with self._lock:
                self._in_flight.add(future)
            future.add_done_callback(lambda done, item=claimed: self._finish(done, item))

    def _finish(self, future: Future, item: dict[str, Any]) -> None:
        with self._lock:
            self._in_flight.discard(future)
        if future.cancelled():
            return
        try:
            result, error = _result(future.result())
        except Exception as failure:  # noqa: BLE001 - e.g. a worker process died
            result, error = None, f"worker failed: {type(failure).__name__}"
        try:
            recorded = self.store.finish(item["job_id"], item["item_id"], item["attempt"], result=result,
                                         error=error)
            self.events.item_recorded(item["job_id"])
            if not recorded and self.store.job(item["job_id"]) is None:
                # the job was deleted while this item ran; the worker may still have written (it checks the
                # marker, then renames: a delete can fall in between), so whatever is there goes now
                shutil.rmtree(job_folder(self.data_dir, item["job_id"]), ignore_errors=True)
        except Exception:  # noqa: BLE001 - the item stays running and is re-queued on restart
            log.exception("could not record item %s/%s", item["job_id"], item["item_id"])
