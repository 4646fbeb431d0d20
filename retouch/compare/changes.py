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
4. Shared grain: two scans of one print both record that print's own film grain, so wherever the print is
   untouched their finest detail (a high-pass band, defects masked out) correlates locally; paint, a
   clone, an inpainted fill or a pasted piece carries no grain or other grain, and the local correlation drops
   to zero even where the fill matches the old tones. ``1 - correlation`` is normalised like the differences
   (one-sided: only a loss of correlation is evidence).
5. The decision, in two steps. Regions: evidence above ``threshold`` (default 7.5) at any scale, cleaned by
   morphological opening/closing, components below a minimum area (0.2 % of the overlap by default) dropped.
   Outline: the coarse scales and the windowed structure term spread a change over their support (up to ten
   pixels beyond it), so each region is cut back to where the evidence of the fine scales (intensity at 1 and 2
   pixels, structure at 1 pixel, shared grain) exceeds ``LOCAL_THRESHOLD`` within a pixel, holes enclosed by a
   region are filled (an edit is a filled area, even where its fill happens to match the old tones), and the
   outline then grows, a pixel a step for up to ``GROW_PX`` steps, through connected fine evidence above
   ``GROW_THRESHOLD`` (the feathered edge of a soft brush). The heatmap is the z-score, capped below the
   threshold where the fine scales do not confirm it (so its outlines agree with the decision), mapped to [0, 1].
6. Each region is classified by what happened to image structure (detail above the grain): much less in the
   questioned frame is ``removed`` (content erased and filled), much more is ``added``; otherwise the frame in
   which the region stands out from its surroundings decides, and failing that it is ``retouched`` (an altered
   surface). The structure ratio and both contrasts are in the evidence.

Limits: changes smaller than the minimum area, or of contrast below the grain, are not reported; changes in
regions outside the overlap are not compared at all (``valid_mask``). The shared-grain cue needs both scans to
resolve the print's grain (not so for a copy negative of a copy, a halftone reproduction or a heavily
downsampled file); without it the cue is flat, and only tone and structure changes are seen. It was measured
only on generated pairs, where both scans carry the very same print grain (blurred and resampled); how much of
it survives a real re-photographed print is not yet measured. The outline radii are in analysis pixels, so
they are tuned for prints of roughly 500 to 1500 pixels a side.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from retouch.result import Region, regions_from_mask

SCALES = (1.0, 2.0, 4.0)
MEDIAN_PX = 5
DEFAULT_THRESHOLD = 7.5
# the outline of a region: fine evidence that confirms it, and the weaker fine evidence it may grow into
LOCAL_THRESHOLD = 3.0
GROW_THRESHOLD = 2.5
GROW_PX = 6
# shared grain: the band above a 2-px Gaussian, correlated over a 3-px Gaussian window; its z-score counts
# double in the evidence because a correlation is bounded (a grain-free fill reaches z of about 4 to 6, not 50)
GRAIN_HIGHPASS_PX = 2.0
GRAIN_WINDOW_PX = 3.0
GRAIN_WEIGHT = 2.0
# Below this fine-detail energy (a quarter of a grey level RMS, under 8-bit rounding noise) a reference window has
# no grain to lose: clipped highlights and shadows, and flat digital areas, have none in either scan, and their
# correlation, 0 / 0, read as a total loss. An image compared with itself had 0.6 % of it marked "retouched".
GRAIN_FLOOR = (0.25 / 255.0) ** 2


