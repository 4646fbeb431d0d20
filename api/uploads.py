"""Receiving files safely: size limits while streaming, content sniffing, and zip archives checked member by
member (path traversal, links, member count, total size and compression ratio).

Every image, sent directly or inside a zip, gets the same checks at submission as the CLI's loader applies:
the type sniffed from its first bytes (retouch.io), and the pixel count read from its header (the
decompression-bomb guard), without decoding it.
"""

from __future__ import annotations

import re
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from pathlib import Path, PurePosixPath

from fastapi import UploadFile

from api.errors import ApiError
from api.guard import megabytes
from api.settings import Settings
from retouch.errors import ImageTooLargeError, InputError
from retouch.io import SNIFF_BYTES, ImageHeader, check_image, probe_image, sniff_format
from retouch.run.budget import require_within_budget
from retouch.run.checks import require_analysable_size
from retouch.run.item import ANALYZE
from retouch.run.manifest import Entry, IdClaims, NameIndex, Planned, csv_entries, item_id, json_entries
from retouch.text import fit_name

CHUNK = 1 << 20
SUPPORTED = "JPEG, PNG, TIFF, WebP or BMP"
FILE_NAME_BYTES = 200  # file systems hold names of up to 255 bytes
MANIFESTS = ("manifest.json", "manifest.csv")


def client_file_name(name: str | None, fallback: str) -> str:
    """The name a client's file is stored under and shown by (the job's inputs, report.json, error messages).

    It is the last part of the name sent, as sent but for control and format characters (a newline, a
    right-to-left override), which become '_', and cut to :data:`FILE_NAME_BYTES` keeping the extension. It
    only ever ends a path the server chose, so no client name can reach another folder or clash with another
    upload; it is not an item id (see :func:`retouch.run.manifest.item_id`).
    """
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = "".join("_" if unicodedata.category(char).startswith("C") else char for char in base)
    return fit_name(base, FILE_NAME_BYTES) if base not in ("", ".", "..") else fallback


def screen_image(path: Path, settings: Settings, label: str) -> ImageHeader | None:
    """Submission checks for one image, header only: 415 when it is not a supported image, 413 beyond the pixel
    limit, 422 ``image_too_small`` when it is too small to analyse; its header (None when damaged). A file that
    announces an image but whose header is damaged passes: in a batch it becomes an item that fails alone with
    the loader's message, as a corrupt scan in a CLI batch does."""
    header = probe_upload(path, settings, label)
    require_analysable_header(header, label)
    return header


def probe_upload(path: Path, settings: Settings, label: str) -> ImageHeader | None:
    """The image's header, with :func:`screen_image`'s type and pixel checks; None when the header is damaged."""
    try:
        return probe_image(path, name=label, max_pixels=settings.max_pixels)
    except ImageTooLargeError as error:
        raise ApiError(413, "too_many_pixels", str(error)) from None
    except InputError as error:
        if error.code == "not_an_image":
            raise ApiError(415, "not_an_image", f"{label}: not a supported image ({SUPPORTED})") from None
        if error.code != "unreadable":
            raise ApiError(422, "unreadable_image", str(error)) from None
    return None


def require_memory(config: Settings, command: str, headers: Sequence[ImageHeader | None],
                   detectors: Sequence[str] | None, label: str) -> None:
    """413 ``over_memory_budget`` for an item whose analysis would need more memory than one analysis may use
    (``RETOUCH_MAX_MEMORY``, :mod:`retouch.run.budget`), told from its files' headers (an item with a damaged
    header fails alone when it runs)."""
    if any(header is None for header in headers):
        return
    try:
        require_within_budget(command, sum(header.width * header.height for header in headers if header),
                              detectors=detectors, name=label, budget=config.max_memory)
    except InputError as error:
        raise ApiError(413, "over_memory_budget", str(error)) from None


def require_analysable_header(header: ImageHeader | None, label: str) -> None:
    """422 ``image_too_small`` for an image the CLI would refuse as too small, by the same rule, read from its
    header: accepted, it would only fail later in its job."""
    if header is None:  # damaged: the item fails alone with the loader's message
        return
    try:
        require_analysable_size(header.width, header.height, name=label)
    except InputError as error:
        raise ApiError(422, "image_too_small", str(error)) from None


