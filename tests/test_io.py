"""The loader reads every supported format faithfully and refuses everything else with one clear line."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from retouch.errors import ImageTooLargeError, InputError
from retouch.io import atomic_write_bytes, atomic_write_json, load_image, load_image_bytes
from tests.helpers import image_bytes

RNG = np.random.default_rng(7)
RGB = (RNG.random((37, 53, 3)) * 255).astype(np.uint8)
GRAY = (RNG.random((37, 53)) * 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("fmt", "mode", "lossless"),
    [
        ("PNG", "RGB", True), ("PNG", "L", True), ("PNG", "RGBA", True), ("PNG", "P", True),
        ("TIFF", "RGB", True), ("TIFF", "L", True), ("TIFF", "RGBA", True), ("TIFF", "P", True),
        ("BMP", "RGB", True), ("BMP", "L", True), ("WEBP", "RGB", False), ("JPEG", "RGB", False),
        ("JPEG", "L", False), ("PNG", "1", True),
    ],
)
def test_loads_each_format_and_mode(tmp_path: Path, fmt: str, mode: str, lossless: bool) -> None:
    source = Image.fromarray(RGB)
    if mode == "L":
        source = Image.fromarray(GRAY)
    elif mode == "RGBA":
        source = Image.fromarray(np.dstack([RGB, np.full(GRAY.shape, 200, np.uint8)]))
    elif mode == "P":
        source = source.quantize(colors=64)
    elif mode == "1":
        source = Image.fromarray(GRAY).convert("1")
    data = image_bytes(source, fmt)
    path = tmp_path / f"image.{fmt.lower()}"
    path.write_bytes(data)
    loaded = load_image(path)
    assert loaded.format == ("WEBP" if fmt == "WEBP" else fmt)
    assert (loaded.height, loaded.width) == (37, 53)
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert loaded.data == data and loaded.file_size == len(data)
    assert loaded.pixels.dtype == np.uint8 and loaded.bit_depth == 8
    expected = np.asarray(source.convert("RGB"))
    if mode in {"L", "1"}:
        assert loaded.pixels.ndim == 2
    if mode == "RGBA":
        assert loaded.had_alpha and loaded.pixels.shape == (37, 53, 3)
    if not lossless:  # lossy: the loader must give exactly what the decoder gives
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(loaded.rgb8, expected)


@pytest.mark.parametrize("ext", [".png", ".tiff"])
@pytest.mark.parametrize("channels", [1, 3])
def test_keeps_16_bit_depth(tmp_path: Path, ext: str, channels: int) -> None:
    deep = (RNG.random((31, 29, channels)) * 65535).astype(np.uint16).squeeze()
    path = tmp_path / f"deep{ext}"
    bgr = deep if channels == 1 else cv2.cvtColor(deep, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), bgr)
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.pixels.dtype == np.uint16
    assert np.array_equal(loaded.pixels, deep)
    assert 0.0 <= loaded.gray.min() and loaded.gray.max() <= 1.0


@pytest.mark.parametrize("ext", [".png", ".tiff"])
@pytest.mark.parametrize(("channels", "largest", "used"), [(1, 4095, 12), (3, 1023, 10), (1, 3000, 12),
                                                          (3, 255, 8), (1, 16383, 14), (3, 16384, 0),
                                                          (3, 65535, 0), (1, 0, 0)])
def test_16_bit_samples_that_use_only_low_bits_are_shifted_up_and_the_report_says_so(
        tmp_path: Path, ext: str, channels: int, largest: int, used: int) -> None:
    # 12-bit scanner data stored unscaled in 16 bits were analysed at 16 grey levels (the top byte)
    stored = np.minimum((RNG.random((31, 29, channels)) * (largest + 1)).astype(np.uint16), largest).squeeze()
    stored.flat[0] = largest
    path = tmp_path / f"deep{ext}"
    assert cv2.imwrite(str(path), stored if channels == 1 else cv2.cvtColor(stored, cv2.COLOR_RGB2BGR))
    loaded = load_image(path)
    assert loaded.bit_depth == 16 and loaded.pixels.dtype == np.uint16 and loaded.used_bits == used
    assert np.array_equal(loaded.pixels, stored << (16 - used) if used else stored)
    record = loaded.describe()
    if used:
        assert record["used_bits"] == used and loaded.gray8.max() >= 128
        [note] = record["notes"]
        assert f"only the low {used} bits" in note and f"multiplied by {1 << (16 - used)}" in note
    else:
        assert "used_bits" not in record and record["notes"] == []


def test_a_16_bit_colour_png_without_its_end_chunk_keeps_its_depth_quietly(capfd: pytest.CaptureFixture[str]
                                                                           ) -> None:
    # OpenCV's libpng refuses a PNG without IEND, printing "libpng error: PNG input buffer is incomplete" beside a
    # successful run, and the loader then fell back to Pillow's 8-bit reading of the whole image
    deep = (RNG.random((31, 29, 3)) * 65535).astype(np.uint16)
    data = cv2.imencode(".png", cv2.cvtColor(deep, cv2.COLOR_RGB2BGR))[1].tobytes()
    assert data.endswith(b"IEND\xaeB`\x82")
    capfd.readouterr()
    loaded = load_image_bytes(data[:-12], name="unended.png")
    assert loaded.bit_depth == 16 and np.array_equal(loaded.pixels, deep)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_16_bit_tiff_with_separate_colour_planes_keeps_its_pixels(channels: int, compression: str | None) -> None:
    # OpenCV decodes this layout (PlanarConfiguration 2) into grey thumbnails of the planes without any error
    tifffile = pytest.importorskip("tifffile")
    deep = (RNG.random((40, 56, channels)) * 65535).astype(np.uint16)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.moveaxis(deep, -1, 0), photometric="rgb", planarconfig="separate",
                     compression=compression, extrasamples=[2] if channels == 4 else None)
    loaded = load_image_bytes(buffer.getvalue(), name="planes.tif")
    assert loaded.pixels.dtype == np.uint16 and loaded.pixels.shape == (40, 56, 3)
    assert np.array_equal(loaded.pixels, deep[:, :, :3])


def test_16_bit_rgba_tiff_from_opencv_loads_without_a_libtiff_warning(tmp_path: Path,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    # OpenCV writes RGBA TIFFs without the ExtraSamples tag; reading one back, its libtiff printed a warning line
    # to stderr (through OpenCV's log) beside a successful analysis
    deep = (RNG.random((31, 29, 4)) * 65535).astype(np.uint16)
    path = tmp_path / "deep.tiff"
    assert cv2.imwrite(str(path), deep)
    capfd.readouterr()
    loaded = load_image(path)
    assert loaded.pixels.dtype == np.uint16 and loaded.had_alpha
    assert np.array_equal(loaded.pixels, cv2.cvtColor(deep, cv2.COLOR_BGRA2RGB))
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("depth", [8, 16])
def test_a_damaged_compressed_tiff_is_refused_without_libtiff_printing(depth: int,
                                                                       capfd: pytest.CaptureFixture[str]) -> None:
    # Pillow silences libtiff's warnings but not its errors: "ZIPDecode: Decoding error at scanline 0, incorrect
    # data check." reached stderr before retouch's own line
    data = bytearray(image_bytes(Image.fromarray(GRAY.astype(np.uint16) * 257 if depth == 16 else RGB), "TIFF",
                                compression="tiff_adobe_deflate"))
    strip = Image.open(io.BytesIO(bytes(data))).tag_v2[273][0]
    data[strip + 20:strip + 30] = bytes(10)
    capfd.readouterr()
    with pytest.raises(InputError, match="corrupt TIFF data") as refused:
        load_image_bytes(bytes(data), name="damaged.tif")
    _assert_one_line_naming(refused.value, "damaged.tif")
    assert capfd.readouterr().err == ""


def test_jpeg_keeps_quantization_tables_and_subsampling(tmp_path: Path) -> None:
    path = tmp_path / "q.jpg"
    path.write_bytes(image_bytes(Image.fromarray(RGB), "JPEG", quality=75))
    loaded = load_image(path)
    assert set(loaded.jpeg_quantization) == {0, 1}
    # IJG quality 75 scales the standard luminance table by 0.5: its first entry 16 becomes 8.
    assert loaded.jpeg_quantization[0][0] == 8 and len(loaded.jpeg_quantization[0]) == 64
    assert loaded.jpeg_subsampling == "4:2:0"
    assert load_image_bytes(image_bytes(Image.fromarray(RGB), "PNG"), name="x.png").jpeg_quantization is None


@pytest.mark.parametrize("orientation", range(1, 9))
def test_applies_exif_orientation_like_pillow(tmp_path: Path, orientation: int) -> None:
    image = Image.fromarray(RGB)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    path.write_bytes(image_bytes(image, "PNG", exif=exif))
    loaded = load_image(path)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert loaded.exif_orientation == orientation
    assert np.array_equal(loaded.rgb8, expected)


_TRANSPOSE = {2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
              4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE],
              6: [Image.Transpose.ROTATE_270], 7: [Image.Transpose.TRANSVERSE], 8: [Image.Transpose.ROTATE_90]}


def _shown(stored: np.ndarray, orientation: int) -> np.ndarray:
    """``stored`` as the TIFF/EXIF orientation tag says to show it (the tag's definition, per channel)."""
    planes = stored.reshape(*stored.shape[:2], -1)
    shown = []
    for channel in range(planes.shape[2]):
        image = Image.fromarray(np.ascontiguousarray(planes[:, :, channel]))
        for step in _TRANSPOSE.get(orientation, []):
            image = image.transpose(step)
        shown.append(np.asarray(image))
    return np.dstack(shown) if stored.ndim == 3 else shown[0]


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
@pytest.mark.parametrize("kind", ["rgb", "gray", "rgb16", "rgb16-planes"])
def test_tiff_orientation_is_applied_once(orientation: int, kind: str) -> None:
    # Pillow (11 and later) turns a TIFF upright itself when it loads it, and OpenCV 5 does for 16-bit colour:
    # the loader then applied the Orientation tag a second time, so a scanner's TIFF tagged 6 came out upside
    # down (or 90 degrees off), in a frame no viewer shows
    stored = {"rgb": RGB, "gray": GRAY, "rgb16": RGB.astype(np.uint16) * 257 + 3,
              "rgb16-planes": RGB.astype(np.uint16) * 257 + 3}[kind]
    buffer = io.BytesIO()
    if kind in ("rgb", "gray"):
        Image.fromarray(stored).save(buffer, format="TIFF", tiffinfo={0x0112: orientation})
    else:
        tifffile = pytest.importorskip("tifffile")
        planar = kind.endswith("planes")
        tifffile.imwrite(buffer, np.moveaxis(stored, -1, 0) if planar else stored, photometric="rgb",
                         planarconfig="separate" if planar else "contig",
                         extratags=[(0x0112, "H", 1, orientation, True)])
    loaded = load_image_bytes(buffer.getvalue(), name="scan.tif")
    assert loaded.exif_orientation == orientation
    assert loaded.pixels.dtype == stored.dtype
    assert np.array_equal(loaded.pixels, _shown(stored, orientation))


def test_never_modifies_the_input(tmp_path: Path) -> None:
    path = tmp_path / "keep.jpg"
    path.write_bytes(image_bytes(Image.fromarray(RGB), "JPEG"))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    load_image(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def _assert_one_line_naming(error: InputError, name: str) -> None:
    message = str(error)
    assert "\n" not in message and name in message


def test_refuses_missing_empty_directory_and_text(tmp_path: Path) -> None:
    with pytest.raises(InputError) as missing:
        load_image(tmp_path / "nope.jpg")
    _assert_one_line_naming(missing.value, "nope.jpg")
    assert "no such file" in str(missing.value)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(empty)
    with pytest.raises(InputError, match="directory"):
        load_image(tmp_path)
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels\n")
    with pytest.raises(InputError, match="not a supported image") as wrong:
        load_image(text)
    _assert_one_line_naming(wrong.value, "notes.jpg")


def test_a_broken_or_looping_symbolic_link_is_named_as_a_link(tmp_path: Path) -> None:
    # "no such file; check the path" sent the user to a path that is plainly there (as a link)
    (tmp_path / "scan.jpg").symlink_to(tmp_path / "unmounted" / "scan.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    for name in ("scan.jpg", "loop.jpg"):
        with pytest.raises(InputError, match="is a symbolic link to nothing") as refused:
            load_image(tmp_path / name)
        _assert_one_line_naming(refused.value, name)


def test_refuses_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    path.write_bytes(image_bytes(Image.fromarray(RGB), "PNG"))

    def denied(*_args, **_kwargs):  # root reads any file, so deny the way a locked file would
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("retouch.io.load.open", denied, raising=False)
    with pytest.raises(InputError, match="permission denied") as refused:
        load_image(path)
    _assert_one_line_naming(refused.value, "locked.png")


def test_a_signed_8_bit_tiff_keeps_the_order_of_its_grey_levels() -> None:
    # Pillow gives signed 8-bit samples as raw bytes: -1 read as 255 beside 0, a scrambled picture was analysed
    tifffile = pytest.importorskip("tifffile")
    signed = (GRAY.astype(np.int16) - 128).astype(np.int8)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, signed)
    loaded = load_image_bytes(buffer.getvalue(), name="signed.tif")
    assert loaded.pixels.dtype == np.uint8 and np.array_equal(loaded.pixels, GRAY)


def test_refuses_float_images_with_nan_or_infinity() -> None:
    values = RNG.random((40, 50)).astype(np.float32)
    for bad in (np.nan, np.inf):
        broken = values.copy()
        broken[3, 4] = bad
        # before, the min/max stretch turned every pixel into 0 and the image was analysed as all black
        with pytest.raises(InputError, match="NaN or infinite") as refused:
            load_image_bytes(image_bytes(Image.fromarray(broken, mode="F"), "TIFF"), name="depth.tif")
        _assert_one_line_naming(refused.value, "depth.tif")
    assert load_image_bytes(image_bytes(Image.fromarray(values, mode="F"), "TIFF"), name="ok.tif").bit_depth == 16


def test_unreadable_variant_of_a_known_format_says_which_format() -> None:
    header_only = b"II*\x00" + bytes(20)  # a TIFF signature with no readable directory
    with pytest.raises(InputError, match="starts like a TIFF file but cannot be decoded") as refused:
        load_image_bytes(header_only, name="scan.tif")
    _assert_one_line_naming(refused.value, "scan.tif")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP", "BMP"])
def test_refuses_truncated_files(fmt: str) -> None:
    data = image_bytes(Image.fromarray((RNG.random((64, 64, 3)) * 255).astype(np.uint8)), fmt)
    for cut in (len(data) // 2, len(data) * 3 // 4):
        with pytest.raises(InputError) as refused:
            load_image_bytes(data[:cut], name=f"cut.{fmt.lower()}")
        _assert_one_line_naming(refused.value, f"cut.{fmt.lower()}")


@pytest.mark.parametrize("mode", ["RGB", "I;16", "P"])
def test_a_png_cut_short_and_padded_with_zeros_is_refused(mode: str) -> None:
    # Pillow skips the CRC of IDAT chunks: a PNG whose copy stopped part-way and was padded with zeros to its full
    # size (a preallocated download) decoded to a picture of garbage, which was analysed as a scan
    source = {"RGB": Image.fromarray(RGB), "I;16": Image.fromarray(GRAY.astype(np.uint16) * 257),
              "P": Image.fromarray(RGB).quantize(colors=64)}[mode]
    data = image_bytes(source, "PNG")
    for cut in (len(data) // 2, len(data) * 9 // 10):
        with pytest.raises(InputError, match="truncated or corrupt PNG data") as refused:
            load_image_bytes(data[:cut] + bytes(len(data) - cut), name="copying.png")
        _assert_one_line_naming(refused.value, "copying.png")
    assert load_image_bytes(data, name="whole.png").width == 53


def test_a_jpeg_header_followed_by_zeros_is_refused() -> None:
    # libjpeg reads zeros as valid image data and only warns that the end marker is missing: a JPEG whose copy
    # stopped part-way and was padded with zeros decoded to a picture of garbage, which was analysed as a scan
    data = image_bytes(Image.fromarray(RGB), "JPEG", quality=90)
    thumbnail = image_bytes(Image.fromarray(RGB[:8, :8]), "JPEG")
    # an embedded thumbnail's own end marker (here in a comment segment) must not pass for the image's
    with_thumbnail = data[:2] + b"\xff\xfe" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail + data[2:]
    for whole in (data, with_thumbnail):
        padded = whole[:whole.rindex(b"\xff\xda") + 40] + bytes(30000)
        with pytest.raises(InputError, match="truncated or corrupt JPEG data") as refused:
            load_image_bytes(padded, name="copying.jpg")
        _assert_one_line_naming(refused.value, "copying.jpg")
        assert load_image_bytes(whole + b"bytes after the end", name="whole.jpg").width == 53
    second = Image.fromarray(RGB[::-1].copy())
    multi = image_bytes(Image.fromarray(RGB), "MPO", save_all=True, append_images=[second])
    assert load_image_bytes(multi, name="stereo.mpo").format == "JPEG"


def test_a_progressive_jpeg_cut_after_a_comment_holding_an_end_marker_is_refused() -> None:
    # the end marker was searched for as bytes after the first scan, so a comment between the scans of a
    # progressive JPEG that happens to hold 0xFF 0xD9 passed for it; a file cut after it was then refused only by
    # Pillow's decoder, as "image file is truncated (0 bytes not processed)", without saying what to do
    data = image_bytes(Image.fromarray(RGB), "JPEG", quality=90, progressive=True)
    second_scan = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    comment = b"\xff\xfe\x00\x06\xff\xd9ok"
    whole = data[:second_scan] + comment + data[second_scan:]
    assert np.array_equal(load_image_bytes(whole, name="whole.jpg").pixels,
                          load_image_bytes(data, name="plain.jpg").pixels)
    # cut there and padded with zeros, which libjpeg reads as valid image data
    padded = whole[:second_scan + len(comment) + 40] + bytes(30000)
    ends_early = "the file ends before the image's end marker.*completely written"
    with pytest.raises(InputError, match=ends_early) as refused:
        load_image_bytes(padded, name="copying.jpg")
    _assert_one_line_naming(refused.value, "copying.jpg")


def test_refuses_decompression_bomb_before_decoding() -> None:
    # A 20000 x 20000 gray PNG of zeros compresses to a few hundred kilobytes: a classic bomb.
    bomb = image_bytes(Image.new("L", (20000, 20000)), "PNG")
    assert len(bomb) < 1_000_000
    with pytest.raises(ImageTooLargeError, match="decompression-bomb") as refused:
        load_image_bytes(bomb, name="bomb.png", max_pixels=50_000_000)
    _assert_one_line_naming(refused.value, "bomb.png")


def test_pixel_limit_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    data = image_bytes(Image.fromarray(RGB), "PNG")
    with pytest.raises(ImageTooLargeError):
        load_image_bytes(data, name="small.png", max_pixels=100)
    monkeypatch.setenv("RETOUCH_MAX_PIXELS", "1000")
    with pytest.raises(ImageTooLargeError):
        load_image_bytes(data, name="small.png")
    monkeypatch.setenv("RETOUCH_MAX_PIXELS", "5000")
    assert load_image_bytes(data, name="small.png").width == 53


_VALID = {fmt: image_bytes(Image.fromarray(RGB[:16, :16]), fmt) for fmt in ("JPEG", "PNG", "TIFF", "WEBP", "BMP")}


@settings(max_examples=120, deadline=15000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_VALID)), st.data())
def test_corrupted_bytes_end_in_documented_outcome(fmt: str, data: st.DataObject) -> None:
    """Random byte flips, truncations and garbage: a decoded image or an InputError, never anything else."""
    raw = bytearray(_VALID[fmt])
    action = data.draw(st.sampled_from(["flip", "truncate", "garbage", "splice"]))
    if action == "flip":
        for _ in range(data.draw(st.integers(1, 12))):
            index = data.draw(st.integers(0, len(raw) - 1))
            raw[index] = data.draw(st.integers(0, 255))
    elif action == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif action == "garbage":
        raw = bytearray(data.draw(st.binary(min_size=0, max_size=512)))
    else:
        start = data.draw(st.integers(0, len(raw)))
        raw[start:start] = data.draw(st.binary(min_size=1, max_size=64))
    try:
        loaded = load_image_bytes(bytes(raw), name=f"fuzz.{fmt.lower()}", max_pixels=4_000_000)
    except InputError as error:
        _assert_one_line_naming(error, f"fuzz.{fmt.lower()}")
    else:
        assert loaded.pixels.ndim in (2, 3) and loaded.pixels.size > 0


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "report.json"
    atomic_write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)

    def explode(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", explode)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new content")
    assert target.read_text().strip().startswith("{")  # old content intact
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]  # no temp file left behind


