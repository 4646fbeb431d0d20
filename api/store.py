"""Jobs and items in an embedded SQLite database (WAL) under the data directory.

An item moves ``queued -> running -> done | failed`` exactly once per attempt: it is claimed with one atomic
``UPDATE ... WHERE state = 'queued'`` and finished with an ``UPDATE ... WHERE state = 'running' AND attempt = ?``,
so a result from a superseded attempt is never recorded. On start-up, items left ``running`` by a dead process
go back to ``queued``. ``completions`` counts how often an item was finished, for tests and audits.

Uploads are recorded relative to the data folder (``uploads/<request>/scan.png``) and resolved against the data
folder of the running service when read, so the folder can be moved or renamed between runs (see
:func:`resolve_input`).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

from retouch.run.item import Item, ItemOptions

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    notes TEXT NOT NULL DEFAULT '[]',
    label TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    item_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    command TEXT NOT NULL,
    inputs TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    attempt INTEGER NOT NULL DEFAULT 0,
    completions INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT,
    updated REAL NOT NULL,
    PRIMARY KEY (job_id, item_id)
);
CREATE INDEX IF NOT EXISTS items_state ON items(state, updated);
"""


DATABASE = "jobs.sqlite3"  # the store's file under the data folder
UPLOADS = "uploads"  # every upload lies in a request folder under it: uploads/<request>/...
REQUEST_FOLDER = re.compile(r"^[0-9a-f]{32}$")  # a request folder's name (uuid4().hex, see api.routes.jobs)


def recorded_input(path: str | Path, data_dir: Path) -> str:
    """How an upload at ``path`` (under ``data_dir``) is recorded: relative to the data folder, POSIX style."""
    return Path(path).relative_to(data_dir).as_posix()


def resolve_input(recorded: str, data_dir: Path) -> Path | None:
    """The upload a recorded input names, under ``data_dir``; None when it would lie outside the data folder's
    request folders (a tampered or foreign record): such a path is neither read nor deleted.

    Databases written before inputs were recorded relative hold absolute paths, ``<old data folder>/uploads/
    <request>/...``. Rather than being migrated, they are re-rooted on every read by that layout, from their last
    ``uploads/<request>`` on (no part after it can look like one: the rest is at most ``files|members/<n>/<name>``
    or ``<role>/<name>``). The old absolute path itself is never followed, even where it still exists: after a
    copy of the data folder it would read, or delete, the other copy's uploads.
    """
    parts = PurePath(recorded).parts
    if PurePath(recorded).is_absolute():
        starts = [index for index in range(len(parts) - 2)
                  if parts[index] == UPLOADS and REQUEST_FOLDER.match(parts[index + 1])]
        if not starts:
            return None
        parts = parts[starts[-1]:]
    if len(parts) < 3 or parts[0] != UPLOADS or not REQUEST_FOLDER.match(parts[1]) or ".." in parts:
        return None
    path = data_dir.joinpath(*parts)
    # a link planted in the uploads folder must not lead out of it either
    if not path.resolve().is_relative_to((data_dir / UPLOADS).resolve()):
        return None
    return path


