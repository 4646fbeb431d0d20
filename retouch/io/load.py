"""One loader for every image retouch reads.

Formats: JPEG, PNG, TIFF (8 and 16 bit; gray, RGB, RGBA, palette), WebP and BMP, recognised by their content,
not their name. The loader applies EXIF orientation, keeps the file's bytes and (for JPEG) its quantization
tables for JPEG-domain analyses, records the SHA-256, and refuses anything it cannot read faithfully with one
:class:`~retouch.errors.InputError` line that names the file and says what to do. It never writes to its input.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import io
import mmap
import os
import stat
import threading
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin

from retouch.errors import ImageTooLargeError, InputError
from retouch.imaging import to_display, to_stored
from retouch.text import readable_text

DEFAULT_MAX_PIXELS = 200_000_000
MAX_PIXELS_VARIABLE = "RETOUCH_MAX_PIXELS"
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: no honest scan is larger than this as a compressed file

SUPPORTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "TIFF": "TIFF", "WEBP": "WEBP", "BMP": "BMP"}

# Pillow's own bomb check warns at its limit and raises at twice it; retouch applies its own configurable limit
# from the header before decoding, so Pillow's is lifted to let that one speak.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

_EXIF_ORIENTATION = 0x0112

# First bytes of each supported format. TIFF includes BigTIFF (version 43 instead of 42), which Pillow reads.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
)
SNIFF_BYTES = 16


def sniff_format(head: bytes) -> str | None:
    """The supported format a file's first :data:`SNIFF_BYTES` bytes announce, or None when they announce none.

    A cheap first test (no parsing) for telling images from other files, e.g. a readme in an archive; a file
    that passes may still be corrupt, which :func:`probe_image` or the loader then says.
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in SIGNATURES if head.startswith(signature)), None)


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, read without decoding any pixels."""

    format: str
    width: int
    height: int


def probe_image(path: str | os.PathLike[str], *, name: str | None = None, max_pixels: int | None = None,
                max_pixels_name: str = MAX_PIXELS_VARIABLE) -> ImageHeader:
    """Read only the header of the image file at ``path``: its format and size, with the pixel-count guard.

    ``name`` labels the file in errors (default: the path); ``max_pixels_name`` is the setting a refusal tells
    the user to raise (the environment variable, or the option that gave ``max_pixels``). Cheap enough to run on
    every file of a batch when it is submitted; decoding is left to :func:`load_image`.

    Raises
    ------
    InputError
        ``code="not_an_image"`` when the first bytes announce no supported format; ``code="unreadable"`` when
        they do but the header cannot be parsed. :class:`ImageTooLargeError` beyond ``max_pixels`` pixels.
    """
    label = name or str(path)
    limit = max_pixels_from_env() if max_pixels is None else max_pixels
    try:
        with _open_regular_file(path, label) as handle:
            if sniff_format(handle.read(SNIFF_BYTES)) is None:
                raise InputError(f"{label}: not a supported image (JPEG, PNG, TIFF, WebP or BMP expected)",
                                 path=label, code="not_an_image")
            handle.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    with Image.open(handle) as image:  # lazy: reads the header only
                        found_format = image.format or "unknown"
                        width, height = image.size
                except Image.UnidentifiedImageError:  # Pillow's message names the file handle: not for users
                    raise InputError(f"{label}: corrupt image header; re-export or re-scan the file", path=label,
                                     code="unreadable") from None
                except Exception as error:  # noqa: BLE001 - any parser failure on hostile bytes is a bad file
                    raise InputError(f"{label}: corrupt image header ({_reason(error)})", path=label,
                                     code="unreadable") from None
    except OSError as error:
        raise InputError(f"{label}: cannot be read ({error.strerror or error})", path=label) from None
    file_format = SUPPORTED_FORMATS.get(found_format)
    if file_format is None:
        raise InputError(f"{label}: {found_format} images are not supported; convert to TIFF, PNG or JPEG",
                         path=label, code="not_an_image")
    if width * height > limit:
        raise _too_many_pixels(label, width, height, limit, max_pixels_name)
    return ImageHeader(format=file_format, width=width, height=height)


PROBE_PIXELS = 4_000_000  # images up to this size are decoded whole by check_image (at most about 50 MB)
PROBE_SIDE = 1024  # larger JPEGs are decoded at a reduced scale, their longest side at least this


def check_image(path: str | os.PathLike[str], *, name: str | None = None, max_pixels: int | None = None,
                max_pixels_name: str = MAX_PIXELS_VARIABLE) -> ImageHeader:
    """:func:`probe_image`, then a look at the image data in bounded memory: a file that is truncated or damaged
    is refused before anyone waits for its analysis, and no file, however many pixels its header claims, is
    decoded whole at full size.

    Images up to :data:`PROBE_PIXELS` are decoded whole by :func:`load_image`. Larger JPEGs are decoded at a
    reduced scale (libjpeg's DCT scaling reads every coefficient but builds at most 1/64 of the pixels), after
    the walk of their markers that :func:`load_image` makes; larger PNGs have every image-data chunk's CRC
    checked and their compressed stream inflated to its end, a megabyte at a time, without keeping the pixels.
    Larger TIFF, WebP and BMP files are checked by their header only: damage is then found when the file is
    analysed.

    Raises what :func:`probe_image` raises, and :class:`InputError` ``code="unreadable"`` for damaged data.
    """
    label = name or str(path)
    header = probe_image(path, name=label, max_pixels=max_pixels, max_pixels_name=max_pixels_name)
    if header.width * header.height <= PROBE_PIXELS:
        try:
            load_image(path, max_pixels=max_pixels, max_pixels_name=max_pixels_name)
        except ImageTooLargeError:
            raise
        except InputError as error:
            raise InputError(str(error).replace(str(Path(path).resolve()), label).replace(str(path), label),
                             path=label, code="unreadable") from None
        return header
    if header.format not in ("JPEG", "PNG"):
        return header
    check = _jpeg_damage if header.format == "JPEG" else lambda data: _png_damage(data) or _png_stream_damage(data)
    try:
        with _open_regular_file(path, label) as handle:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:  # read, never held in memory
                damage = check(data)
            if damage is None and header.format == "JPEG":
                damage = _jpeg_scaled_decode_damage(handle, header)
    except OSError as error:
        raise InputError(f"{label}: cannot be read ({error.strerror or error})", path=label) from None
    if damage:
        raise InputError(f"{label}: truncated or corrupt {header.format} data ({damage}); re-export or re-scan "
                         "the file, or wait until it is completely written", path=label, code="unreadable")
    return header


def _jpeg_scaled_decode_damage(handle: BinaryIO, header: ImageHeader) -> str | None:
    """Why a JPEG cannot be decoded, found by decoding it at the smallest DCT scale that keeps its longest side
    at least :data:`PROBE_SIDE` (None when it decodes)."""
    handle.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(handle) as image:
                scale = max(1, min(8, max(header.width, header.height) // PROBE_SIDE))
                image.draft(image.mode, (max(1, header.width // scale), max(1, header.height // scale)))
                image.load()
        except Exception as error:  # noqa: BLE001 - any decoder failure on hostile bytes is a damaged file
            return _reason(error)
    return None


def _png_stream_damage(data: Any) -> str | None:
    """Why a PNG's compressed image data do not inflate to their end (None when they do), a megabyte of output
    at a time: the CRCs (see :func:`_png_damage`) do not catch data that were damaged before they were written."""
    inflate, position, seen = zlib.decompressobj(), len(_PNG_SIGNATURE), False
    try:
        while position + 8 <= len(data) and not inflate.eof:
            length = int.from_bytes(data[position:position + 4], "big")
            kind = data[position + 4:position + 8]
            if kind == b"IDAT":
                seen = True
                with memoryview(data)[position + 8:position + 8 + length] as piece:  # released: data may be a map
                    pending: Any = piece
                    while len(pending) and not inflate.eof:
                        inflate.decompress(pending, 1 << 20)
                        pending = inflate.unconsumed_tail
                    del pending
            elif seen or kind == b"IEND":
                break
            position += 12 + length
    except zlib.error as error:
        return f"the image data cannot be inflated ({error})"
    return None if inflate.eof else "the image data end before their compressed stream does"


def max_pixels_from_env() -> int:
    """The pixel limit in force: ``RETOUCH_MAX_PIXELS`` if set, else :data:`DEFAULT_MAX_PIXELS`.

    The value is a whole number, as the service's settings read the same variable ("200000000" or
    "200_000_000"); anything else is refused rather than silently replaced by the default limit.
    """
    return positive_setting(MAX_PIXELS_VARIABLE, DEFAULT_MAX_PIXELS, unit="pixels", example="200000000",
                            default_text="200 MP")


def positive_setting(variable: str, default: int, *, unit: str, example: str, default_text: str) -> int:
    """The whole number the environment ``variable`` holds, or ``default`` when it is unset or blank; anything
    but a positive whole number is refused (``bad_setting``), naming the variable, rather than silently read as
    the default or as no limit."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise InputError(f"{variable}={value!r} is not a positive whole number of {unit}; set it to one such as "
                         f"{example}, or unset it for the default of {default_text}", code="bad_setting")
    return number


