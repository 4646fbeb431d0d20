"""Batch runs: statuses, resumption, a run killed half-way, and the same results on a Dask LocalCluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retouch.run.batch import RESULTS, plan, read_results, run_batch
from retouch.samples import make_authentic, make_forgery, make_pair
from tests.helpers import CliRunner

DETECTORS = ["grain", "ela", "jpeg"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("collection")
    (folder / "box1").mkdir()
    for index, method in enumerate(["diffusion", "airbrush", "clone", "pasteup"]):
        case = make_forgery(100 + index, method=method, size=320)
        suffix = ".jpg" if case.file_format == "JPEG" else ".png"
        (folder / "box1" / f"{method}{suffix}").write_bytes(case.file_bytes)
    for index in range(4):
        case = make_authentic(200 + index, size=320)
        suffix = ".jpg" if case.file_format == "JPEG" else ".png"
        (folder / f"honest-{index}{suffix}").write_bytes(case.file_bytes)
    (folder / "box1" / "mouldy.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # a JPEG header, no image
    (folder / "inventory.txt").write_text("not an image, ignored\n")
    return folder


def test_the_summary_notes_pages_left_out_of_multi_page_inputs(tmp_path: Path) -> None:
    import csv

    import numpy as np
    from PIL import Image

    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(8)
    pages = [Image.fromarray(np.clip(rng.normal(mean, 10, (96, 128)), 0, 255).astype(np.uint8))
             for mean in (70, 150, 200)]
    pages[0].save(folder / "album.tif", save_all=True, append_images=pages[1:])
    pages[1].save(folder / "single.png")
    run_batch(folder, tmp_path / "out", detectors=["grain"], workers=1)
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        notes = {Path(row["paths"]).name: row["note"] for row in csv.DictReader(handle)}
    assert notes["single.png"] == "" and notes["album.tif"].startswith(
        "album.tif holds 3 images (pages or frames); only the first was analysed.")


def _statuses(out: Path) -> dict[str, str]:
    return {record_id: record["status"] for record_id, record in read_results(out).items()}


def test_mixed_batch_reports_each_item_and_reruns_do_no_work(collection: Path, tmp_path: Path) -> None:
    report = run_batch(collection, tmp_path, detectors=DETECTORS, workers=2)
    assert (report.total, report.ok, report.failed) == (9, 8, 1)
    statuses = _statuses(tmp_path)
    assert [k for k, v in statuses.items() if v == "error"] == ["box1_mouldy.jpg"]  # named by its path
    failed = read_results(tmp_path)["box1_mouldy.jpg"]
    assert "mouldy.jpg" in failed["error"]
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(summary) == 10 and summary[0] == "id,command,paths,sha256,score,regions,status,error,note"
    lines_before = (tmp_path / RESULTS).read_text()
    again = run_batch(collection, tmp_path, detectors=DETECTORS, workers=2)
    # only the failed item runs again (its cause may have been fixed); the successful ones are not redone
    assert (again.skipped, again.ok, again.failed) == (8, 0, 1)
    new_lines = (tmp_path / RESULTS).read_text().removeprefix(lines_before).splitlines()
    assert [json.loads(line)["id"] for line in new_lines] == [failed["id"]]


@pytest.mark.slow
def test_killed_run_resumes_and_completes_each_item_once(collection: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "retouch", "batch", str(collection), "-o", str(tmp_path), "-w", "1",
               "-d", ",".join(DETECTORS)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    results = tmp_path / RESULTS
    deadline = time.time() + 120
    while time.time() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(read_results(tmp_path))
    assert 3 <= done_before < 9, done_before
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    lines = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    assert {line["id"] for line in lines} == set(read_results(tmp_path)) and len(read_results(tmp_path)) == 9
    done = [line["id"] for line in lines if line["status"] == "ok"]
    # a failed item (the mouldy scan) is tried again by the rerun if the killed run had reached it
    assert len(done) == len(set(done)) == 8, "every successful item recorded exactly once"


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_results(collection: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    dask = tmp_path / "dask"
    run_batch(collection, local, detectors=DETECTORS, workers=2)
    report = run_batch(collection, dask, detectors=DETECTORS, workers=2, scheduler="local")
    assert "LocalCluster" in report.executor
    ours, theirs = read_results(local), read_results(dask)
    assert ours.keys() == theirs.keys()
    for item_id, record in ours.items():
        other = theirs[item_id]
        assert (record["status"], record["score"], record["regions"], record["sha256"]) == \
               (other["status"], other["score"], other["regions"], other["sha256"])


def test_pairs_csv_runs_compare(tmp_path: Path) -> None:
    pair = make_pair(5, size=384, edit="diffusion")
    (tmp_path / "a.png").write_bytes(pair.reference_bytes)
    (tmp_path / "b.jpg").write_bytes(pair.questioned_bytes)
    (tmp_path / "pairs.csv").write_text("reference,questioned,id\na.png,b.jpg,lenin-1920\na.png,missing.jpg,bad\n")
    report = run_batch(tmp_path / "pairs.csv", tmp_path / "out", workers=1)
    assert (report.ok, report.failed) == (1, 1)
    record = read_results(tmp_path / "out")["lenin-1920"]
    assert record["command"] == "compare" and (tmp_path / "out" / "items" / "lenin-1920" / "report.json").exists()
    assert "missing.jpg" in read_results(tmp_path / "out")["bad"]["error"]


@pytest.mark.slow
def test_ctrl_c_exits_130_and_leaves_consistent_results(collection: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "retouch", "batch", str(collection), "-o", str(tmp_path), "-w", "1",
               "-d", ",".join(DETECTORS)]
    # a terminal's Ctrl-C reaches the whole process group: the workers too
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    results = tmp_path / RESULTS
    deadline = time.time() + 120
    while time.time() < deadline and not (results.exists() and results.read_text().strip()):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.splitlines()[-1] == "retouch: error: interrupted" and "Traceback" not in stderr
    lines = [json.loads(line) for line in results.read_text().splitlines()]  # whole lines only
    assert 1 <= len(lines) < 9
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + len(lines), "summary.csv lists exactly the recorded items"
    for line in lines:
        assert (Path(line["artifacts"]) / "report.json").exists() == (line["status"] == "ok")
    assert not list(tmp_path.rglob("*.part")), "no temp files left behind"


def _mark_then_wait(marker: str, seconds: float) -> None:
    Path(marker).write_text("started\n")
    time.sleep(seconds)


@pytest.mark.slow
def test_a_stopped_worker_does_not_start_the_item_queued_behind_it(tmp_path: Path) -> None:
    # ProcessPoolExecutor hands a worker its next item before the current one ends; SIGTERM unwinds the current
    # item, and the worker must then exit, not start the next one (to be killed mid-write 5 s later)
    from retouch.run.executor import LocalExecutor

    executor = LocalExecutor(1)
    first, second = tmp_path / "first", tmp_path / "second"
    running = executor.submit(_mark_then_wait, str(first), 60)
    executor.submit(_mark_then_wait, str(second), 60)
    deadline = time.time() + 60
    while not first.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert first.exists() and not running.done()
    workers = executor.processes()
    executor.shutdown(cancel=True)
    time.sleep(0.5)
    assert not second.exists(), "the worker went on to the next item after it was told to stop"
    # it ended itself after unwinding the item (128 + SIGTERM), rather than being killed when the wait ran out
    assert [worker.exitcode for worker in workers] == [128 + signal.SIGTERM], "the worker had to be killed"


def test_output_folder_inside_the_input_folder_is_not_scanned(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.png").write_bytes(make_authentic(7, size=128).file_bytes)
    first = run_batch(scans, scans / "out", detectors=["grain"], workers=1)
    assert (first.total, first.ok) == (1, 1)
    again = run_batch(scans, scans / "out", detectors=["grain"], workers=1)
    assert (again.total, again.skipped, again.ok) == (1, 1, 0), "the run's own maps are not new items"


def test_unusable_output_folders_exit_2_with_one_line(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_authentic(8, size=128).file_bytes)
    (tmp_path / "pairs.csv").write_text("a.png,a.png\n")
    (tmp_path / "a-file").write_text("not a folder\n")
    for blocker in ("results.jsonl", "summary.csv"):
        (tmp_path / f"blocked-{blocker}" / blocker).mkdir(parents=True)
    cases = {"a-file": "is not a folder", "blocked-results.jsonl": "results.jsonl: retouch writes a file here",
             "blocked-summary.csv": "summary.csv: retouch writes a file here"}
    for out, expected in cases.items():
        done = cli("batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / out), "-w", "1")
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and expected in lines[0], (out, done.stderr)
    assert (tmp_path / "a-file").read_text() == "not a folder\n"
    (tmp_path / "analyze-out" / "report.json").mkdir(parents=True)
    single = cli("analyze", str(tmp_path / "a.png"), "-o", str(tmp_path / "analyze-out"), "-d", "grain")
    assert single.returncode == 2 and "report.json: retouch writes a file here" in single.stderr, single.stderr


def test_csv_ids_that_are_not_plain_names_are_refused_naming_the_row(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_authentic(9, size=128).file_bytes)
    for bad_id in ("..", ".", "box/1", "box\\1"):
        (tmp_path / "pairs.csv").write_text(f"reference,questioned,id\na.png,a.png,fine\na.png,a.png,{bad_id}\n")
        done = cli("batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "out"), "-w", "1")
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, (bad_id, done.stderr)
        assert "pairs.csv:3: id" in lines[0] and "not a plain name" in lines[0], lines[0]
        assert not (tmp_path / "out").exists()


def test_a_csv_that_is_not_utf8_is_named_with_advice(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_bytes("référence,questionné\n".encode("cp1252"))
    done = cli("batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "out"))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "pairs.csv: the CSV is not UTF-8 text" in lines[0] and "save it as UTF-8" in lines[0], lines[0]


def test_a_failed_item_runs_again_once_its_cause_is_fixed(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.png").write_bytes(make_authentic(10, size=128).file_bytes)
    [item] = plan(scans)
    blocker = tmp_path / "out" / "items" / item.id
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the item's folder goes\n")
    first = run_batch(scans, tmp_path / "out", detectors=["grain"], workers=1)
    assert (first.ok, first.failed) == (0, 1)
    blocker.unlink()
    second = run_batch(scans, tmp_path / "out", detectors=["grain"], workers=1)
    assert (second.skipped, second.ok, second.failed) == (0, 1, 0)
    assert (blocker / "report.json").exists() and _statuses(tmp_path / "out") == {item.id: "ok"}
    third = run_batch(scans, tmp_path / "out", detectors=["grain"], workers=1)
    assert (third.skipped, third.ok, third.failed) == (1, 0, 0)


def test_an_output_folder_above_the_input_folder_is_used_and_the_input_folder_itself_is_refused(
        cli: CliRunner, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.png").write_bytes(make_authentic(11, size=128).file_bytes)
    above = cli("batch", "scans", "-o", ".", "-d", "grain", "-w", "1", cwd=tmp_path)
    assert above.returncode == 0, above.stderr
    assert "1 items: 1 done" in above.stdout and (tmp_path / "summary.csv").exists()
    for args, expected in ((("scans", "-o", "scans"), "scans: the output folder is the input folder scans"),
                           ((f"items/{plan(scans)[0].id}", "-o", "."), "the input folder is inside")):
        refused = cli("batch", *args, "-d", "grain", "-w", "1", cwd=tmp_path)
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode == 2 and len(lines) == 1 and expected in lines[0], (args, refused.stderr)
    assert sorted(p.name for p in scans.iterdir()) == ["a.png"], "nothing written into the input folder"


def test_the_summary_lists_exactly_this_runs_input(cli: CliRunner, tmp_path: Path) -> None:
    import csv

    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    for folder, names in ((first, ["a.png", "b.png"]), (second, ["c.png"])):
        folder.mkdir()
        for index, name in enumerate(names):
            (folder / name).write_bytes(make_authentic(20 + index, size=128).file_bytes)

    def listed() -> list[str]:
        with open(out / "summary.csv", newline="") as handle:
            return sorted(Path(row["paths"]).name for row in csv.DictReader(handle))

    assert run_batch(first, out, detectors=["grain"], workers=1).total == 2 and listed() == ["a.png", "b.png"]
    done = cli("batch", str(second), "-o", str(out), "-d", "grain", "-w", "1")
    assert done.returncode == 0 and "1 items: 1 done" in done.stdout, done.stderr
    assert listed() == ["c.png"]
    (first / "b.png").unlink()
    again = run_batch(first, out, detectors=["grain"], workers=1)
    assert (again.total, again.skipped) == (1, 1) and listed() == ["a.png"]
    assert len(list((out / "items").iterdir())) == 3, "earlier runs' reports stay (a rerun resumes from them)"


def test_a_pairs_csv_header_is_recognised_in_any_case_with_spaces_and_a_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_authentic(12, size=128).file_bytes)
    (tmp_path / "pairs.csv").write_bytes("\ufeff Reference , Questioned ,ID\na.png,a.png,same\n".encode("utf-8"))
    assert [item.id for item in plan(tmp_path / "pairs.csv")] == ["same"]


def test_a_first_row_of_other_column_names_is_refused_as_a_header_not_run_as_files(
        cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_authentic(12, size=128).file_bytes)
    for separator, header in ((",", "Original,Modified"), (";", "reference;modified;id"),
                              ("\t", "Before\tAfter\tName")):
        (tmp_path / "pairs.csv").write_text(f"{header}\n" + separator.join(["a.png", "a.png", "x"]) + "\n")
        done = cli("batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "out"), "-w", "1")
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, (header, done.stderr)
        assert "pairs.csv:1:" in lines[0] and "column names" in lines[0] and "reference" in lines[0], lines[0]
        assert not (tmp_path / "out").exists()
    # a first row of files, one of them missing, is a row like any other: its item fails alone
    (tmp_path / "pairs.csv").write_text("a.png,gone.png,x\na.png,a.png,y\n")
    assert [item.id for item in plan(tmp_path / "pairs.csv")] == ["x", "y"]


def test_an_unusable_scheduler_exits_2_before_anything_is_written(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.png").write_bytes(make_authentic(13, size=128).file_bytes)
    for scheduler, expected in (("tcp://127.0.0.1:1", "cannot connect to the Dask scheduler at tcp://127.0.0.1:1"),
                                ("bogus", "unknown scheduler 'bogus'")):
        done = cli("batch", str(tmp_path / "scans"), "-o", str(tmp_path / "out"), "--scheduler", scheduler)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, (scheduler, done.stderr)  # no progress bar either
        assert expected in lines[0] and "--scheduler" in lines[0], lines[0]
        assert not (tmp_path / "out").exists()


def test_a_folder_batch_names_the_files_it_skipped_as_not_images(cli: CliRunner, tmp_path: Path) -> None:
    from PIL import Image

    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.png").write_bytes(make_authentic(14, size=128).file_bytes)
    Image.new("L", (40, 40), 128).save(scans / "anim.gif")
    (scans / "readme.txt").write_text("box 4, folder 2\n")
    done = cli("batch", str(scans), "-o", str(tmp_path / "out"), "-d", "grain", "-w", "1")
    assert done.returncode == 0, done.stderr
    assert "Skipped 2 files not read as images" in done.stdout and "anim.gif, readme.txt." in done.stdout


def test_broken_symbolic_links_in_a_folder_are_reported_not_dropped(tmp_path: Path) -> None:
    # a link to a scan on an unmounted drive, or to itself, was neither an item nor named as skipped: the scan
    # went missing from the run and its summary without a word
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "a.png").write_bytes(make_authentic(14, size=96).file_bytes)
    (scans / "offline.jpg").symlink_to(tmp_path / "unmounted" / "offline.jpg")
    (scans / "loop.jpg").symlink_to(scans / "loop.jpg")
    (scans / "notes.txt").symlink_to(tmp_path / "unmounted" / "notes.txt")
    report = run_batch(scans, tmp_path / "out", detectors=["grain"], workers=1)
    assert (report.ok, report.failed, report.not_images) == (1, 2, ["notes.txt"])
    errors = {Path(record["paths"][0]).name: record["error"] for record in read_results(tmp_path / "out").values()
              if record["status"] == "error"}
    assert errors.keys() == {"offline.jpg", "loop.jpg"}
    assert all("is a symbolic link to nothing" in error for error in errors.values()), errors


def test_a_failed_item_is_named_by_its_path_even_with_square_brackets(cli: CliRunner, tmp_path: Path) -> None:
    scans = tmp_path / "box [old]"
    (scans / "a[").mkdir(parents=True)
    (scans / "scan [draft].jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # a JPEG header, no image
    (scans / "a[" / "x].jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)  # the path holds '[/x]'
    out = tmp_path / "out [run]"
    done = cli("batch", str(scans), "-o", str(out), "-d", "grain", "-w", "1")
    assert done.returncode == 0, done.stderr
    stderr = " ".join(done.stderr.split())  # rich wraps long lines
    assert str(scans / "scan [draft].jpg") in stderr and str(scans / "a[" / "x].jpg") in stderr
    assert f"Summary: {out / 'summary.csv'}" in done.stdout


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_in_a_pairs_csv_fails_its_item_instead_of_being_read_forever(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_authentic(15, size=128).file_bytes)
    (tmp_path / "pairs.csv").write_text("reference,questioned,id\na.png,/dev/zero,endless\n")
    report = run_batch(tmp_path / "pairs.csv", tmp_path / "out", workers=1)
    assert (report.ok, report.failed) == (0, 1)
    assert "/dev/zero: is a character device" in read_results(tmp_path / "out")["endless"]["error"]


def test_no_summary_cell_is_read_as_a_spreadsheet_formula(tmp_path: Path) -> None:
    import csv

    (tmp_path / "=2+3.png").write_bytes(make_authentic(14, size=96).file_bytes)
    pairs = tmp_path / "pairs.csv"
    # the id "-1-1" names the item's folder as it is, and a spreadsheet would compute it (-2)
    pairs.write_text("reference,questioned,id\n=2+3.png,=2+3.png,-1-1\n")
    run_batch(pairs, tmp_path / "out", detectors=["grain"], workers=1)
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert row["id"] == "'-1-1" and row["status"] == "ok"
    # the exact text stays in results.jsonl for programs
    assert list(read_results(tmp_path / "out")) == ["-1-1"]


def test_a_pairs_csv_is_read_as_any_spreadsheet_saves_it(tmp_path: Path) -> None:
    # European Excel and LibreOffice separate by ';', Excel's "Unicode text" is UTF-16 separated by tabs, and old
    # Mac line ends are CR alone: the same table each time
    rows = [["Reference", "Questioned", "ID"], ["a.png", "b.png", "one"], ["a.png", "b.png", "two"]]
    shapes = {"comma-crlf": ("\r\n".join(",".join(row) for row in rows) + "\r\n").encode("utf-8-sig"),
              "semicolon": ("\r\n".join(";".join(row) for row in rows) + "\r\n").encode("utf-8-sig"),
              "semicolon-no-header": "a.png;b.png;one\na.png;b.png;two\n".encode(),
              "utf16-tabs": ("\r\n".join("\t".join(row) for row in rows) + "\r\n").encode("utf-16"),
              "cr-only": ("\r".join(",".join(row) for row in rows) + "\r").encode()}
    for shape, data in shapes.items():
        (tmp_path / f"{shape}.csv").write_bytes(data)
        items = plan(tmp_path / f"{shape}.csv")
        assert [(item.id, [Path(p).name for p in item.inputs]) for item in items] == [
            ("one", ["a.png", "b.png"]), ("two", ["a.png", "b.png"])], shape


def test_a_cp1252_csv_is_refused_naming_the_line(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_bytes("reference,questioned\na.png,b.png\ncafé.png,b.png\n".encode("cp1252"))
    done = cli("batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "out"))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "pairs.csv: the CSV is not UTF-8 text (line 3 holds byte 0xe9" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def test_pairs_csv_columns_by_header_home_folder_unicode_forms_and_windows_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import unicodedata

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    composed = "café.png"  # as Linux and Windows store it; macOS and text typed there give the decomposed form
    for name in (composed, "b.png"):
        (home / name).write_bytes(b"scan")
    (tmp_path / "box1").mkdir()
    (tmp_path / "box1" / "c.png").write_bytes(b"scan")
    csv_text = (f"ID;Questioned;Reference\nx;~/b.png;~/{unicodedata.normalize('NFD', composed)}\n"
                "y;box1\\c.png;~/b.png\n")  # a path typed on Windows
    (tmp_path / "pairs.csv").write_text(csv_text, encoding="utf-8")
    items = plan(tmp_path / "pairs.csv")
    expected = [("x", (home / composed, home / "b.png")), ("y", (home / "b.png", tmp_path / "box1" / "c.png"))]
    assert [(item.id, item.inputs) for item in items] == [(i, (str(r), str(q))) for i, (r, q) in expected]


def test_a_pairs_csv_row_without_both_files_is_refused_naming_the_row(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(make_authentic(14, size=128).file_bytes)
    for row, role in ((",a.png,x", "reference"), ("a.png,,x", "questioned"), ("a.png", "questioned")):
        (tmp_path / "pairs.csv").write_text(f"reference,questioned,id\na.png,a.png,fine\n{row}\n")
        done = cli("batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "out"), "-w", "1")
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, (row, done.stderr)
        assert f"pairs.csv:3: no {role} file" in lines[0], lines[0]
        assert not (tmp_path / "out").exists()


def test_pairs_csv_ids_keep_any_script_and_clashing_rows_are_refused_naming_both_lines(
        cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "pairs.csv").write_text("a.png,b.png,фото-1\na.png,b.png,снимок-1\n", encoding="utf-8")
    assert [item.id for item in plan(tmp_path / "pairs.csv")] == ["фото-1", "снимок-1"]
    # 'Lenin' and 'lenin' are one folder on macOS and Windows: the second item's reports would replace the first's
    for rows, expected in (("a.png,b.png,Lenin\nb.png,a.png,lenin\n", "pairs.csv:2: id 'lenin' is already given "
                                                                      "on line 1 as 'Lenin'"),
                           ("a.png,b.png\n\na.png,b.png\n", "pairs.csv:3: lists the same pair as line 1"),
                           ("a.png,b.png," + "x" * 130 + "\n", "pairs.csv:1: id 'xxxx")):
        (tmp_path / "pairs.csv").write_text(rows)
        done = cli("batch", str(tmp_path / "pairs.csv"), "-o", str(tmp_path / "out"))
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1 and expected in lines[0], done.stderr
        assert not (tmp_path / "out").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes; others must be valid text")
def test_a_file_name_that_is_not_utf8_is_an_item_like_any_other(cli: CliRunner, tmp_path: Path) -> None:
    import csv

    scans = tmp_path / "scans"
    scans.mkdir()
    # a Latin-1 'é' from an old disk: the id's digest and summary.csv could not encode it (internal error, exit 1)
    Path(os.fsdecode(os.fsencode(scans) + b"/d\xe9p\xf4t.png")).write_bytes(make_authentic(16, size=96).file_bytes)
    for run in ("first", "again"):
        done = cli("batch", str(scans), "-o", str(tmp_path / "out"), "-d", "grain", "-w", "1")
        assert done.returncode == 0 and "failed" not in done.stderr, (run, done.stderr)
    assert "0 done, 0 failed, 1 already done" in done.stdout, "the id is the same on a rerun"
    with open(tmp_path / "out" / "summary.csv", newline="", encoding="utf-8") as handle:
        (row,) = csv.DictReader(handle)
    assert row["status"] == "ok" and row["paths"].endswith("/scans/d\\xe9p\\xf4t.png"), row


def test_inputs_where_the_batch_writes_are_refused_before_anything_is_written(
        cli: CliRunner, tmp_path: Path) -> None:
    pair = make_pair(17, size=160, edit="diffusion")
    out = tmp_path / "out"
    (out / "items" / "b").mkdir(parents=True)
    kept = out / "items" / "b" / "overlay.png"  # item b writes its overlay.png here
    kept.write_bytes(pair.reference_bytes)
    (tmp_path / "q.png").write_bytes(pair.questioned_bytes)
    (tmp_path / "r.png").write_bytes(pair.reference_bytes)
    (tmp_path / "link.png").symlink_to(kept)
    pairs = out / "summary.csv"  # the batch's own summary replaced the list of pairs it was given
    for spelling in ("out/items/b/overlay.png", "./out/../out/items/b/overlay.png", "link.png"):
        for source in (tmp_path / "pairs.csv", pairs):
            source.write_text(f"reference,questioned,id\n{'../' * (source == pairs)}{spelling},q.png,a\n"
                              f"{'../' * (source == pairs)}r.png,q.png,b\n")
            listed = source.read_bytes()
            done = cli("batch", str(source), "-o", str(out), "-w", "1")
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert done.returncode == 2 and len(lines) == 1, (spelling, source.name, done.stderr)
            assert "overlay.png" in lines[0] or "summary.csv" in lines[0], lines[0]
            assert "where this batch writes" in lines[0], lines[0]
            assert kept.read_bytes() == pair.reference_bytes and source.read_bytes() == listed
            written = sorted(p.name for p in out.iterdir())
            assert written == sorted(["items", *(["summary.csv"] * (source == pairs))]), written
            source.unlink()


def _id_by_the_old_rule(text: str) -> str:
    """The id retouch gave an item made from a path (or a pairs CSV row's files, joined by '|') before its ids
    had one rule with the web service's: '-' for each run of other characters than ASCII letters and digits, the
    first 60 characters, then 6 hex digits of the text's SHA-1."""
    import hashlib
    import re

    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:60] or "item"
    return f"{slug}-{hashlib.sha1(os.fsencode(text)).hexdigest()[:6]}"