def test_atomic_write_syncs_the_temp_file_before_renaming_it(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # a rename that reaches the disk before the data leaves an empty report.json after a power cut: the data
    # must be flushed (fsync) before os.replace puts the file in place
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync")
        real_fsync(fd)

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        events.append("replace")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_bytes(tmp_path / "report.json", b"{}\n")
    assert events == ["fsync", "replace"]
    assert (tmp_path / "report.json").read_bytes() == b"{}\n"


def test_ctrl_c_during_an_atomic_write_leaves_no_temp_file(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # KeyboardInterrupt is not an Exception: the clean-up must catch BaseException to remove the temp file
    target = tmp_path / "report.json"
    target.write_text("old\n")

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new content")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_write_json_refuses_nan_and_writes_nothing(tmp_path: Path) -> None:
    # NaN (an AUC on a one-class mask) is not JSON: browsers' JSON.parse and strict readers reject the whole
    # report; the writer must refuse it rather than write ``NaN``
    target = tmp_path / "report.json"
    with pytest.raises(ValueError):
        atomic_write_json(target, {"pixel_auc": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_heatmap_to_uint8_rounds_to_the_nearest_level_and_clips() -> None:
    from retouch.io.write import heatmap_to_uint8

    heat = np.array([[0.0, 0.002, 0.25, 0.999], [1.0, 1.5, -0.2, 0.5 / 255]], np.float32)
    # nearest of the 256 levels, by hand: 0.51 -> 1, 63.75 -> 64, 254.745 -> 255; out of range clipped;
    # 0.5 / 255 lands a float32 hair either side of 0.5 and may go to 0 or 1
    got = heatmap_to_uint8(heat)
    assert got.dtype == np.uint8
    assert got[0].tolist() == [0, 1, 64, 255] and got[1, :3].tolist() == [255, 255, 0] and got[1, 3] in (0, 1)


@pytest.mark.parametrize("channels", [None, 3, 4])
def test_encode_png_keeps_rgb_channel_order(channels: int | None) -> None:
    # the arrays are RGB(A); OpenCV writes BGR(A): a missed conversion swaps red and blue in every overlay
    from retouch.io.write import encode_png

    shape = (9, 7) if channels is None else (9, 7, channels)
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(image))))
    np.testing.assert_array_equal(decoded, image)
    mask = image[..., 0] > 128 if channels else image > 128
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encode_png(mask)))), mask * np.uint8(255))
