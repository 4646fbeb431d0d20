"""What the file says about its own history: metadata and provenance, and an embedded thumbnail compared with the
picture.

Method
------
The file's metadata is read (:func:`retouch.io.metadata.read_metadata`: EXIF, XMP, IPTC, the ICC profile's name,
embedded thumbnails, C2PA content credentials) and turned into findings, each a plain sentence with the raw
fields behind it:

- the software named by the file (EXIF ``Software`` and ``ProcessingSoftware``, XMP ``xmp:CreatorTool``, IPTC
  ``OriginatingProgram``), and whether an editor wrote the file after the camera or scanner that made it;
- the XMP edit history (``xmpMM:History``: saved, converted, derived, with the program and the time of each
  event) and the document it was derived from (``xmpMM:DerivedFrom``);
- the camera or scanner (make, model, lens, serial number);
- the dates (taken, digitised, modified; EXIF, XMP, IPTC, the C2PA signature) and where they contradict each
  other: modified before taken, digitised before taken, one moment recorded differently by two fields;
- the JPEG quantization tables matched against known encoders (:func:`identify_encoder`: libjpeg's quality
  scale, Photoshop's settings) as a hint of the last program that saved the file, and whether that agrees with
  the software the file names;
- C2PA content credentials: present, signer, validation state and the actions they record;
- a perceptual hash (:func:`retouch.hashing.perceptual_hash`), so copies of one photograph can be found;
- an embedded thumbnail or preview, registered onto the picture and compared with it by
  :func:`retouch.compare.compare_pair` at the thumbnail's scale. A thumbnail is made when a camera, scanner or
  editor writes the file; a program that later changes the picture without updating the thumbnail leaves the
  earlier picture in it. Where the two differ, the picture is painted: that is pixel evidence.

Only that thumbnail difference is painted (the mask, the heatmap and the regions, with compare's kinds: a region
``removed`` shows something in the thumbnail that the picture lacks). Every other finding is listed, never
painted, and none is worded as a forgery: editing software is part of ordinary archive work (cropping, levels,
dust removal), and metadata can be removed, copied from another file or written by hand.

False alarms: the thumbnail regions are compare's decision (a change far above the noise of this very pair,
larger than dust), measured on untouched files with their own thumbnails in ``benchmarks/results/metadata.md``;
each region's evidence carries ``nfa`` (the expected number of such regions on an untouched file, from that
calibration) and a ``false_alarm_control`` sentence. Without a thumbnail the mask is empty whatever the metadata
says.

Limits: a file without metadata (most scans saved as PNG or re-encoded by a website) yields only the hash and,
for a JPEG, the encoder hint; a thumbnail under :attr:`MetadataOptions.min_thumbnail_side` pixels, or one that
does not register onto the picture, is listed but not compared; changes smaller than a few thumbnail pixels are
not seen.

References
----------
Farid, H. (2006). Digital image ballistics from JPEG quantization. Dartmouth TR2006-583.
Kornblum, J. D. (2008). Using JPEG quantization tables to identify imagery processed by software. Digital
Investigation 5, S21-S25. doi:10.1016/j.diin.2008.05.004
Adobe (2012). XMP Specification Part 2, 1.2.4 (ResourceEvent) and 3.1 (XMP Media Management).
C2PA (2024). Content Credentials: C2PA Technical Specification 2.1.

Examples
--------
>>> import io
>>> import numpy as np
>>> from PIL import Image
>>> exif = Image.Exif()
>>> exif[0x0131] = "Adobe Photoshop CS3 Windows"
>>> buffer = io.BytesIO()
>>> Image.fromarray(np.full((64, 64), 128, np.uint8)).save(buffer, "JPEG", exif=exif)
>>> result = metadata_evidence(np.full((64, 64), 128, np.uint8), file_data=buffer.getvalue())
>>> [finding.kind for finding in result.findings][:1], bool(result.mask.any())
(['software'], False)
"""

from __future__ import annotations

