"""The metadata analysis: findings read from the file (listed, never painted) and an embedded thumbnail compared
with the picture (painted where they differ); hostile metadata never raises or hangs. Every file is written by
the test."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from retouch.detect._encoders import LIBJPEG, PHOTOSHOP, UNKNOWN, identify_encoder, libjpeg_table
from retouch.detect.metadata import MetadataOptions, metadata_evidence
from retouch.io import load_image_bytes
from retouch.io.metadata import read_metadata
from retouch.run.pipeline import analyze_image
from retouch.samples import make_authentic, make_forgery
from retouch.samples.metadata import exif_block, iptc_segment, jpeg_bytes, with_exif, with_segment, xmp_packet

GRAY = np.full((96, 96), 128, np.uint8)


def _analysed(data: bytes, **options: object):
    loaded = load_image_bytes(data, name="test.jpg")
    return metadata_evidence(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, file_data=data,
                             options=MetadataOptions(**options) if options else None)


def _thumbnail_of(picture: np.ndarray, side: int = 160) -> bytes:
    height, width = picture.shape[:2]
    size = (side, round(side * height / width))
    return jpeg_bytes(cv2.resize(picture, size, interpolation=cv2.INTER_AREA), quality=80)


def _texts(result) -> str:
    return "\n".join(finding.text for finding in result.findings)


# --- the embedded thumbnail -------------------------------------------------------------------------------------

def test_thumbnail_of_the_unedited_picture_outlines_the_region_painted_out() -> None:
    case = make_forgery(1, method="airbrush", size=640, area_fraction=0.05)
    data = with_exif(jpeg_bytes(case.image, quality=92), exif_block(thumbnail=_thumbnail_of(case.original)))
    result = _analysed(data)
    assert result.regions, _texts(result)
    hits = int(np.count_nonzero(result.mask & case.mask))
    assert hits >= 0.6 * case.mask.sum(), "most of the painted-out figure is outlined"
    assert hits >= 0.5 * result.mask.sum(), "and most of what is outlined lies on it"
    largest = max(result.regions, key=lambda region: region.area)
    x, y, w, h = largest.bbox
    assert case.mask[y:y + h, x:x + w].any()
    assert {"nfa", "false_alarm_control"} <= set(largest.evidence)
    assert result.score > 0.5 and any(f.kind == "thumbnail" and f.notable for f in result.findings)
    assert {"thumbnail", "thumbnail aligned"} <= set(result.images), "the small compare report's pictures"


@pytest.mark.parametrize("seed", [1, 2])
def test_untouched_picture_with_its_own_thumbnail_is_not_painted(seed: int) -> None:
    case = make_authentic(seed, size=640)
    data = with_exif(jpeg_bytes(case.image, quality=92), exif_block(thumbnail=_thumbnail_of(case.image)))
    result = _analysed(data)
    assert not result.regions and not result.mask.any() and result.score == 0.0
    assert "shows the same content" in _texts(result)


def test_thumbnail_of_another_picture_is_a_finding_not_a_region() -> None:
    picture = make_authentic(3, size=480, source="camera").image
    other = make_authentic(4, size=480, source="coffee").image
    data = with_exif(jpeg_bytes(picture, quality=92), exif_block(thumbnail=_thumbnail_of(other)))
    result = _analysed(data)
    assert not result.mask.any()
    assert any(f.kind == "thumbnail" and f.notable for f in result.findings), _texts(result)


# --- findings that are listed, not painted -----------------------------------------------------------------------

def test_xmp_history_names_the_edits_and_nothing_is_painted() -> None:
    history = [{"action": "created", "softwareAgent": "EPSON Scan 3.9", "when": "2003-04-05T10:00:00+02:00"},
               {"action": "saved", "softwareAgent": "Adobe Photoshop CS2 Windows", "when": "2004-01-02T11:00:00",
                "changed": "/"},
               {"action": "converted", "parameters": "from image/tiff to image/jpeg"}]
    packet = xmp_packet({"xmp:CreatorTool": "Adobe Photoshop CS2 Windows"}, history=history,
                        derived_from={"documentID": "xmp.did:0123", "filePath": "scan_0042.tif"})
    result = _analysed(jpeg_bytes(GRAY, xmp=packet))
    history_texts = [f.text for f in result.findings if f.kind == "history"]
    assert any("saved by Adobe Photoshop CS2 Windows" in text for text in history_texts), history_texts
    assert any("converted (from image/tiff to image/jpeg)" in text for text in history_texts)
    assert any("scan_0042.tif" in text for text in history_texts), "derived from"
    software = [f for f in result.findings if f.kind == "software"]
    assert software and "not what it changed" in software[0].text
    assert not result.mask.any() and not result.regions and result.score == 0.0
    assert not any(word in _texts(result).lower() for word in ("forged", "forgery", "fake", "manipulated"))


def test_editing_software_on_an_authentic_photograph_marks_nothing_after_fusion() -> None:
    case = make_authentic(5, size=320)
    exif = exif_block(software="Adobe Photoshop 7.0", make="EPSON", model="Perfection V700 Photo")
    data = with_exif(jpeg_bytes(case.image, quality=90), exif)
    loaded = load_image_bytes(data, name="scan.jpg")
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors="metadata",
                        file_data=data)
    metadata = run.results[0]
    assert metadata.findings and not metadata.mask.any() and not metadata.regions
    assert not run.fused.regions and not run.fused.mask.any() and run.fused.score < 0.5
    assert any("made by EPSON Perfection V700 Photo and then written by Adobe Photoshop 7.0" in f.text
               for f in metadata.findings), _texts(metadata)


def test_dates_that_contradict_each_other_are_a_notable_finding() -> None:
    contradictory = exif_block(taken="2012:05:03 10:00:00", modified="2012:05:01 09:00:00")
    result = _analysed(with_exif(jpeg_bytes(GRAY), contradictory))
    notable = [f for f in result.findings if f.kind == "dates" and f.notable]
    assert notable and "2 days before it was taken" in notable[0].text
    assert notable[0].fields == {"EXIF DateTimeOriginal": "2012:05:03 10:00:00",
                                 "EXIF DateTime": "2012:05:01 09:00:00"}


def test_consistent_dates_and_a_time_zone_apart_are_not_contradictions() -> None:
    # EXIF's local 16:00 and XMP's 10:00 UTC are one moment six hours east of Greenwich
    packet = xmp_packet({"xmp:ModifyDate": "2012-05-03T10:00:00Z"})
    exif = exif_block(taken="2012:05:03 09:00:00", digitized="2012:05:03 09:00:00", modified="2012:05:03 16:00:00")
    result = _analysed(with_exif(jpeg_bytes(GRAY, xmp=packet), exif))
    assert any(f.kind == "dates" for f in result.findings)
    assert not any(f.notable for f in result.findings if f.kind == "dates"), _texts(result)


def test_iptc_caption_and_credit_are_listed() -> None:
    data = with_segment(jpeg_bytes(GRAY), 0xED, iptc_segment({80: "Ya. Khaldei", 110: "TASS", 120: "Berlin"}))
    result = _analysed(data)
    described = [f for f in result.findings if f.kind == "description"]
    assert described and described[0].fields["IPTC By-line"] == "Ya. Khaldei"
    assert described[0].fields["IPTC Credit"] == "TASS"


# --- the encoder's tables ----------------------------------------------------------------------------------------

def test_libjpeg_tables_follow_the_ijg_scaling_of_the_standard_tables() -> None:
    annex_k_luminance_corner = [16, 11, 10, 16, 24, 40, 51, 61]  # ITU T.81 Table K.1, first row
    base = libjpeg_table(np.array(annex_k_luminance_corner + [1] * 56), 50)
    assert base[:8].tolist() == annex_k_luminance_corner
    for quality in (5, 30, 50, 75, 87, 95, 100):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality=quality)
        match = identify_encoder(Image.open(buffer).quantization)
        assert (match.family, match.quality, match.chroma_quality) == (LIBJPEG, quality, None)


def test_photoshop_tables_and_unknown_tables_are_told_apart() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality="high")  # Pillow's preset for a Photoshop setting
    match = identify_encoder(Image.open(buffer).quantization)
    assert match.family == PHOTOSHOP and match.presets == ("high",)
    custom = {0: [3] * 64, 1: [5] * 64}
    assert identify_encoder(custom).family == UNKNOWN


def test_photoshop_named_but_saved_with_libjpeg_tables_is_notable() -> None:
    data = with_exif(jpeg_bytes(GRAY, quality=83), exif_block(software="Adobe Photoshop CC 2019 (Windows)"))
    result = _analysed(data)
    encoder = [f for f in result.findings if f.kind == "encoder"]
    assert "quality 83" in encoder[0].text
    assert any(f.notable and "libjpeg's, not Photoshop's" in f.text for f in encoder)


# --- C2PA content credentials ------------------------------------------------------------------------------------

def _test_signer():
    """A signer with a two-certificate chain made here (a test CA and an end-entity certificate for
    C2PA's email-protection purpose), so signing needs no network and no certificate from anywhere."""
    c2pa = pytest.importorskip("c2pa")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def certificate(subject: str, key, issuer: str, issuer_key, authority: bool) -> x509.Certificate:
        now = dt.datetime.now(dt.timezone.utc)
        usage = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                               "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
                              False)
        usage.update({"key_cert_sign": True, "crl_sign": True} if authority else {"digital_signature": True})
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject),
                                            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "retouch tests")]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer),
                                           x509.NameAttribute(NameOID.ORGANIZATION_NAME, "retouch tests")]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=authority, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(**usage), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if not authority:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                                            critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    authority_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    authority = certificate("retouch test CA", authority_key, "retouch test CA", authority_key, True)
    signer = certificate("retouch test signer", signer_key, "retouch test CA", authority_key, False)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (signer, authority))
    key = signer_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    return c2pa, c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", chain, key, None))


