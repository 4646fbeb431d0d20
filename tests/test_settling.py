"""JPEG settling: the block change on recompression against its definition, the ghost quality of a picture saved
twice, a piece with another history found in a photograph saved twice and again, untouched JPEGs and PNGs left
alone."""

from __future__ import annotations


import cv2
import numpy as np
import pytest
from skimage import data

from retouch.detect._recompress import recompression_block_sqdiff
from retouch.detect.settling import (
    REFERENCE_SHIFTS,
    _central_crop,
    _dips,
    _median_changes,
    earlier_compression,
    jpeg_settling,
    luminance_changes,
    plateau_extent,
    region_decision,
    settling_change,
    resaved,
    settling_quality,
)
from retouch.metrics import f1_score, pixel_auc
from tests.helpers import image_bytes, jpeg_round_trip


def _saved(pixels: np.ndarray, *qualities: int) -> np.ndarray:
    for quality in qualities:
        pixels = jpeg_round_trip(pixels, quality)
    return pixels


def _splice(host: str, host_saves: tuple[int, ...], piece_quality: int, last: int | None, *, shift: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """The photograph ``host`` saved at each of ``host_saves``, a piece of the coffee photograph saved once at
    ``piece_quality`` pasted in (``shift`` rows off the 8-pixel grid), the whole saved again at ``last`` (not
    saved again when None)."""
    base = _saved(getattr(data, host)(), *host_saves).copy()
    piece = jpeg_round_trip(data.coffee(), piece_quality)[96:256, 200:360]
    top, left = 120 + shift, 40
    base[top: top + 160, left: left + 160] = piece
    truth = np.zeros(base.shape[:2], bool)
    truth[top: top + 160, left: left + 160] = True
    return (base if last is None else jpeg_round_trip(base, last)), truth


def test_block_change_matches_a_whole_picture_recompression() -> None:
    pixels = cv2.cvtColor(_saved(data.astronaut(), 80), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 85])
    decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR).astype(np.float64)
    squared = ((pixels.astype(np.float64) - decoded) ** 2).mean(axis=2)
    expected = squared.reshape(64, 8, 64, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(recompression_block_sqdiff(pixels, 85), expected, rtol=1e-5, atol=1e-5)


def test_offgrid_change_is_the_mean_of_the_four_shifted_blocks() -> None:
    gray = cv2.cvtColor(_saved(data.astronaut(), 80), cv2.COLOR_RGB2GRAY)
    aligned, offgrid = settling_change(gray, 70)
    shifted = recompression_block_sqdiff(gray[4:, 4:], 70)
    assert np.isnan(offgrid[0]).all() and np.isnan(offgrid[:, -1]).all()
    row, col = 10, 20
    expected = shifted[row - 1: row + 1, col - 1: col + 1].mean()
    assert offgrid[row, col] == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(aligned, recompression_block_sqdiff(gray, 70))


def test_the_ghost_quality_is_the_earlier_save_not_the_last() -> None:
    pixels = cv2.cvtColor(_saved(data.astronaut(), 70, 95), cv2.COLOR_RGB2BGR)
    quality, dip, last = settling_quality(pixels, (40, 98))
    assert last == 95  # the picture reproduces itself at its last quality
    assert abs(quality - 70) <= 1 and dip < 0.9


def test_the_luminance_sweep_measured_once_answers_as_each_test_measuring_its_own() -> None:
    pixels = cv2.cvtColor(_saved(data.astronaut(), 65, 88), cv2.COLOR_RGB2BGR)
    gray = np.ascontiguousarray(cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY))
    sweep = luminance_changes(pixels, (40, 98))
    assert settling_quality(pixels, (40, 98), luminance=sweep) == settling_quality(pixels, (40, 98))
    assert settling_quality(gray, (40, 98), luminance=sweep) == settling_quality(gray, (40, 98))
    assert earlier_compression(gray, (40, 98), luminance=sweep) == earlier_compression(gray, (40, 98))