import datetime as dt
import io
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from retouch.detect._encoders import LIBJPEG, PHOTOSHOP, identify_encoder
from retouch.errors import InputError, NotSamePhotographError
from retouch.imaging import to_uint8, upscale_to
from retouch.io.metadata import FileMetadata, read_metadata
from retouch.registry import register
from retouch.result import AnalysisResult, Finding, Region

# Untouched generated JPEGs carrying their own EXIF thumbnail, through the same comparison (benchmarks/metadata.py,
# results in benchmarks/results/metadata.md): regions marked per file, and the file count.
CALIBRATION_FALSE_REGIONS = 0
CALIBRATION_FILES = 25

EDITORS = ("photoshop", "lightroom", "gimp", "affinity", "paint.net", "paintshop", "pixelmator", "snapseed",
           "capture one", "darktable", "rawtherapee", "acdsee", "luminar", "photopea", "canva", "picasa",
           "photoscape", "fotor", "corel", "krita", "irfanview", "xnview", "faststone", "photos", "preview",
           "imagemagick", "graphicsmagick", "photo editor", "camera raw", "facetune", "meitu", "remini", "picsart")
SCANNER_WORDS = ("scan", "epson", "silverfast", "vuescan", "coolscan", "perfection", "canoscan", "fujitsu",
                 "imacon", "hasselblad flextight", "plustek", "reflecta", "microtek", "avision", "kodak", "xerox",
                 "hp scan", "twain", "sane")

EXPLANATION = (
    "This analysis reads what the file says about its own history: the software that wrote it, an edit "
    "history kept in its XMP metadata, the camera or scanner, its dates, its JPEG compression tables (a hint "
    "of the last program that saved it), and content credentials (C2PA). These facts are listed, not painted: "
    "editing software is part of ordinary archive work, and metadata can be removed, copied or written by hand, "
    "so none of them shows that the picture was changed. The one exception is an embedded thumbnail: a reduced "
    "copy of the picture made when the file was first written. It is aligned with the picture and compared "
    "with it; where they differ, the picture was probably changed after the thumbnail was made (or the "
    "thumbnail made from another version), and the map shows where; about 1 untouched file in 25 shows such a "
    "difference where nothing was changed. "
    "Limits: many files carry no metadata at all; a thumbnail smaller than about 64 pixels, or one that cannot "
    "be aligned, is not compared; differences smaller than a few thumbnail pixels are not seen."
)


@dataclass(frozen=True)
class MetadataOptions:
    """Settings of the metadata analysis.

    Attributes
    ----------
    compare_thumbnail : bool
        Compare an embedded thumbnail with the picture (the only painted evidence).
    min_thumbnail_side : int
        Thumbnails whose longer side is shorter are listed, not compared (registration needs detail).
    compare_scale : float
        The picture is reduced to this many times the thumbnail's size for the comparison: detail finer than the
        thumbnail holds cannot be compared, and a larger picture only adds the scans' grain.
    thumbnail_false_alarms : float
        Expected number of regions a thumbnail of the untouched picture would get by chance (the comparison's
        ``false_alarms``, see :func:`retouch.compare.compare_pair`): a region is reported when its NFA is below
        it. Specks the comparison lists as ``damage`` are not painted (they are not edits).
    max_thumbnail_pixels : int
        Larger embedded images are not decoded.
    same_moment_s : float
        Two fields that record one moment (taken, in EXIF and in XMP) agree within this many seconds.
    zone_slack_h : float
        Dates without a time zone may differ by a zone's offset (up to 14 hours) without contradicting each other.
    read_credentials : bool
        Read and validate C2PA content credentials.
    """

    compare_thumbnail: bool = True
    min_thumbnail_side: int = 64
    compare_scale: float = 1.0
    thumbnail_false_alarms: float = 1.0
    max_thumbnail_pixels: int = 4_000_000
    same_moment_s: float = 2.0
    zone_slack_h: float = 14.0
    read_credentials: bool = True


@register("metadata", title="File metadata and provenance",
          description="what the file says about its history (software, edit history, dates, encoder, C2PA), "
                      "listed; an embedded thumbnail that differs from the picture, painted",
          uses_jpeg=True, uses_file=True)