def _pixel_count(count: int) -> str:
    """A pixel count for messages: exact below a megapixel (a small limit is not "0 MP"), else in megapixels."""
    return f"{count:,} pixels" if count < 1_000_000 else f"{count / 1e6:.1f} MP"


def _too_many_pixels(label: str, width: int, height: int, limit: int, limit_name: str) -> ImageTooLargeError:
    found, allowed = _pixel_count(width * height), _pixel_count(limit)
    if found == allowed:  # just over the limit: rounded alike, the numbers would not show why it is refused
        found, allowed = f"{width * height:,} pixels", f"{limit:,} pixels"
    return ImageTooLargeError(f"{label}: {width}x{height} is {found}, over the limit of {allowed} "
                              f"(decompression-bomb guard); raise {limit_name} if the file is trusted", path=label)


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded image with what analyses and reports need to know about its file.

    ``pixels`` is in display orientation, RGB (H, W, 3) or gray (H, W), uint8 or uint16, never with alpha.
    """

    pixels: np.ndarray
    name: str
    format: str
    sha256: str
    file_size: int
    mode: str
    bit_depth: int
    data: bytes = field(repr=False)
    path: str | None = None
    jpeg_quantization: dict[int, list[int]] | None = None
    jpeg_subsampling: str | None = None
    exif_orientation: int = 1
    had_alpha: bool = False
    pages: int = 1
    used_bits: int = 0  # for 16-bit samples holding only low values: the bits they use (they were shifted up)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def rgb8(self) -> np.ndarray:
        """uint8 RGB (H, W, 3) view for display and colour analyses."""
        px = self.pixels
        if px.dtype == np.uint16:
            px = (px >> 8).astype(np.uint8)
        if px.ndim == 2:
            px = np.repeat(px[:, :, None], 3, axis=2)
        return px

    @property
    def gray8(self) -> np.ndarray:
        """uint8 luminance (H, W)."""
        px = self.pixels
        if px.dtype == np.uint16:
            px = (px >> 8).astype(np.uint8)
        if px.ndim == 3:
            px = cv2.cvtColor(px, cv2.COLOR_RGB2GRAY)
        return px

    @property
    def gray(self) -> np.ndarray:
        """float32 luminance in [0, 1] (H, W), at full bit depth."""
        px = self.pixels
        scale = 65535.0 if px.dtype == np.uint16 else 255.0
        if px.ndim == 3:
            px = cv2.cvtColor(px, cv2.COLOR_RGB2GRAY)
        return px.astype(np.float32) / scale

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable facts about the input, for reports."""
        info: dict[str, Any] = {  # names as text a UTF-8 report can hold; the digest identifies the file
            "name": readable_text(self.name),
            "path": None if self.path is None else readable_text(self.path),
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "mode": self.mode,
            "bit_depth": self.bit_depth,
            "file_size": self.file_size,
            "sha256": self.sha256,
            "exif_orientation": self.exif_orientation,
        }
        if self.had_alpha:
            info["had_alpha"] = True
        notes = []  # what a reader of the report must know about how the file was read, in sentences
        if self.pages > 1:  # only the first page (or frame) is decoded; the report must say so
            info["pages"] = self.pages
            info["page_analysed"] = 1
            notes.append(f"holds {self.pages} images (pages or frames); only the first was analysed. Save the "
                         "others as files of their own to analyse them.")
        if self.used_bits:
            info["used_bits"] = self.used_bits
            notes.append(f"its 16-bit samples use only the low {self.used_bits} bits, as unscaled 10- to 14-bit "
                         "scanner or camera data do; they were multiplied by "
                         f"{1 << (16 - self.used_bits)} (which keeps every difference in proportion) before "
                         "analysis and display.")
        if self.jpeg_subsampling:
            info["jpeg_subsampling"] = self.jpeg_subsampling
        info["notes"] = notes
        return info


