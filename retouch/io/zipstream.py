"""A zip archive written as a stream of chunks, never held whole in memory: for downloads of many reports.

:func:`stream_zip` yields the archive's bytes as they are made. The standard library's :class:`zipfile.ZipFile`
writes to a sink that cannot seek, so each member's sizes and CRC follow its data (a data descriptor) instead of
being patched into its header afterwards; every zip reader reads such archives. Memory stays at about one chunk
per member, whatever the archive's size.

Example
-------
>>> import io, zipfile
>>> data = b"".join(stream_zip([("summary.csv", b"id,score\\n"), ("notes.txt", b"none")]))
>>> zipfile.ZipFile(io.BytesIO(data)).namelist()
['summary.csv', 'notes.txt']
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

CHUNK = 1 << 20
# formats that are compressed already: deflating them again costs time and saves nothing
STORED_SUFFIXES = {".png", ".gif", ".jpg", ".jpeg", ".webp", ".zip"}


class _Sink(io.RawIOBase):
    """A write-only, unseekable file that keeps what was written until it is taken."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def stream_zip(entries: Iterable[tuple[str, Path | bytes]], *, chunk: int = CHUNK) -> Iterator[bytes]:
    """The bytes of a zip holding ``entries``, in chunks of about ``chunk`` bytes, as they are made.

    Each entry is (its name in the archive, with '/' between folders; a file to copy, or bytes). ``entries`` is
    read lazily, so a caller may produce each entry's bytes only when it comes. A file that cannot be opened when
    its turn comes (deleted meanwhile) is left out rather than ending the archive. PNG, GIF and JPEG files are
    stored, other members deflated.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for name, source in entries:
            stored = PurePosixPath(name).suffix.lower() in STORED_SUFFIXES
            if isinstance(source, bytes):
                info = _info(name, len(source), time.time(), stored)
                with archive.open(info, "w") as member:
                    for start in range(0, len(source), chunk):
                        member.write(source[start:start + chunk])
                        yield sink.take()
                yield sink.take()
                continue
            try:
                handle = open(source, "rb")  # noqa: SIM115 - closed below, after the member is written
            except OSError:
                continue
            with handle:
                status = os.fstat(handle.fileno())  # of the file opened, should its name be gone already
                info = _info(name, status.st_size, status.st_mtime, stored)
                with archive.open(info, "w") as member:
                    while data := handle.read(chunk):
                        member.write(data)
                        yield sink.take()
            yield sink.take()
    yield sink.take()


def _info(name: str, size: int, modified: float, stored: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=time.localtime(max(modified, 315532800))[:6])  # zip dates start in 1980
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    info.file_size = size  # so that a member over 2 GiB gets ZIP64 sizes from the start
    info.external_attr = 0o644 << 16
    return info