def metadata_evidence(image: np.ndarray, *, jpeg_quantization: Mapping[int, Sequence[int]] | None = None,
                      file_data: bytes | None = None, options: MetadataOptions | None = None) -> AnalysisResult:
    """Findings from the file's metadata, and the picture's differences from an embedded thumbnail.

    Parameters
    ----------
    image : ndarray
        The picture as the file stores it, uint8/uint16 gray or RGB.
    jpeg_quantization : mapping, optional
        The file's JPEG quantization tables, for the encoder hint.
    file_data : bytes, optional
        The file's bytes; without them the analysis does not apply (it reads the file, not only its pixels).
    options : MetadataOptions, optional
        Settings (defaults documented there).

    Returns
    -------
    AnalysisResult
        ``findings`` lists the facts; ``mask``, ``heatmap`` and ``regions`` hold only the thumbnail's
        differences (empty without a thumbnail that differs); ``details["metadata"]`` the raw fields read.
    """
    options = options or MetadataOptions()
    shape = (int(image.shape[0]), int(image.shape[1]))
    params = {"compare_thumbnail": options.compare_thumbnail, "min_thumbnail_side": options.min_thumbnail_side,
              "compare_scale": options.compare_scale, "thumbnail_false_alarms": options.thumbnail_false_alarms,
              "nfa_source": "calibration on untouched files with their "
              "own thumbnails (benchmarks/results/metadata.md)"}
    if file_data is None:
        return AnalysisResult.skipped_result(
            "metadata", shape, "only pixels were given; the metadata analysis reads the file itself",
            params=params, explanation=EXPLANATION)
    metadata = read_metadata(file_data, credentials=options.read_credentials)
    findings = [*software_findings(metadata), *history_findings(metadata), *device_findings(metadata),
                *date_findings(metadata, options), *encoder_findings(metadata, jpeg_quantization),
                *credential_findings(metadata), *description_findings(metadata)]
    findings.append(_hash_finding(image))
    heatmap, mask = np.zeros(shape, np.float32), np.zeros(shape, bool)
    regions: list[Region] = []
    images: dict[str, np.ndarray] = {}
    for where, data in metadata.thumbnails.items():
        finding, compared = _thumbnail_comparison(image, where, data, options)
        findings.append(finding)
        if compared is not None:
            heatmap, mask, regions, images = compared
            break  # one thumbnail compared: a second copy of the same thumbnail adds nothing
    findings += [Finding("note", f"Reading the metadata: {note}.") for note in metadata.notes]
    score = max(0.5, max(r.score for r in regions)) if regions else 0.0
    notable = sum(f.notable for f in findings)
    if regions:
        summary = (f"The embedded thumbnail differs from the picture in {len(regions)} region(s): the picture was "
                   f"probably changed after the thumbnail was made. {len(findings)} metadata finding(s) listed.")
    else:
        summary = (f"{len(findings)} metadata finding(s) listed ({notable} to look at first); nothing painted: "
                   "metadata alone shows no place in the picture.")
    return AnalysisResult(method="metadata", heatmap=heatmap, mask=mask, regions=regions, score=score,
                          params=params, summary=summary, explanation=EXPLANATION,
                          details={"metadata": metadata.to_dict()}, images=images, findings=findings)


