"""Per-pixel evidence of change between the questioned scan and its prediction from the reference.

Method
------
1. Damage: dust specks and scratches differ between any two scans of one print. In each image a pixel is a
   defect candidate where it departs from its local median by more than five robust standard deviations; a
   candidate component is a defect when it is small (under twice the median window's area) or thin (a scratch,
   mean width under four pixels); a 5-px median also erases specks up to two pixels wide. Defects are replaced
   by the median background in both images, and those present in one image only are reported as damage.
2. Difference at three scales (Gaussian smoothing of 1, 2 and 4 analysis pixels, which averages independent grain
   away): the questioned image minus its prediction, and the structure term of SSIM (Wang et al. 2004),
   ``1 - (2 s_pq + C) / (s_p^2 + s_q^2 + C)``, of local spreads and covariance.
3. Each difference is divided by a noise-level function: its robust (MAD) spread in bins of predicted grey level
   and local activity (gradient magnitude of the prediction, where residual misregistration and unequal
   sharpness show), over the overlap. What the pair model leaves everywhere (grain, scanner noise, compression)
   is the scale; a difference is a z-score against it.
4. Shared grain: two scans of one print both record its grain, so where the print is untouched their finest
   detail correlates; paint, a fill or a pasted piece carries none or other grain. The loss of local correlation
   (``1 - r`` of a high-pass band over a small window) is scored against its median and spread among windows of
   like brightness and like reference detail energy (faint texture correlates less for the same noise), one
   sided, and only where the prediction shows detail above the rounding floor: where the questioned file's
   compression flattened fine detail, the (equally compressed) prediction has none either, so compression noise
   is never read as lost grain.

Limits: changes fainter than the grain at every scale are not seen; the shared-grain cue needs both scans to
resolve the print's grain (not a copy of a copy, a halftone reproduction or a heavily downsampled file).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

SCALES = (1.0, 2.0, 4.0)
MEDIAN_PX = 5
# shared grain: the band above a 2-px Gaussian, correlated over a 3-px Gaussian window; its z-score counts
# double in the combined evidence because a correlation is bounded (a grain-free fill reaches z of 4 to 6)
GRAIN_HIGHPASS_PX = 2.0
GRAIN_WINDOW_PX = 3.0
GRAIN_WEIGHT = 2.0
# Below this fine-detail energy (a quarter of a grey level RMS, under 8-bit rounding) a window has no grain to
# lose: clipped highlights and shadows and flat digital areas hold none in either scan.
GRAIN_FLOOR = (0.25 / 255.0) ** 2
# A correlation over a window of a few dozen pixels is never exact: the least spread its loss is scored against.
GRAIN_SPREAD_FLOOR = 0.05
HALF_LEVEL = 0.5 / 255.0  # the least difference that can mean anything in 8-bit scans
STRUCTURE_FLOOR = 0.01  # the least structural dissimilarity (of 2) that can mean anything, likewise


@dataclass
class Defects:
    """Dust and scratches: ``either`` marks those of both images and ``specks`` the specks and scratches among them
    (left out of the shared-grain cue, specks with a wider margin);
    ``reference_only`` and ``questioned_only`` those one image has and the other lacks (damage)."""

    either: np.ndarray
    specks: np.ndarray
    reference_only: np.ndarray
    questioned_only: np.ndarray


@dataclass
class _ImageDefects:
    """One image's defects: its filtered version (5-px median, then a 5-px opening and closing), the contrast of
    each pixel against its median background, its specks and scratches, and its thin defects."""

    filtered: np.ndarray
    contrast: np.ndarray
    specks: np.ndarray
    thin: np.ndarray


def filtered_image(image: np.ndarray) -> np.ndarray:
    """The 5-px median, then an opening and a closing by a 5-px disc: bright and dark lines and dots up to four
    pixels wide (a scratch, a fibre, a speck) go, the edges of areas stay."""
    eight = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    eight = cv2.medianBlur(eight, MEDIAN_PX)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    eight = cv2.morphologyEx(cv2.morphologyEx(eight, cv2.MORPH_OPEN, disc), cv2.MORPH_CLOSE, disc)
    return eight.astype(np.float32) / 255.0


def _defects(image: np.ndarray) -> _ImageDefects:
    """Specks (module docstring, step 1) and thin defects of one image."""
    window = max(5, (min(image.shape) // 40) | 1)
    filtered = filtered_image(image)
    fine = image - filtered
    thin = np.abs(fine) > 4.0 * (1.4826 * float(np.median(np.abs(fine))) + 1e-4)
    eight = np.round(filtered * 255).astype(np.uint8)
    background = cv2.medianBlur(eight, min(window, 255)).astype(np.float32) / 255.0
    residual = filtered - background
    sigma = 1.4826 * float(np.median(np.abs(residual))) + 1e-4
    # a speck stands out from its own surroundings: in texture (a tweed coat, foliage, water) the residual is
    # large everywhere and nothing in it is a speck
    around = 1.25 * cv2.GaussianBlur(np.abs(residual), (0, 0), 2.0 * window)
    candidates = (np.abs(residual) > 5.0 * np.maximum(sigma, around)).astype(np.uint8)
    candidates = cv2.dilate(candidates, np.ones((3, 3), np.uint8))
    contrast = np.abs(image - background)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    if count <= 1:
        return _ImageDefects(filtered, contrast, np.zeros(image.shape, bool), thin)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    length = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    defect = (area <= 2 * window * window) | (area / np.maximum(length, 1.0) < 4.0)
    defect[0] = False
    return _ImageDefects(filtered, contrast, defect[labels], thin)


def _absent_in_other(found: np.ndarray, contrast_here: np.ndarray, contrast_there: np.ndarray) -> np.ndarray:
    """The components of ``found`` (specks of one image) that the other image lacks: their contrast there is
    under a third of their contrast here. Compression or a softer scan weakens a speck below the detection
    test in one copy; it is still there, and no damage."""
    labels, count = ndimage.label(found, structure=np.ones((3, 3)))
    if count == 0:
        return found
    index = np.arange(1, count + 1)
    here = ndimage.mean(contrast_here, labels, index)
    there = ndimage.mean(contrast_there, labels, index)
    keep = np.zeros(count + 1, bool)
    keep[1:] = np.asarray(there) < np.asarray(here) / 3.0
    return keep[labels]


def thin_structures(image: np.ndarray) -> np.ndarray:
    """Pixels that a 9-px median removes by more than four robust standard deviations: lines and dots up to four
    pixels wide (scratches, specks, fibres, and fine detail of the picture itself)."""
    eight = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    fine = image - cv2.medianBlur(eight, 9).astype(np.float32) / 255.0
    spread = 1.4826 * float(np.median(np.abs(fine))) + 1e-4
    return np.abs(fine) > 4.0 * spread


def scratches(thin: np.ndarray) -> np.ndarray:
    """Straight scratches: long line segments (at least a sixth of the shorter side, Hough transform) of the
    ``thin`` structures (:func:`thin_structures`), marked with a 3-pixel band around them. A scratch wider than
    the 5-px median's reach is neither a speck nor thin enough for it, yet its coarse-scale difference spreads
    over a dozen pixels."""
    mask = thin.astype(np.uint8)
    length = max(40, min(thin.shape) // 6)
    # grain breaks a faint scratch into dashes: the mask is thickened and gaps of a few pixels bridged
    lines = cv2.HoughLinesP(cv2.dilate(mask, np.ones((3, 3), np.uint8)), 1, np.pi / 180,
                            threshold=int(0.5 * length), minLineLength=length, maxLineGap=8)
    band = np.zeros(thin.shape, np.uint8)
    for x0, y0, x1, y1 in ([] if lines is None else lines.reshape(-1, 4)):
        if _isolated_line(thin, (int(x0), int(y0)), (int(x1), int(y1))):
            cv2.line(band, (int(x0), int(y0)), (int(x1), int(y1)), 1, thickness=7)
    return band.astype(bool)


def _isolated_line(thin: np.ndarray, start: tuple[int, int], end: tuple[int, int]) -> bool:
    """Whether thin structures lie along the segment far more densely (three times) than in the bands beside it,
    6 to 12 pixels off on either side: a scratch crosses the picture, while texture (hair, grass, a coat's weave)
    holds thin structures everywhere and lines through it by chance."""
    on = np.zeros(thin.shape, np.uint8)
    cv2.line(on, start, end, 1, thickness=3)
    near = np.zeros(thin.shape, np.uint8)
    cv2.line(near, start, end, 1, thickness=25)
    inner = np.zeros(thin.shape, np.uint8)
    cv2.line(inner, start, end, 1, thickness=13)
    beside = (near > 0) & (inner == 0)
    density_on = float(thin[on > 0].mean()) if on.any() else 0.0
    density_beside = float(thin[beside].mean()) if beside.any() else 0.0
    return density_on >= 3.0 * density_beside + 0.1


def find_defects(reference: np.ndarray, questioned: np.ndarray) -> Defects:
    """Dust and scratches of the registered ``reference`` and the ``questioned`` image as they are (the prediction
    is smoothed and tone-mapped, which softens a speck below the test): those of either image, and those one image
    has and the other lacks (damage)."""
    found_r, found_q = _defects(reference), _defects(questioned)
    fine_r, fine_q = thin_structures(reference), thin_structures(questioned)
    specks_r = found_r.specks | scratches(fine_r)
    specks_q = found_q.specks | scratches(fine_q)
    specks = specks_r | specks_q
    either = specks | found_r.thin | found_q.thin
    # damage: a speck or scratch in one image with nothing like it at that place in the other
    near_r = cv2.dilate(specks_r.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    near_q = cv2.dilate(specks_q.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return Defects(either=either, specks=specks,
                   reference_only=_absent_in_other(specks_r & ~near_q, found_r.contrast, found_q.contrast),
                   questioned_only=_absent_in_other(specks_q & ~near_r, found_q.contrast, found_r.contrast))


def without_defects(prediction: np.ndarray, compared: np.ndarray, defects: Defects
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The prediction and the compared questioned image median-filtered, their specks and scratches filled from
    the pixels around them. A defect found in either image is filled in both: compression can soften a speck below
    the detection limit in one of two copies of a scan, and filling it in one only made the speck itself a
    difference."""
    return (_filled(filtered_image(prediction), defects.specks),
            _filled(filtered_image(compared), defects.specks))


def _filled(image: np.ndarray, holes: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """``image`` with the ``holes`` filled from the pixels around them (normalised convolution: a Gaussian average
    of the pixels outside the holes), so a speck's or a scratch's own pixels do not bias its fill."""
    if not holes.any():
        return image.astype(np.float32)
    keep = (~holes).astype(np.float32)
    weight = cv2.GaussianBlur(keep, (0, 0), sigma)
    average = cv2.GaussianBlur(image * keep, (0, 0), sigma) / np.maximum(weight, 1e-6)
    # a hole wider than the Gaussian's reach: fall back on the image as it is there
    fill = np.where(weight > 0.02, average, image)
    return np.where(holes, fill, image).astype(np.float32)


def quantile_bins(values: np.ndarray, sample: np.ndarray, bins: int) -> np.ndarray:
    """Bin index (0..bins-1) of every pixel of ``values`` by the quantiles of ``values`` over ``sample``."""
    edges = np.unique(np.quantile(values.ravel()[sample], np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right").astype(np.int32)


def _binned_spread(values: np.ndarray, cell: np.ndarray, sample: np.ndarray, cells: int) -> np.ndarray:
    """1.4826 x the median of ``values`` in each cell over ``sample`` (the overall figure for sparse cells)."""
    sampled_cell = cell.ravel()[sample]
    sampled = values.ravel()[sample]
    order = np.argsort(sampled_cell, kind="stable")
    sorted_cells, sorted_values = sampled_cell[order], sampled[order]
    starts = np.searchsorted(sorted_cells, np.arange(cells))
    ends = np.searchsorted(sorted_cells, np.arange(cells), side="right")
    overall = 1.4826 * float(np.median(sampled)) + 1e-9
    spread = np.full(cells, overall)
    for index in range(cells):  # a few dozen cells, each a median over its own sample
        if ends[index] - starts[index] > 30:
            spread[index] = 1.4826 * float(np.median(sorted_values[starts[index]:ends[index]]))
    return np.maximum(spread, 0.5 * overall)


def noise_normalised(difference: np.ndarray, level: np.ndarray, activity: np.ndarray, sample: np.ndarray,
                     *, bins: int = 8, floor: float = HALF_LEVEL) -> np.ndarray:
    """``|difference|`` (centred) divided by its robust spread among pixels of like predicted ``level`` and
    local ``activity``, never by less than ``floor``."""
    centred = np.abs(difference - np.median(difference.ravel()[sample]))
    cell = quantile_bins(level, sample, bins) * bins + quantile_bins(activity, sample, bins)
    spread = np.maximum(_binned_spread(centred, cell, sample, bins * bins), floor)
    return (centred / spread[cell]).astype(np.float32)


def grain_decorrelation(prediction: np.ndarray, questioned: np.ndarray, valid: np.ndarray, brightness: np.ndarray,
                        *, defects: np.ndarray, specks: np.ndarray | None = None, bins: int = 6) -> np.ndarray:
    """One-sided z-score of the loss of shared fine detail between the prediction and the questioned image
    (module docstring, step 4). Pass the images before dust removal: its median filter erases the grain."""
    # five pixels of margin around a speck: its soft edge, beyond what the defect test marks, decorrelates the
    # grain too; two around thin defects (which fine texture also holds)
    masked = cv2.dilate(defects.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if specks is not None:
        masked |= cv2.dilate(specks.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    keep = (~masked).astype(np.float32)
    # the high-pass subtracts an average of the kept pixels only (normalised convolution): a plain blur carries a
    # bright scratch's or speck's lobes several pixels beyond the masked margin, where they read as lost grain
    kept_weight = np.maximum(cv2.GaussianBlur(keep, (0, 0), GRAIN_HIGHPASS_PX), 1e-3)
    a = (prediction - cv2.GaussianBlur(prediction * keep, (0, 0), GRAIN_HIGHPASS_PX) / kept_weight) * keep
    b = (questioned - cv2.GaussianBlur(questioned * keep, (0, 0), GRAIN_HIGHPASS_PX) / kept_weight) * keep
    var_a = cv2.GaussianBlur(a * a, (0, 0), GRAIN_WINDOW_PX)
    var_b = cv2.GaussianBlur(b * b, (0, 0), GRAIN_WINDOW_PX)
    cov = cv2.GaussianBlur(a * b, (0, 0), GRAIN_WINDOW_PX)
    kept_share = cv2.GaussianBlur(keep, (0, 0), GRAIN_WINDOW_PX)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = 1.0 - cov / np.sqrt(var_a * var_b)
    loss = np.nan_to_num(loss, nan=1.0, posinf=1.0, neginf=1.0)  # a detail-free questioned window: all lost
    usable = valid & (kept_share > 0.5) & (var_a > GRAIN_FLOOR * kept_share)
    if usable.sum() < 1000:
        return np.zeros(questioned.shape, np.float32)
    rng = np.random.default_rng(2)
    pick = rng.choice(np.flatnonzero(usable), size=min(int(usable.sum()), 200_000), replace=False)
    energy = np.log(np.maximum(var_a / np.maximum(kept_share, 1e-3), 1e-12))
    cell = quantile_bins(brightness, pick, bins) * 4 + quantile_bins(energy, pick, 4)
    sampled_cell, sampled_loss = cell.ravel()[pick], loss.ravel()[pick]
    centre = np.zeros(bins * 4, np.float32)
    spread = np.ones(bins * 4, np.float32)
    for index in range(bins * 4):  # two dozen cells, each its own median and spread
        values = sampled_loss[sampled_cell == index]
        if values.size > 30:
            centre[index] = np.median(values)
            spread[index] = 1.4826 * np.median(np.abs(values - centre[index]))
    spread = np.maximum(spread, GRAIN_SPREAD_FLOOR)
    z = (loss - centre[cell]) / spread[cell]
    return np.where(usable, np.maximum(z, 0.0), 0.0).astype(np.float32)


def _structure_dissimilarity(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    mean_a = cv2.GaussianBlur(a, (0, 0), sigma)
    mean_b = cv2.GaussianBlur(b, (0, 0), sigma)
    var_a = np.maximum(cv2.GaussianBlur(a * a, (0, 0), sigma) - mean_a**2, 0)
    var_b = np.maximum(cv2.GaussianBlur(b * b, (0, 0), sigma) - mean_b**2, 0)
    cov = cv2.GaussianBlur(a * b, (0, 0), sigma) - mean_a * mean_b
    c = 0.03 ** 2
    return (1.0 - (2 * cov + c) / (var_a + var_b + c)).astype(np.float32)


@dataclass
class ChangeEvidence:
    """``evidence``: z-score of change, the largest over scales and cues; ``local``: the same from the cues that
    place a boundary within a pixel (intensity at the two finest scales, structure at the finest, shared grain,
    each bounded by the pixel's own finest difference);
    ``signed``: the questioned image minus its prediction at the middle scale (darker < 0 < lighter)."""

    evidence: np.ndarray
    local: np.ndarray
    signed: np.ndarray


def change_evidence(prediction: np.ndarray, questioned: np.ndarray, valid: np.ndarray, *,
                    grain: np.ndarray | None = None) -> ChangeEvidence:
    """Per-pixel z-scores of change between a prediction and the questioned image (float gray [0, 1])."""
    evidence = np.zeros(questioned.shape, np.float32)
    local = np.zeros(questioned.shape, np.float32)
    sample_index = np.flatnonzero(valid)
    sample = np.sort(np.random.default_rng(0).choice(sample_index, size=min(sample_index.size, 300_000),
                                                     replace=False))
    signed = np.zeros(questioned.shape, np.float32)
    for scale in SCALES:
        smooth_p = cv2.GaussianBlur(prediction, (0, 0), scale)
        smooth_q = cv2.GaussianBlur(questioned, (0, 0), scale)
        activity = cv2.magnitude(cv2.Sobel(smooth_p, cv2.CV_32F, 1, 0), cv2.Sobel(smooth_p, cv2.CV_32F, 0, 1))
        activity = cv2.GaussianBlur(activity, (0, 0), 2.0 * scale)
        z_intensity = noise_normalised(smooth_q - smooth_p, smooth_p, activity, sample)
        z_structure = noise_normalised(_structure_dissimilarity(smooth_p, smooth_q, 2.5 * scale), smooth_p,
                                       activity, sample, floor=STRUCTURE_FLOOR)
        np.maximum(evidence, np.minimum(z_intensity, z_structure * 1.5) * 0.3 + z_intensity * 0.7, out=evidence)
        np.maximum(evidence, z_structure * 0.8, out=evidence)
        if scale == SCALES[0]:
            finest = z_intensity
            np.maximum(local, z_intensity, out=local)
            np.maximum(local, np.minimum(z_structure * 0.8, 2.0 * finest), out=local)
        elif scale <= 2.0:
            # the outline's evidence: the finest scale's, and the next scale's and the windowed cues credited to a
            # pixel only as far as the pixel itself differs at the finest scale (twice its z); otherwise a strong
            # edge spills a few pixels beyond itself through the smoothing and the windows
            np.maximum(local, np.minimum(z_intensity, 2.0 * finest), out=local)
        if scale == 2.0:
            signed = smooth_q - smooth_p
    if grain is not None:
        np.maximum(evidence, grain * GRAIN_WEIGHT, out=evidence)
        # a window straddling an edit's edge decorrelates although the pixels outside are untouched: for the
        # outline, the cue is eroded by the window's radius
        radius = int(round(GRAIN_WINDOW_PX))
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        np.maximum(local, cv2.erode(grain, disc), out=local)
    evidence[~valid] = 0.0
    local[~valid] = 0.0
    return ChangeEvidence(evidence=evidence, local=local, signed=signed)
