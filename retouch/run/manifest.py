"""Items from the lists people write, and the one rule that names an item.

A list of items is a pairs CSV given to ``retouch batch``, or a ``manifest.csv`` or ``manifest.json`` in a zip
sent to the web service. Both are read here, the same way:

- A CSV is read as spreadsheets save it (:func:`retouch.io.read_table`). A first row naming the columns
  (``image``, or ``reference`` and ``questioned``; ``id`` if you like; any case, any order) says where they are;
  a pairs CSV may leave it out (``reference,questioned[,id]``). A JSON manifest is a list of objects with the same
  keys, or ``{"items": [...]}``.
- A file name is looked for as written, then with ``/`` for ``\\`` (a list typed on Windows) and in the other
  Unicode form (macOS writes 'é' as 'e' and an accent, a spreadsheet as one character): :func:`name_forms`.
- An item id names the item's folder and a segment of the web service's URLs (:func:`item_id`). A row's own id
  must already be a plain name (:func:`given_id`); two ids that differ only in case would share a folder on
  macOS and Windows, so a list repeating one is refused (:class:`IdClaims`), and ids made from file names are
  made unique (:func:`unique_items`).

Errors are :class:`retouch.errors.InputError` with the code ``bad_manifest``, naming the list, the row and what
to do; the command line exits 2 with them and the web service answers 400.

Example
-------
>>> item_id("Box 1/Lenin, 1920.tif")
'Box_1_Lenin_1920.tif'
>>> [entry.names for entry in csv_entries(b"reference,questioned\\na.png,b.jpg\\n", "pairs.csv")]
[('a.png', 'b.jpg')]
"""

from __future__ import annotations

import codecs
import json
import posixpath
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from retouch.errors import InputError
from retouch.io import read_table
from retouch.run.item import ANALYZE, COMPARE, Item
from retouch.text import fit_name

ID_BYTES = 120  # an id names a folder, '.ID.partial' while the item runs: file systems take 255 bytes
PAIR, IMAGE, ID = ("reference", "questioned"), "image", "id"
PAIRS_CSV_ORDER = ("reference", "questioned", "id")  # a pairs CSV's columns when no first row names them
COLUMNS_HELP = "image (or reference and questioned), and id if you like"