def _joined(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _software_names(metadata: FileMetadata) -> dict[str, list[str]]:
    """Each program the file names, with the fields that name it (in the order a file's life writes them)."""
    named: dict[str, list[str]] = {}
    iptc_program = " ".join(str(metadata.iptc.get(key, "")) for key in ("OriginatingProgram", "ProgramVersion"))
    sources = [("EXIF ProcessingSoftware", metadata.exif.get("Image ProcessingSoftware")),
               ("EXIF Software", metadata.exif.get("Image Software")),
               ("XMP CreatorTool", metadata.xmp.get("xmp:CreatorTool")),
               ("IPTC OriginatingProgram", iptc_program.strip())]
    for source, value in sources:
        if isinstance(value, str) and value.strip() and not value.startswith("<"):
            named.setdefault(value.strip(), []).append(source)
    return named


def _is_editor(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in EDITORS)


def _is_scanner(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SCANNER_WORDS)


def software_findings(metadata: FileMetadata) -> list[Finding]:
    """The programs the file names, and an editor's name after a camera's or scanner's."""
    findings = []
    named = _software_names(metadata)
    for name, sources in named.items():
        if _is_editor(name):
            what = ("an image editor. Editors are part of ordinary archive work (cropping, levels, dust removal); "
                    "this says which program wrote the file, not what it changed")
        elif _is_scanner(name):
            what = "scanning software"
        else:
            what = "the program that wrote the file (or the firmware of the device that made it)"
        findings.append(Finding("software", f"The file names the software {name} ({_joined(sources)}): {what}.",
                                {source: name for source in sources}))
    device = _device(metadata)
    editors = [name for name in named if _is_editor(name)]
    if device and editors:
        findings.append(Finding(
            "software", f"The file was made by {device} and then written by {_joined(editors)}: it was saved again "
            "after it was captured or scanned.", {"device": device, "editors": editors}))
    return findings


def history_findings(metadata: FileMetadata) -> list[Finding]:
    """XMP ``xmpMM:History`` events and ``xmpMM:DerivedFrom``."""
    findings = []
    for number, event in enumerate(metadata.xmp_history, start=1):
        words = [event.action or "an event"]
        if event.parameters:
            words.append(f"({event.parameters})")
        if event.software_agent:
            words.append(f"by {event.software_agent}")
        if event.when:
            words.append(f"at {event.when}")
        if event.changed:
            words.append(f"changing {event.changed}")
        fields = {key: value for key, value in vars(event).items() if value}
        findings.append(Finding("history", f"Edit history, event {number}: {' '.join(words)}.", fields))
    if metadata.xmp_derived_from:
        reference = metadata.xmp_derived_from
        source = reference.get("filePath") or reference.get("documentID") or reference.get("instanceID") or ""
        findings.append(Finding("history", f"The file says it was derived from another document ({source}): it "
                                "was saved as a new file from an earlier one.", dict(reference)))
    legacy = metadata.xmp.get("photoshop:History")
    if isinstance(legacy, str) and legacy:
        findings.append(Finding("history", f"Photoshop's own history record: {legacy}",
                                {"photoshop:History": legacy}))
    if any(key.startswith("crs:") for key in metadata.xmp):
        settings = {key: value for key, value in metadata.xmp.items() if key.startswith("crs:")}
        findings.append(Finding("history", "The file carries Adobe Camera Raw or Lightroom development settings: "
                                "it went through a raw converter or Lightroom.", dict(list(settings.items())[:40])))
    return findings


def _device(metadata: FileMetadata) -> str:
    make = str(metadata.exif.get("Image Make") or metadata.xmp.get("tiff:Make") or "").strip()
    model = str(metadata.exif.get("Image Model") or metadata.xmp.get("tiff:Model") or "").strip()
    if model.lower().startswith(make.lower().split(" ")[0]) and make:
        make = ""
    return " ".join(part for part in (make, model) if part and not part.startswith("<"))


def device_findings(metadata: FileMetadata) -> list[Finding]:
    """The camera or scanner (make, model, lens, serial number)."""
    device = _device(metadata)
    if not device:
        return []
    keys = ("Image Make", "Image Model", "Exif LensModel", "Exif BodySerialNumber", "Exif LensMake",
            "Exif LensSerialNumber")
    fields = {key: metadata.exif[key] for key in keys if key in metadata.exif}
    kind = "scanner" if _is_scanner(device) else "camera or scanner"
    lens = f", lens {metadata.exif['Exif LensModel']}" if "Exif LensModel" in metadata.exif else ""
    return [Finding("device", f"Made by a {kind}: {device}{lens}.", fields)]


# (name, where the file keeps it, what it records)
_DATE_FIELDS = (
    ("EXIF DateTimeOriginal", "exif", "Exif DateTimeOriginal", "taken"),
    ("EXIF DateTimeDigitized", "exif", "Exif DateTimeDigitized", "digitised"),
    ("EXIF DateTime", "exif", "Image DateTime", "modified"),
    ("XMP exif:DateTimeOriginal", "xmp", "exif:DateTimeOriginal", "taken"),
    ("XMP photoshop:DateCreated", "xmp", "photoshop:DateCreated", "taken"),
    ("XMP xmp:CreateDate", "xmp", "xmp:CreateDate", "digitised"),
    ("XMP xmp:ModifyDate", "xmp", "xmp:ModifyDate", "modified"),
    ("XMP xmp:MetadataDate", "xmp", "xmp:MetadataDate", "metadata written"),
    ("IPTC DateCreated", "iptc", "DateCreated", "taken"),
    ("IPTC DigitalCreationDate", "iptc", "DigitalCreationDate", "digitised"),
)
_EXIF_DATE = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?)?"
                       r"(Z|[+-]\d{2}:?\d{2})?$")
