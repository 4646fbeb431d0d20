"""What an image file says about itself: EXIF, XMP, IPTC, its colour profile's name, an embedded thumbnail or
preview, and C2PA content credentials, read from the file's bytes without decoding its pixels.

Readers: Pillow for EXIF (every IFD: the image's, Exif, GPS, Interop and the thumbnail's), the XMP packet, IPTC
and the ICC profile, in every format retouch accepts (JPEG, PNG, TIFF, WebP, BMP); the XMP packet is parsed as
RDF/XML by the standard library's expat after a refusal of any document type declaration (XMP never needs one,
and entities are how XML is made to explode); ``c2pa-python`` (the Content Authenticity Initiative's reference
implementation) for C2PA manifests, with remote manifests and certificate-status fetching turned off, so reading
a file never touches the network. Why Pillow rather than exifread or pyexiv2 is measured in
``benchmarks/results/metadata.md``: the same coverage on these formats, no new dependency, and no hang or crash on
hostile EXIF (exifread loops for hours over a MakerNote that claims four billion entries).

Hostile metadata never raises: whatever cannot be read becomes a sentence in :attr:`FileMetadata.notes`, and every
part is bounded (:data:`LIMITS`), so a huge XMP packet, malformed EXIF offsets, nested or looping IFDs and broken
C2PA manifests cost milliseconds, not memory or time.

Example
-------
>>> import io
>>> from PIL import Image
>>> buffer = io.BytesIO()
>>> exif = Image.Exif()
>>> exif[0x0131] = "GIMP 2.10"
>>> Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif)
>>> read_metadata(buffer.getvalue()).exif["Image Software"]
'GIMP 2.10'
"""

from __future__ import annotations

import io
import logging
import warnings
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import ExifTags, Image, IptcImagePlugin, TiffImagePlugin

from retouch.text import readable_text


@dataclass(frozen=True)
class MetadataLimits:
    """Bounds on what is read, so that no file can make reading slow or large.

    Attributes
    ----------
    xmp_bytes : int
        Longest XMP packet parsed (4 MiB; Photoshop's histories run to a few hundred kB).
    fields : int
        Most fields kept per kind (EXIF tags, XMP properties, IPTC datasets).
    text : int
        Longest text kept per value (characters); longer values are cut and marked with an ellipsis.
    history : int
        Most XMP history events kept (the rest are counted).
    thumbnail_bytes : int
        Largest embedded thumbnail or preview kept (8 MiB).
    icc_bytes : int
        Largest ICC profile parsed for its name (4 MiB).
    """

    xmp_bytes: int = 4 << 20
    fields: int = 2000
    text: int = 500
    history: int = 200
    thumbnail_bytes: int = 8 << 20
    icc_bytes: int = 4 << 20


LIMITS = MetadataLimits()

# XMP namespaces by URI, with the prefix Adobe's specification gives them: files may bind any prefix, so
# properties are named by these.
XMP_NAMESPACES = {
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://ns.adobe.com/xap/1.0/mm/": "xmpMM",
    "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#": "stEvt",
    "http://ns.adobe.com/xap/1.0/sType/ResourceRef#": "stRef",
    "http://ns.adobe.com/xap/1.0/rights/": "xmpRights",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://ns.adobe.com/exif/1.0/": "exif",
    "http://ns.adobe.com/exif/1.0/aux/": "aux",
    "http://cipa.jp/exif/1.0/": "exifEX",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/camera-raw-settings/1.0/": "crs",
    "http://ns.adobe.com/lightroom/1.0/": "lr",
    "http://ns.adobe.com/pdf/1.3/": "pdf",
    "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/": "Iptc4xmpCore",
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": "Iptc4xmpExt",
    "http://purl.org/dc/terms/": "dcterms",
    "http://www.gimp.org/xmp/": "GIMP",
}
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_CONTAINERS = {f"{{{_RDF}}}Seq", f"{{{_RDF}}}Bag", f"{{{_RDF}}}Alt"}