class ManifestError(InputError):
    """A list of items that cannot be read as one: a row, an id or a file name that is not what it must be."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="bad_manifest")


def item_id(name: str, fallback: str = "") -> str:
    """An item id made from ``name`` (a file name, a path, a row's id): letters and digits of any script, '.',
    '_' and '-' kept, other runs of characters made '_', in Unicode's composed form, without a leading or
    trailing '.' or '_' (a staging folder's name starts with '.', see :mod:`retouch.io.folders`), and cut to
    :data:`ID_BYTES` bytes keeping the extension; ``fallback`` when nothing is left."""
    cleaned = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFC", name)).strip("._")
    return fit_name(cleaned, ID_BYTES) or fallback


def given_id(value: Any, where: str) -> str | None:
    """A row's own id, checked to be a plain name, as :func:`item_id` writes it; None when the row gives none.

    Text, or a whole number written as it is. Refused, naming ``where``: anything else (a list, an object, true,
    a fraction: any text made of it would be an id the client never gave), an id holding '/' or '\\' (it names
    one folder, not a path), one holding no letter or digit (``..``, ``%%``) and one longer than
    :data:`ID_BYTES` bytes. Other characters are made '_' (``box 1`` is ``box_1``).
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ManifestError(f"{where}: the id {json.dumps(value)[:60]} is not text; give each id as a string "
                            '("id": "box1-017") or leave it out')
    text = str(value)
    if "/" in text or "\\" in text:
        raise ManifestError(f"{where}: id {text!r} is not a plain name (it names the item's folder, so it holds "
                            "no '/' or '\\'); use letters, digits, '.', '_' and '-'")
    made = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFC", text)).strip("._")
    if not any(char.isalnum() for char in made):
        raise ManifestError(f"{where}: id {text!r} is not a plain name: it holds no letter or digit to name the "
                            "item's folder by; give one that does, or leave it out")
    if len(made.encode()) > ID_BYTES:
        raise ManifestError(f"{where}: id {text[:40]!r}... is too long (it names the item's folder); give one of "
                            f"at most {ID_BYTES} bytes")
    return made


class IdClaims:
    """The ids of one list's rows, told apart as file systems tell folders apart: ignoring case (on macOS and
    Windows ``Lenin`` and ``lenin`` are one folder, and one item's reports would replace the other's)."""

    def __init__(self) -> None:
        self._taken: dict[str, tuple[str, str]] = {}  # id, case ignored -> (the row's position, id as given)

    def claim(self, entry: Entry) -> None:
        """Take ``entry``'s id; refused, naming both rows, when an earlier row took it."""
        if entry.id is None:
            return
        key = entry.id.casefold()
        if key in self._taken:
            position, first = self._taken[key]
            also = "" if first == entry.given else (
                f" as {first!r}, which names the same folder ({first!r} and {entry.given!r} differ only in case "
                "or in characters an id cannot hold, which become '_')")
            raise ManifestError(f"{entry.where}: id {entry.given!r} is already given on {position}{also}; give "
                                "each row its own id")
        self._taken[key] = (entry.position, str(entry.given))


@dataclass(frozen=True)
class Entry:
    """A row of a list: where it is (for messages), the files it names as written, its id as given and checked.

    ``names`` is ``(image,)`` for an analysis and ``(reference, questioned)`` for a comparison.
    """

    where: str  # "pairs.csv:3", "batch.zip: manifest.json entry 2"
    position: str  # "line 3", "entry 2": the row among the list's others
    names: tuple[str, ...]
    given: str | None
    id: str | None

    @property
    def command(self) -> str:
        return COMPARE if len(self.names) == 2 else ANALYZE


def csv_entries(data: bytes, label: str, *, order: Sequence[str] | None = None,
                where: Callable[[int], str] | None = None,
                names_a_file: Callable[[str], bool] | None = None) -> list[Entry]:
    """The rows of a CSV list of items. ``label`` names it in messages; ``where(line)`` names a row (default
    ``"<label> line <n>"``).

    Without a first row naming the columns, ``order`` gives them (a pairs CSV: :data:`PAIRS_CSV_ORDER`); with no
    ``order`` such a first row is required. ``names_a_file(cell)`` tells whether a cell could be a file: a first
    row none of whose cells could (``Original,Modified``) is refused as column names in other words, which would
    otherwise run as an item failing as a missing file, however many rows come after it.
    """
    where = where or (lambda line: f"{label} line {line}")
    table = read_table(data, label)
    if not table:
        return []
    (first_line, first), rows = table[0], table[1:]
    named = [cell.lower() for cell in first]
    if IMAGE in named or set(PAIR) <= set(named):
        columns = named
    elif order is None:
        raise ManifestError(f"{where(first_line)}: the first row must name the columns: {COLUMNS_HELP}; it holds "
                            f"{', '.join(repr(cell) for cell in first[:4])}")
    else:
        cells = [cell for cell in first[:2] if cell]
        if names_a_file is not None and cells and not any(names_a_file(cell) for cell in cells):
            raise ManifestError(f"{where(first_line)}: {', '.join(repr(cell) for cell in first[:3])} look like "
                                f"column names, not files; name the columns {', '.join(order[:-1])} and (if you "
                                f"like) {order[-1]}, in any order and case, or remove the row")
        columns, rows = list(order), table
    return [_entry(where(line), f"line {line}", dict(zip(columns, cells))) for line, cells in rows]


def json_entries(data: bytes, label: str) -> list[Entry]:
    """The entries of a JSON list of items: a list of objects, or ``{"items": [...]}``."""
    try:
        parsed = json.loads(data.removeprefix(codecs.BOM_UTF8))  # UTF-8, -16 and -32 are read, a UTF-8 BOM not
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ManifestError(f"{label} cannot be parsed ({error})") from None
    rows = parsed.get("items") if isinstance(parsed, dict) else parsed
    if not isinstance(rows, list):
        raise ManifestError(f'{label} must be a list of items or an object {{"items": [...]}}, each item with '
                            '"image" or "reference" and "questioned"')
    entries = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ManifestError(f"{label} entry {number} is not an object")
        entries.append(_entry(f"{label} entry {number}", f"entry {number}", row))
    return entries


def _entry(where: str, position: str, row: dict[str, Any]) -> Entry:
    roles = PAIR if any(row.get(role) not in (None, "") for role in PAIR) else (IMAGE,)
    names = []
    for role in roles:
        name = row.get(role)
        if name is None or name == "":
            raise ManifestError(f"{where}: no {role} file; each row names an image, or a reference and a "
                                f"questioned file (columns: {COLUMNS_HELP})" if roles == PAIR else
                                f'{where}: names no file; give "image", or "reference" and "questioned"')
        if not isinstance(name, str):
            raise ManifestError(f"{where}: the {role} {json.dumps(name)[:60]} is not a file name; give it as text")
        names.append(name)
    given = row.get(ID)
    checked = given_id(given, where)
    return Entry(where, position, tuple(names), None if checked is None else str(given), checked)


def name_forms(name: str) -> list[str]:
    """The spellings a listed file name may stand for, in order: as written; with '/' for '\\' (a list typed on
    Windows); each in Unicode's composed and decomposed form ('é' as one character, or 'e' and an accent)."""
    forms = [name, name.replace("\\", "/")] if "\\" in name else [name]
    forms += [unicodedata.normalize(form, spelt) for spelt in list(forms) for form in ("NFC", "NFD")]
    return list(dict.fromkeys(forms))


class NameIndex:
    """The files of an archive by name, for a manifest's names to find them (:meth:`find`)."""

    def __init__(self, names: Iterable[str]) -> None:
        self._exact: dict[str, list[str]] = {}  # composed form -> the names so spelt (two: written in both forms)
        self._folded: dict[str, list[str]] = {}  # the same, case ignored
        for name in names:
            self._exact.setdefault(unicodedata.normalize("NFC", name), []).append(name)
            self._folded.setdefault(unicodedata.normalize("NFC", name).casefold(), []).append(name)

    def find(self, name: str, folder: str = "") -> list[str]:
        """The archive's files a manifest's ``name`` may mean: relative to the manifest's ``folder`` (a zip of a
        folder holds 'scans/manifest.csv' beside 'scans/a.jpg'), else to the archive's root; in the spellings of
        :func:`name_forms`, the one written as the file is preferred; and, where nothing matches so, in another
        case (names typed on Windows, where 'Scan.JPG' opens 'scan.jpg'). The last two may find several."""
        written = name.replace("\\", "/").lstrip("/")
        spelt = [posixpath.normpath(posixpath.join(folder, written)), posixpath.normpath(written)]
        for candidate in spelt:  # of two names that differ in Unicode form only, the one spelt so is meant
            if candidate in self._exact.get(unicodedata.normalize("NFC", candidate), []):
                return [candidate]
        composed = [unicodedata.normalize("NFC", candidate) for candidate in spelt]
        for candidate in composed:
            if candidate in self._exact:
                return self._exact[candidate]
        for candidate in composed:
            if candidate.casefold() in self._folded:
                return self._folded[candidate.casefold()]
        return []


@dataclass
class Planned:
    """An item before ids are made unique: the id it would take, and whether that id is fixed (a row's own)."""

    wanted: str
    command: str
    inputs: tuple[str, ...]
    fixed: bool = False  # a row's own id, kept as it is (a repeated one was refused with the list)
    alternative: str | None = None  # the id to take where ``wanted`` is shared (made from a path in a zip)


def unique_items(planned: Sequence[Planned]) -> list[Item]:
    """The items, each with an id no other has, the same way for the same list.

    Fixed ids are kept. Ids made from file names can clash (``a b.jpg`` and ``a_b.jpg``; ``001.jpg`` in two
    folders): an id several items want is replaced by each one's ``alternative`` where it has one, and an id still
    taken gets the first free suffix ``-2``, ``-3``... before its extension (``a_b-2.jpg``). Ids are compared
    ignoring case, as :class:`IdClaims` compares them.
    """
    taken = {item.wanted.casefold() for item in planned if item.fixed}
    shared = Counter(item.wanted.casefold() for item in planned if not item.fixed)
    items = []
    for item in planned:
        wanted = item.wanted
        if not item.fixed:
            if item.alternative and (shared[wanted.casefold()] > 1 or wanted.casefold() in taken):
                wanted = item.alternative
            suffix = PurePosixPath(wanted).suffix
            candidate, number = wanted, 2
            while candidate.casefold() in taken:
                candidate = f"{wanted[: len(wanted) - len(suffix)]}-{number}{suffix}"
                number += 1
            wanted = candidate
            taken.add(wanted.casefold())
        items.append(Item(wanted, item.command, item.inputs))
    return items


# a pair's two files by name: the same name in the same folder but for a last part naming the role
PAIR_ROLES = {"a": 0, "b": 1, "reference": 0, "questioned": 1}
_ROLE_VOCABULARY = {"a": "ab", "b": "ab", "reference": "rq", "questioned": "rq"}
_MARKED = re.compile(r"^(?P<stem>.*[^ _.-])[ _.-]+(?P<role>a|b|reference|questioned)$", re.IGNORECASE)


def pairs_by_name(names: Sequence[str], label: str = "files") -> tuple[list[Entry], list[str]]:
    """Entries for a list of files in which pairs are told by their names; each other file is a scan to analyse.

    Two files are a pair when they lie in the same folder and their names, extension aside, differ only in a last
    part naming the role after ' ', '_', '-' or '.': ``a`` (the reference) and ``b`` (the questioned scan), or
    ``reference`` and ``questioned``, in any case: ``box1/lenin_1920_a.tif`` with ``box1/lenin_1920_b.jpg``. A
    name with a role but no partner is a scan of its own; where a role is taken by more than one file (``x_a.jpg``
    and ``x_a.png``), which one is meant cannot be told, so each of those files is a scan of its own and a note
    (the second value returned) says so.

    Returns (entries in the order of the names, each pair where its first file is; notes).

    Example
    -------
    >>> entries, notes = pairs_by_name(["box1/lenin_1920_b.jpg", "box1/lenin_1920_a.tif", "box2/crowd.png"])
    >>> [entry.names for entry in entries]
    [('box1/lenin_1920_a.tif', 'box1/lenin_1920_b.jpg'), ('box2/crowd.png',)]
    """
    groups: dict[tuple[str, str, str], list[list[str]]] = {}
    for name in names:
        path = PurePosixPath(name.replace("\\", "/"))
        marked = _MARKED.match(path.stem)
        if marked:
            role = marked["role"].lower()
            stem = unicodedata.normalize("NFC", marked["stem"]).casefold()
            key = (str(path.parent), stem, _ROLE_VOCABULARY[role])
            groups.setdefault(key, [[], []])[PAIR_ROLES[role]].append(name)
    position = {name: index for index, name in enumerate(names)}
    paired: dict[str, tuple[str, str]] = {}  # a pair's first name in the list -> the pair
    notes = []
    for references, questioned in groups.values():
        if len(references) == 1 and len(questioned) == 1:
            pair = (references[0], questioned[0])
            paired[min(pair, key=position.__getitem__)] = pair
        elif references and questioned:
            notes.append(f"{', '.join(references + questioned)}: more than one file for a role of the same pair; "
                         "each is analysed on its own (rename them, or list the pairs in a manifest)")
    members = {name for pair in paired.values() for name in pair}
    entries = []
    for number, name in enumerate(names, start=1):
        if name in paired:
            entries.append(Entry(f"{label}: {name}", f"file {number}", paired[name], None, None))
        elif name not in members:
            entries.append(Entry(f"{label}: {name}", f"file {number}", (name,), None, None))
    return entries, notes
