"""The worker pool: a dispatcher thread claims queued items and runs them on the shared executor.

Work never runs in a request handler. Each item writes into a temporary folder that is renamed into place
when complete, so an item interrupted by a crash leaves no half-written artifacts and simply runs again.

A job is being worked on while its folder holds the :data:`LIVE_MARKER` file, written by the dispatcher before it
hands an item to a worker. Deleting a job removes its folder, marker included: a worker still running one of its
items then finds the marker gone and throws its output away instead of putting it in place, and the dispatcher
removes whatever a worker wrote for a job that no longer exists. Workers may run in other processes or on a
Dask cluster sharing the data folder, so the signal is a file, not memory or the database.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from api.store import JobStore
from retouch.run.executor import make_executor

log = logging.getLogger("retouch.api")

LIVE_MARKER = ".live"
CANCELLED = "cancelled: the job was deleted"
INPUT_OUTSIDE = "an input is not among this data folder's uploads"


def job_folder(data_dir: Path, job_id: str) -> Path:
    return data_dir / "jobs" / job_id


def _job_is_live(item_out_dir: Path) -> bool:
    """Whether the job owning ``item_out_dir`` (``jobs/<job>/items/<item>``) still exists."""
    return (item_out_dir.parent.parent / LIVE_MARKER).exists()


def client_message(message: str, inputs: list[str], partial: Path, final: Path) -> str:
    """An item's error as its client may see it: server paths replaced by the bare file names.

    The loader names a file by the path it was given or by its resolved absolute path; either way only the last
    part (the client's own file name, see api.uploads) is kept. Output folders become the item's folder name.
    """
    replacements = {str(partial): final.name, str(final): final.name}
    for path in inputs:
        replacements[path] = Path(path).name
        replacements[os.path.realpath(path)] = Path(path).name
        replacements[str(Path(path).absolute())] = Path(path).name
    for server_path in sorted(replacements, key=len, reverse=True):  # longest first: no partial replacements
        message = message.replace(server_path, replacements[server_path])
    return message


def _discard(partial: Path, final: Path) -> None:
    """Remove a cancelled item's output, and its job's folders when nothing else is left in them."""
    shutil.rmtree(partial, ignore_errors=True)
    for folder in (final.parent, final.parent.parent):  # items/, then the job's folder: removed only when empty
        try:
            folder.rmdir()
        except OSError:
            break


def run_api_item(command: str, inputs: list[str], out_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Worker side: run one item into ``out_dir`` atomically; returns the outcome or {"error": message}."""
    from retouch.errors import InputError
    from retouch.run.tasks import analyze_file, compare_files

    final = Path(out_dir)
    # the leading dot keeps the name out of reach of item ids, which never start with one (api.uploads): as
    # 'x.partial', item 'x' would run in item 'x.partial''s folder, clearing away that item's finished reports
    partial = final.with_name(f".{final.name}.partial")
    if not _job_is_live(final):  # deleted while queued for this worker: nothing to do
        _discard(partial, final)
        return {"error": CANCELLED}
    shutil.rmtree(partial, ignore_errors=True)
    try:
        if command == "analyze":
            outcome = analyze_file(inputs[0], partial, detectors=options.get("detectors") or None,
                                   max_pixels=options.get("max_pixels"))
        else:
            outcome = compare_files(inputs[0], inputs[1], partial, max_pixels=options.get("max_pixels"))
    except InputError as error:
        shutil.rmtree(partial, ignore_errors=True)
        return {"error": client_message(str(error), inputs, partial, final)}
    except Exception as error:  # noqa: BLE001 - a failing item fails alone
        shutil.rmtree(partial, ignore_errors=True)
        return {"error": f"internal error while processing: {type(error).__name__}"}
    if not _job_is_live(final):  # deleted while this item ran: its results must not appear
        _discard(partial, final)
        return {"error": CANCELLED}
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return {"score": round(outcome.score, 4), "regions": outcome.region_count, "summary": outcome.summary,
            "artifacts": outcome.artifacts, "seconds": outcome.seconds}


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

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.executor.shutdown(cancel=True)

    def item_dir(self, job_id: str, item_id: str) -> Path:
        return job_folder(self.data_dir, job_id) / "items" / item_id

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
                continue
            out_dir = self.item_dir(claimed["job_id"], claimed["item_id"])
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            (out_dir.parent.parent / LIVE_MARKER).touch()
            inputs = [str(path) for path in claimed["inputs"]]
            future = self.executor.submit(run_api_item, claimed["command"], inputs, str(out_dir),
                                          claimed["options"])
            with self._lock:
                self._in_flight.add(future)
            future.add_done_callback(lambda done, item=claimed: self._finish(done, item))

    def _finish(self, future: Future, item: dict[str, Any]) -> None:
        with self._lock:
            self._in_flight.discard(future)
        if future.cancelled():
            return
        try:
            outcome = future.result()
        except Exception as error:  # noqa: BLE001 - e.g. a worker process died
            outcome = {"error": f"worker failed: {type(error).__name__}"}
        error = outcome.pop("error", None)
        try:
            recorded = self.store.finish(item["job_id"], item["item_id"], item["attempt"],
                                         result=None if error else outcome, error=error)
            if not recorded and self.store.job(item["job_id"]) is None:
                # the job was deleted while this item ran; the worker may still have written (it checks the
                # marker, then renames: a delete can fall in between), so whatever is there goes now
                shutil.rmtree(job_folder(self.data_dir, item["job_id"]), ignore_errors=True)
        except Exception:  # noqa: BLE001 - the item stays running and is re-queued on restart
            log.exception("could not record item %s/%s", item["job_id"], item["item_id"])

    def idle(self) -> bool:
        with self._lock:
            return not self._in_flight
