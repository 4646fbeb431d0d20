"""A zip written as a stream (retouch.io.zipstream): any zip reader reads it whole, a member is never held whole
in memory, and a file gone before its turn is left out instead of ending the archive."""

from __future__ import annotations

import doctest
import io
import os
import zipfile
from pathlib import Path

from retouch.io import zipstream
from retouch.io.zipstream import stream_zip


def test_the_stream_is_a_zip_every_reader_reads_with_each_member_as_it_was(tmp_path: Path) -> None:
    noise = os.urandom(3_000_000)  # incompressible: a heatmap PNG
    (tmp_path / "heat.png").write_bytes(noise)
    (tmp_path / "report.json").write_text('{"score": 0.1}\n' * 50_000)
    entries = [("summary.csv", b"id,score\nscan.jpg,0.1\n"), ("items/a/heat.png", tmp_path / "heat.png"),
               ("items/a/report.json", tmp_path / "report.json")]
    chunks = list(stream_zip(entries, chunk=1 << 16))
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert bundle.testzip() is None
    assert bundle.namelist() == ["summary.csv", "items/a/heat.png", "items/a/report.json"]
    assert bundle.read("items/a/heat.png") == noise
    assert bundle.read("items/a/report.json") == (tmp_path / "report.json").read_bytes()
    stored = {info.filename: info for info in bundle.infolist()}
    assert stored["items/a/heat.png"].compress_type == zipfile.ZIP_STORED  # compressed already
    assert stored["items/a/report.json"].compress_size < stored["items/a/report.json"].file_size / 20
    # written as it was read: no chunk holds much more than one read of a member
    assert len(chunks) > 45 and max(len(chunk) for chunk in chunks) < 2 * (1 << 16)


def test_a_file_gone_before_its_turn_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "kept.html").write_text("<p>kept</p>")

    def entries():
        yield "gone.png", tmp_path / "gone.png"  # deleted meanwhile (its job was deleted during the download)
        yield "kept.html", tmp_path / "kept.html"

    bundle = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(entries()))))
    assert bundle.namelist() == ["kept.html"] and bundle.read("kept.html") == b"<p>kept</p>"


def test_the_modules_example_runs_as_written() -> None:
    failed, attempted = doctest.testmod(zipstream)
    assert attempted and not failed
