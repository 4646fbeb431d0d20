"""What a service does with its data folder as it starts: take it for itself, and clear away what a crash left.

A crash (a kill -9, a power cut, the out-of-memory killer) can leave, under the data folder:

- an upload folder no job refers to: the request was killed while its files were saved or a zip unpacked,
  before its job was recorded;
- a staging folder (``jobs/<job>/items/.<item>.<attempt>.partial``) that no attempt will publish: every item a
  dead process ran is queued again, and runs in a staging folder of its own;
- a job folder whose job is gone: the server died between deleting a job's record and its files;
- temp files of atomic writes (``.<name>.<random>.part``) beside finished reports.

:func:`sweep` removes each of them, logging what it removed and why. The service holds the data folder's lock
(:class:`DataFolderLock`), so no other service works in it; it lists the folders there as it starts, before it
takes a request (:func:`survey`), and the dispatcher sweeps among those alone, once it has queued again the items
a dead process was running and before it claims any: requests may be under way by then (the store may be locked
for a while at start), but their folders are not among those listed.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import IO

from api.store import REQUEST_FOLDER, UPLOADS, JobStore
from retouch.io.folders import stale_staging_folders

log = logging.getLogger("retouch.api")

LOCK_NAME = ".retouch-serve.lock"


class DataFolderInUse(RuntimeError):
    """Another ``retouch serve`` holds the data folder."""


class DataFolderLock:
    """One service per data folder: an exclusive lock on ``<data>/.retouch-serve.lock`` for the service's life
    (the system drops it when the process ends, killed or not). Two services on one folder would each sweep the
    other's uploads as left by a crash, and each queue the other's running items again."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._handle: IO[str] | None = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held
        try:
            import fcntl

            fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not on POSIX: no lock
            pass
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "another process"
            self._handle.close()
            self._handle = None
            raise DataFolderInUse(f"{data_dir}: another retouch serve ({holder}) uses this data folder; stop it, "
                                  "or give this one another --data-dir") from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(f"process {os.getpid()}\n")
        self._handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def survey(data_dir: Path) -> set[Path]:
    """The upload and job folders under ``data_dir`` now: the only ones :func:`sweep` may remove."""
    return {path for parent in (data_dir / UPLOADS, data_dir / "jobs") if parent.is_dir()
            for path in parent.iterdir()}


def sweep(store: JobStore, data_dir: Path, among: set[Path]) -> list[Path]:
    """Remove what a crash left under ``data_dir``, among the folders ``among`` (see the module's docstring);
    the paths removed."""
    removed: list[Path] = []

    def remove(path: Path, why: str) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.warning("start-up sweep: removed %s (%s)", path, why)
        removed.append(path)

    uploads = sorted(path for path in among if path.parent.name == UPLOADS and REQUEST_FOLDER.match(path.name))
    if uploads:
        referenced = store.upload_folders()
        for folder in uploads:
            if folder.name not in referenced:
                remove(folder, "an upload no job refers to: its request was interrupted")
    jobs = sorted(path for path in among if path.parent == data_dir / "jobs" and path.is_dir()
                  and not path.is_symlink())
    known = store.job_ids() if jobs else set()
    for job in jobs:
        if job.name not in known:
            remove(job, "the folder of a job that no longer exists")
            continue
        for staged in stale_staging_folders(job / "items"):
            remove(staged, "an interrupted attempt's staging folder; the item runs again")
        for temp in (job / "items").glob("*/.*.part"):
            remove(temp, "a temp file of an interrupted write")
    return removed
