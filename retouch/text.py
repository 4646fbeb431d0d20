"""Text that reaches people (terminals, reports, tables): kept to what any UTF-8 reader accepts.

Free of numpy and OpenCV, so the command line can use it before (or without) loading them.
"""

from __future__ import annotations

from pathlib import PurePosixPath


def readable_text(text: str) -> str:
    """``text`` (a file name or path) as valid Unicode, for reports, tables and terminals.

    A Linux file name is bytes; one that is not UTF-8 (a scan copied from an old Latin-1 disk) reaches Python
    with each stray byte as a lone surrogate, which no UTF-8 file can hold. Such a byte is written as ``\\xe9``,
    as Python itself shows it, so the reader can still find the file. Valid text is returned unchanged.
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte (not from the file system)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def fit_name(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` bytes of UTF-8, from the end of its stem so that its extension stays
    (file systems take names of up to 255 bytes); a character the cut would split is dropped whole."""
    if len(name.encode()) <= limit:
        return name
    suffix = PurePosixPath(name).suffix
    suffix = suffix if len(suffix.encode()) <= limit // 4 else ""
    stem = name[: len(name) - len(suffix)].encode()[: limit - len(suffix.encode())]
    return stem.decode("utf-8", "ignore") + suffix
