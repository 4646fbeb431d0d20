"""Noise and film-grain consistency: where is the grain too weak, or too strong, for its brightness?

Method
------
Every photographic print carries grain whose strength depends on exposure. The image is split into blocks; in
each block the grain is measured as the mean absolute high-pass residual of the luminance (minus a twice-applied
5x5 median, which keeps the grain's clumps and drops shading; in 8-bit integers, or at full depth for 16-bit
scans). From the flattest blocks of the whole image a noise-level function sigma(brightness) is estimated (Liu
et al. 2006, "Noise estimation from a single image"; its use for splicing detection: Pun, Liu & Yuan 2016;
Mahdian & Saic 2009). Each block's log-ratio of measured to predicted grain is turned into a robust z-score;
z-scores are pooled over 3x3 neighbourhoods and a region is flagged when the pooled score passes 1.3 times a
Bonferroni bound set for ``false_alarms`` expected false detections per image (an a-contrario decision in the
spirit of Gardella et al.'s Noisesniffer, 2021; the margin for real photographs' heavier tails is
``_blocks.TAIL_MARGIN``). ``noise-low`` regions have far
less grain than the print elsewhere (airbrush, gouache, diffusion inpainting, digital smoothing);
``noise-high`` regions have far more (paste-ups from a grainier print, added noise), and are only sought in
blocks without strong image structure, whose texture would otherwise pass for grain.

Limits: a fill that was re-grained to match is invisible to this test; clipped blacks and whites carry no grain
and are ignored; heavy JPEG compression or denoising of the whole scan flattens grain everywhere, which the
noise-level function absorbs but which lowers sensitivity. A paste-up whose coarse grain (clumps of several
pixels) covers image structure is rarely found: such grain raises the structure measure too, so few of its blocks
are tested for excess. Measured on 12 generated paste-ups and 12 untouched scans, per 8x8 block: no measure tried
told pasted blocks from textured untouched ones well enough for a decision at this false-alarm rate (pixel-level
ROC AUC of the block score: this residual 0.75, band-pass 1-3 px energy 0.85, fine-to-coarse residual ratio
0.81, with untouched textured blocks above the pasted blocks' median; Gaussianity and orientation coherence of the
band-pass did not separate them; conditioning on coarse structure absorbed the excess, 0.57-0.71).
"""

from __future__ import annotations

import cv2
import numpy as np

from retouch.detect._blocks import (
    NOTHING_TO_JUDGE,
    binned_reference,
    block_decision,
    block_mean,
    block_result,
    decision_score,
    decision_threshold,
    median_of,
    percentile_of,
    pooled_z,
    standardise,
    strength_to_heat,
)
from retouch.registry import register
from retouch.imaging import for_each_strip, strip_workers, to_gray_float
from retouch.result import AnalysisResult

EXPLANATION = (
    "Film grain covers every part of a photographic print, stronger or weaker according to brightness. This map "
    "compares the grain in each small block with what the rest of this same print shows at that brightness. "
    "Bright areas mark grain far weaker than expected, as left by airbrush, gouache or digital smoothing that "
    "painted something out, or far stronger, as in a piece pasted in from a grainier print. Limits: a careful "
    "retoucher who re-added matching grain defeats it; pure blacks and whites, and very heavily compressed or "
    "denoised scans, carry too little grain to judge; a print damaged by wear can also lose its grain locally."
)


def _gray8(image: np.ndarray) -> np.ndarray:
    """8-bit luminance: the input itself when it is 8-bit gray, else its luminance rounded to 8 bits."""
    if image.dtype == np.uint8 and image.ndim == 2:
        return image
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (3, 4):
        return cv2.cvtColor(image[:, :, :3], cv2.COLOR_RGB2GRAY)
    return cv2.convertScaleAbs(to_gray_float(image), alpha=255.0)  # saturating round to 0..255