_IPTC_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


@dataclass(frozen=True)
class _Moment:
    field: str
    meaning: str
    text: str
    when: dt.datetime  # naive, as written (local time unless ``zoned``)
    zoned: bool
    date_only: bool


def _parse_date(text: str) -> tuple[dt.datetime, bool, bool] | None:
    """(the moment, whether it carried a time zone (then in UTC), whether it gave only a day) or None."""
    text = text.strip()
    try:
        if match := _EXIF_DATE.match(text):
            return dt.datetime(*(int(part) for part in match.groups())), False, False
        if match := _ISO_DATE.match(text):
            year, month, day, hour, minute, second, zone = match.groups()
            moment = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                                 int(second or 0))
            if zone:
                offset = dt.timedelta(0) if zone == "Z" else (
                    (1 if zone[0] == "+" else -1) * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[-2:])))
                moment -= offset
            return moment, bool(zone), hour is None
        if match := _IPTC_DATE.match(text):
            return dt.datetime(*(int(part) for part in match.groups())), False, True
    except ValueError:  # 2009:02:30, a month 13: not a date
        return None
    return None


def _moments(metadata: FileMetadata) -> list[_Moment]:
    moments = []
    for name, where, key, meaning in _DATE_FIELDS:
        value = getattr(metadata, where).get(key)
        if isinstance(value, str) and value.strip() and not value.startswith("0000"):
            parsed = _parse_date(value)
            if parsed is not None:
                moments.append(_Moment(name, meaning, value, *parsed))
    return moments


def _gap(a: _Moment, b: _Moment) -> float:
    """Seconds from ``a`` to ``b``."""
    return (b.when - a.when).total_seconds()


def date_findings(metadata: FileMetadata, options: MetadataOptions) -> list[Finding]:
    """The dates the file records, and where they contradict each other.

    A date without a time zone is local time, so two fields may differ by a zone's offset (up to
    ``zone_slack_h`` hours) without contradicting each other; a date without a time of day compares by day.
    """
    moments = _moments(metadata)
    if not moments:
        return []
    listed = "; ".join(f"{m.meaning} {m.text} ({m.field})" for m in moments)
    findings = [Finding("dates", f"Dates in the file: {listed}. A scan records when the file was made, not when "
                        "the photograph was taken.", {m.field: m.text for m in moments})]
    slack = options.zone_slack_h * 3600.0

    def tolerance(a: _Moment, b: _Moment) -> float:
        if a.date_only or b.date_only:
            return 86400.0 + (0.0 if a.zoned and b.zoned else slack)
        return options.same_moment_s + (0.0 if a.zoned and b.zoned else slack)

    order = {"taken": 0, "digitised": 1, "modified": 2, "metadata written": 2}
    contradictions = []
    for first in moments:
        for second in moments:
            if first is second or first.field >= second.field and first.meaning == second.meaning:
                continue
            gap = _gap(first, second)
            if first.meaning == second.meaning and abs(gap) > tolerance(first, second):
                contradictions.append((first, second, f"both record when the file was {first.meaning}, "
                                       f"{_duration(abs(gap))} apart"))
            elif order[first.meaning] < order[second.meaning] and -gap > tolerance(first, second):
                contradictions.append((first, second, f"it was {second.meaning} {_duration(-gap)} before it was "
                                       f"{first.meaning}"))
    seen = set()
    for first, second, why in contradictions:
        key = frozenset((first.field, second.field))
        if key in seen:
            continue
        seen.add(key)
        findings.append(Finding(
            "dates", f"The dates disagree: {first.field} says {first.text} and {second.field} says {second.text}; "
            f"{why}. Clocks are often wrong and programs rewrite dates, but a file whose own records contradict "
            "each other has been through more than its dates tell.",
            {first.field: first.text, second.field: second.text}, notable=True))
    return findings


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} seconds"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.0f} days"