def load_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels_name: str = MAX_PIXELS_VARIABLE,
) -> LoadedImage:
    """Read and decode the image file at ``path``.

    Raises
    ------
    InputError
        The path is missing, empty, a directory or unreadable; the content is not a supported image; the file is
        truncated or corrupt. :class:`ImageTooLargeError` when it holds more than ``max_pixels`` pixels.
    """
    file_path = Path(path)
    label = str(file_path)
    if not str(path):
        raise InputError("no input path given: pass the path of an image file")
    if not file_path.exists():
        if file_path.is_symlink():  # the link is there to see, so "no such file" would send the user astray
            raise InputError(f"{label}: is a symbolic link to nothing (its target is missing, or the link leads "
                             "back to itself); fix the link or give the image file itself", path=label)
        raise InputError(f"{label}: no such file; check the path", path=label)
    if file_path.is_dir():
        raise InputError(f"{label}: is a directory, not an image file", path=label)
    try:
        with _open_regular_file(file_path, label) as handle:
            size = os.fstat(handle.fileno()).st_size
            # one byte past the limit at most: a file that grows while it is read is refused too
            data = handle.read(max_bytes + 1) if size <= max_bytes else b""
        size = max(size, len(data))
        if size > max_bytes:
            raise ImageTooLargeError(
                f"{label}: file is {size / 1e6:.0f} MB, over the {max_bytes / 1e6:.0f} MB limit", path=label
            )
    except PermissionError:
        raise InputError(f"{label}: permission denied; make the file readable", path=label) from None
    except OSError as error:
        raise InputError(f"{label}: cannot be read ({error.strerror or error}); check the file", path=label) from None
    return load_image_bytes(data, name=file_path.name, path=str(file_path.resolve()), max_pixels=max_pixels,
                            max_pixels_name=max_pixels_name)


