"""Noise and film-grain consistency: where is the grain too weak, or too strong, for its brightness?

Method
------
Per block the grain is the mean absolute high-pass residual of the luminance (minus a twice-applied 5x5 median,
which keeps the grain's clumps and drops shading). A noise-level function sigma(brightness) is estimated from the
flattest blocks of the image (Liu et al. 2006); each block's log-ratio of measured to predicted grain becomes a
robust z-score, pooled over 3x3 blocks and put on the scale of the blocks of the same brightness and colourfulness
(``_blocks.standardise_by_content``). Groups of blocks are judged a-contrario (``_blocks.group_decision``, in
the spirit of Gardella et al.'s Noisesniffer): ``noise-low`` regions have far less grain than the print elsewhere
(airbrush, gouache, diffusion fills, smoothing), ``noise-high`` regions far more (paste-ups from a grainier print),
sought only in blocks without strong structure. Only a picture whose flattest blocks all carry grain (a film
print or its scan, :func:`grain_profile`) is judged; on any other picture (a digital photograph, a heavily
compressed copy) the map is computed and no region is decided (``judge_digital``).

Limits
------
A fill re-grained to match is invisible; clipped blacks and whites carry no grain; heavy JPEG or denoising of the
whole scan lowers sensitivity; coarse grain over image structure is rarely told from texture. On digital
photographs (as opposed to scanned prints) the residual measures the camera's noise reduction and JPEG, which
flatten deep shadows and clear skies, not grain: there the map is close to chance and its decisions marked
authentic shadows, skies and woven cloth, so no region is decided on them (``benchmarks/results/real.md`` and
``detector_notes.md``). A print scanned and then heavily compressed (a web copy) can lose the grain test and go
unjudged.

References
----------
C. Liu, W. T. Freeman, R. Szeliski, S. B. Kang, "Noise estimation from a single image", CVPR 2006.
T. Gardella, M. Colom, J.-M. Morel, "Noisesniffer: a fully automatic image forgery detector based on noise
analysis", IWBF 2021.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from retouch.detect._blocks import (
    EXTENT_Z,
    NOTHING_TO_JUDGE,
    binned_reference,
    block_mean,
    block_result,
    block_saturation,
    content_classes,
    finite_or_none,
    group_decision,
    median_of,
    nfa_score,
    percentile_of,
    pooled_z,
    standardise_by_content,
    strength_to_heat,
)
from retouch.detect._options import options_params, resolve_options
from retouch.registry import register
from retouch.imaging import for_each_strip, strip_workers, to_gray_float
from retouch.result import AnalysisResult

FALSE_ALARM_CONTROL = ("a-contrario: a region's NFA is the number of block tests times the chance that one block "
                       "of an untouched photograph scores as high against the blocks of its content class "
                       "(brightness, colourfulness; a Gaussian widened by tail_margin, or by "
                       "grain_tail_margin for grain-dominated pictures such as scanned prints)")

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


def grain_level(image: np.ndarray) -> float:
    """The picture's grain level: the median grain residual of its flattest blocks (in units of full scale), the
    level of the noise-level function :func:`grain_consistency` estimates. Film prints and their scans lie above
    about 0.009; most digital photographs below 0.006 (``benchmarks/results/false_alarms.md``)."""
    return grain_profile(image)[0]


def grain_profile(image: np.ndarray) -> tuple[float, float]:
    """The grain level (:func:`grain_level`) and its uniformity: the level of the flattest tenth of the blocks
    divided by that of the flattest 40 %.

    Film grain covers a print whatever it shows, so the flattest tenth carries about the grain of the flattest
    40 % (0.76 to 0.9 on generated scans); in a textured digital photograph the "grain" of the flattest 40 % is
    mostly texture, and it falls away in the flattest tenth (0.1 to 0.67 on most real camera originals).
    """
    image = np.asarray(image)
    eight = _gray8(image) if image.dtype != np.uint16 else cv2.convertScaleAbs(to_gray_float(image), alpha=255.0)
    measures = _block_measures(eight, _block_size(eight.shape))
    usable = measures["unclipped"] >= 0.8 * 255
    if not usable.any():
        return 0.0, 0.0
    return _flat_levels(measures["residual"] / 255.0, measures["structure"], usable)


def _flat_levels(residual: np.ndarray, structure: np.ndarray, usable: np.ndarray) -> tuple[float, float]:
    """(median residual of the flattest 40 % of the usable blocks, that of the flattest 10 % divided by it)."""
    def level(percent: float) -> float:
        flat = usable & (structure <= percentile_of(structure[usable], percent))
        return float(np.exp(median_of(np.log(residual[flat] + 1e-5))))

    broad = level(40)
    return broad, level(10) / max(broad, 1e-12)


def grain_dominated(level: float, uniformity: float, *, grain_level: float, grain_uniformity: float) -> bool:
    """Whether a picture is judged as grain-dominated (a film print or its scan): grain at least ``grain_level``
    in its flattest blocks, and about as strong in the flattest of them (``uniformity >= grain_uniformity``)."""
    return level >= grain_level and uniformity >= grain_uniformity


def _block_size(shape: tuple[int, int]) -> int:
    pixels = shape[0] * shape[1]
    return 8 if pixels <= 1_500_000 else 16 if pixels <= 12_000_000 else 24


@dataclass(frozen=True)
class GrainOptions:
    """Options of :func:`grain_consistency`.

    Attributes
    ----------
    block : int or None
        Block side in pixels (None: 8, 16 or 24 by image size).
    nfa_threshold : float
        A region is decided when its number of false alarms is at most this (0.01).
    grain_level : float
        Grain level (median residual of the flattest blocks, in units of full scale) from which a picture is
        grain-dominated, as film prints and their scans are, and judged with ``grain_tail_margin`` (0.0085).
    grain_uniformity : float
        A grain-dominated picture also keeps at least this share of its grain level in its flattest tenth of
        blocks (see :func:`grain_profile`; 0.7): texture mistaken for grain does not.
    grain_tail_margin : float
        Null width for grain-dominated pictures (1.3), calibrated on untouched generated scans and grainy
        photographs by ``benchmarks.false_alarms``.
    judge_digital : bool
        Whether pictures that are not grain-dominated (digital photographs, heavily compressed copies) are
        judged too (False: their map is computed and shown, and their score still ranks them, but no region is
        decided: there the residual measures the camera's processing and JPEG, which flatten shadows and skies,
        not grain; see ``benchmarks/results/detector_notes.md``).
    tail_margin : float
        Width of the null model of a block score against a standard Gaussian (see
        ``_blocks.null_tail``) when ``judge_digital`` is set, calibrated on untouched photographs and scans by
        ``benchmarks.false_alarms``.
    pool_radius : int
        Neighbourhood (in blocks) over which block z-scores are pooled before the decision (1).
    """

    block: int | None = None
    nfa_threshold: float = 0.01
    grain_level: float = 0.0085
    grain_uniformity: float = 0.7
    grain_tail_margin: float = 1.3
    judge_digital: bool = False
    tail_margin: float = 1.6
    pool_radius: int = 1


@register("grain", title="Film grain consistency",
          description="Regions whose grain is far weaker (painted or smoothed) or stronger (pasted) than the "
                      "print's own noise-level function predicts.")
def grain_consistency(image: np.ndarray, *, options: GrainOptions | None = None, **changes: Any) -> AnalysisResult:
    """Flag regions whose grain departs from the image's noise-level function.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB scan.
    options : GrainOptions, optional
        Calibration and decision options (defaults: ``GrainOptions()``); keyword ``changes`` override its fields.

    Returns
    -------
    AnalysisResult
        ``noise-low`` and ``noise-high`` regions, each with ``evidence["nfa"]``.

    Examples
    --------
    >>> from skimage import data
    >>> grain_consistency(data.camera()).method
    'grain'
    """
    options = resolve_options(GrainOptions(), options, changes)
    block, pool_radius = options.block, options.pool_radius
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
            params={**options_params(options), "block": block})
    flat = usable & (structure <= percentile_of(structure[usable], 40))
    expected, spread = binned_reference(grain, brightness, flat, bins=10)
    z = (grain - expected) / spread
    z[clipped] = 0.0
    # not structure: it holds the grain itself, so a grainless fill would be judged against its own kind
    classes = content_classes(usable, brightness, block_saturation(image, block))
    low = standardise_by_content(pooled_z(np.minimum(-z, 6.0), pool_radius), usable, classes)
    # strong structure raises the residual on its own: only structure-poor blocks may testify to excess grain
    high = standardise_by_content(pooled_z(np.where(flat, np.minimum(z, 6.0), 0.0), pool_radius), flat,
                                  classes)
    tests = int(usable.sum()) * 2
    min_blocks = 4
    level = float(np.exp(median_of(expected)))
    uniformity = _flat_levels(residual, structure, usable)[1]
    dominated = grain_dominated(level, uniformity, grain_level=options.grain_level,
                                grain_uniformity=options.grain_uniformity)
    margin = options.grain_tail_margin if dominated else options.tail_margin
    decisions = [group_decision(values, tests=tests, margin=margin,
                                nfa_threshold=options.nfa_threshold, min_blocks=min_blocks, extent_z=EXTENT_Z)
                 for values in (low, high)]
    judged = dominated or options.judge_digital
    if not judged and (decisions[0].mask | decisions[1].mask).any() and level >= options.grain_level:
        # a grainless fill of a tenth of a print or more is itself the print's flattest tenth, and lowers the
        # uniformity it is judged by: the picture is asked again with the decided groups (and the blocks around
        # them) left out, so the hypothesis "film grain everywhere" is tested on the rest of the picture only
        candidate = cv2.dilate((decisions[0].mask | decisions[1].mask).view(np.uint8), np.ones((3, 3), np.uint8))
        uniformity = _flat_levels(residual, structure, usable & ~candidate.view(bool))[1]
        judged = uniformity >= options.grain_uniformity
    low_mask, high_mask = (d.mask & judged for d in decisions)
    nfa = np.minimum(decisions[0].nfa, decisions[1].nfa)
    threshold = decisions[0].threshold_z
    best_nfa = min(d.best_nfa for d in decisions)
    mask_blocks = (low_mask | high_mask) & usable
    strength = np.maximum(low, high)
    heat_blocks = strength_to_heat(strength, threshold)
    score = nfa_score(best_nfa, options.nfa_threshold, decided=bool(mask_blocks.any()))
    low_count = int(low_mask.sum())
    high_count = int(high_mask.sum())
    null = decisions[0].null_record(decisions[1:])
    if not judged:  # no margin decides anything here: what the false-alarm calibration must count
        null["group_nfa"] = dict.fromkeys(null["group_nfa"])
    if mask_blocks.any():
        summary = (f"Grain inconsistent with the rest of the print in {100 * mask_blocks.mean():.2f} % of the "
                   f"image ({'too weak' if low_count >= high_count else 'too strong'} in most of it).")
    elif not judged:
        summary = ("Not judged: this picture's noise is not film grain (its flattest areas carry "
                   f"{'little noise' if level < options.grain_level else 'noise that fades where they are flattest'}"
                   ", as in a digital photograph or a heavily compressed copy); the map shows where the noise "
                   "departs most from the rest of the picture, without a decision.")
    else:
        summary = "Grain is consistent with one noise-level function across the print."
    return block_result(
        "grain", heat_blocks=heat_blocks, mask_blocks=mask_blocks, block=block, shape=shape,
        kind_of={"noise-low": low_mask, "noise-high": high_mask}, score=score,
        params={**options_params(options), "block": block, "threshold_z": round(threshold, 3),
                "false_alarm_control": FALSE_ALARM_CONTROL},
        nfa=nfa, what="grain anomaly",
        summary=summary, explanation=EXPLANATION,
        details={"smallest_nfa": finite_or_none(best_nfa), "null": null,
                 "blocks_tested": int(usable.sum()), "blocks_low": low_count, "blocks_high": high_count,
                 "noise_level_median": round(level, 6), "grain_uniformity": round(uniformity, 3),
                 "grain_dominated": dominated, "judged": judged, "null_width_used": margin},
        min_area=min_blocks * block * block,
    )