# IPTC IIM record 2 datasets worth naming (IPTC-NAA Information Interchange Model 4.2, chapter 6).
IPTC_DATASETS = {
    5: "ObjectName", 25: "Keywords", 40: "SpecialInstructions", 55: "DateCreated", 60: "TimeCreated",
    62: "DigitalCreationDate", 63: "DigitalCreationTime", 65: "OriginatingProgram", 70: "ProgramVersion",
    80: "By-line", 85: "By-lineTitle", 90: "City", 95: "Province-State", 101: "Country", 103: "TransmissionReference",
    105: "Headline", 110: "Credit", 115: "Source", 116: "CopyrightNotice", 120: "Caption-Abstract",
    122: "Writer-Editor",
}

_C2PA_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff", "WEBP": "image/webp"}
_EXIF_IFDS = (("Exif", ExifTags.IFD.Exif, ExifTags.TAGS), ("GPS", ExifTags.IFD.GPSInfo, ExifTags.GPSTAGS),
              ("Interop", ExifTags.IFD.Interop, ExifTags.TAGS), ("Thumbnail", ExifTags.IFD.IFD1, ExifTags.TAGS))
_POINTER_TAGS = {int(ExifTags.IFD.Exif), int(ExifTags.IFD.GPSInfo), int(ExifTags.IFD.Interop)}
_THUMBNAIL_OFFSET, _THUMBNAIL_LENGTH = 0x0201, 0x0202
_PHOTOSHOP_THUMBNAIL = (0x0409, 0x040C)  # image resource ids of Photoshop's thumbnail (old and current layout)
_PHOTOSHOP_THUMBNAIL_HEADER = 28  # bytes before the JFIF data in that resource (format, sizes, bits, planes)


@dataclass(frozen=True)
class HistoryEvent:
    """One event of an XMP edit history (``xmpMM:History``, the ``stEvt`` fields)."""

    action: str = ""
    when: str = ""
    software_agent: str = ""
    changed: str = ""
    parameters: str = ""
    instance_id: str = ""


@dataclass(frozen=True)
class ContentCredentials:
    """A C2PA manifest store as ``c2pa-python`` validated it (the active manifest's facts).

    ``state`` is the validator's verdict: ``"Trusted"`` (signature valid, signer on a trust list), ``"Valid"``
    (signature and bindings valid, signer not on a trust list), ``"Invalid"`` (a signature, a hash or an
    assertion fails: ``failures`` lists the codes) or ``"Unreadable"`` (the manifest store could not be parsed:
    ``error`` says why).
    """

    state: str
    signer: str = ""
    issuer: str = ""
    signed_at: str = ""
    claim_generator: str = ""
    title: str = ""
    actions: list[dict[str, str]] = field(default_factory=list)
    ingredients: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    manifests: int = 0
    error: str = ""