def _defects(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dust specks and scratches: the image's 5-px median, its wider median background, the specks (to be
    replaced by that background) and the thin defects the 5-px median erased already.

    Dust and scratches differ between any two scans of one print; they are damage, not content. A 5-px median
    first erases scratches and specks up to two pixels wide outright (the mask marks them where the raw image
    departs from that median by more than four robust standard deviations). Then a pixel is a defect candidate
    when it departs from the local median by more than five robust standard deviations; its connected component
    is a defect when it is small (under twice the median window's area) or thin (mean width under four pixels
    including the one-pixel margin, as a scratch). Defects are replaced by the median; anything larger is left
    for comparison (``remove_defects``).
    """
    window = max(5, (min(image.shape) // 40) | 1)
    eight = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    eight = cv2.medianBlur(eight, MEDIAN_PX)
    filtered = eight.astype(np.float32) / 255.0
    fine = image - filtered
    thin = np.abs(fine) > 4.0 * (1.4826 * float(np.median(np.abs(fine))) + 1e-4)
    background = cv2.medianBlur(eight, min(window, 255)).astype(np.float32) / 255.0
    residual = filtered - background
    sigma = 1.4826 * float(np.median(np.abs(residual))) + 1e-4
    candidates = (np.abs(residual) > 5.0 * sigma).astype(np.uint8)
    candidates = cv2.dilate(candidates, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates, connectivity=8)
    if count <= 1:
        return filtered, background, np.zeros(image.shape, bool), thin
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    length = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]).astype(np.float64)
    defect = (area <= 2 * window * window) | (area / np.maximum(length, 1.0) < 4.0)
    defect[0] = False
    return filtered, background, defect[labels], thin


def remove_defects(reference: np.ndarray, questioned: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both registered images with their dust and scratches removed (see ``_defects``), and the mask of defects
    found in either.

    A speck found in either image is replaced in both by that image's median background: in two digital copies
    of one scan, compression can soften a speck below the detection limit in one of them, and replacing it there
    only made the speck itself a difference (an untouched PNG scan against its own JPEG copy at quality 92: 0.3
    to 0.7 % of the image marked, as regions "added" or "removed"; now nothing).
    """
    filtered_r, background_r, specks_r, thin_r = _defects(reference)
    filtered_q, background_q, specks_q, thin_q = _defects(questioned)
    specks = specks_r | specks_q
    return (np.where(specks, background_r, filtered_r).astype(np.float32),
            np.where(specks, background_q, filtered_q).astype(np.float32), specks | thin_r | thin_q)


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


def grain_decorrelation(reference: np.ndarray, questioned: np.ndarray, valid: np.ndarray, brightness: np.ndarray,
                        *, defects: np.ndarray, bins: int = 8) -> np.ndarray:
    """One-sided z-score of the loss of shared print grain between two registered scans (float gray, [0, 1]).

    Both images are high-passed (minus a Gaussian of ``GRAIN_HIGHPASS_PX``), defects (dust, scratches) and a
    two-pixel margin are zeroed, and the local correlation coefficient is taken over a Gaussian window of
    ``GRAIN_WINDOW_PX``; the zeroed pixels drop out of the window's sums, so a scratch crossing it does not
    decorrelate it. ``1 - correlation`` is compared with its median and robust spread among overlap pixels of
    like ``brightness`` (grain strength depends on exposure); windows mostly masked get no evidence.
    Windows whose reference shows no fine detail (``GRAIN_FLOOR``) get no evidence either: there is no grain
    there to lose. Pass the images before dust removal: its median filter erases the grain this cue looks at.
    """
    keep = (~cv2.dilate(defects.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)).astype(np.float32)
    a = (reference - cv2.GaussianBlur(reference, (0, 0), GRAIN_HIGHPASS_PX)) * keep
    b = (questioned - cv2.GaussianBlur(questioned, (0, 0), GRAIN_HIGHPASS_PX)) * keep
    var_a = cv2.GaussianBlur(a * a, (0, 0), GRAIN_WINDOW_PX)
    var_b = cv2.GaussianBlur(b * b, (0, 0), GRAIN_WINDOW_PX)
    cov = cv2.GaussianBlur(a * b, (0, 0), GRAIN_WINDOW_PX)
    support = cv2.GaussianBlur(keep, (0, 0), GRAIN_WINDOW_PX)
    # no additive guard in the root: beside a faint grain's product of variances (1e-12 at a quarter of a grey
    # level) it halved an exact correlation; windows it could divide by zero in are left out just below
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = 1.0 - cov / np.sqrt(var_a * var_b)
    loss = np.nan_to_num(loss, nan=1.0, posinf=1.0, neginf=1.0)  # a grain-free questioned window: all lost
    # a window can only lose the grain its reference shows (see GRAIN_FLOOR)
    usable = valid & (support > 0.5) & (var_a > GRAIN_FLOOR * support)
    if usable.sum() < 1000:
        return np.zeros(questioned.shape, np.float32)
    rng = np.random.default_rng(2)
    pick = rng.choice(np.flatnonzero(usable), size=min(int(usable.sum()), 200_000), replace=False)
    index = _quantile_bins(brightness.ravel(), pick, bins).reshape(brightness.shape)
    sampled_index = index.ravel()[pick]
    sampled_loss = loss.ravel()[pick]
    centre = np.zeros(bins, np.float32)
    spread = np.ones(bins, np.float32)
    for k in range(bins):  # eight brightness bins, each its own median and spread
        values = sampled_loss[sampled_index == k]
        if values.size > 30:
            centre[k] = np.median(values)
            spread[k] = 1.4826 * np.median(np.abs(values - centre[k]))
    # a correlation estimated over a few dozen pixels is never exact: a floor on its spread
    spread = np.maximum(spread, 1e-3)
    z = (loss - centre[index]) / spread[index]
    return np.where(usable, np.maximum(z, 0.0), 0.0).astype(np.float32)