class JobStore:
    def __init__(self, path: Path, *, data_dir: Path, busy_timeout_s: float = 30.0) -> None:
        """The store in the database file ``path``; recorded uploads are relative to ``data_dir``. A write waits
        up to ``busy_timeout_s`` for another connection's write to end before it fails ("database is locked")."""
        self.path = path
        self.data_dir = data_dir
        self.busy_timeout_s = busy_timeout_s
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            columns = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
            if "notes" not in columns:  # a database from before job notes existed
                db.execute("ALTER TABLE jobs ADD COLUMN notes TEXT NOT NULL DEFAULT '[]'")
            if "label" not in columns:  # a database from before jobs were labelled
                db.execute("ALTER TABLE jobs ADD COLUMN label TEXT NOT NULL DEFAULT ''")
        # held open for the store's life, never used: a connection opening a WAL database that no other
        # connection holds open rebuilds its shared index (a write), and the last one to close checkpoints it
        # (another), so on a full disk every read failed with "disk I/O error"; with this one open, reads work
        # and writes fail cleanly ("database or disk is full")
        self._keeper: sqlite3.Connection | None = sqlite3.connect(path, check_same_thread=False)
        self._keeper.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None

    @contextmanager
    def _connect(self, timeout_s: float | None = None) -> Iterator[sqlite3.Connection]:
        timeout_s = self.busy_timeout_s if timeout_s is None else timeout_s
        db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.create_function("job_state", 4, job_state, deterministic=True)  # one rule for SQL and Python
            db.execute("PRAGMA foreign_keys=ON")
            db.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            yield db
        finally:
            db.close()

    def create_job(self, kind: str, items: Sequence[Item], options: ItemOptions, notes: Sequence[str] = (),
                   label: str = "") -> str:
        """Record a job, the options its items run with and its items (all queued); ``notes`` tell the client
        about the submission, ``label`` names the job in listings (the client's file names).

        Each item's ``inputs`` are paths of uploads under the data folder; they are recorded relative to it.
        """
        job_id = uuid.uuid4().hex
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO jobs (id, kind, created, options, notes, label) VALUES (?, ?, ?, ?, ?, ?)",
                       (job_id, kind, now, json.dumps(options.to_json()), json.dumps(list(notes)), label))
            db.executemany(
                "INSERT INTO items (job_id, item_id, position, command, inputs, updated) VALUES (?, ?, ?, ?, ?, ?)",
                [(job_id, item.id, index, item.command,
                  json.dumps([recorded_input(path, self.data_dir) for path in item.inputs]), now)
                 for index, item in enumerate(items)])
            db.execute("COMMIT")
        return job_id

    def requeue_interrupted(self) -> int:
        """Queue again the items a dead process was running (at start-up, when no attempt can be running)."""
        with self._connect() as db:
            return db.execute("UPDATE items SET state = 'queued', updated = ? WHERE state = 'running'",
                              (time.time(),)).rowcount

    def requeue_attempt(self, job_id: str, item_id: str, attempt: int) -> bool:
        """Queue an item again if ``attempt`` still runs it (its worker was stopped, or could not write or publish
        its results); False when the item was taken over, finished or deleted meanwhile."""
        with self._connect() as db:
            return db.execute("UPDATE items SET state = 'queued', updated = ? "
                              "WHERE job_id = ? AND item_id = ? AND state = 'running' AND attempt = ?",
                              (time.time(), job_id, item_id, attempt)).rowcount == 1

    def claim(self) -> dict[str, Any] | None:
        """Atomically take the oldest queued item (state -> running, attempt + 1); its ``inputs`` are resolved
        under the data folder, None for one that would lie outside it."""
        with self._connect() as db:
            row = db.execute(
                "UPDATE items SET state = 'running', attempt = attempt + 1, updated = ? "
                "WHERE rowid = (SELECT rowid FROM items WHERE state = 'queued' ORDER BY updated, position LIMIT 1) "
                "AND state = 'queued' RETURNING job_id, item_id, command, inputs, attempt",
                (time.time(),)).fetchone()
        if row is None:
            return None
        claimed = dict(row)
        claimed["inputs"] = [resolve_input(path, self.data_dir) for path in json.loads(claimed["inputs"])]
        with self._connect() as db:
            options = db.execute("SELECT options FROM jobs WHERE id = ?", (claimed["job_id"],)).fetchone()
        claimed["options"] = json.loads(options["options"]) if options else {}
        return claimed

    def finish(self, job_id: str, item_id: str, attempt: int, *, result: dict[str, Any] | None,
               error: str | None) -> bool:
        state = "done" if error is None else "failed"
        with self._connect() as db:
            changed = db.execute(
                "UPDATE items SET state = ?, result = ?, error = ?, completions = completions + 1, updated = ? "
                "WHERE job_id = ? AND item_id = ? AND state = 'running' AND attempt = ?",
                (state, json.dumps(result) if result is not None else None, error, time.time(), job_id, item_id,
                 attempt)).rowcount
        return changed == 1

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._connect() as db:
            db.execute("BEGIN")  # one snapshot: the counts and the items agree
            found = _tallied(db, "WHERE jobs.id = ?", (job_id,), limit=1, offset=0)
            if not found:
                return None
            items = db.execute("SELECT * FROM items WHERE job_id = ? ORDER BY position", (job_id,)).fetchall()
        return _describe(found[0], [dict(item) for item in items])

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """The job's state, created time and item counts (total, done, failed, running), without its items."""
        with self._connect() as db:
            found = _tallied(db, "WHERE jobs.id = ?", (job_id,), limit=1, offset=0)
        return found[0] if found else None

    def jobs(self, *, limit: int, offset: int, state: str | None = None, since: float | None = None,
             with_items: bool = True) -> tuple[list[dict[str, Any]], int]:
        """Jobs newest first, ``limit`` from ``offset`` on, and how many there are in all: those in ``state``
        (see :func:`job_state`) and created at or after ``since`` (seconds since the epoch) when given; each
        with its items, or with ``items`` None when ``with_items`` is false (a listing light enough to poll)."""
        having = "HAVING job_state(total, done, failed, running) = ?" if state else ""
        where, params = ("WHERE jobs.created >= ?", (since,)) if since is not None else ("", ())
        params += (state,) if state else ()
        with self._connect() as db:
            db.execute("BEGIN")  # one snapshot: the total, the counts and the items agree
            total = db.execute(f"SELECT COUNT(*) FROM ({TALLY} {where} GROUP BY jobs.id {having})",
                               params).fetchone()[0]
            rows = _tallied(db, where, params, limit=limit, offset=offset, having=having)
            described = []
            for row in rows:
                items = db.execute("SELECT * FROM items WHERE job_id = ? ORDER BY position",
                                   (row["id"],)).fetchall() if with_items else None
                described.append(_describe(row, None if items is None else [dict(item) for item in items]))
        return described, total

    def input_paths(self, job_id: str) -> list[Path]:
        """The uploads of every item of the job, under the data folder (inputs that would lie outside are left
        out)."""
        with self._connect() as db:
            rows = db.execute("SELECT inputs FROM items WHERE job_id = ?", (job_id,)).fetchall()
        resolved = [resolve_input(path, self.data_dir) for row in rows for path in json.loads(row["inputs"])]
        return [path for path in resolved if path is not None]

    def item_inputs(self, job_id: str, item_id: str) -> list[Path | None] | None:
        """An item's uploads in order, under the data folder (None for one that would lie outside it); None when
        there is no such item."""
        with self._connect() as db:
            row = db.execute("SELECT inputs FROM items WHERE job_id = ? AND item_id = ?",
                             (job_id, item_id)).fetchone()
        return None if row is None else [resolve_input(path, self.data_dir) for path in json.loads(row["inputs"])]

    def delete(self, job_id: str) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 1

    def counts(self, *, timeout_s: float | None = None) -> dict[str, int]:
        """Items by state; ``timeout_s`` bounds the wait for a lock (a health check must answer quickly)."""
        with self._connect(timeout_s) as db:
            return {row["state"]: row["n"] for row in
                    db.execute("SELECT state, COUNT(*) AS n FROM items GROUP BY state").fetchall()}

    def job_ids(self) -> set[str]:
        with self._connect() as db:
            return {row["id"] for row in db.execute("SELECT id FROM jobs")}

    def upload_folders(self) -> set[str]:
        """The request folders (``uploads/<request>``, by name) that recorded inputs lie in."""
        with self._connect() as db:
            rows = db.execute("SELECT inputs FROM items").fetchall()
        folders = set()
        for row in rows:
            for recorded in json.loads(row["inputs"]):
                path = resolve_input(recorded, self.data_dir)
                if path is not None:
                    folders.add(path.relative_to(self.data_dir / UPLOADS).parts[0])
        return folders