def encoder_findings(metadata: FileMetadata, tables: Mapping[int, Sequence[int]] | None) -> list[Finding]:
    """Which encoder's tables the JPEG carries, and whether that agrees with the software it names."""
    if not tables:
        return []
    match = identify_encoder(tables)
    fields: dict[str, Any] = {"match": match.to_dict(), "tables": {str(k): list(v) for k, v in tables.items()}}
    if match.family == LIBJPEG:
        quality = f"quality {match.quality}" + (f" (colour at {match.chroma_quality})" if match.chroma_quality
                                                else "")
        text = (f"The JPEG tables are libjpeg's standard tables at {quality}: the last program to save the file "
                "used libjpeg's quality scale (as Pillow, OpenCV, GIMP, ImageMagick and many scanner drivers and "
                "cameras do).")
        if match.presets:
            text += f" They also equal Pillow's '{_joined(match.presets)}' preset for Photoshop's settings."
    elif match.family == PHOTOSHOP:
        text = (f"The JPEG tables equal Pillow's '{_joined(match.presets)}' preset, which Pillow gives as "
                "equivalent to an Adobe Photoshop setting: the file was most likely last saved by Photoshop.")
    else:
        text = (f"The JPEG tables match no known encoder's (closest: libjpeg quality {match.closest_quality}, "
                f"{match.table_difference} apart on average): a camera or program with tables of its own.")
    findings = [Finding("encoder", text, fields)]
    named = list(_software_names(metadata))
    photoshop_named = [name for name in named if "photoshop" in name.lower()]
    if photoshop_named and match.family == LIBJPEG and not match.presets:
        findings.append(Finding(
            "encoder", f"The file names {_joined(photoshop_named)}, but its JPEG tables are libjpeg's, not "
            "Photoshop's: another program saved it after Photoshop, or kept Photoshop's metadata when it wrote it.",
            {"software": photoshop_named, "match": match.to_dict()}, notable=True))
    elif match.family == PHOTOSHOP and named and not photoshop_named:
        findings.append(Finding(
            "encoder", f"The JPEG tables are Photoshop's, but the software the file names is {_joined(named)}: "
            "Photoshop saved it last without naming itself, or that program uses Photoshop's tables.",
            {"software": named, "match": match.to_dict()}, notable=True))
    return findings