_NOT_REGULAR = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


def _open_regular_file(path: str | os.PathLike[str], label: str) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file.

    A device or a pipe has no size to check against the limit before reading (``/dev/zero`` never ends, a FIFO
    blocks until someone writes to it), and no scan is one. The file is opened without blocking and checked on
    the open descriptor, so a path swapped for a pipe after a first look cannot hang the read.
    """
    mode = os.stat(path).st_mode  # a socket cannot even be opened: named before trying
    for is_kind, kind in _NOT_REGULAR:
        if is_kind(mode):
            raise InputError(f"{label}: is {kind}, not a file; give an image file", path=label)
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise InputError(f"{label}: is not a regular file; give an image file", path=label)
        os.set_blocking(descriptor, True)
        return open(descriptor, "rb")  # noqa: SIM115 - the caller closes it
    except BaseException:
        os.close(descriptor)
        raise


def load_image_bytes(
    data: bytes,
    *,
    name: str,
    path: str | None = None,
    max_pixels: int | None = None,
    max_pixels_name: str = MAX_PIXELS_VARIABLE,
) -> LoadedImage:
    """Decode an image held in memory (an upload, an archive member); ``name`` labels it in errors and
    ``max_pixels_name`` is the setting a refusal over ``max_pixels`` tells the user to raise."""
    label = path or name
    limit = max_pixels_from_env() if max_pixels is None else max_pixels
    if not data:
        raise InputError(f"{label}: file is empty; supply a JPEG, PNG, TIFF, WebP or BMP image", path=label)
    digest = hashlib.sha256(data).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's warnings on odd metadata are not the user's problem
        try:
            image = Image.open(io.BytesIO(data))
        except Image.UnidentifiedImageError:
            kind = sniff_format(data[:SNIFF_BYTES])
            if kind:
                raise InputError(
                    f"{label}: starts like a {kind} file but cannot be decoded (truncated or corrupt, or a variant "
                    "such as floating-point colour TIFF); re-export it as an 8- or 16-bit JPEG, PNG or TIFF",
                    path=label,
                ) from None
            raise InputError(
                f"{label}: not a supported image (JPEG, PNG, TIFF, WebP or BMP expected)", path=label
            ) from None
        except Exception as error:  # noqa: BLE001 - any parser failure on hostile bytes is a bad file
            raise InputError(f"{label}: corrupt image header ({_reason(error)})", path=label) from None
        with image:
            file_format = SUPPORTED_FORMATS.get(image.format or "")
            if file_format is None:
                raise InputError(
                    f"{label}: {image.format} images are not supported; convert to TIFF, PNG or JPEG", path=label
                )
            width, height = image.size
            if width <= 0 or height <= 0:
                raise InputError(f"{label}: image has no pixels", path=label)
            if width * height > limit:
                raise _too_many_pixels(label, width, height, limit, max_pixels_name)
            try:
                orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
            except Exception:  # noqa: BLE001 - broken EXIF must not block the pixels
                orientation = 1
            quantization = subsampling = None
            if file_format == "JPEG":
                quantization = {int(k): [int(v) for v in table] for k, table in image.quantization.items()}
                subsampling = _jpeg_subsampling(image)
            damage = {"PNG": _png_damage, "JPEG": _jpeg_damage}.get(file_format, lambda _: None)(data)
            if damage:
                raise InputError(f"{label}: truncated or corrupt {file_format} data ({damage}); re-export or "
                                 "re-scan the file, or wait until it is completely written", path=label)
            mode = image.mode
            pages = _page_count(image)
            try:
                pixels, had_alpha = _decode(image, data, orientation)
            except ImageTooLargeError:
                raise
            except _UnreadableLayoutError as error:
                raise InputError(f"{label}: {error}", path=label) from None
            except _NotFiniteError:
                raise InputError(
                    f"{label}: the floating-point samples include NaN or infinite values, which have no grey "
                    "level; save the image with them filled in, as an 8- or 16-bit integer image", path=label
                ) from None
            except Exception as error:  # noqa: BLE001
                raise InputError(
                    f"{label}: truncated or corrupt {file_format} data ({_reason(error)}); "
                    "re-export or re-scan the file",
                    path=label,
                ) from None
    pixels, used_bits = _filling_sixteen_bits(to_display(pixels, orientation))
    return LoadedImage(
        pixels=np.ascontiguousarray(pixels),
        name=name,
        format=file_format,
        sha256=digest,
        file_size=len(data),
        mode=mode,
        bit_depth=16 if pixels.dtype == np.uint16 else 8,
        data=data,
        path=path,
        jpeg_quantization=quantization,
        jpeg_subsampling=subsampling,
        exif_orientation=orientation if 1 <= orientation <= 8 else 1,
        had_alpha=had_alpha,
        pages=pages,
        used_bits=used_bits,
    )


LOW_DEPTH_BITS = 14  # 16-bit samples that never exceed 14 bits are shifted up (see _filling_sixteen_bits)


def _filling_sixteen_bits(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """16-bit samples that use only their low bits (at most ``LOW_DEPTH_BITS``), shifted up to fill the 16, and
    how many bits they use (0: left as they are).

    Scanners and cameras with 10-, 12- or 14-bit converters often store their values unscaled in 16-bit files.
    Every analysis works on 8-bit levels (the top byte): read as they are, 12-bit data give 16 grey levels and
    14-bit data 64, and the grain, error levels and fills the detectors measure drown in the rounding. Shifting by
    whole bits keeps every ratio and difference; a scan that is merely dark is only brightened by it.
    """
    if pixels.dtype != np.uint16:
        return pixels, 0
    used = int(pixels.max()).bit_length()
    if used == 0 or used > LOW_DEPTH_BITS:  # an all-black image has nothing to stretch
        return pixels, 0
    return pixels << np.uint16(16 - used), used


def _page_count(image: Image.Image) -> int:
    """How many images (TIFF pages, animation frames) the file holds; 1 when the count cannot be read."""
    try:
        count = int(getattr(image, "n_frames", 1) or 1)
        image.seek(0)  # counting walks the file's directory; the decode must start at the first image
    except Exception:  # noqa: BLE001 - a broken directory of later pages must not block the first one
        return 1
    return max(count, 1)


def _png_damage(data: bytes) -> str | None:
    """Why a PNG's image data (its IDAT chunks) cannot be trusted, or None when every IDAT chunk is whole and
    passes its CRC.

    Pillow does not check the CRC of IDAT chunks, so a file cut short and padded with zeros (a preallocated
    download, a copy interrupted by a crash) or with damaged bytes decoded to a picture of garbage without any
    error, and was analysed; libpng refuses such a file. Only the first run of IDAT chunks (the first image of an
    animated PNG) is checked: it is all the loader decodes.
    """
    return _png_image_data(data)[1]


def _png_image_data(data: bytes, *, check: bool = True) -> tuple[int, str | None]:
    """Where a PNG's first run of IDAT chunks ends, and :func:`_png_damage`'s reason (None: whole, CRCs right);
    without ``check`` the CRCs are not computed again (data already checked)."""
    view, position, seen = memoryview(data), len(_PNG_SIGNATURE), False
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        if kind != b"IDAT":
            if seen or kind == b"IEND":
                return position, None
            position += 12 + length
            continue
        seen = True
        end = position + 8 + length
        if end + 4 > len(data):
            return position, "the file ends inside the image data"
        if check and zlib.crc32(view[position + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
            return position, "the image data fails its CRC check"
        position = end + 4
    return position, None


_JPEG_STANDALONE = {0x01, 0xD8, *range(0xD0, 0xD8)}  # TEM, SOI and the restart markers carry no length
_JPEG_CHUNK = 1 << 24  # bytes compared at a time while looking for markers (bounds the temporary arrays)


def _jpeg_markers(data: bytes, start: int) -> Iterator[tuple[int, int]]:
    """(position, code) of every 0xFF byte from ``start`` on that is followed by a marker code other than a restart
    marker, in file order. In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte), a restart marker or the
    marker that ends the scan, so the candidates are few; they are found by numpy, a few milliseconds for 24 MP."""
    values = np.frombuffer(data, np.uint8)
    for first in range(start, len(data) - 1, _JPEG_CHUNK):
        window = values[first:min(first + _JPEG_CHUNK + 1, len(data))]  # one byte more: the code after a last 0xFF
        at = np.flatnonzero(window[:-1] == 0xFF)
        code = window[at + 1]
        marker = (code != 0x00) & (code != 0xFF) & ((code < 0xD0) | (code > 0xD7))
        yield from zip((at[marker] + first).tolist(), code[marker].tolist())


def _jpeg_damage(data: bytes) -> str | None:
    """Why a JPEG's image data cannot be trusted, or None when its markers lead to the end-of-image marker.

    A JPEG header followed by zeros (a download preallocated and never filled, a copy stopped by a crash) decoded
    to a picture of garbage without any error: libjpeg reads zeros as valid image data and only warns that the
    end marker is missing. The markers are walked in file order: segments are skipped by their lengths (an EXIF
    thumbnail's own end marker is inside one, and so may be a comment's 0xFF 0xD9 between the scans of a
    progressive JPEG), and the entropy-coded data between them are passed over (see ``_jpeg_markers``).
    """
    position = 2  # after SOI
    for at, code in _jpeg_markers(data, position):
        if at < position:  # inside a segment already skipped
            continue
        if code == 0xD9:
            return None
        position = at + 2
        if code not in _JPEG_STANDALONE:
            position += int.from_bytes(data[position:position + 2], "big")
    return "the file ends before the image's end marker"


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:160]


def _jpeg_subsampling(image: Image.Image) -> str | None:
    try:
        code = JpegImagePlugin.get_sampling(image)
    except Exception:  # noqa: BLE001
        return None
    return {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(code)


class _NotFiniteError(ValueError):
    """A floating-point image holds NaN or infinite samples (no stretch can place them on a grey scale)."""


def _decode(image: Image.Image, data: bytes, orientation: int = 1) -> tuple[np.ndarray, bool]:
    """Decode to uint8/uint16 gray or RGB as the file stores them (before ``orientation``, the file's tag, is
    applied), dropping alpha. Raises on truncation."""
    mode = image.mode
    had_alpha = mode in {"RGBA", "LA", "PA", "La", "RGBa"} or (mode == "P" and "transparency" in image.info)
    # Pillow 11 and later turn a TIFF upright as they load it, and then drop its Orientation tag; the loader
    # applies the tag to every format itself, so a TIFF turned by Pillow is turned back here (else a scan tagged
    # 6 came out turned twice, in a frame no viewer shows)
    tagged = image.format == "TIFF" and orientation != 1 and _EXIF_ORIENTATION in image.tag_v2
    if image.format == "TIFF":
        _silence_libtiff_errors()
    # Pillow's decoder checks the data (raising with its own reason on truncation) before anything else reads it:
    # OpenCV's PNG reader would print libpng's complaint to stderr, a second, unexplained line for the user
    image.load()
    turned = tagged and _EXIF_ORIENTATION not in image.tag_v2
    pixels, had_alpha = _decode_loaded(image, data, had_alpha, orientation if tagged else 1)
    if turned:
        pixels = to_stored(pixels, orientation)
    return pixels, had_alpha


def _decode_loaded(image: Image.Image, data: bytes, had_alpha: bool, orientation: int
                   ) -> tuple[np.ndarray, bool]:
    """:func:`_decode` of an image Pillow has loaded, in Pillow's orientation; ``orientation`` is the TIFF's
    Orientation tag (1 for any other file), which a second decoder may or may not have applied."""
    mode = image.mode
    if mode in {"RGB", "RGBA", "RGBa"} and _is_16bit_colour(image, data):
        # Pillow reduces 16-bit colour to 8 bits, so such files (named by their header; 8-bit files never pay
        # this) are decoded once more by OpenCV, which keeps the depth
        deep = _decode_16bit_planar_tiff(data) if _separate_planes(image) else _decode_16bit_rgb(data)
        if deep is not None:
            if orientation != 1:
                deep = _oriented_like(deep, np.asarray(image.convert("RGB")), orientation)
            return deep, had_alpha
    if mode in {"I;16", "I;16B", "I;16L", "I;16N"}:
        return np.asarray(image).astype(np.uint16), had_alpha
    if mode in {"I", "F"}:
        values = np.asarray(image)
        if mode == "F" and not np.isfinite(values).all():
            raise _NotFiniteError
        if mode == "I" and values.min() >= 0 and values.max() <= 65535:
            return values.astype(np.uint16), had_alpha
        lo, hi = float(values.min()), float(values.max())
        scaled = (values - lo) / (hi - lo or 1.0) * 65535.0
        return scaled.astype(np.uint16), had_alpha
    if mode == "1":
        return (np.asarray(image, dtype=np.uint8) * 255).astype(np.uint8), had_alpha
    if mode == "L":
        if _signed_samples(image):
            # Pillow hands signed 8-bit samples over as their raw bytes, so -1 came out white (255) beside 0
            # black: the picture was scrambled. Shifted by 128, the grey levels keep their order
            return (np.asarray(image).view(np.int8).astype(np.int16) + 128).astype(np.uint8), had_alpha
        return np.asarray(image), had_alpha
    if mode in {"LA", "La"}:
        return np.asarray(image.convert("L")), had_alpha
    if mode in {"P", "PA"}:
        rgb = np.asarray(image.convert("RGB"))
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            return np.ascontiguousarray(rgb[..., 0]), had_alpha
        return rgb, had_alpha
    if mode == "RGB":
        return np.asarray(image), had_alpha  # convert("RGB") would copy the whole image once more for nothing
    return np.asarray(image.convert("RGB")), had_alpha


@functools.cache
def _silence_libtiff_errors() -> None:
    """Stop libtiff (as loaded by Pillow) printing its errors to stderr, once per process.

    Pillow silences libtiff's warnings but not its errors, so a damaged compressed TIFF printed a line such as
    "ZIPDecode: Decoding error at scanline 0, incorrect data check." before retouch's own error line; Pillow
    still raises on the failure, which the loader reports. Best effort: the library is found among the
    process's mapped files (Linux); elsewhere nothing changes.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {fields[5].strip() for fields in (line.split(None, 5) for line in maps)
                     if len(fields) == 6 and "libtiff" in fields[5]}
    except OSError:
        return
    for path in paths:
        try:
            setter = ctypes.CDLL(path).TIFFSetErrorHandler
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_void_p], ctypes.c_void_p
        setter(None)