def _structure_energy(eight: np.ndarray) -> np.ndarray:
    """Gradient energy at the scale of 1.2 px: a 3x3 Sobel gradient (L1 norm) of the 8-bit luminance smoothed by
    a Gaussian of 1.2 px, per pixel (its block means are the structure measure).

    All in 8-bit and 16-bit integers (OpenCV's fixed-point paths), where the float Sobel-of-Gaussian with an L2
    norm cost about three times as much at 12 MP. Only the ranking of blocks matters here (the flattest 40 %
    become the reference), and the rounding of the smoothed image averages out over a block: on 108 generated
    768 px cases the final masks agreed with the float measure's (median IoU 0.98) at the same false-alarm area.
    """
    smooth = cv2.GaussianBlur(eight, (0, 0), 1.2)
    dx, dy = cv2.spatialGradient(smooth)  # 3x3 Sobel, int16
    # a quarter keeps flat and textured blocks apart in uint8; only strong edges saturate, and they are
    # "structure" whatever their exact value
    return cv2.add(cv2.convertScaleAbs(dx, alpha=0.25), cv2.convertScaleAbs(dy, alpha=0.25))


# Rows of context a band needs on each side for the per-pixel values of the whole-image filters: the residual's
# two 5x5 medians reach 2 + 2 rows, the structure's Gaussian of 1.2 px (a 9-tap kernel) 4 and its gradient 1 more.
_HALO = 5