def _as_the_old_rule_left_it(out: Path, old_ids: dict[str, str]) -> None:
    """Turn a batch folder into the one the old id rule made: each item's folder and record under its old id."""
    records = read_results(out)
    lines = []
    for new, old in old_ids.items():
        (out / "items" / new).rename(out / "items" / old)
        record = {**records[new], "id": old, "artifacts": str(out / "items" / old)}
        lines.append(json.dumps(record, sort_keys=True))
    (out / RESULTS).write_text("\n".join(lines) + "\n")


def test_a_batch_folder_made_by_the_old_id_rule_resumes_without_running_anything_again(tmp_path: Path) -> None:
    import csv

    scans, out = tmp_path / "scans", tmp_path / "out"
    (scans / "box 1").mkdir(parents=True)
    (scans / "a.png").write_bytes(make_authentic(30, size=96).file_bytes)
    (scans / "box 1" / "scan one.png").write_bytes(make_authentic(31, size=96).file_bytes)
    assert run_batch(scans, out, detectors=["grain"], workers=1).ok == 2
    old_ids = {"a.png": _id_by_the_old_rule("a.png"),
               "box_1_scan_one.png": _id_by_the_old_rule("box 1/scan one.png")}
    _as_the_old_rule_left_it(out, old_ids)
    assert sorted(p.name for p in (out / "items").iterdir()) == sorted(old_ids.values())
    again = run_batch(scans, out, detectors=["grain"], workers=1)
    assert (again.total, again.skipped, again.ok, again.failed) == (2, 2, 0, 0), "every old item was found"
    # carried over to the ids of the rule now: folders renamed, records under the new ids
    assert sorted(p.name for p in (out / "items").iterdir()) == sorted(old_ids)
    records = read_results(out)
    for new in old_ids:
        assert records[new]["artifacts"] == str(out / "items" / new) and records[new]["status"] == "ok"
        assert (out / "items" / new / "report.json").exists()
    with open(out / "summary.csv", newline="") as handle:
        assert sorted(row["id"] for row in csv.DictReader(handle)) == sorted(old_ids)
    third = run_batch(scans, out, detectors=["grain"], workers=1)
    assert (third.skipped, third.ok) == (2, 0)


@pytest.mark.slow
def test_a_pairs_csv_batch_made_by_the_old_id_rule_resumes_without_running_anything_again(tmp_path: Path) -> None:
    pair = make_pair(18, size=160, edit="diffusion")
    (tmp_path / "r.png").write_bytes(pair.reference_bytes)
    (tmp_path / "q.png").write_bytes(pair.questioned_bytes)
    pairs, out = tmp_path / "pairs.csv", tmp_path / "out"
    # a row's own id kept all but other characters than letters, digits, '.', '_' and '-', made '-'
    pairs.write_text("reference,questioned,id\nr.png,q.png,Lenin 1920\nq.png,r.png,\n")
    assert [item.id for item in plan(pairs)] == ["Lenin_1920", "q.png_r.png"]
    assert run_batch(pairs, out, workers=1).ok == 2
    _as_the_old_rule_left_it(out, {"Lenin_1920": "Lenin-1920", "q.png_r.png": _id_by_the_old_rule("q.png|r.png")})
    again = run_batch(pairs, out, workers=1)
    assert (again.skipped, again.ok, again.failed) == (2, 0, 0)
    assert sorted(p.name for p in (out / "items").iterdir()) == ["Lenin_1920", "q.png_r.png"]