def _structure_dissimilarity(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    mean_a = cv2.GaussianBlur(a, (0, 0), sigma)
    mean_b = cv2.GaussianBlur(b, (0, 0), sigma)
    var_a = np.maximum(cv2.GaussianBlur(a * a, (0, 0), sigma) - mean_a**2, 0)
    var_b = np.maximum(cv2.GaussianBlur(b * b, (0, 0), sigma) - mean_b**2, 0)
    cov = cv2.GaussianBlur(a * b, (0, 0), sigma) - mean_a * mean_b
    c = (0.03) ** 2
    return (1.0 - (2 * cov + c) / (var_a + var_b + c)).astype(np.float32)


@dataclass
class ChangeEvidence:
    """``evidence``: z-score of change, max over scales and cues; ``local``: the same from the cues that place
    a boundary within a pixel or two (intensity at the two finest scales, structure at the finest, grain)."""

    evidence: np.ndarray
    local: np.ndarray


def change_evidence(reference: np.ndarray, questioned: np.ndarray, valid: np.ndarray, *,
                    grain: np.ndarray | None = None, scale_factor: float = 1.0) -> ChangeEvidence:
    """Per-pixel z-scores of change for float gray images in [0, 1]; ``grain`` from :func:`grain_decorrelation`."""
    evidence = np.zeros(questioned.shape, np.float32)
    local = np.zeros(questioned.shape, np.float32)
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
        if scale <= 2.0:
            np.maximum(local, z_intensity, out=local)
        if scale == SCALES[0]:
            np.maximum(local, z_structure * 0.8, out=local)
    if grain is not None:
        np.maximum(evidence, grain * GRAIN_WEIGHT, out=evidence)
        np.maximum(local, grain, out=local)
    evidence[~valid] = 0.0
    local[~valid] = 0.0
    return ChangeEvidence(evidence=evidence, local=local)


def localised(evidence: np.ndarray, local: np.ndarray, *, threshold: float) -> np.ndarray:
    """The evidence capped where the fine scales do not support it, for the heatmap: where the fine evidence
    (within a pixel) is below ``GROW_THRESHOLD`` (the least an outline may grow into) the cap falls below
    ``threshold`` in proportion, so the map's outlines agree with :func:`decide`'s instead of showing the coarse
    cues' halo."""
    confirmed = cv2.dilate(local, np.ones((3, 3), np.uint8))
    return np.minimum(evidence, confirmed * (threshold / GROW_THRESHOLD)).astype(np.float32)


def _drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def decide(evidence: np.ndarray, valid: np.ndarray, *, threshold: float, min_area: int,
           local: np.ndarray | None = None) -> np.ndarray:
    """Threshold, clean up (opening removes dust and scratches, closing joins a region), drop small components;
    with ``local`` evidence, fit each region's outline to it (module docstring, step 5)."""
    mask = (evidence > threshold) & valid
    size = max(3, int(round(np.sqrt(min_area) / 4)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    cleaned = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    cleaned = cv2.morphologyEx(cleaned, cv2.MORPH_CLOSE, kernel)
    regions = _drop_small(cleaned, min_area) & valid
    if local is None or not regions.any():
        return regions
    # cut the halo of the coarse cues back to fine evidence (within a pixel), then clean as before
    confirmed = cv2.dilate((local > LOCAL_THRESHOLD).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    cut = cv2.morphologyEx((regions & confirmed).astype(np.uint8), cv2.MORPH_OPEN, kernel)
    cut = cv2.morphologyEx(cut, cv2.MORPH_CLOSE, kernel)
    cut = _drop_small(ndimage.binary_fill_holes(cut), min_area) & valid
    # grow into the weaker fine evidence connected to it (a feathered edge), one pixel a step and a few steps at
    # most, so growth follows the evidence instead of swallowing noise nearby; the 3x3 opening then keeps single
    # noisy pixels off the outline
    allowed = (local > GROW_THRESHOLD).astype(np.uint8)
    ring = cut.astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    for _ in range(GROW_PX):  # a few whole-image dilations, not a per-pixel loop
        ring = cv2.dilate(ring, cross) & (allowed | ring)
    ring = ring.astype(bool)
    grown = cv2.morphologyEx((cut | ring).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).astype(bool)
    return (grown | cut) & valid


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
