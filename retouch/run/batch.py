"""Batch runs over collections: plan items, skip what is done, run the rest on an executor, record results.

``results.jsonl`` gets one line per finished item, appended (and flushed to disk) by the coordinating process as
results stream back, so a run killed at any moment leaves only whole lines for whole items (a torn last line is
ignored on reading). A rerun skips items done successfully with unchanged inputs (by SHA-256) and parameters, and
runs failed ones again; ``summary.csv`` is regenerated from ``results.jsonl`` at the end of every run, also an
interrupted one, listing the items of that run's input.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import secrets
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from retouch import __version__
from retouch.errors import InputError
from retouch.io import SNIFF_BYTES, atomic_write_text, max_pixels_from_env, readable_text, sniff_format
from retouch.io.folders import discard, require_output_folder, stale_staging_folders
from retouch.run.budget import max_memory_from_env
from retouch.run.item import ANALYZE, Item, ItemOptions, ItemOutcome, file_sha256, run_item
from retouch.run.manifest import (
    PAIRS_CSV_ORDER,
    IdClaims,
    ManifestError,
    Planned,
    csv_entries,
    item_id,
    name_forms,
    unique_items,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}
RESULTS = "results.jsonl"
SUMMARY = "summary.csv"
ITEMS = "items"  # OUT/items/<id>/: each item's reports


def _looks_like_image(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError:
        return path.suffix.lower() in IMAGE_SUFFIXES
    if sniff_format(head) is not None:
        return True
    # a file named like an image but not one is an item that will fail with a clear message
    return path.suffix.lower() in IMAGE_SUFFIXES


def _legacy_id(text: str) -> str:
    """The id retouch gave an item made from ``text`` (a path, or a pairs CSV row's two files) before ids had one
    rule with the web service's (:func:`retouch.run.manifest.item_id`): kept so a batch folder made then still
    resumes (see :func:`_migrate`)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "item"
    # the name's own bytes: a file name that is not UTF-8 (a Latin-1 'é' on Linux) has no UTF-8 encoding
    return f"{slug}-{hashlib.sha1(os.fsencode(text)).hexdigest()[:6]}"


def _legacy_given_id(given: str) -> str:
    """The id a pairs CSV row's own id gave before ids had one rule (see :func:`_legacy_id`)."""
    return re.sub(r"[^\w.-]+", "-", unicodedata.normalize("NFC", given))


def _listed_path(cell: str, source: Path) -> str:
    """A file named in a pairs CSV, absolute: relative to the CSV's folder, '~' meaning the home folder.

    Missing as written, the first of its other spellings that exists is taken
    (:func:`retouch.run.manifest.name_forms`: '/' for '\\' where '\\' does not separate folders, a CSV written on
    Windows read here; 'é' in the other Unicode form, as macOS and other systems write it and both look alike).
    """
    paths = [_under(form, source) for form in name_forms(cell)]
    found = next((path for path in paths if path.exists()), None)
    return str((found or paths[1 if "\\" in cell else 0]).resolve())


def _under(cell: str, source: Path) -> Path:
    if cell.startswith("~"):
        try:
            return Path(cell).expanduser()  # an absolute path: the CSV's folder is not prefixed
        except RuntimeError:  # no home folder known: the cell is a name like any other
            pass
    return source.parent / cell


def _items_from_csv(source: Path) -> tuple[list[Item], dict[str, str]]:
    """The items a CSV lists (pairs: reference,questioned[,id]; or images under a column named image), with
    the id each had before ids had one rule; a malformed row, a repeated id or a row repeated without an id is
    refused, naming the line (:mod:`retouch.run.manifest`)."""
    try:
        data = source.read_bytes()
    except OSError as error:
        raise InputError(f"{source}: cannot be read ({error.strerror}); check the file and its permissions",
                         path=str(source)) from None

    def could_be_a_file(cell: str) -> bool:  # a file name's suffix, or the name of something that exists
        return bool(Path(cell).suffix) or Path(_listed_path(cell, source)).exists()

    entries = csv_entries(data, str(source), order=PAIRS_CSV_ORDER, where=lambda line: f"{source}:{line}",
                          names_a_file=could_be_a_file)
    claims, rows, planned, legacy = IdClaims(), {}, [], []
    for entry in entries:
        claims.claim(entry)
        if entry.id is None:  # no id given (or an empty cell, as spreadsheets pad rows): made from the files
            first = rows.setdefault(entry.names, entry.position)
            if first != entry.position:
                kind = "image" if entry.command == ANALYZE else "pair"
                raise ManifestError(f"{entry.where}: lists the same {kind} as {first}; remove one of the rows")
        paths = tuple(_listed_path(name, source) for name in entry.names)
        planned.append(Planned(entry.id or item_id("|".join(entry.names), "item"), entry.command, paths,
                               fixed=entry.id is not None))
        legacy.append(_legacy_given_id(entry.given) if entry.given else _legacy_id("|".join(entry.names)))
    items = unique_items(planned)
    return items, {item.id: old for item, old in zip(items, legacy)}


def plan(input_path: str | os.PathLike[str], *, out_dir: str | os.PathLike[str] | None = None) -> list[Item]:
    """Items of a batch: every image under a folder (recursively), or every row of a CSV of pairs (or images).

    A folder's items are named by their paths inside it (``box1/017.tif`` is ``box1_017.tif``,
    :func:`retouch.run.manifest.item_id`). Files under ``out_dir`` are not items: a batch whose output folder lies
    inside its input folder would otherwise analyse its own maps and overlays on the next run.
    """
    return _plan(input_path, out_dir)[0]


def _plan(input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None
          ) -> tuple[list[Item], list[str], dict[str, str]]:
    """:func:`plan`'s items; the files of an input folder left out as not images (paths relative to it); and
    the id each item had before ids had one rule (see :func:`_migrate`)."""
    source = Path(input_path)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder; give a folder of images or a CSV of pairs")
    if source.is_dir():
        planned, legacy, not_images = [], [], []
        own_output = _own_output_under(source, out_dir)
        # every name but a folder's is listed, so that none goes missing from the run without a word: a broken
        # symbolic link (a scan on an unmounted drive, a link to itself), a named pipe or a device (or a link to
        # one, /dev/zero) is an item that fails naming what it is, without being opened (a pipe would block the
        # run, a device never end); a regular file is an item or named among the files that are not images
        for path in sorted(p for p in source.rglob("*") if not p.is_dir()):
            where = path.resolve() if path.exists() else path.absolute()  # resolving a link loop raises
            if own_output is not None and own_output in where.parents:
                continue
            relative = path.relative_to(source).as_posix()
            special = path.exists() and not path.is_file()
            if special or _looks_like_image(path):
                # a link to a device is named as the link: '/dev/zero' alone would not say which name it was
                named = path.absolute() if special else where
                planned.append(Planned(item_id(relative, "item"), ANALYZE, (str(named),)))
                legacy.append(_legacy_id(relative))
            else:
                not_images.append(relative)
        if not planned:
            raise InputError(f"{source}: no image files found; give a folder of scans or a CSV of pairs")
        items = unique_items(planned)
        return items, not_images, {item.id: old for item, old in zip(items, legacy)}
    if source.suffix.lower() != ".csv":
        raise InputError(f"{source}: a batch input is a folder of images or a .csv of pairs "
                         "(reference,questioned[,id])")
    items, legacy = _items_from_csv(source)
    if not items:
        raise InputError(f"{source}: no pairs listed")
    return items, [], legacy


def _own_output_under(source: Path, out_dir: str | os.PathLike[str] | None) -> Path | None:
    """The folder under the input folder ``source`` whose files a batch writing to ``out_dir`` must not read as
    scans, or None when it writes nothing under ``source``; refuses the layouts where no such rule is safe.

    A batch writes only ``OUT/items/...``, ``OUT/results.jsonl`` and ``OUT/summary.csv``. An output folder inside
    the input folder is left out of the scan whole (it is the user's folder for this batch). An output folder
    above the input folder (``retouch batch scans -o .``) writes nothing under it, so every file is scanned: users
    give the folder they are in, and refusing that would be surprising. The input folder itself as output is
    refused: items/ would sit among the scans, and the next run could tell its own files from a user's folder
    named items/ only by guessing; so is an input folder inside OUT/items/, a batch over its own reports.
    """
    if out_dir is None:
        return None
    root, output = source.resolve(), Path(out_dir).resolve()
    if output == root:
        raise InputError(f"{out_dir}: the output folder is the input folder {source}, so the reports would be "
                         "mixed with the scans; choose another -o/--out, such as a new folder beside it or a "
                         f"subfolder ({source / 'retouch-batch'}), which is then left out of the scan",
                         path=str(out_dir), code="bad_output")
    reports = output / ITEMS
    if root == reports or reports in root.parents:
        raise InputError(f"{source}: the input folder is inside {reports}, where this batch writes its reports "
                         "(the output folder contains the input folder); choose an -o/--out outside it",
                         path=str(source), code="bad_output")
    return output if root in output.parents else None


def _refuse_inputs_among_outputs(source: Path, items: Sequence[Item],
                                  out_dir: str | os.PathLike[str]) -> None:
    """Refuse a batch whose input (the pairs CSV, or a file an item reads) is a file the batch writes or lies in
    ``OUT/items/``: each item replaces the report files in its folder and removes earlier ones, so a scan kept
    there (or reached through a link or another spelling) would be overwritten by another item's overlay, and a
    pairs CSV saved as ``OUT/summary.csv`` by the summary. Checked before anything is written."""
    output = Path(os.path.realpath(out_dir))
    written, reports = {output / RESULTS, output / SUMMARY}, output / ITEMS
    for path in (source, *(Path(p) for item in items for p in item.inputs)):
        where = Path(os.path.realpath(path))
        if where in written:
            raise InputError(f"{path}: this input is {where}, where this batch writes its {where.name}, so it "
                             "would be overwritten; rename or move it, or choose another -o/--out", path=str(path),
                             code="bad_output")
        if reports in where.parents:
            raise InputError(f"{path}: this input lies in {reports}, where this batch writes each item's reports, "
                             "so it could be overwritten; move it out of there, or choose another -o/--out",
                             path=str(path), code="bad_output")


def params_key(command: str, detectors: Sequence[str] | None, options: dict[str, Any] | None) -> str:
    blob = json.dumps({"command": command, "detectors": sorted(detectors or []), "options": options or {},
                       "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _record(outcome: ItemOutcome, key: str) -> dict[str, Any]:
    """The line ``results.jsonl`` keeps for a finished item."""
    record: dict[str, Any] = {"id": outcome.id, "command": outcome.command, "paths": outcome.inputs,
                              "sha256": outcome.sha256, "params_key": key, "artifacts": outcome.folder}
    if outcome.status == "ok":
        record.update(status="ok", score=outcome.score, regions=outcome.regions, error="", seconds=outcome.seconds,
                      note=outcome.note)
    else:
        record.update(status="error", score=None, regions=None, error=outcome.error)
    return record


def read_results(out_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The latest complete record per item id (a torn last line from a killed run is ignored)."""
    path = Path(out_dir) / RESULTS
    records: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "id" in record:
                records[record["id"]] = record
    return records


# A cell a spreadsheet would read as a formula: a file named "=HYPERLINK(...).jpg" in a scanned collection would
# otherwise run as one when the summary is opened (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _inert(text: str) -> str:
    """``text`` as a spreadsheet shows it but never evaluates it: a leading apostrophe before a formula character
    (the usual defence; spreadsheets hide the apostrophe). ``results.jsonl`` keeps the exact text for programs.
    A file name's bytes that are not UTF-8 are written as ``\\xe9`` (see :func:`retouch.io.readable_text`)."""
    text = readable_text(text)
    return "'" + text if text.startswith(_FORMULA_START) else text


SUMMARY_COLUMNS = ("id", "command", "paths", "sha256", "score", "regions", "status", "error", "note")


def summary_table(records: Iterable[Mapping[str, Any]]) -> str:
    """The text of a ``summary.csv``: a row of :data:`SUMMARY_COLUMNS` per record, in the order given.

    A record is an item's outcome as ``results.jsonl`` holds it (``paths`` and ``sha256`` lists, ``status``
    ``ok`` or ``error``); the web service's job summary passes its items in the same shape, so the two files read
    alike. Cells are made inert for spreadsheets (:func:`_inert`).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(SUMMARY_COLUMNS)
    for record in records:
        writer.writerow([_inert(record["id"]), record["command"], _inert(" | ".join(record["paths"])),
                         " | ".join(s or "" for s in record["sha256"]), record.get("score"), record.get("regions"),
                         record["status"], _inert(record.get("error") or ""), _inert(record.get("note") or "")])
    return buffer.getvalue()


def write_summary(out_dir: str | os.PathLike[str], ids: Collection[str] | None = None) -> Path:
    """Write ``summary.csv``: the latest record of each item in ``ids`` (default: every item ever recorded).

    ``results.jsonl`` keeps every run's records, so that reruns resume; a batch passes the ids of its own input,
    so that the summary lists what this run was given, as the command prints it, not items of earlier runs on
    other inputs or of files since removed.
    """
    records = read_results(out_dir)
    if ids is not None:
        records = {item_id: record for item_id, record in records.items() if item_id in ids}
    text = summary_table(sorted(records.values(), key=lambda r: r["id"]))
    return atomic_write_text(Path(out_dir) / SUMMARY, text)


@dataclass
class BatchReport:
    total: int
    skipped: int
    ok: int
    failed: int
    executor: str
    not_images: list[str] = field(default_factory=list)  # files of an input folder left out (relative paths)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _append(handle: io.TextIOBase, record: dict[str, Any]) -> None:
    handle.write(json.dumps(record, sort_keys=True) + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def _is_done(record: Mapping[str, Any] | None, item: Item, key: str) -> bool:
    """Whether ``record`` is ``item`` done successfully with the same parameters and the same inputs: the same
    contents (by hash) under the same file names, so that no file takes over another's record.

    A failed item is always run again: its cause may lie outside its inputs (a file in the way of its folder, a
    full disk, a worker that died) and have been fixed since.
    """
    return bool(record and record.get("status") == "ok" and record.get("params_key") == key
                and [Path(path).name for path in record.get("paths", [])] == [Path(p).name for p in item.inputs]
                and record.get("sha256") == [file_sha256(path) for path in item.inputs])


def _migrate(items: Sequence[Item], legacy: Mapping[str, str], done: dict[str, dict[str, Any]], out: Path,
             keys: Mapping[str, str]) -> None:
    """Carry items done under the ids an earlier version of retouch gave them over to their ids now, so that
    a batch folder made then resumes instead of running every item again: the item's folder is renamed and its
    record appended under the new id (``done`` is updated). An item whose old record is not a success of the
    same inputs and parameters, or whose folder cannot be moved, is left to run again."""
    moved = []
    for item in items:
        old = legacy.get(item.id)
        if old in (None, item.id) or item.id in done or not _is_done(done.get(old), item, keys[item.command]):
            continue
        before, after = out / ITEMS / old, out / ITEMS / item.id
        if not before.is_dir() or after.exists():
            continue
        try:
            before.rename(after)
        except OSError:
            continue
        done[item.id] = {**done[old], "id": item.id, "artifacts": str(after)}
        moved.append(done[item.id])
    if moved:
        with open(out / RESULTS, "a", encoding="utf-8") as handle:
            for record in moved:
                _append(handle, record)


def run_batch(
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    detectors: Sequence[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[int, int, dict[str, Any] | None], None] | None = None,
) -> BatchReport:
    """Run (or resume) a batch; ``progress(done, total, record)`` is called as items finish.

    Everything a user can get wrong (the input, the output folder, the scheduler, ``RETOUCH_MAX_PIXELS``,
    ``RETOUCH_MAX_MEMORY``, another run writing into the same folder) is checked before the output folder is
    created and before the first progress report. Items run on :func:`retouch.run.item.run_item`, as the web
    service's do; a worker that dies fails its own item only.
    """
    from retouch.run.executor import make_executor

    items, not_images, legacy = _plan(input_path, out_dir)
    _refuse_inputs_among_outputs(Path(input_path), items, out_dir)
    max_pixels_from_env()  # a bad value would otherwise fail every item alike, one by one
    max_memory_from_env()
    names = [RESULTS, SUMMARY]
    out = require_output_folder(out_dir, names, create=False)
    if (out / ITEMS).exists() and not (out / ITEMS).is_dir():
        raise InputError(f"{out / ITEMS}: retouch keeps each item's reports in this folder but a file is in the "
                         "way; remove it or choose another -o/--out", path=str(out / ITEMS), code="bad_output")
    # a folder that exists is locked before its results are read (a new one once it is created, below)
    lock = RunLock(out) if out.is_dir() else None
    executor = None
    try:
        keys = {command: params_key(command, detectors, None) for command in {item.command for item in items}}
        done = read_results(out)
        _migrate(items, legacy, done, out, keys)
        todo = [item for item in items if not _is_done(done.get(item.id), item, keys[item.command])]
        skipped = len(items) - len(todo)
        # the items summary.csv lists: those already done, then each one as it finishes
        listed = {item.id for item in items} - {item.id for item in todo}
        # connected before anything is written: an unreachable scheduler leaves no output folder behind
        executor = make_executor(scheduler, workers=workers) if todo else None
        require_output_folder(out, names)
        lock = lock or RunLock(out)
        fence = lock.begin_run()
        if progress:
            progress(0, len(todo), None)
        if executor is None:
            write_summary(out, listed)
            return BatchReport(len(items), skipped, 0, 0, "none (nothing to do)", not_images)
        running, executor = executor, None  # shut down by _run_items, whatever happens
        report = _run_items(running, todo, out, keys, listed, fence, detectors, progress)
        return BatchReport(len(items), skipped, report.ok, report.failed, report.executor, not_images)
    except BaseException:
        if executor is not None:
            executor.shutdown(cancel=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def _run_items(executor: Any, todo: Sequence[Item], out: Path, keys: Mapping[str, str], listed: set[str],
               fence: RunFence, detectors: Sequence[str] | None,
               progress: Callable[[int, int, dict[str, Any] | None], None] | None) -> BatchReport:
    """Run ``todo`` on ``executor`` (shut down on return), recording each outcome as it comes back."""
    from retouch.run.executor import as_completed

    ok = failed = 0
    options = ItemOptions(detectors=tuple(detectors) if detectors else None)
    try:
        with open(out / RESULTS, "a", encoding="utf-8") as handle:
            futures = {executor.submit(run_item, item, str(out / ITEMS / item.id), options, fence=fence): item
                       for item in todo}
            for finished, future in enumerate(as_completed(futures), start=1):
                try:
                    outcome = future.result()
                except Exception as error:  # noqa: BLE001 - its worker died (killed, out of memory): this one only
                    outcome = _lost(futures[future], out, error)
                record = _record(outcome, keys[outcome.command])
                # listed before it is appended: an interrupt between the two must not leave a recorded item out
                # of summary.csv (an id listed but not yet recorded is simply absent from it)
                listed.add(record["id"])
                _append(handle, record)
                ok += record["status"] == "ok"
                failed += record["status"] != "ok"
                if progress:
                    progress(finished, len(todo), record)
    except BaseException:
        executor.shutdown(cancel=True)
        write_summary(out, listed)
        raise
    executor.shutdown()
    write_summary(out, listed)
    return BatchReport(len(todo), 0, ok, failed, executor.description)


def _lost(item: Item, out: Path, error: Exception) -> ItemOutcome:
    """The outcome of an item whose worker ended before it did (see :class:`retouch.run.executor.WorkerDied`)."""
    message = (f"{' and '.join(item.inputs)}: {error}; nothing was kept. Run the batch again to retry it; if it "
               "fails again, the scan may need more memory than this machine has (see RETOUCH_MAX_MEMORY)")
    return ItemOutcome(id=item.id, command=item.command, inputs=list(item.inputs),
                       sha256=[file_sha256(path) for path in item.inputs], folder=str(out / ITEMS / item.id),
                       error=message, internal=True, error_type=type(error).__name__)


RUN_LOCK = ".retouch-batch.lock"  # held (flock) by the coordinator of the run writing into the folder
RUN_TOKEN = ".retouch-run"  # the run now writing into the folder: items of another run may not publish


class RunLock:
    """The output folder of one ``retouch batch`` at a time: an exclusive lock on ``OUT/.retouch-batch.lock``,
    held by the coordinating process while it runs (the system drops it when the process ends, killed or not).

    A second run on the same folder while the first is alive is refused (``busy_output``): both would append
    to ``results.jsonl`` and publish the same items.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self._handle = open(out / RUN_LOCK, "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        try:
            _lock(self._handle, exclusive=True, wait=False)
        except BlockingIOError:
            self._handle.seek(0)
            holder = self._handle.read().strip() or "another process"
            self._handle.close()
            raise InputError(f"{out}: another retouch batch ({holder}) is writing its results into this folder; "
                             "wait for it to end, or choose another -o/--out", path=str(out),
                             code="busy_output") from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(f"process {os.getpid()}\n")
        self._handle.flush()

    def begin_run(self) -> RunFence:
        """Make this run the one whose items may publish, and clear away what earlier runs left half-written.

        A worker of an earlier run may still be running: an orphan whose coordinator was killed, until it
        notices (:func:`retouch.run.executor._prepare_worker`). Its items' fence names the earlier run, so they
        are thrown away instead of published over this run's. Its staging folders are removed here, with those
        of runs that died; it notices its folder gone and fails (unrecorded, its coordinator is gone).
        """
        token = secrets.token_hex(8)
        with open(self.out / RUN_TOKEN, "a+", encoding="utf-8") as marker:
            _lock(marker, exclusive=True)  # waits for a publish in progress under the earlier token
            marker.seek(0)
            marker.truncate()
            marker.write(token)
            marker.flush()
            os.fsync(marker.fileno())
        for stale in stale_staging_folders(self.out / ITEMS):
            discard(stale)
        return RunFence(str(self.out / RUN_TOKEN), token)

    def release(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # closing drops the lock


@dataclass(frozen=True)
class RunFence:
    """The fence of a batch item (:class:`retouch.run.item.Fence`): it holds while the output folder's run
    token is this run's, read under a shared lock that a new run's token waits for."""

    marker: str
    token: str
    reason: str = "another run of retouch batch has taken over this output folder"

    def holds(self) -> bool:
        try:
            return Path(self.marker).read_text(encoding="utf-8") == self.token
        except OSError:
            return False

    @contextmanager
    def publishing(self) -> Iterator[bool]:
        with open(self.marker, encoding="utf-8") as marker:
            _lock(marker, exclusive=False)
            yield marker.read() == self.token


def _lock(handle: IO[str], *, exclusive: bool, wait: bool = True) -> None:
    """flock ``handle``'s file (released when it is closed); on systems without flock, nothing is locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        return
    fcntl.flock(handle.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB))