async def save_upload(upload: UploadFile, target: Path, settings: Settings, label: str) -> Path:
    """Stream ``upload`` to ``target``, a server-chosen path (413 beyond the size limit, 422 when empty).

    ``label`` names the upload in error messages (the client's file name). The caller removes the request's
    upload folder when anything fails.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(target, "wb") as handle:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > settings.max_upload_bytes:
                raise ApiError(413, "upload_too_large", f"{label}: larger than the "
                               f"{megabytes(settings.max_upload_bytes)} upload limit")
            handle.write(chunk)
    if size == 0:
        raise ApiError(422, "empty_file", f"{label}: the uploaded file is empty")
    return target


def check_upload(path: Path, settings: Settings, label: str) -> ImageHeader:
    """An uploaded scan checked before its job is queued, in bounded memory (:func:`retouch.io.check_image`:
    the header, then the image data, decoded whole only up to 4 MP): 415, 413 or 422 as :func:`screen_image`,
    and 422 ``unreadable_image`` for a truncated or damaged file. Run it in a thread."""
    header = screen_image(path, settings, label)  # type, pixel count and size from the header
    try:
        return check_image(path, name=label, max_pixels=settings.max_pixels)
    except ImageTooLargeError as error:
        raise ApiError(413, "too_many_pixels", str(error)) from None
    except InputError as error:
        if header is None or error.code == "unreadable":
            raise ApiError(422, "unreadable_image", str(error)) from None
        raise


# errors zipfile and its decompressors raise on a damaged member: bad CRC, truncated or lying data, a member
# encrypted or compressed with an unsupported method
ARCHIVE_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError,
                       ValueError)


def _member_name(member: zipfile.ZipInfo) -> str:
    """A zip member's name as its maker wrote it, with '/' between folders.

    Without the UTF-8 flag zipfile reads a name as code page 437, the format's old default; but Info-ZIP's zip
    (Linux) and macOS's Archive Utility store UTF-8 names without setting the flag, and 'café.jpg' would read as
    'caf├⌐.jpg'. Names whose bytes are valid UTF-8 are read as UTF-8 (a real cp437 name with accents almost
    never is); others keep zipfile's reading.
    """
    name = member.filename
    if not member.flag_bits & 0x800 and not name.isascii():
        try:
            name = name.encode("cp437").decode("utf-8")
        except UnicodeError:
            pass
    return name.replace("\\", "/")


SYSTEM_FILES = {".DS_Store", "Thumbs.db", "desktop.ini"}  # folder settings of macOS and Windows Explorer


def _system_file(name: str) -> bool:
    """Whether a member is one the zipping system added: macOS's '__MACOSX/' folder and '._' AppleDouble files
    (resource forks), and folder settings of macOS and Windows."""
    path = PurePosixPath(name)
    return path.parts[:1] == ("__MACOSX",) or path.name.startswith("._") or path.name in SYSTEM_FILES


def extract_archive(archive: Path, folder: Path, settings: Settings, label: str, *, room: int | None = None
                    ) -> tuple[list[Planned], list[str], dict[str, ImageHeader | None]]:
    """Unpack a zip of images (with an optional ``manifest.json`` or ``manifest.csv``) into ``folder``.

    Each member goes to ``folder/<index>/<its file name>``: the folders are the server's, so no member name can
    clash with them. Members that are not images by their first bytes (a readme, a nested zip, ``.DS_Store``) are
    not extracted: without a manifest they are skipped and named in the returned notes; a manifest entry naming
    one is a ``bad_manifest`` error. Images get :func:`screen_image`'s header checks (413 for a bomb), the
    minimum size only where an item uses them.

    What the archive unpacks to is bounded before anything is written, from its directory (whose sizes the
    unpacking then holds each member to): at most ``RETOUCH_MAX_ZIP_MEMBERS`` files (400 ``too_many_files``),
    none larger than a file sent alone may be (``RETOUCH_MAX_UPLOAD_BYTES``), and no more in all than ``room``
    bytes, what the job may still store (``RETOUCH_MAX_JOB_BYTES`` less its other files): 413
    ``upload_too_large``. The ratio guard (``RETOUCH_MAX_ZIP_RATIO``) and ``RETOUCH_MAX_ZIP_TOTAL_BYTES`` answer
    400 ``unsafe_archive``.

    Returns (the batch's items before their ids are made unique with the whole request's, notes, each stored
    member's header by its path, None where damaged). Raises ApiError 400 (``bad_archive``, ``unsafe_archive``,
    ``bad_manifest``) for unsafe, damaged or malformed archives; ``label`` (the client's file name) names the
    archive in messages. The caller removes ``folder`` on failure.
    """
    room = settings.max_job_bytes if room is None else room
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError):
        raise ApiError(400, "bad_archive", f"{label}: not a valid zip archive") from None
    except UnicodeDecodeError as error:  # zipfile reads a name flagged as UTF-8 strictly, with the directory
        raise ApiError(400, "bad_archive", f"{label}: a file name is marked as UTF-8 but is not UTF-8 text "
                       f"(it holds byte 0x{error.object[error.start]:02x}); re-create the zip with a tool that "
                       "stores names as UTF-8") from None
    with bundle:
        every = [m for m in bundle.infolist() if not m.is_dir()]
        # what the system that made the zip adds is no file of the client's: macOS puts an '__MACOSX/._x' beside
        # every file, which would double the member count and the notes; it is checked below, never read
        members = [m for m in every if not _system_file(_member_name(m))]
        if len(members) > settings.max_zip_members:
            raise ApiError(400, "too_many_files", f"{label}: {len(members)} files, more than a batch takes "
                           f"({settings.max_zip_members}, RETOUCH_MAX_ZIP_MEMBERS); split it into several zips")
        largest = max(members, key=lambda member: member.file_size, default=None)
        if largest is not None and largest.file_size > settings.max_upload_bytes:
            raise ApiError(413, "upload_too_large", f"{label}: member {_member_name(largest)!r} unpacks to "
                           f"{megabytes(largest.file_size)}, more than a file may be "
                           f"({megabytes(settings.max_upload_bytes)}, RETOUCH_MAX_UPLOAD_BYTES)")
        unpacked = sum(member.file_size for member in members)
        if unpacked > room:
            raise ApiError(413, "upload_too_large", f"{label}: unpacks to {megabytes(unpacked)}, more than the "
                           f"batch may store ({megabytes(room)} left of {megabytes(settings.max_job_bytes)}, "
                           "RETOUCH_MAX_JOB_BYTES); split it into several batches")
        if not members:
            raise ApiError(422, "empty_batch", f"{label}: the archive holds no files; zip the scans (or the "
                           "folder holding them) and send it again")
        total = 0
        names: set[str] = set()
        for member in every:
            name = _member_name(member)
            if name in names:  # one would replace the other, and no manifest could tell them apart
                raise ApiError(400, "bad_archive", f"{label}: holds two members named {name!r}; rename one and "
                               "re-create the zip")
            names.add(name)
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or re.match(r"^[A-Za-z]:", name):
                raise ApiError(400, "unsafe_archive", f"{label}: member {member.filename!r} points outside "
                               "the archive (path traversal)")
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ApiError(400, "unsafe_archive", f"{label}: member {member.filename!r} is a link")
            total += member.file_size
            ratio = member.file_size / max(member.compress_size, 1)
            if total > settings.max_zip_total_bytes or ratio > settings.max_zip_ratio:
                raise ApiError(400, "unsafe_archive", f"{label}: uncompressed size or compression ratio "
                               "beyond the limits (zip bomb guard)")
        folder.mkdir(parents=True, exist_ok=True)
        saved: dict[str, Path] = {}
        headers: dict[str, ImageHeader | None] = {}
        not_images: list[str] = []
        manifest_data, manifest_name = None, None
        for index, member in enumerate(members):
            name = _member_name(member)
            if PurePosixPath(name).name in MANIFESTS:
                if manifest_name is not None:  # which one the client meant cannot be told
                    raise ApiError(400, "bad_manifest", f"{label}: holds two manifests, {manifest_name!r} and "
                                   f"{name!r}; keep one and re-create the zip")
                with closing(_member_chunks(bundle, member, name, label)) as chunks:  # decoded as it is read
                    manifest_data = (PurePosixPath(name).name, str(PurePosixPath(name).parent), b"".join(chunks))
                manifest_name = name
                continue
            target = folder / f"{index:05d}" / client_file_name(name, "member")
            if not _extract_image_member(bundle, member, name, target, label):
                not_images.append(name)
                continue
            headers[name] = probe_upload(target, settings, f"{label}: {name}")
            saved[name] = target
    if manifest_data is None:
        notes = [f"{label}: {_shown(name)} skipped: not an image ({SUPPORTED})" for name in not_images]
        items = [Planned(item_id(PurePosixPath(name).name, f"item{index}"), ANALYZE, (str(path),),
                         alternative=item_id(name, f"item{index}"))  # (made unique with the whole request's)
                 for index, (name, path) in enumerate(saved.items())]
    else:
        items, notes = _items_from_manifest(manifest_data, saved, set(not_images), label), []
    used = {path for item in items for path in item.inputs}
    for name, path in saved.items():
        if str(path) in used:  # a member no item uses (a thumbnail beside a manifest's scans) may be small
            require_analysable_header(headers[name], f"{label}: {name}")
    return items, notes, {str(path): headers[name] for name, path in saved.items()}


def _shown(name: str) -> str:
    """A member's name for the job's notes: as it is, or quoted as in error messages when it holds a line break,
    a terminal escape or another character that is not printed (the notes end up in terminals and logs)."""
    return name if name.isprintable() else repr(name)


def _member_chunks(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, name: str, label: str) -> Iterator[bytes]:
    """The member's data: its first :data:`SNIFF_BYTES` bytes, then chunks. A damaged member is a 400
    ``bad_archive`` naming it; errors of the caller's own writes are not caught here, so a server-side failure
    (a full disk) is never blamed on the client's file."""
    try:
        with bundle.open(member) as source:
            size = SNIFF_BYTES
            while chunk := source.read(size):
                yield chunk
                size = CHUNK
    except ARCHIVE_READ_ERRORS as error:
        raise ApiError(400, "bad_archive", f"{label}: member {name!r} cannot be read ({_without_paths(error)}); "
                       "re-create the zip") from None


def _without_paths(error: Exception) -> str:
    """An error's text for the client, without a server path: an OSError about a file names it."""
    if isinstance(error, OSError) and error.filename is not None:
        return error.strerror or type(error).__name__
    return str(error) or type(error).__name__


def _extract_image_member(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, name: str, target: Path,
                          label: str) -> bool:
    """Copy one member to ``target`` if its first bytes announce an image (else write nothing, return False),
    never writing more than its header announced."""
    with closing(_member_chunks(bundle, member, name, label)) as chunks:
        head = next(chunks, b"")
        if sniff_format(head) is None:
            return False
        target.parent.mkdir()
        with open(target, "wb") as sink:
            sink.write(head)
            written = len(head)
            for chunk in chunks:
                written += len(chunk)
                if written > member.file_size:  # the header lied about the size
                    raise ApiError(400, "unsafe_archive", f"{label}: member {name!r} is larger than its header "
                                   "says")
                sink.write(chunk)
    return True


def manifest_entries(kind: str, data: bytes, name: str) -> list[Entry]:
    """The entries of a manifest of ``kind`` (``manifest.csv`` or ``manifest.json``), named ``name`` in messages
    (:mod:`retouch.run.manifest`: a CSV read as the command line reads its pairs CSV, under a first row naming
    the columns; or JSON); a malformed one is a 400 ``bad_manifest``."""
    try:
        if kind == "manifest.csv":
            return csv_entries(data, name)
        return json_entries(data, name)
    except InputError as error:  # read_table's refusals (not UTF-8 text...) as well as the manifest's own
        raise ApiError(400, "bad_manifest", str(error)) from None


def _items_from_manifest(manifest: tuple[str, str, bytes], saved: dict[str, Path], not_images: set[str],
                         label: str) -> list[Planned]:
    """The items a zip's manifest lists (see :func:`items_from_entries`); a manifest listing none is a 400."""
    kind, folder, data = manifest
    items = items_from_entries(manifest_entries(kind, data, f"{label}: {kind}"), saved, not_images, folder)
    if not items:
        raise ApiError(400, "bad_manifest", f"{label}: the manifest lists no items")
    return items


def items_from_entries(entries: list[Entry], saved: Mapping[str, Path | str], not_images: set[str],
                       folder: str = ".", *, source: str = "the archive") -> list[Planned]:
    """The items a list of entries names, each of its file names found among ``saved`` (the files sent, by the
    names they were sent under, and where they are now) with :class:`retouch.run.manifest.NameIndex`, relative
    to ``folder`` (a manifest's own folder in a zip). An id given twice, a name found nowhere or twice, or naming
    a file that is not an image (``not_images``) is a 400 ``bad_manifest`` naming the entry and ``source``."""
    members = NameIndex([*saved, *not_images])
    claims, items = IdClaims(), []
    for index, entry in enumerate(entries):
        try:
            claims.claim(entry)
        except InputError as error:
            raise ApiError(400, "bad_manifest", str(error)) from None
        paths, names = [], []
        for name in entry.names:
            found = members.find(name, "" if folder == "." else folder)
            if not found:
                raise ApiError(400, "bad_manifest", f"{entry.where} names {name!r}, which is not in {source}")
            if len(found) > 1:
                raise ApiError(400, "bad_manifest", f"{entry.where} names {name!r}, which matches "
                               f"{' and '.join(repr(member) for member in found[:2])} but for case or Unicode "
                               "form (an accent stored as one character or two); write the name as it is in "
                               f"{source}")
            if found[0] in not_images:
                raise ApiError(400, "bad_manifest", f"{entry.where} names {found[0]!r}, which is not an image "
                               f"({SUPPORTED})")
            paths.append(str(saved[found[0]]))
            names.append(found[0])
        # an entry without an id is named by its files, as the command line names a pairs CSV's rows
        wanted = entry.id or item_id("|".join(PurePosixPath(name).name for name in names), f"item{index}")
        items.append(Planned(wanted, entry.command, tuple(paths), fixed=entry.id is not None,
                             alternative=None if entry.id else item_id("|".join(names), f"item{index}")))
    return items