def credential_findings(metadata: FileMetadata) -> list[Finding]:
    """C2PA content credentials: present, signer, validation state, actions."""
    credentials = metadata.c2pa
    if credentials is None:
        return []
    fields = {key: value for key, value in vars(credentials).items() if value not in ("", [], 0)}
    if credentials.state == "Unreadable":
        return [Finding("credentials", f"The file carries C2PA content credentials that cannot be read "
                        f"({credentials.error}): they are damaged or not valid C2PA.", fields, notable=True)]
    signer = credentials.signer or "an unnamed signer"
    issuer = f" (certificate issued by {credentials.issuer})" if credentials.issuer else ""
    when = f" on {credentials.signed_at}" if credentials.signed_at else ""
    state = {
        "Trusted": "the signature and the image data check out, and the signer is on a trust list",
        "Valid": "the signature and the image data check out, but the signer is not on a trust list known here",
        "Invalid": "they do NOT validate: " + "; ".join(
            f"{failure['code']} ({failure['explanation']})" for failure in credentials.failures
            if not failure["code"].startswith("signingCredential.untrusted")) or "they do NOT validate",
    }.get(credentials.state, f"validation state {credentials.state}")
    findings = [Finding("credentials", f"The file carries C2PA content credentials signed by {signer}{issuer}{when}"
                        f", made with {credentials.claim_generator or 'an unnamed program'}: {state}.", fields,
                        notable=credentials.state == "Invalid")]
    if credentials.state == "Invalid" and any("dataHash.mismatch" in f["code"] for f in credentials.failures):
        findings.append(Finding("credentials", "The image data no longer match the content credentials: the file "
                                "was changed after it was signed.", {"failures": credentials.failures},
                                notable=True))
    if credentials.actions:
        listed = "; ".join(
            " ".join(part for part in (action["action"].removeprefix("c2pa."),
                                       f"by {action['software_agent']}" if action["software_agent"] else "",
                                       f"({action['digital_source_type']})" if action["digital_source_type"] else "")
                     if part) for action in credentials.actions)
        findings.append(Finding("credentials", f"Actions the content credentials record: {listed}.",
                                {"actions": credentials.actions}))
    return findings


def description_findings(metadata: FileMetadata) -> list[Finding]:
    """What the file says it shows and who made it (captions, credits, comments), and its colour profile."""
    findings = []
    described = {}
    for label, value in (("EXIF ImageDescription", metadata.exif.get("Image ImageDescription")),
                         ("EXIF UserComment", metadata.exif.get("Exif UserComment")),
                         ("EXIF Artist", metadata.exif.get("Image Artist")),
                         ("EXIF Copyright", metadata.exif.get("Image Copyright")),
                         *((f"IPTC {key}", metadata.iptc.get(key)) for key in
                           ("By-line", "Credit", "Source", "Caption-Abstract", "CopyrightNotice", "ObjectName")),
                         ("XMP dc:creator", metadata.xmp.get("dc:creator")),
                         ("XMP dc:description", metadata.xmp.get("dc:description"))):
        if value and not (isinstance(value, str) and value.startswith("<")):
            described[label] = value
    if described:
        listed = "; ".join(f"{label}: {value if isinstance(value, str) else ', '.join(map(str, value))}"
                           for label, value in described.items())
        findings.append(Finding("description", f"The file describes itself: {listed}.", described))
    if metadata.icc_profile:
        findings.append(Finding("colour", f"Colour profile: {metadata.icc_profile}.",
                                {"icc_profile": metadata.icc_profile}))
    return findings


def _hash_finding(image: np.ndarray) -> Finding:
    from retouch.hashing import perceptual_hash

    value = perceptual_hash(image)
    return Finding("hash", f"Perceptual hash (pHash) {value}: copies of this photograph in other files have "
                   "hashes a few bits apart (retouch batch --group-copies groups them).", {"phash": value})


def _decoded_thumbnail(data: bytes, options: MetadataOptions) -> np.ndarray | None:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(io.BytesIO(data)) as thumbnail:
                if thumbnail.width * thumbnail.height > options.max_thumbnail_pixels:
                    return None
                return np.asarray(thumbnail.convert("L" if thumbnail.mode in ("L", "1", "I;16") else "RGB"))
        except Exception:  # noqa: BLE001 - a damaged thumbnail is a finding, not a failure
            return None


