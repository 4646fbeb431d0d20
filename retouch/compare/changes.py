"""Localise content changes between a registered pair, robust to tone, grain, dust and compression.

Method
------
1. Tone: the aligned reference is mapped onto the questioned image's tones by quantile (histogram) matching over
   the overlap, so fading, gamma, contrast and sepia-versus-gray are not changes.
2. Evidence at three scales (Gaussian smoothing of 1, 2 and 4 analysis pixels, which averages independent film
   grain away): the intensity difference, and a structural dissimilarity ``1 - (2 s_rq + C) / (s_r^2 + s_q^2 + C)``
   of local standard deviations and covariance (the structure term of SSIM, Wang et al. 2004).
3. Each difference map is normalised by a noise-level function: the robust (MAD) spread of the difference in
   bins of brightness over the overlap. Since most of a pair is unchanged, that spread is what grain, dust and
   compression alone produce, and the normalised value is a z-score.
4. The decision: z above ``threshold`` (default 4.5: about 7 in a million pixels under Gaussian noise, before
   the area constraint) at any scale, cleaned by morphological opening/closing, components below a minimum area
   (0.2 % of the overlap by default) dropped. The heatmap is the z-score mapped to [0, 1].
5. Each region is classified by what happened to image structure (detail above the grain): much less in the
   questioned frame is ``removed`` (content erased and filled), much more is ``added``; otherwise the frame in
   which the region stands out from its surroundings decides, and failing that it is ``retouched`` (an altered
   surface). The structure ratio and both contrasts are in the evidence.

Limits: changes smaller than the minimum area, or of contrast below the grain, are not reported; changes in
regions outside the overlap are not compared at all (``valid_mask``).
"""

from __future__ import annotations

import cv2
import numpy as np

from retouch.result import Region, regions_from_mask

SCALES = (1.0, 2.0, 4.0)
MEDIAN_PX = 5
DEFAULT_THRESHOLD = 7.5