def _signed(jpeg: bytes) -> bytes:
    c2pa, signer = _test_signer()
    manifest = {"claim_generator_info": [{"name": "retouch tests", "version": "1"}], "title": "signed.jpg",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                    {"action": "c2pa.created",
                     "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"},
                    {"action": "c2pa.color_adjustments", "softwareAgent": "Lightroom"}]}}]}
    destination = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(jpeg), destination)
    return destination.getvalue()


def test_c2pa_signed_file_names_its_signer_state_and_actions() -> None:
    data = _signed(jpeg_bytes(make_authentic(6, size=128).image))
    result = _analysed(data)
    credentials = [f for f in result.findings if f.kind == "credentials"]
    assert credentials, _texts(result)
    assert "signed by retouch test signer" in credentials[0].text
    assert "not on a trust list" in credentials[0].text and not credentials[0].notable
    assert any("color_adjustments by Lightroom" in f.text for f in credentials)
    assert not result.mask.any()


def test_c2pa_file_changed_after_signing_no_longer_validates() -> None:
    signed = bytearray(_signed(jpeg_bytes(make_authentic(7, size=128).image)))
    signed[-200] ^= 0x5A  # a byte of the image data, after the manifest
    result = _analysed(bytes(signed))
    credentials = [f for f in result.findings if f.kind == "credentials"]
    assert any(f.notable and "changed after it was signed" in f.text for f in credentials), _texts(result)


