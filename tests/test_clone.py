"""Copy-move detection (``retouch.detect.clone``): copies found with both sides and a number of false alarms;
repeated structure, symmetric subjects and untouched photographs left alone. Every image is generated here."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retouch.detect import get_detector
from retouch.detect._clone_significance import number_of_false_alarms
from retouch.detect.clone import CopyMoveOptions, copy_move
from retouch.imaging import to_gray_float
from retouch.io import load_image_bytes
from retouch.metrics import f1_score
from retouch.samples import ScanStyle, make_authentic, make_forgery, stamp_source
from retouch.samples.archive import add_grain, encode, fit_size, scan
from retouch.samples.sources import load_source

THRESHOLD = CopyMoveOptions().nfa_threshold


def _clone(pixels: np.ndarray):
    return get_detector("clone").run(pixels)


def _camera(scene: np.ndarray, seed: int, *, noise: float = 2.0, blur: float = 0.7, quality: int | None = 90
            ) -> np.ndarray:
    """A photograph of ``scene`` (float grey levels): lens blur, sensor noise of its own at every pixel, then saved
    as JPEG at ``quality`` (None: PNG) and decoded as ``retouch`` reads files."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(scene.astype(np.float32), (0, 0), blur) + rng.normal(0, noise, scene.shape)
    pixels = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return load_image_bytes(encode(pixels, quality)[1], name="photo").pixels


def _texture(shape: tuple[int, int], seed: int, *, scale: float, strength: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), scale)
    return strength * field / (field.std() + 1e-9)


def _facade(seed: int) -> np.ndarray:
    """A house front: 4 storeys of 7 identical windows on rendered plaster, and a zebra crossing below."""
    height, width = 640, 820
    scene = 170 + _texture((height, width), seed, scale=30, strength=12) + _texture((height, width), seed + 1,
                                                                                      scale=1.2, strength=5)
    window = np.full((70, 46), 225, np.float32)  # frame
    window[5:-12, 5:-5] = 45  # glass
    window[5:-12, 21:25] = 225  # mullion
    window[30:34, 5:-5] = 225  # transom
    window[-10:, :] = 200  # sill
    window[8:20, 8:18] = 90  # a reflection
    for row in range(4):
        for col in range(7):
            top, left = 40 + 115 * row, 45 + 110 * col
            scene[top:top + 70, left:left + 46] = window
    for stripe in range(8):  # the zebra crossing
        scene[520:620, 30 + 100 * stripe:80 + 100 * stripe] = 235
    return scene


def _tiled_floor(seed: int) -> np.ndarray:
    """A floor of identical marble tiles (one tile's texture repeated exactly) with grout lines."""
    tile = 150 + _texture((80, 80), seed, scale=3, strength=25) + _texture((80, 80), seed + 1, scale=0.8, strength=6)
    tile[:3, :] = 90
    tile[:, :3] = 90
    return np.tile(tile, (7, 10))


def _text_page(seed: int) -> np.ndarray:
    """A page of printed text: the same words again and again, on paper with a faint texture."""
    paper = 235 + _texture((700, 560), seed, scale=2, strength=3)
    ink = np.full(paper.shape, 255, np.uint8)  # OpenCV draws text on 8-bit images only
    words = ["the", "people", "of", "the", "city", "and", "the", "party", "in", "the", "year", "of", "the", "plan"]
    rng = np.random.default_rng(seed)
    for line in range(22):
        text = " ".join(rng.choice(words, 6))
        cv2.putText(ink, text, (30, 45 + 29 * line), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2, cv2.LINE_AA)
    coverage = 1.0 - ink.astype(np.float32) / 255
    return paper * (1 - coverage) + 25 * coverage


@pytest.mark.slow
@pytest.mark.parametrize("scene", [_facade, _tiled_floor, _text_page], ids=["facade", "tiled-floor", "text-page"])
def test_repeated_structure_is_not_marked_as_copied(scene) -> None:
    # each repeat matches many others as well as any one: nothing is exclusive. Photographed (noise of its own at
    # every repeat, JPEG) and as a digital file (repeats identical to the pixel, PNG)
    for pixels in (_camera(scene(3), 4), np.clip(np.round(scene(3)), 0, 255).astype(np.uint8)):
        result = _clone(pixels)
        assert not result.mask.any() and not result.regions
        assert result.score < 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
def test_untouched_photographs_are_not_marked_as_jpeg_or_png(name: str) -> None:
    photo = load_source(name)
    for quality in (90, None):
        result = _clone(load_image_bytes(encode(photo, quality)[1], name=name).pixels)
        assert not result.mask.any(), (name, quality)
        assert result.score < 0.5