def remove_dust(image: np.ndarray) -> np.ndarray:
    """Replace dust specks and scratches (small or thin outliers against a median background) by that background.

    Dust and scratches differ between any two scans of one print; they are damage, not content. A pixel is a
    defect candidate when it departs from the local median by more than five robust standard deviations; its
    connected component is a defect when it is small (under twice the median window's area) or thin (mean width
    under four pixels including the one-pixel margin, as a scratch). Defects are replaced by the median; anything larger is left for comparison.
    """
    window = max(5, (min(image.shape) // 40) | 1)
    eight = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    # a small median first erases scratches and specks up to two pixels wide outright
    eight = cv2.medianBlur(eight, MEDIAN_PX)
    image = eight.astype(np.float32) / 255.0
    background = cv2.medianBlur(eight, min(window, 255)).astype(np.float32) / 255.0
    residual = image - background
    sigma = 1.4826 * float(np.median(np.abs(residual))) + 1e-4
    candidates = (np.abs(residual) > 5.0 * sigma).astype(np.uint8)
    candidates = cv2.dilate(candidates, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    if count <= 1:
        return image
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    length = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    defect = (area <= 2 * window * window) | (area / np.maximum(length, 1.0) < 4.0)
    defect[0] = False
    return np.where(defect[labels], background, image).astype(np.float32)


def match_sharpness(reference: np.ndarray, questioned: np.ndarray, valid: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """Blur the sharper of the two images until their difference is smallest (scans differ in focus and in how
    much they were resampled); returns both images and the signed blur (+: reference blurred, -: questioned)."""
    rng = np.random.default_rng(1)
    index = np.flatnonzero(valid)
    pick = rng.choice(index, size=min(index.size, 200_000), replace=False)

    def spread(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.median(np.abs(a.ravel()[pick] - b.ravel()[pick])))

    best = (spread(reference, questioned), 0.0)
    for sigma in (0.4, 0.7, 1.0, 1.4, 2.0):
        best = min(best, (spread(cv2.GaussianBlur(reference, (0, 0), sigma), questioned), sigma),
                   (spread(reference, cv2.GaussianBlur(questioned, (0, 0), sigma)), -sigma))
    sigma = best[1]
    if sigma > 0:
        return cv2.GaussianBlur(reference, (0, 0), sigma), questioned, sigma
    if sigma < 0:
        return reference, cv2.GaussianBlur(questioned, (0, 0), -sigma), sigma
    return reference, questioned, 0.0


def match_tones(source: np.ndarray, target: np.ndarray, valid: np.ndarray, *, quantiles: int = 256) -> np.ndarray:
    """Map ``source`` values so their distribution over ``valid`` matches ``target``'s (monotone quantile map)."""
    levels = np.linspace(0, 100, quantiles)
    src_q = np.percentile(source[valid], levels)
    dst_q = np.percentile(target[valid], levels)
    src_q = np.maximum.accumulate(src_q + np.arange(quantiles) * 1e-9)  # strictly increasing for np.interp
    return np.interp(source, src_q, dst_q).astype(np.float32)


def _quantile_bins(values: np.ndarray, sample: np.ndarray, bins: int) -> np.ndarray:
    edges = np.quantile(values[sample], np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, values, side="right").astype(np.int32)


def _noise_normalised(difference: np.ndarray, brightness: np.ndarray, activity: np.ndarray, sample: np.ndarray,
                      *, bins: int = 8) -> np.ndarray:
    """Divide ``difference`` by its robust spread among pixels of similar brightness and local activity.

    A two-dimensional noise-level function: brightness bins capture grain that depends on exposure, activity
    (gradient magnitude) bins capture what sub-pixel misregistration and unequal scan sharpness do to edges.
    Spreads are medians of absolute deviations over ``sample`` (a fixed random subset of the overlap), so a
    change covering a minority of the pixels barely moves them.
    """
    centred = np.abs(difference - np.median(difference[sample]))
    b_index = _quantile_bins(brightness, sample, bins)
    a_index = _quantile_bins(activity, sample, bins)
    cell = b_index * bins + a_index
    sampled_cell = cell[sample]
    sampled_values = centred[sample]
    order = np.argsort(sampled_cell, kind="stable")
    sorted_cells = sampled_cell[order]
    sorted_values = sampled_values[order]
    starts = np.searchsorted(sorted_cells, np.arange(bins * bins))
    ends = np.searchsorted(sorted_cells, np.arange(bins * bins), side="right")
    overall = 1.4826 * float(np.median(sampled_values)) + 1e-6
    spread = np.full(bins * bins, overall)
    for index in range(bins * bins):  # 64 cells, each a median over its own sample
        if ends[index] - starts[index] > 30:
            spread[index] = 1.4826 * float(np.median(sorted_values[starts[index]:ends[index]]))
    # half a grey level is the least difference that can mean anything in 8-bit scans
    spread = np.maximum(spread, max(0.5 * overall, 0.5 / 255.0))
    return (centred / spread[cell]).astype(np.float32)


def _structure_dissimilarity(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    mean_a = cv2.GaussianBlur(a, (0, 0), sigma)
    mean_b = cv2.GaussianBlur(b, (0, 0), sigma)
    var_a = np.maximum(cv2.GaussianBlur(a * a, (0, 0), sigma) - mean_a**2, 0)
    var_b = np.maximum(cv2.GaussianBlur(b * b, (0, 0), sigma) - mean_b**2, 0)
    cov = cv2.GaussianBlur(a * b, (0, 0), sigma) - mean_a * mean_b
    c = (0.03) ** 2
    return (1.0 - (2 * cov + c) / (var_a + var_b + c)).astype(np.float32)


def change_evidence(reference: np.ndarray, questioned: np.ndarray, valid: np.ndarray, *,
                    scale_factor: float = 1.0) -> np.ndarray:
    """Per-pixel z-score of change (max over scales and cues) for float gray images in [0, 1]."""
    evidence = np.zeros(questioned.shape, np.float32)
    rng = np.random.default_rng(0)
    valid_index = np.flatnonzero(valid)
    sample = np.zeros(valid.size, bool)
    sample[rng.choice(valid_index, size=min(valid_index.size, 300_000), replace=False)] = True
    sample = sample.reshape(valid.shape)
    for scale in SCALES:
        sigma = scale * scale_factor
        smooth_r = cv2.GaussianBlur(reference, (0, 0), sigma)
        smooth_q = cv2.GaussianBlur(questioned, (0, 0), sigma)
        brightness = 0.5 * (smooth_r + smooth_q)
        # activity from the sharper-edged of the two: an edge present in either frame is expected to differ more
        activity = np.maximum(cv2.magnitude(cv2.Sobel(smooth_r, cv2.CV_32F, 1, 0), cv2.Sobel(smooth_r, cv2.CV_32F, 0, 1)),
                              cv2.magnitude(cv2.Sobel(smooth_q, cv2.CV_32F, 1, 0), cv2.Sobel(smooth_q, cv2.CV_32F, 0, 1)))
        activity = cv2.GaussianBlur(activity, (0, 0), 2.0 * sigma)
        z_intensity = _noise_normalised(smooth_q - smooth_r, brightness, activity, sample)
        z_structure = _noise_normalised(_structure_dissimilarity(smooth_r, smooth_q, 2.5 * sigma), brightness,
                                        activity, sample)
        np.maximum(evidence, np.minimum(z_intensity, z_structure * 1.5) * 0.3 + z_intensity * 0.7, out=evidence)
        np.maximum(evidence, z_structure * 0.8, out=evidence)
    evidence[~valid] = 0.0
    return evidence


def decide(evidence: np.ndarray, valid: np.ndarray, *, threshold: float, min_area: int) -> np.ndarray:
    """Threshold, clean up (opening removes dust and scratches, closing joins a region), drop small components."""
    mask = (evidence > threshold) & valid
    size = max(3, int(round(np.sqrt(min_area) / 4)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    cleaned = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    cleaned = cv2.morphologyEx(cleaned, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cleaned, connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels] & valid


def _stand_out(image: np.ndarray, region: np.ndarray, ring: np.ndarray) -> float:
    """How far a region's mean departs from its surroundings, in units of the surroundings' spread."""
    inside, around = image[region], image[ring]
    if inside.size < 10 or around.size < 10:
        return 0.0
    return abs(float(inside.mean()) - float(around.mean())) / (float(around.std()) + 1e-3)


def classify_regions(mask: np.ndarray, heatmap: np.ndarray, reference: np.ndarray, questioned: np.ndarray,
                     *, min_area: int, valid: np.ndarray | None = None) -> list[Region]:
    """Regions of ``mask`` labelled removed / added / retouched from how each frame's content stands out."""
    regions = regions_from_mask(mask, heatmap, kind="retouched", min_area=min_area)
    smooth_r = cv2.GaussianBlur(reference, (0, 0), 1.5)
    smooth_q = cv2.GaussianBlur(questioned, (0, 0), 1.5)
    # image structure above the grain: detail of the grain-smoothed image at a coarser scale
    detail_r = np.abs(smooth_r - cv2.GaussianBlur(smooth_r, (0, 0), 4.0))
    detail_q = np.abs(smooth_q - cv2.GaussianBlur(smooth_q, (0, 0), 4.0))
    # the two scans differ in sharpness and grain overall; a region's structure ratio is judged against that
    unchanged = (valid if valid is not None else np.ones(mask.shape, bool)) & ~mask
    overall = (float(np.median(detail_q[unchanged])) + 1e-4) / (float(np.median(detail_r[unchanged])) + 1e-4)
    labelled = []
    for region in regions:
        x, y, w, h = region.bbox
        pad = max(w, h) // 2 + 4
        y0, y1 = max(0, y - pad), min(mask.shape[0], y + h + pad)
        x0, x1 = max(0, x - pad), min(mask.shape[1], x + w + pad)
        local = mask[y0:y1, x0:x1]
        ring = cv2.dilate(local.astype(np.uint8), np.ones((2 * (pad // 2) + 1,) * 2, np.uint8)).astype(bool) & ~local
        out_r = _stand_out(smooth_r[y0:y1, x0:x1], local, ring)
        out_q = _stand_out(smooth_q[y0:y1, x0:x1], local, ring)
        texture_r = float(detail_r[y0:y1, x0:x1][local].mean())
        texture_q = float(detail_q[y0:y1, x0:x1][local].mean())
        texture_ratio = (texture_q + 1e-4) / (texture_r + 1e-4) / overall
        # structure lost (a figure painted out) or gained (something pasted in) decides first; otherwise which
        # frame's region stands out from its surroundings, and failing both, an altered surface
        if texture_ratio < 0.85 or (texture_ratio < 1.0 and out_r > 1.5 * out_q + 0.1):
            kind = "removed"
        elif texture_ratio > 1.25 or (texture_ratio >= 1.0 and out_q > 1.5 * out_r + 0.1):
            kind = "added"
        else:
            kind = "retouched"
        labelled.append(Region(bbox=region.bbox, area=region.area, score=region.score, kind=kind, evidence={
            "stand_out_reference": round(out_r, 3), "stand_out_questioned": round(out_q, 3),
            "texture_ratio_questioned_to_reference": round(texture_ratio, 3),
        }))
    return labelled