# --- hostile metadata ----------------------------------------------------------------------------------------------

_HEADER = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8)


def _ifd(*entries: tuple[int, int, int, int], next_ifd: int = 0) -> bytes:
    return (struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *entry) for entry in entries)
            + struct.pack("<I", next_ifd))


@pytest.mark.parametrize("block", [
    _HEADER + _ifd((0x8769, 4, 1, 26)) + _ifd((0x927C, 7, 0xFFFFFFF0, 100)),  # a MakerNote of 4 billion bytes
    _HEADER + _ifd((0x0111, 3, 0xFFFFFFF0, 8)),  # 4 billion strip offsets
    _HEADER + _ifd((0x8769, 4, 1, 26)) + _ifd((0x8825, 4, 1, 8), (0xA005, 4, 1, 26)),  # directories in a loop
    _HEADER + _ifd((0x010F, 2, 4, 0x00414141), next_ifd=8),  # a chain of directories back to itself
    _HEADER + struct.pack("<H", 65535),  # 65535 entries in a few bytes
    _HEADER + _ifd((0x0131, 2, 4000, 0x7FFFFFFF)),  # a value far past the end
    _HEADER + _ifd((0x0201, 4, 1, 0x7FFFFFF0), (0x0202, 4, 1, 0x7FFFFFF0)),  # a thumbnail past the end (IFD0)
], ids=["makernote", "strips", "subdirectory-loop", "chain-loop", "entries", "offset", "thumbnail"])
def test_malformed_exif_is_read_without_raising(block: bytes) -> None:
    data = with_exif(jpeg_bytes(GRAY), block)
    metadata = read_metadata(data)
    assert metadata.format == "JPEG"
    result = _analysed(data)
    assert not result.mask.any()


