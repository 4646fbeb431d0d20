"""Error-level analysis, normalised for content.

Method
------
The image is recompressed in memory as JPEG at ``quality`` (and each quality of ``sweep``); the error level is the
mean absolute difference per 8x8 block of the JPEG grid (Krawetz 2007). Raw error levels mostly show texture, so
each block's log error is compared with blocks of the same texture (gradient energy) and brightness elsewhere in
the image (a robust binned regression); the residual z-scores are pooled 3x3 and put on the empirical scale of
the blocks of the same content class (texture, brightness and colourfulness; ``_blocks.standardise_by_content``)
(blocks that recompress exactly, tied at 0, left out of it). Groups of blocks far above or below their peers are
judged a-contrario (``_blocks.group_decision``): a region is kept when its number of false alarms is at most
``nfa_threshold``. A quality at which the image reproduces itself (it was last saved so) is replaced by one 10
lower, where the error would be rounding only. Blocks holding dust, scratches or one-pixel lines are not judged.

Limits
------
Concerns the digital file only: a print retouched by hand and then scanned recompresses uniformly. Needs a JPEG
history; a region recompressed at the same quality as the rest, or a resized or filtered file, leaves little
trace. Measured ranges are in ``benchmarks/results/quality.md``, ``real.md`` and ``detector_notes.md``.

References
----------
N. Krawetz, "A picture's worth", Hacker Factor Solutions, 2007.
A. Desolneux, L. Moisan, J.-M. Morel, "From Gestalt Theory to Image Analysis", Springer, 2008 (NFA).
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from retouch.detect._blocks import (
    NOTHING_TO_JUDGE,
    binned_reference,
    block_max,
    block_mean,
    block_result,
    block_saturation,
    content_classes,
    finite_or_none,
    group_decision,
    median_of,
    nfa_score,
    pooled_z,
    standardise_by_content,
    strength_to_heat,
)
from retouch.detect._options import options_params, resolve_options
from retouch.detect._recompress import recompression_block_error
from retouch.registry import register
from retouch.imaging import for_each_strip, strip_workers, to_uint8
from retouch.result import AnalysisResult

EXPLANATION = (
    "Error-level analysis saves the picture again as a JPEG and measures how much each 8x8 block changes. Parts "
    "that were saved as JPEG fewer times, or at a different quality, than the rest change by a different amount. "
    "Texture also changes the error level, so each block is compared with blocks of similar texture and "
    "brightness in the same picture; bright areas on this map are blocks whose error level is unusual for their "
    "content. Important: this concerns only the digital file. A print that was retouched by hand and then scanned "
    "has one uniform digital history, and error-level analysis cannot see such retouching. Recompressing, "
    "resizing or filtering the whole file also erases the differences it looks for."
)


FALSE_ALARM_CONTROL = ("a-contrario: a region's NFA is the number of 8x8 blocks tested times the chance that "
                       "one block of an untouched photograph scores as high against the blocks of its content "
                       "class (texture, brightness, colourfulness; a Gaussian widened by tail_margin)")


def _content_blocks(gray: np.ndarray, block: int, *, band_pixels: int = 1 << 18
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per block: mean gradient magnitude (texture) and mean brightness, both in [0, 1] units, and the largest
    distance of a pixel from its 3x3 median (dust, scratches, hairlines), in grey levels.

    Worked through in bands of whole block rows, each with a one-row halo for the 3x3 filters, so the float
    gradients stay in cache instead of streaming three full-size float images through memory (about 40 % faster
    at 12 MP), and strips of bands run in parallel threads; the per-pixel values are those of the whole-image
    filters.
    """
    height, width = gray.shape
    rows, cols = height // block, width // block
    texture = np.empty((rows, cols), np.float32)
    brightness = np.empty((rows, cols), np.float32)
    peak_impulse = np.empty((rows, cols), np.uint8)
    step = max(1, band_pixels // max(width * block, 1))

    def bands(first_row: int, last_row: int) -> None:  # block rows [first_row, last_row), band by band
        for first in range(first_row, last_row, step):
            last = min(first + step, last_row)
            top, bottom = first * block, last * block
            low, high = max(top - 1, 0), min(bottom + 1, height)
            band = gray[low:high]
            inner = slice(top - low, bottom - low)
            # Sobel is linear: filter the 8-bit image straight into float and rescale the block means
            dx = cv2.Sobel(band, cv2.CV_32F, 1, 0)
            magnitude = cv2.magnitude(dx, cv2.Sobel(band, cv2.CV_32F, 0, 1), dx)
            texture[first:last] = block_mean(magnitude[inner], block)
            brightness[first:last] = block_mean(band[inner], block)
            peak_impulse[first:last] = block_max(cv2.absdiff(band, cv2.medianBlur(band, 3))[inner], block)

    parts = strip_workers(height)
    for_each_strip(bands, [rows * k // parts for k in range(parts + 1)])
    return texture / 255.0, brightness / 255.0, peak_impulse


def _non_reproducing_error(gray: np.ndarray, quality: int, usable: np.ndarray, block: int
                           ) -> tuple[int, np.ndarray]:
    """The quality actually used and its per-block mean recompression error: ``quality`` itself, unless the
    median usable block comes back unchanged (the image was last saved at that quality), then 10 lower (down to
    20 at most three times)."""
    for attempt in range(4):
        used = max(20, quality - 10 * attempt)
        error = recompression_block_error(gray, used, block)
        # block means of 8-bit differences: below half a level in 64 pixels, the block is unchanged
        if float(median_of(error[usable])) >= 0.5 / (block * block) or used == 20:
            break
    return used, error


def _spread_bearing(pooled: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """The usable blocks whose pooled score is not exactly 0, which the empirical scale is taken from.

    In a picture saved twice (say at quality 65, then 92) many blocks reproduce exactly when recompressed:
    their error is 0, and where most of a texture class does so, so is the class's median, so their z is exactly
    0. Such ties carry no information on the spread of the rest, yet they shrank the median absolute deviation
    the pooled scores are scaled by: on the 8 sample photographs saved at 65 then 92, 1.12 % of the image was
    marked on average (4.2 % at worst); leaving the ties out of the scale, 0.53 % (1.25 %), with the same
    decisions on every generated case of the quality benchmark. Ties are left out unless they are over three
    quarters of the usable blocks.
    """
    bearing = usable & (pooled != 0)
    return bearing if bearing.sum() >= 0.25 * usable.sum() else usable


@dataclass(frozen=True)
class ElaOptions:
    """Options of :func:`error_level_analysis`.

    Attributes
    ----------
    quality : int
        JPEG quality of the recompression (90).
    sweep : tuple of int
        Further qualities; a block's evidence is the largest across all qualities tried (none).
    nfa_threshold : float
        A region is decided when its number of false alarms is at most this (0.01: one such region in about 100
        untouched photographs).
    tail_margin : float
        Width of the null model of a block score against a standard Gaussian (see
        ``_blocks.null_tail``), calibrated on untouched photographs and scans by ``benchmarks.false_alarms``.
    impulse_limit : int
        Blocks with a pixel more than this many grey levels from its 3x3 median (dust, scratches, hairlines) are
        left out of the test (40).
    """

    quality: int = 90
    sweep: tuple[int, ...] = ()
    nfa_threshold: float = 0.01
    tail_margin: float = 2.0
    impulse_limit: int = 40


@register("ela", title="Error-level analysis (content-normalised)",
          description="JPEG recompression error per 8x8 block compared with blocks of similar texture; finds "
                      "regions with a different digital compression history.")
def error_level_analysis(image: np.ndarray, *, options: ElaOptions | None = None,
                         **changes: Any) -> AnalysisResult:
    """Content-normalised error-level analysis.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image.
    options : ElaOptions, optional
        Calibration and decision options (defaults: ``ElaOptions()``); keyword ``changes`` override its fields.

    Returns
    -------
    AnalysisResult
        Heatmap of block evidence, ``error-level`` regions, each with ``evidence["nfa"]``.

    Examples
    --------
    >>> from skimage import data
    >>> result = error_level_analysis(data.astronaut())
    >>> result.method
    'ela'
    """
    options = resolve_options(ElaOptions(), options, changes)
    quality, sweep, impulse_limit = options.quality, options.sweep, options.impulse_limit
    eight = to_uint8(image)
    gray = cv2.cvtColor(eight, cv2.COLOR_RGB2GRAY) if eight.ndim == 3 else eight
    shape = gray.shape
    block = 8
    texture, brightness, peak_impulse = _content_blocks(gray, block)
    usable = (brightness > 0.02) & (brightness < 0.98)
    usable &= peak_impulse <= impulse_limit  # dust and scratches: see the module docstring
    params = {**options_params(options), "block": block, "false_alarm_control": FALSE_ALARM_CONTROL}
    if not usable.any():
        return AnalysisResult.skipped_result("ela", shape, NOTHING_TO_JUDGE, params=params,
                                             explanation=EXPLANATION)
    covariate = np.log(texture + 1e-3) + 0.5 * brightness  # texture dominates; brightness splits ties
    classes = content_classes(usable, texture, brightness, block_saturation(eight, block))
    qualities: list[int] = []
    reproducing: list[int] = []
    high: np.ndarray | None = None  # per block, the strongest evidence over the qualities used
    low: np.ndarray | None = None
    levels = {}
    for asked in dict.fromkeys([int(quality), *[int(q) for q in sweep]]):
        q, raw_error = _non_reproducing_error(gray, asked, usable, block)
        if q != asked:
            reproducing.append(asked)
        if q in qualities:
            continue
        qualities.append(q)
        error = np.log(raw_error + 0.05)
        expected, spread = binned_reference(error, covariate, usable, bins=12)
        z = np.clip((error - expected) / spread, -6, 6)
        z[~usable] = 0.0
        pooled = pooled_z(z, 1)
        scale_from = _spread_bearing(pooled, usable)
        high_here = standardise_by_content(pooled, scale_from, classes)
        low_here = standardise_by_content(-pooled, scale_from, classes)
        high = high_here if high is None else np.maximum(high, high_here)
        low = low_here if low is None else np.maximum(low, low_here)
        levels[q] = round(float(np.exp(median_of(error))), 4)
    assert high is not None and low is not None  # the first quality asked is always used
    tests = int(usable.sum()) * 2 * len(qualities)
    decisions = [group_decision(values, tests=tests, margin=options.tail_margin,
                                nfa_threshold=options.nfa_threshold, min_blocks=4) for values in (high, low)]
    high_mask, low_mask = (d.mask for d in decisions)
    nfa = np.minimum(decisions[0].nfa, decisions[1].nfa)
    threshold = decisions[0].threshold_z
    best_nfa = min(d.best_nfa for d in decisions)
    mask_blocks = (high_mask | low_mask) & usable
    strength = np.maximum(high, low)
    heat_blocks = strength_to_heat(strength, threshold)
    score = nfa_score(best_nfa, options.nfa_threshold, decided=bool(mask_blocks.any()))
    if mask_blocks.any():
        summary = (f"Error levels unusual for their content in {100 * mask_blocks.mean():.2f} % of the image "
                   f"(recompressed at quality {', '.join(map(str, qualities))}).")
    else:
        summary = "Error levels are consistent with the image's content everywhere."
    if reproducing:
        summary += (f" The image reproduces itself at quality {', '.join(map(str, reproducing))} (it was last "
                    f"saved so), so it was recompressed at {', '.join(map(str, qualities))} instead.")
    return block_result(
        "ela", heat_blocks=heat_blocks, mask_blocks=mask_blocks, block=block, shape=shape,
        kind_of={"error-level": high_mask | low_mask}, score=score,
        params={**params, "threshold_z": round(threshold, 3)}, nfa=nfa, what="error-level anomaly",
        summary=summary, explanation=EXPLANATION,
        details={"smallest_nfa": finite_or_none(best_nfa), "null": decisions[0].null_record(decisions[1:]),
                 "median_error_level": levels, "qualities_used": qualities,
                 "self_reproducing_qualities": reproducing, "blocks_high": int(high_mask.sum()),
                 "blocks_low": int(low_mask.sum())},
        min_area=4 * block * block,
    )
