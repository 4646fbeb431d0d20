"""Receiving files safely: size limits while streaming, content sniffing, and zip archives checked member by
member (path traversal, links, member count, total size and compression ratio)."""

from __future__ import annotations

import csv
import io
import json
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.settings import Settings
from retouch.errors import ImageTooLargeError, InputError
from retouch.io import load_image_bytes

IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM")
CHUNK = 1 << 20


def safe_name(name: str | None, fallback: str) -> str:
    """A file name with no directory part and only harmless characters."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")
    return cleaned[:100] or fallback


def is_image_bytes(head: bytes) -> bool:
    return head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


async def save_upload(upload: UploadFile, folder: Path, settings: Settings, fallback: str) -> Path:
    """Stream ``upload`` to ``folder`` (413 beyond the size limit); returns the saved path."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe_name(upload.filename, fallback)
    size = 0
    with open(target, "wb") as handle:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > settings.max_upload_bytes:
                handle.close()
                target.unlink(missing_ok=True)
                raise ApiError(413, "upload_too_large", f"{upload.filename}: larger than the "
                               f"{settings.max_upload_bytes // (1024 * 1024)} MB upload limit")
            handle.write(chunk)
    if size == 0:
        target.unlink(missing_ok=True)
        raise ApiError(422, "empty_file", f"{upload.filename}: the uploaded file is empty")
    return target


async def validate_image(path: Path, settings: Settings, label: str) -> None:
    """Decode the image fully (in a thread) so bad uploads are refused now: 415, 413 or 422."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not is_image_bytes(head):
        raise ApiError(415, "not_an_image", f"{label}: not a supported image (JPEG, PNG, TIFF, WebP or BMP)")
    data = path.read_bytes()
    try:
        await run_in_threadpool(load_image_bytes, data, name=label, max_pixels=settings.max_pixels)
    except ImageTooLargeError as error:
        raise ApiError(413, "too_many_pixels", str(error)) from None
    except InputError as error:
        raise ApiError(422, "unreadable_image", str(error)) from None


def extract_archive(archive: Path, folder: Path, settings: Settings) -> list[dict[str, Any]]:
    """Unpack a zip of images (with an optional ``manifest.json`` or ``manifest.csv``) into ``folder``.

    Returns batch items ``{"item_id", "command", "inputs"}``. Raises ApiError 400 for unsafe or malformed archives.
    """
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise ApiError(400, "bad_archive", f"{archive.name}: not a valid zip archive") from None
    with bundle:
        members = [m for m in bundle.infolist() if not m.is_dir()]
        if len(members) > settings.max_zip_members:
            raise ApiError(400, "bad_archive", f"{archive.name}: more than {settings.max_zip_members} files")
        total = 0
        for member in members:
            name = member.filename.replace("\\", "/")
            parts = PurePosixPath(name).parts
            if name.startswith("/") or ".." in parts or re.match(r"^[A-Za-z]:", name):
                raise ApiError(400, "unsafe_archive", f"{archive.name}: member {member.filename!r} points outside "
                               "the archive (path traversal)")
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ApiError(400, "unsafe_archive", f"{archive.name}: member {member.filename!r} is a link")
            total += member.file_size
            ratio = member.file_size / max(member.compress_size, 1)
            if total > settings.max_zip_total_bytes or ratio > settings.max_zip_ratio:
                raise ApiError(400, "unsafe_archive", f"{archive.name}: uncompressed size or compression ratio "
                               "beyond the limits (zip bomb guard)")
        folder.mkdir(parents=True, exist_ok=True)
        saved: dict[str, Path] = {}
        manifest_text = None
        for member in members:
            name = member.filename.replace("\\", "/")
            if PurePosixPath(name).name in ("manifest.json", "manifest.csv"):
                manifest_text = (PurePosixPath(name).name, bundle.read(member).decode("utf-8", "replace"))
                continue
            target = folder / f"{len(saved):05d}-{safe_name(name, 'member')}"
            with bundle.open(member) as source, open(target, "wb") as sink:
                written = 0
                while chunk := source.read(CHUNK):
                    written += len(chunk)
                    if written > member.file_size:  # the header lied about the size
                        raise ApiError(400, "unsafe_archive", f"{archive.name}: member {name!r} is larger than "
                                       "its header says")
                    sink.write(chunk)
            saved[name] = target
    if manifest_text is None:
        return [{"item_id": safe_name(name, f"item{index}"), "command": "analyze", "inputs": [str(path)]}
                for index, (name, path) in enumerate(saved.items())]
    return _items_from_manifest(manifest_text, saved, archive.name)


def _items_from_manifest(manifest: tuple[str, str], saved: dict[str, Path], label: str) -> list[dict[str, Any]]:
    kind, text = manifest
    rows: list[dict[str, Any]] = []
    try:
        if kind == "manifest.json":
            data = json.loads(text)
            rows = data.get("items", data) if isinstance(data, dict) else data
        else:
            rows = [row for row in csv.DictReader(io.StringIO(text))]
    except (json.JSONDecodeError, csv.Error) as error:
        raise ApiError(400, "bad_manifest", f"{label}: {kind} cannot be parsed ({error})") from None
    items = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ApiError(400, "bad_manifest", f"{label}: {kind} entry {index} is not an object")
        item_id = safe_name(str(row.get("id") or f"item{index}"), f"item{index}")
        names = [row[k] for k in ("reference", "questioned") if row.get(k)] or [row.get("image")]
        paths = []
        for name in names:
            if not name or name not in saved:
                raise ApiError(400, "bad_manifest", f"{label}: {kind} entry {item_id!r} names {name!r}, which is not "
                               "in the archive")
            paths.append(str(saved[name]))
        items.append({"item_id": item_id, "command": "compare" if len(paths) == 2 else "analyze", "inputs": paths})
    if not items:
        raise ApiError(400, "bad_manifest", f"{label}: the manifest lists no items")
    return items