def _oriented_like(deep: np.ndarray, shallow: np.ndarray, orientation: int) -> np.ndarray:
    """``deep`` (a second decoder's 16-bit pixels of a TIFF tagged ``orientation``) turned as Pillow's 8-bit
    decode ``shallow`` of the same file is.

    Decoders disagree on the Orientation tag: tifffile never applies it, OpenCV 5 applies it even when told not
    to, Pillow 11 and later apply it. Of ``deep`` as decoded and ``deep`` with the tag applied, the one whose high
    bytes are closer to Pillow's pixels is kept."""
    best, best_difference = deep, np.inf
    for candidate in (deep, to_display(deep, orientation)):
        if candidate.shape != shallow.shape:
            continue
        difference = float(np.mean(np.abs((candidate >> 8).astype(np.int32) - shallow)))
        if difference < best_difference:
            best, best_difference = candidate, difference
    return np.ascontiguousarray(best)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_OPENCV_LOG_LOCK = threading.Lock()  # OpenCV's log level is process-wide; loads in API worker threads share it


def _is_16bit_colour(image: Image.Image, data: bytes) -> bool:
    """Whether a PNG or TIFF stores colour samples deeper than 8 bits, read from its header (no decoding)."""
    if image.format == "PNG":
        # IHDR is the first chunk: signature (8), length (4), "IHDR" (4), width (4), height (4), then bit depth
        return data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) > 24 and data[24] > 8
    if image.format == "TIFF":
        try:
            bits = image.tag_v2.get(258, (8,))  # BitsPerSample, one entry per sample
            bits = bits if isinstance(bits, (tuple, list)) else (bits,)
            return max(int(b) for b in bits) > 8
        except Exception:  # noqa: BLE001 - an unreadable tag: let Pillow decide as for any 8-bit file
            return False
    return False