def _thumbnail_comparison(picture: np.ndarray, where: str, data: bytes, options: MetadataOptions
                          ) -> tuple[Finding, tuple[np.ndarray, np.ndarray, list[Region], dict] | None]:
    """The finding about one embedded thumbnail and, when it was compared, the painted evidence."""
    from retouch.compare import compare_pair

    thumbnail = _decoded_thumbnail(data, options)
    if thumbnail is None:
        return Finding("thumbnail", f"The file holds an {where} ({len(data):,} bytes) that cannot be decoded as an "
                       "image.", {"where": where, "bytes": len(data)}, notable=True), None
    height, width = thumbnail.shape[:2]
    fields: dict[str, Any] = {"where": where, "width": width, "height": height}
    if not options.compare_thumbnail or max(height, width) < options.min_thumbnail_side:
        return Finding("thumbnail", f"The file holds an {where} of {width}x{height} pixels, too small to compare "
                       "with the picture.", fields), None
    shape = picture.shape[:2]
    scale = min(1.0, options.compare_scale * max(height, width) / max(shape))
    reduced = picture if scale >= 1.0 else cv2.resize(picture, None, fx=scale, fy=scale,
                                                      interpolation=cv2.INTER_AREA)
    try:
        comparison = compare_pair(thumbnail, reduced, false_alarms=options.thumbnail_false_alarms)
    except NotSamePhotographError:
        return Finding("thumbnail", f"The file holds an {where} of {width}x{height} pixels that could not be "
                       "aligned with the picture: it may show another picture (a thumbnail kept from a file whose "
                       "picture was replaced), or be too plain to align.", fields, notable=True), None
    except InputError as error:
        return Finding("thumbnail", f"The {where} could not be compared ({error}).", fields), None
    result = comparison.result
    fields["compared_fraction"] = result.details.get("compared_fraction")
    edits = [region for region in result.regions if region.kind != "damage"]  # specks are not edits
    if not edits:
        return Finding("thumbnail", f"The {where} ({width}x{height} pixels) was aligned with the picture and "
                       "shows the same content: no difference above the noise of this pair, at the thumbnail's "
                       "scale.", fields), None
    heatmap = upscale_to(result.heatmap, shape)
    edited = np.zeros_like(result.mask)
    for region in edits:
        x, y, w, h = region.bbox
        edited[y:y + h, x:x + w] = result.mask[y:y + h, x:x + w]
    mask = upscale_to(edited.astype(np.float32), shape) >= 0.5
    regions = [_picture_region(region, 1.0 / scale, mask, where) for region in edits]
    regions = [region for region in regions if region is not None]
    kinds = ", ".join(sorted({region.kind for region in regions}))
    images = {"thumbnail": to_uint8(thumbnail), "thumbnail aligned": to_uint8(comparison.aligned_reference),
              "picture at thumbnail scale": to_uint8(reduced)}
    finding = Finding("thumbnail", f"The {where} ({width}x{height} pixels) differs from the picture in "
                      f"{len(regions)} region(s) ({kinds}): the picture was probably changed after the thumbnail "
                      "was made. The regions are outlined on the picture.", {**fields, "regions": len(regions)},
                      notable=True)
    return finding, (heatmap, mask, regions, images)


def _picture_region(region: Region, factor: float, mask: np.ndarray, where: str) -> Region | None:
    """A region of the comparison at the thumbnail's scale, in the picture's pixels."""
    x, y, w, h = region.bbox
    height, width = mask.shape
    x0, y0 = int(np.floor(x * factor)), int(np.floor(y * factor))
    x1, y1 = min(width, int(np.ceil((x + w) * factor))), min(height, int(np.ceil((y + h) * factor)))
    if x1 <= x0 or y1 <= y0:
        return None
    area = int(np.count_nonzero(mask[y0:y1, x0:x1])) or (x1 - x0) * (y1 - y0)
    evidence = {key: value for key, value in region.evidence.items() if key != "bbox_reference"}
    evidence["cue"] = f"differs from the {where}"
    if "nfa" not in evidence:  # compare states none: the calibration of this comparison on untouched files
        evidence["nfa"] = round((CALIBRATION_FALSE_REGIONS + 3.0) / CALIBRATION_FILES, 4)
    evidence["false_alarm_control"] = (
        f"a difference far above this pair's own noise and larger than dust; on {CALIBRATION_FILES} untouched "
        f"files with their own thumbnails, {CALIBRATION_FALSE_REGIONS} such regions were marked (nfa is the 95 % "
        "upper bound of the rate per file)")
    return Region(bbox=(x0, y0, x1 - x0, y1 - y0), area=area, score=region.score, kind=region.kind,
                  evidence=evidence)