def test_a_reference_recompressed_below_the_last_quality_only_dips_as_over_every_quality() -> None:
    gray = cv2.cvtColor(_saved(data.astronaut(), 65, 88), cv2.COLOR_RGB2GRAY)
    history = earlier_compression(gray, (40, 98), references=1)
    last, sought = history["last_quality"], np.arange(40, 99)
    every_quality = _median_changes(resaved(_central_crop(gray, 520, REFERENCE_SHIFTS[0]), last), sought)
    assert history["reference_dips"] == [round(float(_dips(every_quality)[sought < last - 2].min()), 4)]


def test_a_region_is_decided_on_its_summed_evidence_not_its_peak() -> None:
    z = np.zeros((60, 60), np.float32)
    z[10:30, 10:30] = 1.5  # 400 blocks a little above the rest: no block alone is improbable
    z[45, 45] = 3.0
    decision = region_decision(z, tests=400, margin=1.0, nfa_threshold=0.01, level=1.0, min_blocks=6)
    assert decision.mask[10:30, 10:30].all() and decision.mask.sum() == 400
    assert decision.peak_z == pytest.approx(1.5 * 400 / np.sqrt(9 * 400))
    small = np.zeros_like(z)
    small[10:16, 10:16] = 1.5  # 36 such blocks: evidence 3, about 0.5 such regions expected by chance
    small[45, 45] = 4.0  # one strong block is no region
    weak = region_decision(small, tests=400, margin=1.0, nfa_threshold=0.01, level=1.0, min_blocks=6)
    assert not weak.mask.any() and 0.1 < weak.best_nfa < 1


@pytest.mark.parametrize("host, host_saves, piece_quality, last, shift", [
    ("astronaut", (70, 85), 95, 92, 0),
    ("astronaut", (75, 75), 90, 95, 0),
    ("astronaut", (70, 90), 90, 95, 4),
    ("chelsea", (75, 90), 85, 90, 0),
])
def test_a_piece_with_another_history_is_found(host: str, host_saves: tuple[int, ...], piece_quality: int,
                                                last: int, shift: int) -> None:
    pixels, truth = _splice(host, host_saves, piece_quality, last, shift=shift)
    result = jpeg_settling(pixels)
    assert result.skipped is None
    assert f1_score(result.mask, truth) > 0.5
    assert truth[result.mask].mean() > 0.7  # what it marks lies on the piece
    assert pixel_auc(result.heatmap, truth) > 0.9
    assert result.regions and all(r.kind == "jpeg-ghost" and r.evidence["nfa"] <= 0.01 for r in result.regions)
    assert result.score > 0.5


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "camera"])
@pytest.mark.parametrize("saves", [(75,), (95,), (65, 92), (70, 85, 92)])
def test_untouched_jpegs_are_not_marked(name: str, saves: tuple[int, ...]) -> None:
    result = jpeg_settling(_saved(getattr(data, name)(), *saves))
    assert not result.mask.any() and not result.regions
    assert result.score < 0.5


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_a_png_never_compressed_is_not_marked(name: str) -> None:
    result = jpeg_settling(getattr(data, name)())
    assert not result.mask.any()
    assert result.skipped is None or "grid" in result.skipped


def test_the_pipeline_reports_the_piece_from_a_png_of_decoded_pixels() -> None:
    from retouch.io import load_image_bytes
    from retouch.run.pipeline import analyze_image

    pixels, truth = _splice("astronaut", (75, 75), 90, 95)
    # decoded pixels kept losslessly, as CASIA v1's files are
    loaded = load_image_bytes(image_bytes(pixels, "PNG"), name="splice.png")
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors="settling")
    assert f1_score(run.fused.mask, truth) > 0.5
    assert any(r.kind == "jpeg-ghost" for r in run.results[0].regions)