JOB_STATES = ("queued", "running", "done", "done_with_errors", "failed")


def job_state(total: int, done: int, failed: int, running: int) -> str:
    """A job's state from its items' counts: ``done`` when every item is (a job of no items too), ``failed``
    when every item failed, ``done_with_errors`` when all finished otherwise, ``running`` once any item has
    started or finished, else ``queued``. Registered in SQLite too, so listings filter by the same rule."""
    finished = done + failed
    if done == total:
        return "done"
    if finished == total:
        return "failed" if failed == total else "done_with_errors"
    return "running" if running or finished else "queued"


# every job with its items' counts; a WHERE on jobs, GROUP BY jobs.id and a HAVING on the counts follow
TALLY = ("SELECT jobs.*, COUNT(items.item_id) AS total, "
         "COALESCE(SUM(items.state = 'done'), 0) AS done, COALESCE(SUM(items.state = 'failed'), 0) AS failed, "
         "COALESCE(SUM(items.state = 'running'), 0) AS running "
         "FROM jobs LEFT JOIN items ON items.job_id = jobs.id")


def _tallied(db: sqlite3.Connection, where: str, params: tuple, *, limit: int, offset: int,
             having: str = "") -> list[dict[str, Any]]:
    rows = db.execute(f"{TALLY} {where} GROUP BY jobs.id {having} ORDER BY jobs.created DESC, jobs.id "
                      "LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
    tallies = []
    for row in rows:
        tally = dict(row)
        tally["state"] = job_state(tally["total"], tally["done"], tally["failed"], tally["running"])
        tallies.append(tally)
    return tallies


def _describe(job: dict[str, Any], items: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A job as the API shows it, from its row with counts (:func:`_tallied`) and its items (None: left out)."""
    return {
        "id": job["id"],
        "kind": job["kind"],
        "label": job.get("label") or "",
        "state": job["state"],
        "created": job["created"],
        "progress": {"total": job["total"], "finished": job["done"] + job["failed"], "failed": job["failed"]},
        "notes": json.loads(job.get("notes") or "[]"),
        "items": None if items is None else [
            {"id": item["item_id"], "command": item["command"], "state": item["state"],
             "attempts": item["attempt"], "completions": item["completions"], "error": item["error"],
             "result": json.loads(item["result"]) if item["result"] else None,
             "inputs": [Path(p).name for p in json.loads(item["inputs"])]}
            for item in items
        ],
    }