def _signed_samples(image: Image.Image) -> bool:
    """Whether a TIFF stores its samples as signed integers (SampleFormat 2)."""
    try:
        formats = image.tag_v2.get(339, (1,)) if image.format == "TIFF" else (1,)
        return 2 in (formats if isinstance(formats, (tuple, list)) else (formats,))
    except Exception:  # noqa: BLE001 - an unreadable tag: read the samples as unsigned, as Pillow does
        return False


def _separate_planes(image: Image.Image) -> bool:
    """Whether a TIFF stores each colour in a plane of its own (PlanarConfiguration 2) instead of interleaved."""
    try:
        return image.format == "TIFF" and int(image.tag_v2.get(284, 1)) == 2
    except Exception:  # noqa: BLE001 - an unreadable tag: treat as the usual interleaved layout
        return False


class _UnreadableLayoutError(Exception):
    """A valid file whose sample layout no decoder at hand reads correctly; the message says what to do."""


def _decode_16bit_planar_tiff(data: bytes) -> np.ndarray | None:
    """A 16-bit colour TIFF with separate colour planes, read by tifffile: OpenCV's reader returns garbage for
    that layout (a grey thumbnail of each plane side by side, the rest black) without any error."""
    import tifffile  # only such files pay for its import

    with tifffile.TiffFile(io.BytesIO(data)) as tiff:
        page = tiff.pages[0]
        try:
            values = page.asarray()
        except ValueError as error:  # a compression tifffile decodes only with the optional imagecodecs package
            raise _UnreadableLayoutError(
                f"16-bit colour TIFF with separate colour planes and {page.compression.name} compression cannot "
                f"be read ({error}); re-save it with interleaved (chunky) colour samples, or uncompressed"
            ) from None
    if values.ndim != 3 or values.dtype != np.uint16:
        return None
    return np.ascontiguousarray(np.moveaxis(values, 0, -1)[:, :, :3])


def _decode_16bit_rgb(data: bytes) -> np.ndarray | None:
    """Pillow reduces 16-bit colour PNG/TIFF to 8 bits; OpenCV keeps the depth. Header size is checked already."""
    if data.startswith(_PNG_SIGNATURE):
        # OpenCV's libpng refuses a PNG without its IEND chunk (printing "libpng error: PNG input buffer is
        # incomplete"), and the image was then read at 8 bits; its image data are whole (checked already), and
        # the chunks after them hold nothing OpenCV reads, so it is given those data and an IEND chunk
        data = data[:_png_image_data(data, check=False)[0]] + _PNG_IEND
    # libtiff's warnings reach stderr through OpenCV's log: an RGBA TIFF as OpenCV itself writes it (no
    # ExtraSamples tag) printed "TIFF_Warning ... Defining non-color channels as ExtraSamples" beside a successful
    # run, breaking the promise of a quiet stderr; Pillow has already checked the data, and errors still show
    with _OPENCV_LOG_LOCK:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8),
                                   cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        finally:
            cv2.utils.logging.setLogLevel(level)
    if decoded is None or decoded.dtype != np.uint16 or decoded.ndim != 3:
        return None
    if decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
