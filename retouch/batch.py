"""Batch runs over collections: plan items, skip what is done, run the rest on an executor, record results.

``results.jsonl`` gets one line per finished item, appended (and flushed to disk) by the coordinating process as
results stream back, so a run killed at any moment leaves only whole lines for whole items (a torn last line is
ignored on reading). A rerun skips items whose inputs (by SHA-256) and parameters are unchanged; ``summary.csv``
is regenerated from ``results.jsonl`` at the end of every run, also an interrupted one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retouch import __version__
from retouch.errors import InputError
from retouch.io import SNIFF_BYTES, atomic_write_text, sniff_format
from retouch.requirements import require_output_folder

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
    return f"{slug}-{hashlib.sha1(relative.encode('utf-8')).hexdigest()[:6]}"


def _csv_item_id(given: str, where: str) -> str:
    """The id a CSV row gives, as a folder name under items/: refused unless it is a plain name.

    ``..`` would put the item's reports in the output root, ``.`` in items/ itself, and a slash in a folder
    elsewhere; other characters outside letters, digits, '.', '_' and '-' become '-'.
    """
    if given in {".", ".."} or "/" in given or "\\" in given:
        raise InputError(f"{where}: id {given!r} is not a plain name (it names the item's folder under items/, so "
                         "it cannot be '.' or '..' or contain '/' or '\\'); use letters, digits, '.', '_' and '-'")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", given)


def _pairs_from_csv(source: Path) -> list[BatchItem]:
    """The compare items listed in a pairs CSV (reference,questioned[,id]); malformed rows are refused."""
    items, seen = [], set()
    first_row = True
    # utf-8-sig: spreadsheets ("CSV UTF-8") start the file with a byte-order mark, which is not part of the header
    with open(source, newline="", encoding="utf-8-sig") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not cells or not any(cells):
                continue
            # the header as people type it or spreadsheets export it: "Reference, Questioned, ID" is no pair of files
            is_header = first_row and [cell.lower() for cell in cells[:2]] == ["reference", "questioned"]
            first_row = False
            if is_header:
                continue
            if len(cells) < 2:
                raise InputError(f"{source}:{number}: expected 'reference,questioned[,id]'")
            reference, questioned = (str((source.parent / cell).resolve()) for cell in cells[:2])
            if len(cells) > 2 and cells[2]:
                item_id = _csv_item_id(cells[2], f"{source}:{number}")
            else:  # no id given (or an empty cell, as spreadsheets pad rows): one is made from the paths
                item_id = _item_id(f"{cells[0]}|{cells[1]}")
            if item_id in seen:
                raise InputError(f"{source}:{number}: duplicate id {item_id!r}")
            seen.add(item_id)
            items.append(BatchItem(item_id, "compare", (reference, questioned)))
    return items


def plan(input_path: str | os.PathLike[str], *, out_dir: str | os.PathLike[str] | None = None) -> list[BatchItem]:
    """Items of a batch: every image under a folder (recursively), or every row of a pairs CSV.

    Files under ``out_dir`` are not items: a batch whose output folder lies inside its input folder would
    otherwise analyse its own maps and overlays on the next run.
    """
    source = Path(input_path)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder; give a folder of images or a CSV of pairs")
    if source.is_dir():
        items = []
        output = Path(out_dir).resolve() if out_dir is not None else None
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            if output is not None and output in path.resolve().parents:
                continue
            if _looks_like_image(path):
                relative = path.relative_to(source).as_posix()
                items.append(BatchItem(_item_id(relative), "analyze", (str(path.resolve()),)))
        if not items:
            raise InputError(f"{source}: no image files found; give a folder of scans or a CSV of pairs")
        return items
    if source.suffix.lower() != ".csv":
        raise InputError(f"{source}: a batch input is a folder of images or a .csv of pairs "
                         "(reference,questioned[,id])")
    try:
        items = _pairs_from_csv(source)
    except UnicodeDecodeError as error:
        raise InputError(f"{source}: the CSV is not UTF-8 text (it holds byte 0x{error.object[error.start]:02x}, "
                         "which UTF-8 does not allow there); save it as UTF-8 (in a spreadsheet: 'CSV UTF-8') and "
                         "try again", path=str(source)) from None
    if not items:
        raise InputError(f"{source}: no pairs listed")
    return items


def params_key(command: str, detectors: Sequence[str] | None, options: dict[str, Any] | None) -> str:
    blob = json.dumps({"command": command, "detectors": sorted(detectors or []), "options": options or {},
                       "version": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def file_sha256(path: str) -> str | None:
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
    from retouch.tasks import analyze_file, compare_files

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
                      seconds=outcome.seconds, note=_pages_note(outcome.inputs))
    except InputError as error:
        record.update(status="error", score=None, regions=None, error=str(error))
    except Exception as error:  # noqa: BLE001 - one bad item must not end the batch
        record.update(status="error", score=None, regions=None, error=f"internal error: {type(error).__name__}: "
                                                                       f"{str(error)[:200]}")
    return record


def _pages_note(inputs: list[dict[str, Any]]) -> str:
    """What was left out of an item: the pages after the first of multi-page inputs."""
    return "; ".join(f"{record['name']}: page 1 of {record['pages']} analysed"
                     for record in inputs if record.get("pages", 1) > 1)


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


def write_summary(out_dir: str | os.PathLike[str]) -> Path:
    records = read_results(out_dir)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "command", "paths", "sha256", "score", "regions", "status", "error", "note"])
    for record in sorted(records.values(), key=lambda r: r["id"]):
        writer.writerow([record["id"], record["command"], " | ".join(record["paths"]),
                         " | ".join(s or "" for s in record["sha256"]), record.get("score"), record.get("regions"),
                         record["status"], record.get("error", ""), record.get("note", "")])
    return atomic_write_text(Path(out_dir) / SUMMARY, buffer.getvalue())


@dataclass
class BatchReport:
    total: int
    skipped: int
    ok: int
    failed: int
    executor: str

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
    """Run (or resume) a batch; ``progress(done, total, record)`` is called as items finish."""
    from retouch.executor import as_completed, make_executor

    items = plan(input_path, out_dir=out_dir)
    out = require_output_folder(out_dir, [RESULTS, SUMMARY])
    if (out / "items").exists() and not (out / "items").is_dir():
        raise InputError(f"{out / 'items'}: retouch keeps each item's reports in this folder but a file is in the "
                         "way; remove it or choose another -o/--out", path=str(out / "items"), code="bad_output")
    command = items[0].command
    key = params_key(command, detectors, None)
    todo = list(pending_items(items, str(out), key))
    skipped = len(items) - len(todo)
    ok = failed = 0
    if progress:
        progress(0, len(todo), None)
    if not todo:
        write_summary(out)
        return BatchReport(len(items), skipped, 0, 0, "none (nothing to do)")
    executor = make_executor(scheduler, workers=workers)
    description = executor.description
    try:
        with open(out / RESULTS, "a", encoding="utf-8") as handle:
            futures = [executor.submit(run_item, asdict(item), str(out), list(detectors or []), key)
                       for item in todo]
            for finished, future in enumerate(as_completed(futures), start=1):
                record = future.result()
                _append(handle, record)
                ok += record["status"] == "ok"
                failed += record["status"] != "ok"
                if progress:
                    progress(finished, len(todo), record)
    except BaseException:
        executor.shutdown(cancel=True)
        write_summary(out)
        raise
    executor.shutdown()
    write_summary(out)
    return BatchReport(len(items), skipped, ok, failed, description)