@dataclass(frozen=True)
class FileMetadata:
    """Everything :func:`read_metadata` found in one file; empty fields where the file holds nothing.

    EXIF tags are named ``"<IFD> <tag>"`` after Pillow's tables (``"Image Software"``, ``"Exif DateTimeOriginal"``,
    ``"GPS GPSLatitude"``, ``"Thumbnail Compression"``), XMP properties ``"<prefix>:<name>"`` with the standard
    prefixes of :data:`XMP_NAMESPACES` (``"xmp:CreatorTool"``), IPTC datasets by their IIM names
    (``"By-line"``); values are JSON-serialisable text or numbers, cut to :attr:`MetadataLimits.text` characters.
    """

    format: str
    exif: dict[str, Any] = field(default_factory=dict)
    xmp: dict[str, Any] = field(default_factory=dict)
    xmp_history: list[HistoryEvent] = field(default_factory=list)
    xmp_derived_from: dict[str, str] = field(default_factory=dict)
    iptc: dict[str, Any] = field(default_factory=dict)
    icc_profile: str = ""
    thumbnails: dict[str, bytes] = field(default_factory=dict)  # where it was found -> JPEG (or TIFF) bytes
    c2pa: ContentCredentials | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable record (thumbnails by size, not content)."""
        record = asdict(self)
        record["thumbnails"] = {where: len(data) for where, data in self.thumbnails.items()}
        return record


def read_metadata(data: bytes, *, limits: MetadataLimits = LIMITS, credentials: bool = True) -> FileMetadata:
    """Read the metadata of an image file held in memory (never raises on what the file holds).

    Parameters
    ----------
    data : bytes
        The whole file, as :class:`retouch.io.LoadedImage` keeps it.
    limits : MetadataLimits
        Bounds on every part read.
    credentials : bool
        Read C2PA content credentials too (the slowest part: the manifest store's signatures are checked).

    Returns
    -------
    FileMetadata
        What was found, with a note for each part that could not be read.
    """
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns of corrupt EXIF as it skips it: a note here, not stderr
        try:
            image = Image.open(io.BytesIO(data))
        except Exception as error:  # noqa: BLE001 - hostile bytes: the loader has said what it could not read
            return FileMetadata(format="unknown", notes=[f"the file could not be opened to read its metadata "
                                                         f"({_reason(error)})"])
        with image:
            file_format = "JPEG" if image.format == "MPO" else (image.format or "unknown")
            exif, exif_raw = _exif(image, limits, notes)
            xmp, history, derived = _xmp(image, limits, notes)
            iptc = _iptc(image, limits, notes)
            icc = _icc_name(image, limits, notes)
            thumbnails = _thumbnails(image, exif_raw, limits, notes)
    credentials_found = _content_credentials(data, file_format, notes) if credentials else None
    return FileMetadata(format=file_format, exif=exif, xmp=xmp, xmp_history=history, xmp_derived_from=derived,
                        iptc=iptc, icc_profile=icc, thumbnails=thumbnails, c2pa=credentials_found, notes=notes)


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return readable_text(text)[:160]


def _text(value: Any, limits: MetadataLimits) -> Any:
    """A metadata value as JSON-serialisable text or number, cut to ``limits.text`` characters."""
    if isinstance(value, TiffImagePlugin.IFDRational):
        return None if value.denominator == 0 else round(float(value), 6)
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        stripped = value.rstrip(b"\x00 ")
        if stripped.startswith((b"ASCII\x00\x00\x00", b"UNICODE\x00")):  # an EXIF UserComment's character code
            stripped = stripped[8:]
            if value.startswith(b"UNICODE"):
                stripped = stripped.decode("utf-16", "replace").encode()
        try:
            decoded = stripped.decode("utf-8")
        except UnicodeDecodeError:
            decoded = ""
        if decoded and decoded.isprintable():
            return _cut(decoded, limits)
        return f"<{len(value)} bytes>"
    if isinstance(value, tuple | list):
        items = [_text(item, limits) for item in value[:64]]
        return items if len(value) <= 64 else [*items, f"... {len(value) - 64} more"]
    return _cut(readable_text(str(value)), limits)


def _cut(text: str, limits: MetadataLimits) -> str:
    text = text.replace("\x00", "").strip()
    return text if len(text) <= limits.text else text[:limits.text - 1] + "…"


def _exif(image: Image.Image, limits: MetadataLimits, notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """EXIF tags by name, and the thumbnail IFD's raw values (offsets) for :func:`_thumbnails`."""
    try:
        exif = image.getexif()
    except Exception as error:  # noqa: BLE001 - a broken EXIF block must not hide the rest
        notes.append(f"the EXIF block could not be read ({_reason(error)})")
        return {}, {}
    tags: dict[str, Any] = {}
    raw_thumbnail: dict[str, Any] = {}

    def keep(prefix: str, items: Any, names: dict[int, str]) -> None:
        for tag, value in items:
            if len(tags) >= limits.fields:
                return
            if tag in _POINTER_TAGS:  # the offset of another directory, read as that directory
                continue
            tags[f"{prefix} {names.get(tag, f'Tag0x{tag:04X}')}"] = _text(value, limits)

    try:
        keep("Image", list(exif.items()), ExifTags.TAGS)
    except Exception as error:  # noqa: BLE001
        notes.append(f"the EXIF image directory could not be read ({_reason(error)})")
    for prefix, pointer, names in _EXIF_IFDS:
        try:
            directory = exif.get_ifd(pointer)
            items = list(directory.items())
        except Exception as error:  # noqa: BLE001 - malformed offsets: the directory is skipped, and said so
            notes.append(f"the EXIF {prefix} directory could not be read ({_reason(error)})")
            continue
        if prefix == "Thumbnail":
            raw_thumbnail = dict(items)
        keep(prefix, items, names)
    if len(tags) >= limits.fields:
        notes.append(f"the EXIF block holds more than {limits.fields} tags; only the first were read")
    return tags, raw_thumbnail


def _xmp_packet(image: Image.Image) -> bytes | None:
    """The XMP packet as the format stores it: JPEG APP1, PNG iTXt, WebP chunk (Pillow's ``info["xmp"]``) or
    TIFF tag 700."""
    packet = image.info.get("xmp")
    if packet is None and image.format == "TIFF":
        packet = getattr(image, "tag_v2", {}).get(700)
    if isinstance(packet, str):
        packet = packet.encode("utf-8")
    if isinstance(packet, tuple):  # Pillow gives an undefined-type TIFF tag as a tuple of byte values
        packet = bytes(packet)
    return packet or None


def _xmp(image: Image.Image, limits: MetadataLimits, notes: list[str]
         ) -> tuple[dict[str, Any], list[HistoryEvent], dict[str, str]]:
    try:
        packet = _xmp_packet(image)
    except Exception as error:  # noqa: BLE001
        notes.append(f"the XMP packet could not be read ({_reason(error)})")
        return {}, [], {}
    if not packet:
        return {}, [], {}
    if len(packet) > limits.xmp_bytes:
        notes.append(f"the XMP packet is {len(packet):,} bytes, over the {limits.xmp_bytes:,} read; it was not "
                     "parsed (an XMP packet that large is unusual: a file's history or an embedded document)")
        return {}, [], {}
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        notes.append("the XMP packet declares a document type (entities), which XMP never uses and which can "
                     "make XML expand without bound; it was not parsed")
        return {}, [], {}
    try:
        root = ElementTree.fromstring(packet.strip(b"\x00 \r\n\t"))
    except ElementTree.ParseError as error:
        notes.append(f"the XMP packet is not well-formed XML ({_reason(error)}); it was not parsed")
        return {}, [], {}
    except Exception as error:  # noqa: BLE001 - e.g. a packet too deeply nested for the parser
        notes.append(f"the XMP packet could not be parsed ({_reason(error)})")
        return {}, [], {}
    properties: dict[str, Any] = {}
    history: list[HistoryEvent] = []
    derived: dict[str, str] = {}
    events = 0
    for description in root.iter(f"{{{_RDF}}}Description"):
        for name, value in description.attrib.items():
            if not name.startswith(f"{{{_RDF}}}") and name != "about":  # rdf:about names the resource
                _add_property(properties, _xmp_name(name), _cut(value, limits), limits)
        for child in description:
            name = _xmp_name(child.tag)
            if name == "xmpMM:History":
                for item in child.iter(f"{{{_RDF}}}li"):
                    events += 1
                    if len(history) < limits.history:
                        history.append(_history_event(_resource_fields(item, limits)))
            elif name == "xmpMM:DerivedFrom":
                derived = _resource_fields(child, limits)
            else:
                _add_property(properties, name, _property_value(child, limits), limits)
    if events > len(history):
        notes.append(f"the XMP history lists {events} events; the first {len(history)} were read")
    return properties, history, derived


def _xmp_name(tag: str) -> str:
    """``{uri}local`` as ``prefix:local`` with the standard prefix (the URI itself for unknown namespaces)."""
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        return f"{XMP_NAMESPACES.get(uri, uri)}:{local}"
    return tag


def _add_property(properties: dict[str, Any], name: str, value: Any, limits: MetadataLimits) -> None:
    if len(properties) < limits.fields and value not in ("", [], {}):
        properties[name] = value


def _property_value(element: ElementTree.Element, limits: MetadataLimits) -> Any:
    """A property's value: its text, the items of an rdf:Seq/Bag/Alt, or the fields of a structure."""
    containers = [child for child in element if child.tag in _CONTAINERS]
    if containers:
        return [_cut("".join(item.itertext()), limits) for item in containers[0] if item.tag == f"{{{_RDF}}}li"][
            :64]
    if len(element) or any(not key.startswith(f"{{{_RDF}}}") for key in element.attrib):
        return _resource_fields(element, limits)
    return _cut(element.text or "", limits)


def _resource_fields(element: ElementTree.Element, limits: MetadataLimits) -> dict[str, str]:
    """The fields of an XMP structure (a history event, a resource reference), written as attributes or as
    child elements, at any depth of rdf:Description wrapping (``rdf:parseType="Resource"`` or not)."""
    fields: dict[str, str] = {}
    for node in element.iter():
        for name, value in node.attrib.items():
            if not name.startswith(f"{{{_RDF}}}"):
                fields.setdefault(_xmp_name(name).split(":", 1)[-1], _cut(value, limits))
        if node is not element and len(node) == 0 and node.text and node.text.strip() and not node.tag.startswith(
                f"{{{_RDF}}}"):
            fields.setdefault(_xmp_name(node.tag).split(":", 1)[-1], _cut(node.text, limits))
    return fields


def _history_event(fields: dict[str, str]) -> HistoryEvent:
    return HistoryEvent(action=fields.get("action", ""), when=fields.get("when", ""),
                        software_agent=fields.get("softwareAgent", ""), changed=fields.get("changed", ""),
                        parameters=fields.get("parameters", ""), instance_id=fields.get("instanceID", ""))


def _iptc(image: Image.Image, limits: MetadataLimits, notes: list[str]) -> dict[str, Any]:
    if image.format not in ("JPEG", "MPO", "TIFF"):
        return {}
    try:
        found = IptcImagePlugin.getiptcinfo(image) or {}
    except Exception as error:  # noqa: BLE001
        notes.append(f"the IPTC block could not be read ({_reason(error)})")
        return {}
    datasets: dict[str, Any] = {}
    for (record, number), value in list(found.items())[:limits.fields]:
        if record != 2 or number == 0:  # record 2 holds the descriptions; dataset 0 is its version number
            continue
        name = IPTC_DATASETS.get(number, f"2:{number:03d}")
        values = value if isinstance(value, list) else [value]
        texts = [_text(item, limits) for item in values[:64]]
        datasets[name] = texts[0] if len(texts) == 1 else texts
    return datasets


def _icc_name(image: Image.Image, limits: MetadataLimits, notes: list[str]) -> str:
    profile = image.info.get("icc_profile")
    if not profile:
        return ""
    if len(profile) > limits.icc_bytes:
        notes.append(f"the ICC colour profile is {len(profile):,} bytes, over the {limits.icc_bytes:,} read")
        return ""
    try:
        from PIL import ImageCms

        parsed = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return _cut(ImageCms.getProfileDescription(parsed) or ImageCms.getProfileName(parsed) or "", limits)
    except Exception as error:  # noqa: BLE001 - littlecms refuses a malformed profile
        notes.append(f"the ICC colour profile could not be read ({_reason(error)})")
        return ""


def _thumbnails(image: Image.Image, thumbnail_ifd: dict[Any, Any], limits: MetadataLimits, notes: list[str]
                ) -> dict[str, bytes]:
    """Embedded reduced copies of the picture: the EXIF thumbnail (IFD1) and Photoshop's thumbnail resource (a
    camera's larger Multi-Picture Format preview is not read)."""
    found: dict[str, bytes] = {}
    offset, length = thumbnail_ifd.get(_THUMBNAIL_OFFSET), thumbnail_ifd.get(_THUMBNAIL_LENGTH)
    if offset is not None and length is not None:
        exif_block = _exif_block(image)
        try:
            start, size = int(offset), int(length)
        except (TypeError, ValueError):
            start = size = -1
        if exif_block is None or start < 0 or size <= 0 or start + size > len(exif_block):
            notes.append("the EXIF thumbnail's offset or length points outside the EXIF block; it was not read")
        elif size > limits.thumbnail_bytes:
            notes.append(f"the EXIF thumbnail claims {size:,} bytes, over the {limits.thumbnail_bytes:,} read")
        else:
            found["EXIF thumbnail"] = exif_block[start:start + size]
    resources = image.info.get("photoshop") if isinstance(image.info.get("photoshop"), dict) else {}
    for resource in _PHOTOSHOP_THUMBNAIL:
        block = resources.get(resource)
        if isinstance(block, bytes) and len(block) > _PHOTOSHOP_THUMBNAIL_HEADER:
            if len(block) <= limits.thumbnail_bytes:
                found["Photoshop thumbnail"] = block[_PHOTOSHOP_THUMBNAIL_HEADER:]
            break
    return found


def _exif_block(image: Image.Image) -> bytes | None:
    """The EXIF block's TIFF structure (offsets in the thumbnail IFD count from its first byte)."""
    block = image.info.get("exif")
    if not isinstance(block, bytes):
        try:
            block = image.getexif().tobytes()
        except Exception:  # noqa: BLE001
            return None
    return block[6:] if block.startswith(b"Exif\x00\x00") else block


def _content_credentials(data: bytes, file_format: str, notes: list[str]) -> ContentCredentials | None:
    """The file's C2PA manifest store, validated offline; None when the file holds none (or its format cannot)."""
    mime = _C2PA_MIME.get(file_format)
    if mime is None or (b"c2pa" not in data and b"jumb" not in data):
        return None  # no JUMBF box and no C2PA label anywhere: nothing to hand the validator
    try:
        import c2pa
    except ImportError:
        notes.append("C2PA content credentials were not read: the c2pa-python package is not installed")
        return None
    try:
        reader = c2pa.Reader(mime, io.BytesIO(data), context=_c2pa_context())
    except Exception as error:  # noqa: BLE001 - c2pa raises its own error types for every failure
        if type(error).__name__.endswith("ManifestNotFound"):
            return None
        return ContentCredentials(state="Unreadable", error=_reason(error))
    try:
        with reader:
            store = _json(reader.json())
            state = str(reader.get_validation_state() or store.get("validation_state") or "")
    except Exception as error:  # noqa: BLE001
        return ContentCredentials(state="Unreadable", error=_reason(error))
    return _credentials_from_store(store, state)


def _json(text: str) -> dict[str, Any]:
    import json

    value = json.loads(text)
    return value if isinstance(value, dict) else {}


_C2PA_CONTEXT: Any = None


def _c2pa_context() -> Any:
    """Reading settings: no remote manifest is fetched and no certificate status (OCSP) asked for, so that a file
    naming a URL cannot make retouch contact it; the signer is checked against the default trust settings."""
    global _C2PA_CONTEXT
    if _C2PA_CONTEXT is None:
        import c2pa

        _C2PA_CONTEXT = c2pa.Context.from_dict({"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}})
    return _C2PA_CONTEXT


def _credentials_from_store(store: dict[str, Any], state: str) -> ContentCredentials:
    manifests = store.get("manifests") if isinstance(store.get("manifests"), dict) else {}
    active = manifests.get(store.get("active_manifest"), {}) if manifests else {}
    signature = active.get("signature_info") if isinstance(active.get("signature_info"), dict) else {}
    generator = active.get("claim_generator") or ""
    info = active.get("claim_generator_info")
    if not generator and isinstance(info, list) and info and isinstance(info[0], dict):
        generator = " ".join(str(info[0].get(key, "")) for key in ("name", "version")).strip()
    actions = []
    for assertion in active.get("assertions") or []:
        if isinstance(assertion, dict) and str(assertion.get("label", "")).startswith("c2pa.actions"):
            for action in (assertion.get("data") or {}).get("actions") or []:
                if isinstance(action, dict):
                    agent = action.get("softwareAgent")
                    agent = agent.get("name", "") if isinstance(agent, dict) else (agent or "")
                    source_type = str(action.get("digitalSourceType", "")).rsplit("/", 1)[-1][:60]
                    actions.append({"action": str(action.get("action", "")), "software_agent": str(agent),
                                    "digital_source_type": source_type, "when": str(action.get("when", ""))})
    ingredients = [str(item.get("title", "")) for item in active.get("ingredients") or [] if isinstance(item, dict)]
    failures = []
    for status in store.get("validation_status") or []:
        if isinstance(status, dict) and status.get("code") and not str(status["code"]).endswith(".skipped"):
            failures.append({"code": str(status["code"]), "explanation": str(status.get("explanation", ""))[:200]})
    return ContentCredentials(
        state=state or "Unknown", signer=str(signature.get("common_name") or ""),
        issuer=str(signature.get("issuer") or ""), signed_at=str(signature.get("time") or ""),
        claim_generator=str(generator)[:200], title=str(active.get("title") or "")[:200], actions=actions[:100],
        ingredients=ingredients[:50], failures=failures[:50], manifests=len(manifests))

