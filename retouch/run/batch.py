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
import unicodedata
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retouch import __version__
from retouch.errors import InputError
from retouch.io import (SNIFF_BYTES, atomic_write_text, max_pixels_from_env, read_table, readable_text,
                        sniff_format)
from retouch.io.folders import require_output_folder

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}
RESULTS = "results.jsonl"
SUMMARY = "summary.csv"


@dataclass(frozen=True)
class BatchItem:
    id: str
    command: str  # "analyze" or "compare"
    paths: tuple[str, ...]


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


def _item_id(relative: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", relative).strip("-")[:60] or "item"
    # the name's own bytes: a file name that is not UTF-8 (a Latin-1 'é' on Linux) has no UTF-8 encoding
    return f"{slug}-{hashlib.sha1(os.fsencode(relative)).hexdigest()[:6]}"


ID_BYTES = 120  # an id names a folder: file systems take names of up to 255 bytes


def _csv_item_id(given: str, where: str) -> str:
    """The id a CSV row gives, as a folder name under items/: refused unless it is a plain name.

    ``..`` would put the item's reports in the output root, ``.`` in items/ itself, and a slash in a folder
    elsewhere; letters of any script, digits, '.', '_' and '-' are kept (so 'фото-1' and 'снимок-1' stay two
    ids, as they are in the web service), other runs of characters become '-'.
    """
    if given in {".", ".."} or "/" in given or "\\" in given:
        raise InputError(f"{where}: id {given!r} is not a plain name (it names the item's folder under items/, so "
                         "it cannot be '.' or '..' or contain '/' or '\\'); use letters, digits, '.', '_' and '-'")
    item_id = re.sub(r"[^\w.-]+", "-", unicodedata.normalize("NFC", given))
    if len(item_id.encode("utf-8")) > ID_BYTES:
        raise InputError(f"{where}: id {given[:40]!r}... is too long (it names the item's folder); give one of at "
                         f"most {ID_BYTES} bytes")
    return item_id


def _csv_path(cell: str, source: Path) -> str:
    """A file named in a pairs CSV, absolute: relative to the CSV's folder, '~' meaning the home folder.

    Missing as written, the same name in the other Unicode form is taken where it exists: macOS writes 'é' as
    'e' and an accent in file names, a spreadsheet typed on another system as one character, and both look alike.
    So is the name with '/' for '\\' where '\\' does not separate folders: a CSV written on Windows, read here.
    """
    if os.sep == "/" and "\\" in cell and not (source.parent / cell).exists():
        cell = cell.replace("\\", "/")
    path = source.parent / cell
    if cell.startswith("~"):
        try:
            path = Path(cell).expanduser()  # an absolute path: the CSV's folder is not prefixed
        except RuntimeError:  # no home folder known: the cell is a name like any other
            pass
    if not path.exists():
        for form in ("NFC", "NFD"):
            other = Path(unicodedata.normalize(form, str(path)))
            if other.exists():
                path = other
                break
    return str(path.resolve())


def _column_names_only(cells: list[str], source: Path) -> bool:
    """Whether a first row names no file: no cell with a file name's suffix or naming something that exists.

    A header in other words ("Original,Modified") was read as two files, and the run went on with an item that
    failed as a missing file, however many rows came after it."""
    named = [cell for cell in cells if cell]
    return bool(named) and not any(Path(cell).suffix or Path(_csv_path(cell, source)).exists() for cell in named)


def _pairs_from_csv(source: Path) -> list[BatchItem]:
    """The compare items listed in a pairs CSV (reference,questioned[,id]); malformed rows are refused.

    A first row naming the columns (in any case and order: "ID;Reference;Questioned") says where they are;
    without one the columns are reference, questioned and id, in that order.
    """
    items: list[BatchItem] = []
    seen: dict[str, tuple[int, str]] = {}  # id ignoring case -> (line, id as given)
    try:
        data = source.read_bytes()
    except OSError as error:
        raise InputError(f"{source}: cannot be read ({error.strerror}); check the file and its permissions",
                         path=str(source)) from None
    columns = {"reference": 0, "questioned": 1, "id": 2}
    # read_table: a byte-order mark, any line ends, ';' from European spreadsheets and Excel's UTF-16 text
    for position, (number, cells) in enumerate(read_table(data, str(source))):
        names = [cell.lower() for cell in cells]
        if position == 0 and {"reference", "questioned"} <= set(names):
            columns = {name: names.index(name) for name in ("reference", "questioned", "id") if name in names}
            continue
        if position == 0 and _column_names_only(cells[:2], source):
            raise InputError(f"{source}:{number}: {', '.join(repr(cell) for cell in cells[:3])} look like column "
                             "names, not files; name the columns reference, questioned and (if you like) id, in "
                             "any order and case, or remove the row")
        reference, questioned, given = (cells[columns[name]] if columns.get(name, len(cells)) < len(cells)
                                        else "" for name in ("reference", "questioned", "id"))
        if not reference or not questioned:
            role = "reference" if not reference else "questioned"
            raise InputError(f"{source}:{number}: no {role} file; each row names two files, "
                             "reference,questioned[,id]")
        paths = (_csv_path(reference, source), _csv_path(questioned, source))
        if given:
            item_id = _csv_item_id(given, f"{source}:{number}")
        else:  # no id given (or an empty cell, as spreadsheets pad rows): one is made from the paths
            item_id = _item_id(f"{reference}|{questioned}")
        # ids differing only in case name one folder on macOS and Windows, where one item's reports would
        # overwrite the other's; so do ids that differ only in characters made '-'
        first_line, first_given = seen.setdefault(item_id.casefold(), (number, given))
        if first_line != number and not given:
            raise InputError(f"{source}:{number}: lists the same pair as line {first_line}; remove one of the "
                             "rows")
        if first_line != number:
            also = "" if first_given == given else f" as {first_given!r}, which names the same folder"
            raise InputError(f"{source}:{number}: id {given!r} is already given on line {first_line}{also}; give "
                             "each row its own id")
        items.append(BatchItem(item_id, "compare", paths))
    return items


def plan(input_path: str | os.PathLike[str], *, out_dir: str | os.PathLike[str] | None = None) -> list[BatchItem]:
    """Items of a batch: every image under a folder (recursively), or every row of a pairs CSV.

    Files under ``out_dir`` are not items: a batch whose output folder lies inside its input folder would
    otherwise analyse its own maps and overlays on the next run.
    """
    return _plan(input_path, out_dir)[0]


def _plan(input_path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None
          ) -> tuple[list[BatchItem], list[str]]:
    """:func:`plan`'s items, and the files of an input folder left out as not images (paths relative to it)."""
    source = Path(input_path)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder; give a folder of images or a CSV of pairs")
    if source.is_dir():
        items, not_images = [], []
        own_output = _own_output_under(source, out_dir)
        # a broken symbolic link (a scan on an unmounted drive, a link to itself) is listed too: left out, it went
        # missing from the run without a word; as an item it fails naming the link, or is named as not an image
        for path in sorted(p for p in source.rglob("*") if p.is_file() or (p.is_symlink() and not p.exists())):
            where = path.resolve() if path.exists() else path.absolute()  # resolving a link loop raises
            if own_output is not None and own_output in where.parents:
                continue
            relative = path.relative_to(source).as_posix()
            if _looks_like_image(path):
                items.append(BatchItem(_item_id(relative), "analyze", (str(where),)))
            else:
                not_images.append(relative)
        if not items:
            raise InputError(f"{source}: no image files found; give a folder of scans or a CSV of pairs")
        return items, not_images
    if source.suffix.lower() != ".csv":
        raise InputError(f"{source}: a batch input is a folder of images or a .csv of pairs "
                         "(reference,questioned[,id])")
    items = _pairs_from_csv(source)
    if not items:
        raise InputError(f"{source}: no pairs listed")
    return items, []


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
    reports = output / "items"
    if root == reports or reports in root.parents:
        raise InputError(f"{source}: the input folder is inside {reports}, where this batch writes its reports "
                         "(the output folder contains the input folder); choose an -o/--out outside it",
                         path=str(source), code="bad_output")
    return output if root in output.parents else None


def _refuse_inputs_among_outputs(source: Path, items: Sequence[BatchItem],
                                  out_dir: str | os.PathLike[str]) -> None:
    """Refuse a batch whose input (the pairs CSV, or a file an item reads) is a file the batch writes or lies in
    ``OUT/items/``: each item replaces the report files in its folder and removes earlier ones, so a scan kept
    there (or reached through a link or another spelling) would be overwritten by another item's overlay, and a
    pairs CSV saved as ``OUT/summary.csv`` by the summary. Checked before anything is written."""
    output = Path(os.path.realpath(out_dir))
    written, reports = {output / RESULTS, output / SUMMARY}, output / "items"
    for path in (source, *(Path(p) for item in items for p in item.paths)):
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


def file_sha256(path: str) -> str | None:
    """The file's SHA-256, or None when it is not a readable regular file (the item then fails with the loader's
    message; a device such as /dev/zero, or a pipe, named in a pairs CSV would otherwise be read forever)."""
    if not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def run_item(item: dict[str, Any], out_dir: str, detectors: list[str] | None, key: str) -> dict[str, Any]:
    """Worker side: run one item into ``out_dir/items/<id>`` and describe the outcome (never raises)."""
    from retouch.run.tasks import analyze_file, compare_files

    folder = Path(out_dir) / "items" / item["id"]
    record: dict[str, Any] = {"id": item["id"], "command": item["command"], "paths": list(item["paths"]),
                              "sha256": [file_sha256(p) for p in item["paths"]], "params_key": key,
                              "artifacts": str(folder)}
    try:
        with warnings.catch_warnings():
            # as in the command line (retouch.cli.app): library warnings on degenerate images are handled by the
            # analyses, and workers share the terminal's stderr
            warnings.simplefilter("ignore")
            if item["command"] == "analyze":
                outcome = analyze_file(item["paths"][0], folder, detectors=detectors or None)
            else:
                outcome = compare_files(item["paths"][0], item["paths"][1], folder)
        record.update(status="ok", score=round(outcome.score, 4), regions=outcome.region_count, error="",
                      seconds=outcome.seconds, note=_input_notes(outcome.inputs))
    except InputError as error:
        record.update(status="error", score=None, regions=None, error=str(error))
    except Exception as error:  # noqa: BLE001 - one bad item must not end the batch
        record.update(status="error", score=None, regions=None, error=f"internal error: {type(error).__name__}: "
                                                                       f"{str(error)[:200]}")
    return record


def _input_notes(inputs: list[dict[str, Any]]) -> str:
    """What a reader of the summary must know about how an item's files were read (pages left out, say)."""
    return " ".join(f"{record['name']} {note}" for record in inputs for note in record.get("notes", []))


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


def write_summary(out_dir: str | os.PathLike[str], ids: Collection[str] | None = None) -> Path:
    """Write ``summary.csv``: the latest record of each item in ``ids`` (default: every item ever recorded).

    ``results.jsonl`` keeps every run's records, so that reruns resume; a batch passes the ids of its own input,
    so that the summary lists what this run was given, as the command prints it, not items of earlier runs on
    other inputs or of files since removed.
    """
    records = read_results(out_dir)
    if ids is not None:
        records = {item_id: record for item_id, record in records.items() if item_id in ids}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "command", "paths", "sha256", "score", "regions", "status", "error", "note"])
    for record in sorted(records.values(), key=lambda r: r["id"]):
        writer.writerow([_inert(record["id"]), record["command"], _inert(" | ".join(record["paths"])),
                         " | ".join(s or "" for s in record["sha256"]), record.get("score"), record.get("regions"),
                         record["status"], _inert(record.get("error", "")), _inert(record.get("note", ""))])
    return atomic_write_text(Path(out_dir) / SUMMARY, buffer.getvalue())


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