def test_a_thumbnail_pointing_past_its_block_is_a_note() -> None:
    block = exif_block(thumbnail=jpeg_bytes(GRAY[:64, :64]))
    lying = block[:-10]  # the thumbnail's length now reaches past the block
    metadata = read_metadata(with_exif(jpeg_bytes(GRAY), lying))
    assert not metadata.thumbnails and any("outside the EXIF block" in note for note in metadata.notes)


def test_huge_xmp_and_xml_entities_are_notes_not_parsed() -> None:
    laughs = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
              b']><x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>')
    metadata = read_metadata(jpeg_bytes(GRAY, xmp=laughs))
    assert any("document type" in note for note in metadata.notes) and not metadata.xmp
    huge = xmp_packet({"xmp:CreatorTool": "x" * 100}) + b" " * (5 << 20)
    metadata = read_metadata(_png_with_xmp(huge))
    assert any("over the" in note for note in metadata.notes) and not metadata.xmp


def _png_with_xmp(packet: bytes) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode("utf-8"))
    buffer = io.BytesIO()
    Image.fromarray(GRAY).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def test_deeply_nested_xmp_is_read_or_noted() -> None:
    depth = 200_000
    nested = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              b'<rdf:Description>' + b"<a>" * depth + b"</a>" * depth + b"</rdf:Description></rdf:RDF></x:xmpmeta>")
    metadata = read_metadata(_png_with_xmp(nested))
    assert metadata.format == "PNG"
    json.dumps(metadata.to_dict())


def test_invalid_c2pa_is_a_finding() -> None:
    box = struct.pack(">I", 40) + b"jumb" + struct.pack(">I", 32) + b"jumdc2pa" + b"\x00" * 24
    data = with_segment(jpeg_bytes(GRAY), 0xEB, b"JP\x00\x00\x00\x00\x00\x01" + box)
    result = _analysed(data)  # whatever c2pa makes of it, the analysis lists it and paints nothing
    assert not result.mask.any()
    credentials = [f for f in result.findings if f.kind == "credentials"]
    assert all(f.notable for f in credentials)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=600))
def test_random_exif_bytes_never_raise(payload: bytes) -> None:
    data = with_exif(jpeg_bytes(GRAY), _HEADER + payload)
    metadata = read_metadata(data)
    assert isinstance(metadata.notes, list)
    json.dumps(metadata.to_dict())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_xmp_never_raises(text: str) -> None:
    packet = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">' + text.encode("utf-8", "surrogatepass") + b"</x:xmpmeta>"
    metadata = read_metadata(jpeg_bytes(GRAY, xmp=packet))
    json.dumps(metadata.to_dict())


def test_without_the_file_the_analysis_does_not_apply() -> None:
    result = metadata_evidence(GRAY)
    assert result.skipped and not result.mask.any()


def test_the_hash_of_a_file_without_a_thumbnail_is_recorded_without_loading_the_pair_comparison() -> None:
    # importing retouch.compare (registration, models, scipy.ndimage) cost each fresh `retouch analyze` its share
    probe = ("import sys; from retouch.detect.metadata import metadata_evidence; "
             "from retouch.samples.metadata import jpeg_bytes; from retouch.io import load_image_bytes; "
             "import numpy as np; data = jpeg_bytes(np.random.default_rng(0).integers(0, 256, (96, 128), np.uint8)); "
             "image = load_image_bytes(data, name='probe.jpg'); "
             "result = metadata_evidence(image.pixels, file_data=data); "
             "print([f.fields.get('phash') for f in result.findings if f.kind == 'hash'], "
             "'retouch.compare' in sys.modules)")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                           check=True).stdout.split()
    assert len(shown[0]) == len("['0123456789abcdef']") and shown[1] == "False", shown