def test_the_newcomers_painted_out_stars_do_not_share_the_photographs_ghost() -> None:
    """Issue 23's newcomer case: the astronaut saved at quality 75, the flag's stars painted out with cv2.inpaint,
    saved at 90. The painted area never settled at 75."""
    first = jpeg_round_trip(data.astronaut(), 75)
    canton = np.zeros(first.shape[:2], bool)
    canton[:115, :62] = True  # the flag's blue field with its stars
    stars = cv2.dilate((canton & (first[..., 0] > 90)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    painted = cv2.inpaint(first, stars.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    result = jpeg_settling(jpeg_round_trip(painted, 90))
    assert result.regions and result.score > 0.5
    assert result.mask[stars].mean() > 0.5  # most of the painted stars are marked
    assert result.mask[~canton].mean() < 0.01  # and almost nothing outside the flag's field
    assert not jpeg_settling(jpeg_round_trip(first, 90)).mask.any()


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
def test_only_a_picture_compressed_before_its_last_save_opens_the_history_test(name: str) -> None:
    pixels = getattr(data, name)()
    to_bgr = (lambda p: cv2.cvtColor(p, cv2.COLOR_RGB2BGR)) if pixels.ndim == 3 else (lambda p: p)
    once = earlier_compression(to_bgr(_saved(pixels, 85)), (40, 98))
    twice = earlier_compression(to_bgr(_saved(pixels, 65, 85)), (40, 98))
    assert not once["open"] and once["dip"] >= min(once["reference_dips"])
    assert twice["open"] and twice["dip"] < min(twice["reference_dips"])
    assert once["last_quality"] == twice["last_quality"] == 85


@pytest.mark.parametrize("seed", [5, 6])
def test_a_print_retouched_and_scanned_once_is_not_judged(seed: int) -> None:
    """A retouched print scanned once to JPEG has no compression before the scan, so no piece of it can lack
    one: whatever settling would mark there is a false alarm (these two scans were marked off the edit when
    every picture was judged)."""
    from retouch.io import load_image_bytes
    from retouch.samples import make_forgery

    case = make_forgery(seed, method="airbrush", size=512, history="print")
    assert case.file_format == "JPEG"
    result = jpeg_settling(load_image_bytes(case.file_bytes, name="scan.jpg").pixels)
    assert result.skipped is None and not result.details["earlier_compression"]["open"]
    assert not result.mask.any() and not result.regions and result.score < 0.5
    assert "Not judged" in result.summary
    assert result.details["judged"] is False  # what fusion reads: no candidate of it enters the image score


def test_a_decided_region_is_trimmed_to_its_piece_whatever_its_strength() -> None:
    step = np.zeros((48, 48), np.float32)
    step[6:18, 8:30] = 6.0  # a piece of strong blocks
    step[28:38, 26:40] = 2.0  # and a weak one
    pooled = cv2.blur(step, (3, 3), borderType=cv2.BORDER_REFLECT)
    grown = pooled > 0.5  # what a fixed level keeps: a block past each edge
    assert grown.sum() > (step > 0).sum()
    np.testing.assert_array_equal(plateau_extent(pooled, grown), step > 0)


def _scratched_scan(name: str, brightness: int) -> np.ndarray:
    """A gray photograph from scikit-image with film grain and a one-pixel vertical scratch of ``brightness``."""
    pixels = getattr(data, name)()
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    grainy = pixels.astype(np.float32) + np.random.default_rng(3).normal(0.0, 5.0, pixels.shape)
    grainy[:, pixels.shape[1] // 7 + 3] = brightness
    return np.clip(grainy, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name, brightness, first, last", [
    ("camera", 200, 66, 80),
    ("brick", 235, 66, 80),
    ("camera", 235, 61, 77),
])
@pytest.mark.parametrize("from_file", [True, False])
def test_a_thin_scratch_on_a_scan_saved_twice_is_not_marked(name: str, brightness: int, first: int, last: int,
                                                            from_file: bool) -> None:
    """A later save moves a one-pixel line far from the earlier save's fixed point, more than smooth content; the
    same pixels off the grid do not show that, the picture given its own history again does. The off-grid model
    alone marked these scratches from top to bottom."""
    from retouch.io import load_image_bytes

    saved = image_bytes(jpeg_round_trip(_scratched_scan(name, brightness), first), "JPEG", quality=last)
    loaded = load_image_bytes(saved, name="scan.jpg")
    tables = loaded.jpeg_quantization if from_file else None
    result = jpeg_settling(loaded.pixels, jpeg_quantization=tables)
    assert result.details["earlier_compression"]["open"]  # judged: the scan was saved twice
    assert result.details["content_model"].startswith("re-history")
    assert not result.mask.any() and not result.regions
    if name == "brick":
        assert jpeg_settling(loaded.pixels, content_model="offgrid").mask.any()


def test_the_generated_scan_with_a_film_scratch_is_marked_on_its_edit_only() -> None:
    """The quality benchmark's 8th digital case (seed 700007): a grace_hopper scan with a thin vertical scratch,
    saved at 61, a clone stamp, saved at 77. The scratch was marked top to bottom (NFA 9e-44)."""
    from retouch.io import load_image_bytes
    from retouch.samples import make_forgery

    case = make_forgery(700007, method="clone", size=768, history="digital")
    loaded = load_image_bytes(case.file_bytes, name="scan.jpg")
    result = jpeg_settling(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization)
    near_edit = cv2.dilate(case.mask.astype(np.uint8), np.ones((33, 33), np.uint8)) > 0
    assert f1_score(result.mask, case.mask) > 0.8
    assert not result.mask[~near_edit].any()


@pytest.mark.parametrize("host, host_saves, piece_quality, last", [
    ("astronaut", (70, 85), 95, 92),
    ("chelsea", (75, 90), 85, 90),
])
def test_a_piece_with_another_history_is_found_with_the_files_tables(host: str, host_saves: tuple[int, ...],
                                                                     piece_quality: int, last: int) -> None:
    from retouch.io import load_image_bytes

    pixels, truth = _splice(host, host_saves, piece_quality, None)
    loaded = load_image_bytes(image_bytes(pixels, "JPEG", quality=last), name="splice.jpg")
    result = jpeg_settling(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization)
    assert result.details["content_model"] == "re-history (the last save's tables from the file)"
    assert f1_score(result.mask, truth) > 0.5
    assert truth[result.mask].mean() > 0.7
    assert result.regions and all(r.evidence["nfa"] <= 0.01 for r in result.regions)


def test_the_last_saves_tables_are_read_from_decoded_pixels_that_reproduce_at_no_ijg_quality() -> None:
    """A picture last saved with tables of its own (not IJG's scaled ones) and decoded, as CASIA v1's PNGs are:
    its steps are read from its coefficients, and the re-history model judges it instead of the off-grid model
    alone."""
    import io

    from PIL import Image

    from retouch.detect.double_jpeg import _luminance
    from retouch.detect.settling import ijg_tables, tables_from_pixels

    luma, chroma = ijg_tables(80)
    own = [[step + (k % 3 == 1) for k, step in enumerate(luma)], [step + (k % 3 == 1) for k, step in enumerate(chroma)]]
    stream = io.BytesIO()
    Image.fromarray(jpeg_round_trip(data.camera(), 70)).save(stream, format="JPEG", qtables=own)
    decoded = np.asarray(Image.open(io.BytesIO(stream.getvalue())))
    tables, read = tables_from_pixels(_luminance(decoded))
    assert read >= 30
    # steps read where the frequency holds enough values, the fitted IJG table's elsewhere
    assert np.mean(np.array(tables[0]) == np.array(own[0])) >= 0.8
    result = jpeg_settling(decoded)
    assert result.details["reproduced_at"] is None or result.details["reproduced_at"] >= 98
    assert result.details["content_model"].startswith("re-history (the last save's tables read from the pixels")
    assert not result.mask.any()