def pending_items(items: Sequence[BatchItem], out_dir: str, key: str) -> Iterator[BatchItem]:
    """The items still to run: all but those done successfully with the same inputs (by hash) and parameters.

    A failed item is always run again: its cause may lie outside its inputs (a file in the way of its folder, a
    full disk, a worker that died) and have been fixed since.
    """
    done = read_results(out_dir)
    for item in items:
        record = done.get(item.id)
        if (record and record.get("status") == "ok" and record.get("params_key") == key
                and record.get("sha256") == [file_sha256(p) for p in item.paths]):
            continue
        yield item


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

    Everything a user can get wrong (the input, the output folder, the scheduler, ``RETOUCH_MAX_PIXELS``) is
    checked before the output folder is created and before the first progress report.
    """
    from retouch.run.executor import as_completed, make_executor

    items, not_images = _plan(input_path, out_dir)
    _refuse_inputs_among_outputs(Path(input_path), items, out_dir)
    max_pixels_from_env()  # a bad value would otherwise fail every item alike, one by one
    names = [RESULTS, SUMMARY]
    out = require_output_folder(out_dir, names, create=False)
    if (out / "items").exists() and not (out / "items").is_dir():
        raise InputError(f"{out / 'items'}: retouch keeps each item's reports in this folder but a file is in the "
                         "way; remove it or choose another -o/--out", path=str(out / "items"), code="bad_output")
    command = items[0].command
    key = params_key(command, detectors, None)
    todo = list(pending_items(items, str(out), key))
    skipped = len(items) - len(todo)
    # the items summary.csv lists: those already done, then each one as it finishes
    listed = {item.id for item in items} - {item.id for item in todo}
    ok = failed = 0
    # connected before anything is written: an unreachable scheduler leaves no output folder behind
    executor = make_executor(scheduler, workers=workers) if todo else None
    try:
        require_output_folder(out, names)
    except BaseException:
        if executor is not None:
            executor.shutdown(cancel=True)
        raise
    if progress:
        progress(0, len(todo), None)
    if executor is None:
        write_summary(out, listed)
        return BatchReport(len(items), skipped, 0, 0, "none (nothing to do)", not_images)
    description = executor.description
    try:
        with open(out / RESULTS, "a", encoding="utf-8") as handle:
            futures = [executor.submit(run_item, asdict(item), str(out), list(detectors or []), key)
                       for item in todo]
            for finished, future in enumerate(as_completed(futures), start=1):
                record = future.result()
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
    return BatchReport(len(items), skipped, ok, failed, description, not_images)
