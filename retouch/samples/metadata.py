"""Generated files with metadata, as cameras, scanners and editors write it: an EXIF block with a thumbnail, an XMP
edit history, IPTC captions. For the tests and benchmarks of :mod:`retouch.detect.metadata`.

Pillow writes EXIF tags, XMP packets and ICC profiles but not an EXIF thumbnail (IFD1 and its JPEG data) nor an
IPTC block in a JPEG, so those two structures are assembled here, little-endian TIFF and Photoshop's APP13 image
resources, as small as their specifications allow (EXIF 2.32 section 4.5; IPTC IIM 4.2 with Photoshop's image
resource block 0x0404).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

_ASCII, _SHORT, _LONG = 2, 3, 4
_SOFTWARE, _DATETIME, _MAKE, _MODEL, _EXIF_POINTER = 0x0131, 0x0132, 0x010F, 0x0110, 0x8769
_ORIGINAL, _DIGITIZED = 0x9003, 0x9004
_COMPRESSION, _THUMBNAIL_OFFSET, _THUMBNAIL_LENGTH = 0x0103, 0x0201, 0x0202


def jpeg_bytes(pixels: np.ndarray, *, quality: int = 90, **save: object) -> bytes:
    """``pixels`` (uint8 gray or RGB) as a JPEG file written by Pillow (extra ``save`` options passed on)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, **save)
    return buffer.getvalue()


def _ifd(entries: Sequence[tuple[int, int, bytes | int]], start: int, next_ifd: int) -> bytes:
    """One little-endian IFD at offset ``start`` (values longer than 4 bytes placed after it), ending with the
    offset of the next IFD."""
    table, extra = b"", b""
    data_at = start + 2 + 12 * len(entries) + 4
    for tag, kind, value in sorted(entries):
        if kind == _ASCII:
            raw = value if isinstance(value, bytes) else str(value).encode()
            raw += b"\x00"
            count = len(raw)
        else:
            raw = struct.pack("<H" if kind == _SHORT else "<I", int(value))  # type: ignore[arg-type]
            count = 1
        if len(raw) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + raw.ljust(4, b"\x00")
        else:
            table += struct.pack("<HHII", tag, kind, count, data_at + len(extra))
            extra += raw + (b"\x00" if len(raw) % 2 else b"")
    return struct.pack("<H", len(entries)) + table + struct.pack("<I", next_ifd) + extra


def exif_block(*, thumbnail: bytes | None = None, software: str | None = None, make: str | None = None,
               model: str | None = None, modified: str | None = None, taken: str | None = None,
               digitized: str | None = None) -> bytes:
    """An EXIF block (``Exif\\0\\0`` and a TIFF structure) with the given tags and, if given, a JPEG thumbnail in
    IFD1. Dates are EXIF text, ``"2001:02:03 04:05:06"``."""
    ifd0: list[tuple[int, int, bytes | int]] = []
    for tag, value in ((_SOFTWARE, software), (_MAKE, make), (_MODEL, model), (_DATETIME, modified)):
        if value is not None:
            ifd0.append((tag, _ASCII, value.encode()))
    exif_ifd = [(tag, _ASCII, value.encode()) for tag, value in ((_ORIGINAL, taken), (_DIGITIZED, digitized))
                if value is not None]
    # two passes: the offsets of what follows IFD0 depend on IFD0's own length
    header = b"II*\x00" + struct.pack("<I", 8)
    pointer = [(_EXIF_POINTER, _LONG, 0)] if exif_ifd else []
    first = _ifd(ifd0 + pointer, 8, 0)
    exif_at = 8 + len(first)
    exif_part = _ifd(exif_ifd, exif_at, 0) if exif_ifd else b""
    ifd1_at = exif_at + len(exif_part) if thumbnail else 0
    pointer = [(_EXIF_POINTER, _LONG, exif_at)] if exif_ifd else []
    first = _ifd(ifd0 + pointer, 8, ifd1_at)
    body = header + first + exif_part
    if thumbnail:
        entries = [(_COMPRESSION, _SHORT, 6), (_THUMBNAIL_OFFSET, _LONG, 0), (_THUMBNAIL_LENGTH, _LONG, len(thumbnail))]
        thumbnail_at = ifd1_at + len(_ifd(entries, ifd1_at, 0))
        entries[1] = (_THUMBNAIL_OFFSET, _LONG, thumbnail_at)
        body += _ifd(entries, ifd1_at, 0) + thumbnail
    return b"Exif\x00\x00" + body


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """``jpeg`` with an APPn segment (``marker``, e.g. 0xE1) inserted after its start-of-image marker."""
    if len(payload) + 2 > 0xFFFF:
        raise ValueError(f"a JPEG segment holds at most 65533 bytes, not {len(payload)}")
    return jpeg[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def with_exif(jpeg: bytes, block: bytes) -> bytes:
    """``jpeg`` with ``block`` (from :func:`exif_block`) as its APP1 EXIF segment."""
    return with_segment(jpeg, 0xE1, block)


def xmp_packet(properties: Mapping[str, str] | None = None,
               history: Sequence[Mapping[str, str]] = (), derived_from: Mapping[str, str] | None = None) -> bytes:
    """An XMP packet with simple ``xmp:``/``photoshop:`` properties (``{"xmp:CreatorTool": "GIMP 2.10"}``), an
    ``xmpMM:History`` of ``stEvt`` events (``{"action": "saved", "softwareAgent": ..., "when": ...}``) and an
    ``xmpMM:DerivedFrom`` reference."""
    from xml.sax.saxutils import quoteattr

    attributes = " ".join(f"{name}={quoteattr(value)}" for name, value in (properties or {}).items())
    events = "".join("<rdf:li rdf:parseType=\"Resource\">" + "".join(
        f"<stEvt:{key}>{value}</stEvt:{key}>" for key, value in event.items()) + "</rdf:li>" for event in history)
    history_xml = f"<xmpMM:History><rdf:Seq>{events}</rdf:Seq></xmpMM:History>" if history else ""
    derived = ("<xmpMM:DerivedFrom " + " ".join(f"stRef:{k}={quoteattr(v)}" for k, v in derived_from.items())
               + "/>") if derived_from else ""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" '
        'xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#" '
        'xmlns:stRef="http://ns.adobe.com/xap/1.0/sType/ResourceRef#" '
        f'xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" {attributes}>{history_xml}{derived}'
        '</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode("utf-8")


def iptc_segment(datasets: Mapping[int, str]) -> bytes:
    """A Photoshop APP13 payload holding IPTC record 2 ``datasets`` (number -> text, e.g. ``{80: "A. Author"}``)."""
    iim = b"".join(b"\x1c\x02" + bytes([number]) + struct.pack(">H", len(text.encode())) + text.encode()
                   for number, text in sorted(datasets.items()))
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim
    if len(iim) % 2:
        resource += b"\x00"
    return b"Photoshop 3.0\x00" + resource