def _block_measures(eight: np.ndarray, block: int, *, residual: bool = True, band_pixels: int = 1 << 18
                    ) -> dict[str, np.ndarray]:
    """Block means of the 8-bit measures: ``structure`` (gradient energy), ``brightness`` and, with
    ``residual``, the grain residual (``eight`` minus its twice 5x5 median) and the share of unclipped pixels
    (4..251), all in 8-bit units.

    Worked through in bands of whole block rows, each with a ``_HALO``-row margin for the filters, so the
    intermediate images stay in cache, and strips of bands run in parallel threads (the two medians, the largest
    per-pixel cost, were single-threaded as whole-image calls); the per-pixel values are those of the
    whole-image filters.
    """
    height, width = eight.shape
    rows, cols = height // block, width // block
    names = ["structure", "brightness"] + (["residual", "unclipped"] if residual else [])
    out = {name: np.empty((rows, cols), np.float32) for name in names}
    step = max(1, band_pixels // max(width * block, 1))

    def bands(first_row: int, last_row: int) -> None:  # block rows [first_row, last_row), band by band
        for first in range(first_row, last_row, step):
            last = min(first + step, last_row)
            top, bottom = first * block, last * block
            low, high = max(top - _HALO, 0), min(bottom + _HALO, height)
            band = eight[low:high]
            inner = slice(top - low, bottom - low)
            out["structure"][first:last] = block_mean(_structure_energy(band)[inner], block)
            out["brightness"][first:last] = block_mean(band[inner], block)
            if residual:
                background = cv2.medianBlur(cv2.medianBlur(band, 5), 5)
                out["residual"][first:last] = block_mean(cv2.absdiff(band, background)[inner], block)
                out["unclipped"][first:last] = block_mean(cv2.inRange(band[inner], 4, 251), block)

    parts = strip_workers(height)
    for_each_strip(bands, [rows * k // parts for k in range(parts + 1)])
    return out


def _block_size(shape: tuple[int, int]) -> int:
    pixels = shape[0] * shape[1]
    return 8 if pixels <= 1_500_000 else 16 if pixels <= 12_000_000 else 24


@register("grain", title="Film grain consistency",
          description="Regions whose grain is far weaker (painted or smoothed) or stronger (pasted) than the "
                      "print's own noise-level function predicts.")
def grain_consistency(
    image: np.ndarray,
    *,
    block: int | None = None,
    false_alarms: float = 0.5,
    pool_radius: int = 1,
) -> AnalysisResult:
    """Flag regions whose grain departs from the image's noise-level function.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB scan.
    block : int, optional
        Block side in pixels (default: 8, 16 or 24 by image size).
    false_alarms : float
        Expected number of falsely flagged block groups per untouched image; sets the threshold.
    pool_radius : int
        Neighbourhood (in blocks) over which block z-scores are pooled before the decision.
    """
    image = np.asarray(image)
    gray = to_gray_float(image) if image.dtype == np.uint16 else None
    # 8-bit luminance for everything but a 16-bit scan's residual: brightness, clipping and structure need no more
    eight = _gray8(image) if gray is None else cv2.convertScaleAbs(gray, alpha=255.0)
    shape = eight.shape
    block = block or _block_size(shape)
    # The residual: image minus a robust background, a 5x5 median applied twice (9x9 support). Print grain is
    # spatially correlated (clumps of 1-2 px, then softened by the scanner's optics) while the scanner's own
    # noise and JPEG quantization are white; a 3x3 median keeps mostly the white part, which a grainless fill
    # still carries, so a painted fill read only ~30 % below its surroundings. The wider background keeps the
    # grain's clumps in the residual (fill contrast about twice as large in log units). Iterated 5x5 medians
    # have fast SIMD paths in OpenCV, unlike one 7x7 or 9x9 median (about 50x slower on 8-bit images).
    measures = _block_measures(eight, block, residual=gray is None)
    if gray is not None:
        background = cv2.medianBlur(cv2.medianBlur(gray, 5), 5)  # float medians keep 16-bit precision
        residual = block_mean(cv2.absdiff(gray, background, dst=background), block)
        clipped_fraction = block_mean(((gray < 0.015) | (gray > 0.985)).view(np.uint8), block)
        del gray, background
    else:
        # 8-bit: medians of integers are integers, so the residual is exact in uint8 (no float image); a colour
        # scan's luminance is rounded to 8 bits first, noise of 0.29 grey levels RMS against grain of several
        residual = measures["residual"] / 255.0
        # 0.015 and 0.985 of full scale are 3.8 and 251.2 grey levels: clipped pixels are <= 3 or >= 252
        clipped_fraction = 1.0 - measures["unclipped"] / 255.0
    # grain spread per block: mean absolute residual (robust enough, fast), in log units
    grain = np.log(residual + 1e-5)
    # block means are already a low-pass: no blur first (a 2 px Gaussian before them moved a block's brightness
    # by 0.9 grey levels in median, more only across edges, which the flat reference excludes)
    brightness = measures["brightness"] / 255.0
    # structure: gradient energy at the scale of 1.2 px (it includes the grain itself, which is what makes the
    # "flat" reference blocks flat; a coarser measure picks worse references)
    structure = measures["structure"]
    clipped = clipped_fraction > 0.2
    usable = ~clipped
    if not usable.any():
        return AnalysisResult.skipped_result(
            "grain", shape, NOTHING_TO_JUDGE, explanation=EXPLANATION,
            params={"block": block, "false_alarms": false_alarms, "pool_radius": pool_radius})
    flat = usable & (structure <= percentile_of(structure[usable], 40))
    expected, spread = binned_reference(grain, brightness, flat, bins=10)
    z = (grain - expected) / spread
    z[clipped] = 0.0
    low = standardise(pooled_z(np.minimum(-z, 6.0), pool_radius), usable)
    # strong structure raises the residual on its own: only structure-poor blocks may testify to excess grain
    high = standardise(pooled_z(np.where(flat, np.minimum(z, 6.0), 0.0), pool_radius), flat)
    tests = int(usable.sum()) * 2
    threshold = decision_threshold(tests, false_alarms)
    min_blocks = 4
    low_mask = block_decision(low, threshold, min_blocks=min_blocks)
    high_mask = block_decision(high, threshold, min_blocks=min_blocks)
    mask_blocks = (low_mask | high_mask) & usable
    strength = np.maximum(low, high)
    heat_blocks = strength_to_heat(strength, threshold)
    score = decision_score(strength, mask_blocks, usable, threshold)
    low_count = int(low_mask.sum())
    high_count = int(high_mask.sum())
    if mask_blocks.any():
        summary = (f"Grain inconsistent with the rest of the print in {100 * mask_blocks.mean():.2f} % of the "
                   f"image ({'too weak' if low_count >= high_count else 'too strong'} in most of it).")
    else:
        summary = "Grain is consistent with one noise-level function across the print."
    return block_result(
        "grain", heat_blocks=heat_blocks, mask_blocks=mask_blocks, block=block, shape=shape,
        kind_of={"noise-low": low_mask, "noise-high": high_mask}, score=score,
        params={"block": block, "false_alarms": false_alarms, "pool_radius": pool_radius,
                "threshold_z": round(threshold, 3)},
        summary=summary, explanation=EXPLANATION,
        details={"blocks_tested": int(usable.sum()), "blocks_low": low_count, "blocks_high": high_count,
                 "noise_level_median": round(float(np.exp(median_of(expected))), 6)},
        min_area=min_blocks * block * block,
    )
