"""Reading the small CSV tables users write in spreadsheets: a batch's pairs CSV and a zip's ``manifest.csv``.

Spreadsheets save CSV in several shapes that all mean the same table: with or without a byte-order mark, with
Windows (CRLF), Unix (LF) or old Mac (CR) line ends, separated by ',' or, where the decimal mark is a comma
(European locales of Excel and LibreOffice), by ';', and Excel's "Unicode text" as UTF-16 separated by tabs.
They are all read here, so that the command line and the web service accept the same files.
"""

from __future__ import annotations

import codecs
import csv
import io

from retouch.errors import InputError

DELIMITERS = (",", ";", "\t")  # in order of preference when a row reads the same with several


def decode_table(data: bytes, name: str) -> str:
    """``data`` as text: UTF-8 (a byte-order mark dropped), or UTF-16 when a byte-order mark says so.

    Anything else (a legacy code page such as cp1252) is refused naming the line: guessing a code page would
    turn 'é' in a file name into another letter, and the file would then be reported missing.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")  # the byte-order mark tells the byte order and is dropped
        except UnicodeDecodeError:
            raise InputError(f"{name}: the CSV starts as UTF-16 text but is damaged; save it again as UTF-8 (in "
                             "a spreadsheet: 'CSV UTF-8') and try again", path=name, code="bad_table") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        before = data[: error.start]
        line = before.count(b"\n") + 1 if b"\n" in data else before.count(b"\r") + 1
        raise InputError(f"{name}: the CSV is not UTF-8 text (line {line} holds byte 0x{data[error.start]:02x}, "
                         "which UTF-8 does not allow there); save it as UTF-8 (in a spreadsheet: 'CSV UTF-8') and "
                         "try again", path=name, code="bad_table") from None


def _delimiter(text: str) -> str:
    """The separator of the table: the one that splits its first non-blank row into the most cells."""
    for line in io.StringIO(text, newline=""):
        if line.strip():
            counts = [len(next(csv.reader([line], delimiter=d), [])) for d in DELIMITERS]
            return DELIMITERS[counts.index(max(counts))]
    return ","


def read_table(data: bytes, name: str) -> list[tuple[int, list[str]]]:
    """The rows of a CSV as ``(line where the row starts, cells stripped of surrounding spaces)``.

    Rows with nothing in them (blank lines; spreadsheets pad rows with separators) are left out. ``name`` names
    the file in errors, which are :class:`InputError` one-liners with the line to look at.
    """
    text = decode_table(data, name)
    # newline="": a quoted cell may hold a line break, and CR alone ends a line as CRLF and LF do
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    rows, start = [], 1
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if any(cells):
                rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as error:
        raise InputError(f"{name}: line {reader.line_num} cannot be read as CSV ({error}); save the table again "
                         "as CSV from a spreadsheet", path=name, code="bad_table") from None
    return rows