@pytest.mark.slow
def test_untouched_generated_scans_are_not_marked() -> None:
    for seed in (700, 701):
        case = make_authentic(seed, size=640)
        assert not _clone(load_image_bytes(case.file_bytes, name="a").pixels).mask.any()


def _photo_with_copy(*, angle: float = 0.0, scale: float = 1.0, quality: int | None = None,
                     aligned: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The coffee photograph (gray, camera noise, saved once as JPEG 90 as a camera does) with a 112 px block of it
    stamped about 250 px away, turned by ``angle`` and rescaled by ``scale`` about its centre, saved at
    ``quality`` (None: PNG); ``aligned``: source and copy on the 8 x 8 JPEG grid (a "JPEG-aware" copy). Returns
    the decoded pixels, the copy's interior and its source's interior (both 10 px inside the block's outline)."""
    gray = np.round(fit_size(to_gray_float(load_source("coffee")), 600) * 255).astype(np.float32)
    gray = np.clip(gray + np.random.default_rng(1).normal(0, 2.0, gray.shape), 0, 255)
    gray = load_image_bytes(encode(np.round(gray).astype(np.uint8), 90)[1], name="camera").pixels.astype(np.float32)
    size = 112
    (sy, sx), (ty, tx) = ((232, 64), (64, 312)) if aligned else ((230, 61), (59, 310))
    turn = cv2.getRotationMatrix2D((sx + size / 2, sy + size / 2), angle, scale)  # about the source's centre
    moved = cv2.warpAffine(gray, turn, gray.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    forged = gray.copy()
    forged[ty:ty + size, tx:tx + size] = moved[sy:sy + size, sx:sx + size]
    pixels = load_image_bytes(encode(np.round(forged).astype(np.uint8), quality)[1], name="forged").pixels
    target = np.zeros(gray.shape, bool)
    target[ty + 10:ty + size - 10, tx + 10:tx + size - 10] = True
    # the source's interior: the copy's interior carried back through the turn and rescale
    source = cv2.warpAffine(target.astype(np.uint8), np.float64([[1, 0, sx - tx], [0, 1, sy - ty]]),
                            gray.shape[::-1], flags=cv2.INTER_NEAREST).astype(bool)
    inverse = cv2.invertAffineTransform(turn)
    source = cv2.warpAffine(source.astype(np.uint8), inverse, gray.shape[::-1], flags=cv2.INTER_NEAREST).astype(bool)
    return pixels, target, cv2.erode(source.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)


@pytest.mark.slow
@pytest.mark.parametrize(("angle", "scale", "quality", "aligned"),
                         [(0, 1.0, None, False), (0, 1.0, 95, False), (0, 1.0, 80, True), (15, 1.0, None, False),
                          (0, 1.25, None, False), (-10, 0.85, 95, False), (0, 1.5, None, False),
                          (0, 0.7, None, False)],
                         ids=["plain", "jpeg-95", "grid-aligned-jpeg-80", "turned-15", "enlarged-1.25",
                              "shrunk-turned-jpeg-95", "enlarged-1.5", "shrunk-0.7"])
def test_copies_are_found_with_both_sides(angle: float, scale: float, quality: int | None, aligned: bool) -> None:
    pixels, target, source = _photo_with_copy(angle=angle, scale=scale, quality=quality, aligned=aligned)
    result = _clone(pixels)
    assert result.mask[target].mean() > 0.7 and result.mask[source].mean() > 0.7
    untouched = ~cv2.dilate((target | source).astype(np.uint8), np.ones((61, 61), np.uint8)).astype(bool)
    assert result.mask[untouched].mean() < 0.005
    assert result.score > 0.5
    sides = {}
    for region in result.regions:
        x, y, w, h = region.bbox
        box = np.zeros(target.shape, bool)
        box[y:y + h, x:x + w] = True
        sides.setdefault(int(region.evidence["pair_id"]), []).append(
            "target" if (box & target).sum() > 0.5 * target.sum() else "source" if (box & source).sum()
            > 0.5 * source.sum() else "other")
        assert region.kind in {"clone-target", "clone-source", "clone-pair"}
        assert 0 < region.evidence["nfa"] <= THRESHOLD
        assert "untouched" in region.evidence["false_alarm_control"]
    assert ["source", "target"] in [sorted(found) for found in sides.values()]


def test_a_stamp_with_a_hard_edge_is_called_by_its_seam_and_points_to_its_source() -> None:
    rng = np.random.default_rng(1)
    scene = cv2.GaussianBlur(rng.random((360, 480)).astype(np.float32), (0, 0), 12)
    scene = (scene - scene.min()) / (scene.max() - scene.min())
    grain = cv2.GaussianBlur(rng.standard_normal(scene.shape).astype(np.float32), (0, 0), 0.8)
    image = np.clip(0.2 + 0.6 * scene + 0.05 * grain / grain.std(), 0, 1)
    image[60:160, 300:420] = image[200:300, 40:160]  # 260 px to the right, 140 up
    result = _clone((image * 255).astype(np.uint8))
    target = next(r for r in result.regions if r.kind == "clone-target")
    assert target.evidence["target_call"] == "seam"
    assert abs(target.bbox[0] - 300) <= 6 and abs(target.bbox[1] - 60) <= 6
    assert abs(target.evidence["offset_px"][0] + 260) <= 3 and abs(target.evidence["offset_px"][1] - 140) <= 3
    truth = np.zeros(image.shape, bool)
    truth[60:160, 300:420] = truth[200:300, 40:160] = True
    assert f1_score(result.mask, truth) > 0.85


BENCH_SCAN = ScanStyle(blur=0.6, jpeg_quality=90)  # the clone robustness benchmark's baseline scan


@pytest.mark.parametrize(("seed", "history", "stamp", "size", "style"), [
    (700001, "print", None, 768, None), (700002, "digital", None, 768, None),
    (700009, "digital", None, 768, None),  # enlarged 1.08 and turned 3.4 degrees on a scan with little grain
    (2, "print", (180, 1.0), 512, None),  # a half turn spreads the displacement over twice the copy's size
    (4, "print", (0, 1.7), 512, None), (4010, "print", (0, 1.7), 768, BENCH_SCAN),
    (900008, "print", (0, 1.7, False), 768, BENCH_SCAN),  # keypoints paired only at the looser ratio test
    (2, "print", (0, 1.0, True), 512, None),  # mirrored
    (900008, "print", (0, 0.75, True), 768, BENCH_SCAN),  # mirrored and shrunk: the keypoint map is a pixel off
    (4007, "print", (0, 0.75, True), 768, BENCH_SCAN),
], ids=["print", "digital", "digital-resampled", "half-turn", "enlarged-1.7", "enlarged-1.7-b",
        "enlarged-1.7-loose-keypoints", "mirrored", "mirrored-shrunk", "mirrored-shrunk-b"])
@pytest.mark.slow
def test_generated_clone_stamps_are_found(seed: int, history: str, stamp, size: int, style) -> None:
    case = make_forgery(seed, method="clone", size=size, history=history, stamp=stamp, scan_style=style)
    result = _clone(load_image_bytes(case.file_bytes, name="c").pixels)
    source = stamp_source(case)
    # the source is the copy's other side: left out of the F1 against the stamped pixels, checked on its own
    assert f1_score(result.mask, case.mask, valid=~source) > 0.6
    assert result.mask[source].mean() > 0.5
    assert all(region.evidence["nfa"] <= THRESHOLD for region in result.regions)


def test_a_copy_reached_twice_is_one_pair_and_a_source_stamped_twice_is_two() -> None:
    from retouch.detect._clone_pixels import TargetCall
    from retouch.detect._clone_significance import PairTest
    from retouch.detect.clone import Pair, _distinct

    def side(top: int, left: int) -> np.ndarray:
        mask = np.zeros((240, 320), bool)
        mask[top:top + 60, left:left + 80] = True
        return mask

    def pair(member: np.ndarray, other: np.ndarray, nfa: float) -> Pair:
        return Pair(member, other, np.eye(2, 3), PairTest(100, 90, 0.01, 1e6, nfa), TargetCall(True, "seam", 1.0))

    source, first, second = side(140, 20), side(20, 200), side(150, 200)
    kept = _distinct([pair(first, source, 1e-40), pair(source, first, 1e-9),  # its two sides, reached twice
                      pair(second, source, 1e-20)])  # the same source stamped a second time
    assert [p.test.nfa for p in kept] == [1e-40, 1e-20]


@pytest.mark.slow
def test_a_turned_stamp_over_plain_ground_is_outlined_whole() -> None:
    # the teaching gallery's clone-stamped crowd (seed 1917): grass turned 18.6 degrees and enlarged 1.06 over a
    # figure; the dense field finds only the stamp's upper part and a few patches of the rest, the decided map
    # holds across all of it
    case = make_forgery(1917003, method="clone", size=768, history="print", person=True)
    result = _clone(load_image_bytes(case.file_bytes, name="c").pixels)
    source = stamp_source(case)
    assert result.mask[case.mask].mean() > 0.6
    assert f1_score(result.mask, case.mask, valid=~source) > 0.75
    assert len({region.evidence["pair_id"] for region in result.regions}) == 1


@pytest.mark.slow
def test_the_enlarged_side_of_an_enlarged_stamp_is_called_the_copy() -> None:
    # the sides differ in size, so their grain cannot be compared directly: each against its own surroundings,
    # the upsampled copy's grain is weaker than the native grain around it, its source's is not
    case = make_forgery(4, method="clone", size=512, stamp=(0, 1.7))
    result = _clone(load_image_bytes(case.file_bytes, name="c").pixels)
    target = next(r for r in result.regions if r.kind == "clone-target")
    x, y, w, h = target.bbox
    assert case.mask[y:y + h, x:x + w].mean() > 0.3
    assert target.evidence["target_call"] == "interpolation"


def _mirror_left_half(gray: np.ndarray) -> np.ndarray:
    out = gray.copy()
    half = gray.shape[1] // 2
    out[:, gray.shape[1] - half:] = gray[:, :half][:, ::-1]
    return out


@pytest.mark.slow
def test_mirror_symmetric_subjects_are_not_marked() -> None:
    # the two halves of a symmetric subject follow a mirror map, but each carries its own grain: (a) a photograph
    # given a symmetric outline, its fine texture its own on each side; (b) a symmetric scene printed with grain
    # and scanned
    photo = to_gray_float(load_source("astronaut"))
    low = cv2.GaussianBlur(photo, (0, 0), 2.0)
    outline_only = np.clip(_mirror_left_half(low) + photo - low, 0, 1)
    rng = np.random.default_rng(3)
    scene = _mirror_left_half(fit_size(to_gray_float(load_source("camera")), 384))
    printed = add_grain(0.05 + 0.9 * scene.astype(np.float32), rng, strength=0.07, correlation=1.5)
    _, data, _ = scan(printed, rng, ScanStyle(blur=0.6, jpeg_quality=90))
    for image in (np.round(outline_only * 255).astype(np.uint8), load_image_bytes(data, name="s").pixels):
        assert not _clone(image).mask.any()


@pytest.mark.slow
def test_repeated_objects_in_photographs_are_not_marked() -> None:
    # a flag's stars and a lattice tower match themselves in shape at consistent displacements
    for name in ("grace_hopper", "rocket"):
        result = _clone(load_image_bytes(encode(load_source(name), 90)[1], name=f"{name}.jpg").pixels)
        assert not result.mask.any() and not result.regions, name


@pytest.mark.slow
def test_every_candidate_is_graded_in_the_heatmap_below_the_decided_level() -> None:
    # the astronaut's flag: look-alike stars are candidates, never decided; the map keeps them below a decided
    # pair's 0.6
    result = _clone(load_image_bytes(encode(load_source("astronaut"), 90)[1], name="a.jpg").pixels)
    assert not result.mask.any()
    assert result.heatmap.max() < 0.6


def test_number_of_false_alarms_is_the_binomial_tail_times_the_tests() -> None:
    from math import comb

    n, k, rate, tests = 12, 9, 0.05, 1e6
    tail = sum(comb(n, j) * rate**j * (1 - rate) ** (n - j) for j in range(k, n + 1))
    assert number_of_false_alarms(n, k, rate, tests) == pytest.approx(tests * tail, rel=1e-9)
    assert number_of_false_alarms(n, 0, rate, tests) == tests
    assert number_of_false_alarms(400, 400, rate, tests) == 1e-300  # underflow is reported at the floor


def test_options_are_one_typed_object_and_overrides_are_checked() -> None:
    image = np.zeros((64, 64), np.uint8)
    result = copy_move(image, nfa_threshold=1e-3)
    assert result.params["nfa_threshold"] == 1e-3 and result.params["cell"] == CopyMoveOptions().cell
    with pytest.raises(TypeError, match="unknown option"):
        copy_move(image, threshold=3)


def test_the_dense_field_sweeps_twice_at_full_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    # the search's cost: the grid's iterations, one more with its dominant displacements, then two sweeps of the
    # full-resolution field (one sweep, a third cheaper, lost a copy-move's region on real material)
    from retouch.detect import clone

    searches: list[dict] = []
    refines: list[dict] = []
    search, refine = clone.compiled_patchmatch, clone.upsampled_field

    def spy_search(*args, **kwargs):
        searches.append(kwargs)
        return search(*args, **kwargs)

    def spy_refine(*args, **kwargs):
        refines.append(kwargs)
        return refine(*args, **kwargs)

    monkeypatch.setattr(clone, "compiled_patchmatch", spy_search)
    monkeypatch.setattr(clone, "upsampled_field", spy_refine)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (240, 320), dtype=np.uint8)
    image[20:80, 200:280] = image[140:200, 20:100]
    result = copy_move(image)
    assert [kwargs["iterations"] for kwargs in searches] == [CopyMoveOptions().iterations, 1]
    assert searches[1]["proposals"] and searches[1]["initial"] is not None
    assert [kwargs["sweeps"] for kwargs in refines] == [2] == [CopyMoveOptions().sweeps]
    assert len(result.regions) == 2 and result.regions[0].evidence["nfa"] < THRESHOLD
