"""Double JPEG compression: areas compressed once where the rest of the picture was compressed twice.

Method
------
A photograph taken as a JPEG, edited and saved again as a JPEG on the same 8x8 grid is compressed twice: its DCT
coefficients were rounded to multiples of the first table's steps, then of the second's, which leaves a periodic
pattern of full and empty values in each frequency's histogram (aligned double quantisation). A piece pasted in
from another picture (resized, moved off the grid, or taken from a file of another quality) lost or never had
the first rounding, so its coefficients fill the histogram evenly. Following Lin, He, Tang & Tang (2009), for
each of the first ``frequencies`` AC frequencies (zig-zag order) the last quantisation step is read from the
file's table or, for decoded pixels, estimated from the coefficients themselves; the period ``p`` of the
histogram of quantised values is measured, and each coefficient of value ``k`` gets the log-ratio of its
probability if compressed once (``1 / p``, even over a period) to its probability if compressed twice
(``h(k)`` over the sum of ``h`` on the period around ``k``). A block's evidence is the sum over its counted
coefficients (not zeros, which occur in both cases, nor values in sparse parts of the histogram), judged against
blocks with about as many counted coefficients (``_blocks.binned_reference``), pooled over 5x5 blocks and judged
against pooled blocks of the same content (counted coefficients, brightness, range of values over the block's
pixels and channels: ``_blocks.standardise_by_content``), since saturated colours, deep shadows and highlights
clipped in an earlier decoding read as compressed once in photographs saved twice; blocks holding a clipped pixel
are not judged (clipping moves coefficients off either lattice). Groups of blocks are judged a-contrario
(``_blocks.group_decision``); a decided group keeps the blocks whose own evidence stands out from their content
(``extent_z``), as the 5x5 pooling reaches two blocks past a piece. Only a picture that shows double compression
is judged: at least
``min_clear`` frequencies whose histogram is clearly periodic (:func:`dq_period`'s strength at least
``clear_strength``). In a picture compressed once there is nothing for a piece to lack, and what reads as
"compressed once" is then the histograms' chance irregularities or the picture's own regular texture.

Limits
------
It needs a picture compressed at least twice on one grid with a first quality lower than the last (or with
steps that are not multiples of each other); when the last compression is the stronger one (Q2 >= Q1) the
first leaves no trace and nothing is found (Bianchi & Piva). A picture resized, rotated or cropped off the
grid after the first compression, or compressed only once, has no periodic histogram and is not judged
(``skipped``), nor is one never compressed (no grid). A first save at a quality near the last leaves weak periods:
many such pictures are skipped (about half of the CASIA splices of the development material). Flat areas carry
few non-zero coefficients and little evidence. Fine regular texture (a mesh, a lattice) makes its own peaks in
the histograms; in a picture compressed once it read as compressed once, which the double-compression test
excludes, but in a picture compressed twice it may still stand out.

References
----------
Z. Lin, J. He, X. Tang, C.-K. Tang, "Fast, automatic and fine-grained tampered JPEG image detection via DCT
coefficient analysis", Pattern Recognition 42(11), 2009.
T. Bianchi, A. Piva, "Image forgery localization via block-grained analysis of JPEG artifacts", IEEE TIFS 7(3),
2012.

Examples
--------
>>> from skimage import data
>>> double_jpeg(data.camera()).skipped is not None  # never compressed: no JPEG history to compare
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from retouch.detect._blocks import (
    binned_reference,
    block_max,
    block_mean,
    block_result,
    content_classes,
    finite_or_none,
    group_decision,
    nfa_score,
    placed_at_origin,
    pooled_z,
    standardise_by_content,
    strength_to_heat,
)
from retouch.detect._options import options_params, resolve_options
from retouch.imaging import to_gray_float
from retouch.registry import register
from retouch.result import AnalysisResult

FALSE_ALARM_CONTROL = ("a-contrario: a region's NFA is the number of 8x8 blocks tested times the chance that a "
                       "pooled block of an untouched doubly compressed picture looks as singly compressed against "
                       "the pooled blocks of its content class (a Gaussian widened by tail_margin)")

EXPLANATION = (
    "A photograph saved as a JPEG, edited, and saved as a JPEG again carries the traces of both compressions in "
    "its fine detail. A piece pasted in from another picture usually carries only the last one. Bright areas look "
    "compressed once where the rest of the picture looks compressed twice. Limits: it needs a picture saved at "
    "least twice on the same 8x8 grid, the last time at a higher quality than the first; a picture resized or "
    "cropped between the two saves, or saved only once, cannot be judged; plain areas carry little evidence."
)


@dataclass(frozen=True)
class DoubleJpegOptions:
    """Options of :func:`double_jpeg`.

    Attributes
    ----------
    frequencies : int
        AC frequencies analysed, in zig-zag order from the lowest (35).
    nfa_threshold : float
        A region is decided when its number of false alarms is at most this (0.01).
    tail_margin : float
        Width of the null model of a pooled block score against a standard Gaussian (see
        ``_blocks.null_tail``), calibrated on untouched photographs by ``benchmarks.false_alarms``.
    min_periodic : int
        Fewest frequencies that must count (a last step of at least 2, a period found, the strength below) for
        the analysis to apply (3).
    min_strength : float
        Periodic strength (see :func:`dq_period`: an F ratio of the folded histogram) a frequency needs to count
        (0: every frequency counts; a bin emptier than its neighbours is evidence even where the period is not
        clean, and a stricter gate skipped most of the real development material, see
        ``benchmarks/results/detector_notes.md``).
    clear_strength : float
        Periodic strength from which a frequency's histogram is clearly periodic (2.0: twice the variance
        between phases that chance gives).
    min_clear : int
        Fewest clearly periodic frequencies for the picture to be judged at all (3): a picture compressed once
        has no double compression for a piece to lack, and its histograms' chance irregularities and its own
        regular texture (a mesh, a lattice) then decide what reads as "compressed once".
    extent_z : float or None
        A decided group's blocks are kept where their own (unpooled) evidence is above this, in units of their
        content class's spread, then closed over 3x3 blocks (0.5); a group left with fewer than 6 blocks keeps
        them all, and None keeps every decided group whole. It only trims decided groups: the number of groups
        decided and their NFA do not depend on it.
    """

    frequencies: int = 35
    nfa_threshold: float = 0.01
    tail_margin: float = 1.6
    min_periodic: int = 3
    min_strength: float = 0.0
    clear_strength: float = 2.0
    min_clear: int = 3
    extent_z: float | None = 0.5


def _zigzag() -> list[tuple[int, int]]:
    """The 63 AC frequencies (row, column) in JPEG's zig-zag order."""
    order = sorted(((u, v) for u in range(8) for v in range(8)),
                   key=lambda t: (t[0] + t[1], t[0] if (t[0] + t[1]) % 2 else t[1]))
    return order[1:]


ZIGZAG = _zigzag()
LIMIT = 64  # quantised values beyond +-LIMIT are rare and counted at the limit


def _dct_basis() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix (row k is the k-th basis vector), as JPEG uses, in float64: the
    coefficients are compared with multiples of the quantisation steps (``grid._dct_rows`` is float32)."""
    k = np.arange(8)[:, None]
    i = np.arange(8)[None, :]
    basis = np.cos(np.pi * (2 * i + 1) * k / 16) * np.sqrt(2 / 8)
    basis[0] /= math.sqrt(2)
    return basis


def grid_origin(luminance: np.ndarray, *, side: int = 512) -> tuple[tuple[int, int], float]:
    """The JPEG grid's origin (row, column) by ZERO's votes (``retouch.detect.grid``) on a central crop of at most
    ``side`` x ``side`` pixels (its corner on the 8-pixel lattice, so the origin carries over), with the share of
    the cells that voted for it (1/64 by chance)."""
    from retouch.detect.grid import cell_votes, dct_zero_counts

    height, width = luminance.shape
    top = max((height - side) // 2, 0) // 8 * 8
    left = max((width - side) // 2, 0) // 8 * 8
    votes = cell_votes(dct_zero_counts(luminance[top: top + side + 8, left: left + side + 8]))
    decisive = votes[votes >= 0]
    if decisive.size == 0:
        return (0, 0), 0.0
    histogram = np.bincount(decisive.astype(np.int64), minlength=64)
    main = int(histogram.argmax())
    return (main // 8, main % 8), float(histogram[main] / decisive.size)


def block_dct(luminance: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    """JPEG-scale DCT of every whole 8x8 block of the grid starting at ``origin``: (rows, cols, 8, 8)."""
    top, left = origin
    part = luminance[top:, left:]
    rows, cols = part.shape[0] // 8, part.shape[1] // 8
    blocks = (part[: rows * 8, : cols * 8].astype(np.float64) - 128.0).reshape(rows, 8, cols, 8).swapaxes(1, 2)
    basis = _dct_basis()
    return basis @ blocks @ basis.T


def zigzag_coefficients(luminance: np.ndarray, origin: tuple[int, int], count: int, *, band: int = 64
                        ) -> np.ndarray:
    """The first ``count`` AC coefficients (zig-zag order) of every block of the grid at ``origin``: (rows, cols,
    count) float32, computed ``band`` block rows at a time so that a large picture never holds its full DCT."""
    top, left = origin
    rows, cols = (luminance.shape[0] - top) // 8, (luminance.shape[1] - left) // 8
    out = np.empty((rows, cols, count), np.float32)
    chosen_rows = np.array([u for u, _ in ZIGZAG[:count]])
    chosen_cols = np.array([v for _, v in ZIGZAG[:count]])
    for first in range(0, rows, band):
        last = min(first + band, rows)
        part = block_dct(luminance[top + 8 * first: top + 8 * last], (0, left))
        out[first:last] = part[:, :, chosen_rows, chosen_cols]
    return out


def last_step(coefficients: np.ndarray) -> int:
    """The last quantisation step of one frequency, estimated from its dequantised values: the largest step
    whose multiples the non-zero values cluster on (1 when none does).

    The values must sit on the multiples themselves (the mean cosine of their phase on the step's lattice,
    not its modulus): values at +-s have a phase of half a turn on a lattice of 2 s, and of nearly half a
    turn on one of 2 s / (2 k + 1) + a little, which the modulus accepts. Steps above the values' median
    magnitude are not tried: every non-zero value is at least one step, and on a lattice far coarser than the
    values they all sit near zero."""
    values = coefficients[np.abs(coefficients) > 1.5]
    if values.size < 50:
        return 1
    largest = int(min(255, np.median(np.abs(values)) + 1))
    steps = np.arange(2, largest + 1)
    if steps.size == 0:
        return 1
    coherence = np.array([np.cos(2 * np.pi * values / step).mean() for step in steps])
    fitting = steps[(coherence > 0.6) & (coherence >= coherence.max() - 0.01)]
    return int(fitting.max()) if fitting.size else 1


def dq_period(histogram: np.ndarray) -> tuple[int, float]:
    """The period (2..10) of a histogram of absolute quantised values (``histogram[0]`` counts 1) and its
    strength: the histogram over its own moving average of 9 bins is folded on each period; the strength is the
    variance between the folded phases over the variance within them (an F ratio, near 1 without a period).
    Multiples of the true period fold almost as well: the shortest divisor of the best period within 20 % of its
    strength is kept."""
    counts = histogram[:32].astype(np.float64)
    trend = np.convolve(counts, np.ones(9) / 9, mode="same")
    occupied = trend > 2.0
    ratio = np.where(occupied, counts / np.maximum(trend, 1e-9), np.nan)
    strengths = {}
    for period in range(2, 11):
        phases = np.arange(counts.size) % period
        keep = occupied
        if keep.sum() < 2 * period + 2:
            break
        groups = [ratio[keep & (phases == phase)] for phase in range(period)]
        if min(g.size for g in groups) < 2:
            break
        means = np.array([g.mean() for g in groups])
        within = float(np.mean([g.var(ddof=1) for g in groups])) + 1e-6
        per_phase = float(np.mean([g.size for g in groups]))
        strengths[period] = float(per_phase * means.var(ddof=1) / within)
    if not strengths:
        return 1, 0.0
    best = max(strengths, key=strengths.get)
    period = min(p for p, value in strengths.items() if best % p == 0 and value >= 0.8 * strengths[best])
    return period, strengths[period]


def single_compression_evidence(coefficients: np.ndarray, steps: Sequence[int], *, min_strength: float,
                                min_support: float = 10.0, clear_strength: float = 2.0
                                ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Per block, the log-ratio of singly to doubly compressed summed over the coefficients of the frequencies
    whose histogram shows a double-quantisation period, and the number of coefficients counted; and how many
    frequencies counted. ``coefficients`` is (rows, cols, n) in zig-zag order (:func:`zigzag_coefficients`),
    ``steps`` the last quantisation step of each of the n frequencies (0 to leave one out).

    A coefficient counts when it is not zero (zeros occur under both hypotheses) and its period of the histogram
    holds at least ``min_support`` values per bin: in the sparse tails a bin's count is noise, and textured blocks,
    which have many large coefficients, would gather that noise.

    Also returned: how many of those frequencies have a clearly periodic histogram (strength at least
    ``clear_strength``), the picture-level sign that it was compressed twice on one grid.
    """
    evidence = np.zeros(coefficients.shape[:2], np.float64)
    counted = np.zeros(coefficients.shape[:2], np.float64)
    periodic = clear = 0
    for index, step in enumerate(steps):
        if step < 1:
            continue
        quantised = np.clip(np.rint(coefficients[:, :, index] / step), -LIMIT, LIMIT).astype(np.int64) + LIMIT
        histogram = np.bincount(quantised.ravel(), minlength=2 * LIMIT + 1).astype(np.float64)
        magnitude = histogram[LIMIT + 1:] + histogram[LIMIT - 1::-1]  # |k| = 1 .. LIMIT
        period, strength = dq_period(magnitude)
        if period < 2 or strength < min_strength:
            continue
        periodic += 1
        clear += strength >= clear_strength
        around = np.convolve(histogram, np.ones(period), mode="same")
        doubly = np.clip(histogram / np.maximum(around, 1e-9), 1e-3, 1.0)
        ratio = np.clip(np.log((1.0 / period) / doubly), -3.0, 3.0)
        usable = around >= min_support * period
        usable[LIMIT] = False
        ratio[~usable] = 0.0
        evidence += ratio[quantised]
        counted += usable[quantised]
    return evidence, counted, periodic, clear


def block_extremes(image: np.ndarray, origin: tuple[int, int], shape: tuple[int, int], *, band: int = 512
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The darkest and the brightest value of any channel in each block of the grid at ``origin`` (``shape``
    blocks), in the image's own units (computed ``band`` rows at a time)."""
    channels = np.asarray(image)
    top, left = origin
    rows, cols = shape
    low = np.empty(shape, channels.dtype)
    high = np.empty(shape, channels.dtype)
    for first in range(0, rows, band // 8):
        last = min(first + band // 8, rows)
        part = channels[top + 8 * first: top + 8 * last, left: left + cols * 8]
        if part.ndim == 3:
            # OpenCV's element-wise minimum and maximum of the channel planes: numpy's reduction over the short
            # channel axis cost ten times as much (0.55 s against 0.06 s on 12 megapixels)
            planes = cv2.split(np.ascontiguousarray(part[..., :3]))
            darkest, brightest = planes[0], planes[0]
            for plane in planes[1:]:
                darkest, brightest = cv2.min(darkest, plane), cv2.max(brightest, plane)
        else:
            darkest = brightest = part
        high[first:last] = block_max(brightest, 8)
        low[first:last] = ~block_max(~darkest, 8)  # the minimum, as the maximum of the complement
    return low, high


def trimmed_extent(decided: np.ndarray, evidence: np.ndarray, level: float, *, min_blocks: int = 6) -> np.ndarray:
    """The blocks of each decided group (connected ``decided`` blocks) whose own ``evidence`` is above ``level``,
    closed over 3x3 blocks within the group; a group left with fewer than ``min_blocks`` keeps all its blocks (the
    decision stands as made, only its extent is trimmed)."""
    trimmed = decided & (evidence > level)
    trimmed = cv2.morphologyEx(trimmed.view(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).view(bool)
    trimmed &= decided
    count, labels = cv2.connectedComponents(decided.view(np.uint8), connectivity=8)
    kept = np.bincount(labels[trimmed], minlength=count) >= min_blocks
    return trimmed | (decided & ~kept[labels])


def _luminance(image: np.ndarray, *, band: int = 512) -> np.ndarray:
    """JPEG's luminance in 8-bit units, unrounded, float32, converted ``band`` rows at a time (a whole-picture
    float copy of the colours would cost 12 bytes a pixel)."""
    out = np.empty(image.shape[:2], np.float32)
    for first in range(0, image.shape[0], band):
        out[first: first + band] = to_gray_float(image[first: first + band]) * np.float32(255.0)
    return out


@register("dq", title="Double JPEG compression (pieces compressed once)", uses_jpeg=True,
          description="Areas whose DCT coefficients show one JPEG compression where the rest of the picture shows "
                      "two (aligned double quantisation): pieces pasted in before the last save.", default=False)
def double_jpeg(image: np.ndarray, *, jpeg_quantization: Mapping[int, Sequence[int]] | None = None,
                options: DoubleJpegOptions | None = None, **changes: Any) -> AnalysisResult:
    """Singly compressed areas in a doubly compressed picture (aligned double quantisation).

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image, as the file stores its pixels.
    jpeg_quantization : mapping, optional
        The file's quantization tables (natural order); ``None`` for decoded pixels (the last steps are then
        estimated from the coefficients).
    options : DoubleJpegOptions, optional
        Decision options (defaults: ``DoubleJpegOptions()``); keyword ``changes`` override its fields.

    Returns
    -------
    AnalysisResult
        ``jpeg-single`` regions, each with ``evidence["nfa"]``; the grid origin and the periodic frequencies in
        ``details``.
    """
    options = resolve_options(DoubleJpegOptions(), options, changes)
    luminance = _luminance(image)
    shape = luminance.shape
    params = {**options_params(options), "block": 8, "false_alarm_control": FALSE_ALARM_CONTROL}
    origin, share = grid_origin(luminance)
    top, left = origin
    details: dict[str, Any] = {"grid_origin": list(origin), "grid_vote_share": round(share, 3)}
    if shape[0] < 64 or shape[1] < 64 or share < 0.2:
        return AnalysisResult.skipped_result("dq", shape, "the pixels show no JPEG block grid (never compressed, "
                                             "or resized after their last compression)", params=params,
                                             explanation=EXPLANATION, details=details)
    chosen = ZIGZAG[: options.frequencies]
    coefficients = zigzag_coefficients(luminance, origin, len(chosen))
    if jpeg_quantization is not None and origin == (0, 0):
        table = np.asarray(jpeg_quantization.get(0, next(iter(jpeg_quantization.values()))), np.int64)
        steps = [int(table[u * 8 + v]) for u, v in chosen]
        details["steps_from"] = "file"
    else:
        steps = [last_step(coefficients[:, :, index]) for index in range(len(chosen))]
        details["steps_from"] = "coefficients"
    steps = [s if s >= 2 else 0 for s in steps]  # a step of 1 keeps no trace of an earlier one
    evidence, counted, periodic, clear = single_compression_evidence(
        coefficients, steps, min_strength=options.min_strength, clear_strength=options.clear_strength)
    details.update({"periodic_frequencies": periodic, "clearly_periodic_frequencies": clear})
    if periodic < options.min_periodic:
        return AnalysisResult.skipped_result("dq", shape, "too few DCT frequencies keep a quantisation step to "
                                             "compare the picture's compression histories (a JPEG saved at a "
                                             "quality near 100)", params=params, explanation=EXPLANATION,
                                             details=details)
    if clear < options.min_clear:
        return AnalysisResult.skipped_result("dq", shape, "the picture shows no sign of two compressions on one "
                                             f"grid ({clear} DCT frequencies with a clearly periodic histogram, "
                                             f"{options.min_clear} needed): there is no double compression for a "
                                             "piece to lack", params=params, explanation=EXPLANATION,
                                             details=details)
    # blocks with some non-zero coefficient on a periodic frequency and no clipped pixel: clipping to black or
    # white after the last decoding moves the coefficients off the lattice of either history
    low, high = block_extremes(image, origin, evidence.shape)
    white = 65535 if np.asarray(image).dtype == np.uint16 else 255
    informative = (counted > 0) & (low > 0) & (high < white)
    # a sum of n log-ratios centres and spreads with n: each block is judged against blocks with about as many
    # counted coefficients (a textured block gathers more of them, and more of their noise, than a smooth one)
    centre, spread = binned_reference(evidence, counted, informative, bins=8)
    z = np.where(informative, (evidence - centre) / spread, 0.0)
    # pooled blocks are judged against blocks of their own content: on photographs saved twice, saturated
    # colours, deep shadows and highlights near white (clipped in an earlier decoding, which moves coefficients
    # off the first lattice) read as compressed once wherever they gather
    rows, cols = evidence.shape
    brightness = block_mean(luminance[top: top + 8 * rows, left: left + 8 * cols], 8)
    contrast = high.astype(np.float32) - low.astype(np.float32)
    classes = content_classes(informative, counted, brightness, contrast)
    pooled = standardise_by_content(pooled_z(z.astype(np.float32), 2), informative, classes)
    pooled = np.where(informative, pooled, 0.0).astype(np.float32)
    tests = max(int(informative.sum()), 1)
    decision = group_decision(pooled, tests=tests, margin=options.tail_margin, nfa_threshold=options.nfa_threshold,
                              min_blocks=6)
    decided = decision.mask
    if decided.any() and options.extent_z is not None:
        # how far a decided piece reaches: its blocks whose own evidence stands out from blocks of their content
        # (the 5x5 pooling reaches two blocks past the piece on every side)
        decided = trimmed_extent(decided, standardise_by_content(z.astype(np.float32), informative, classes),
                                 options.extent_z)
    score = nfa_score(decision.best_nfa, options.nfa_threshold, decided=bool(decision.mask.any()))
    details.update({"smallest_nfa": finite_or_none(decision.best_nfa), "null": decision.null_record(),
                    "steps": steps})
    if decided.any():
        summary = (f"{100 * decided.mean():.2f} % of the picture looks compressed once where the rest "
                   "looks compressed twice.")
    else:
        summary = ("No area looks compressed once against the rest of the picture beyond chance (which needs the "
                   "picture to have been saved twice, the last time at the higher quality).")
    # the block maps sit on the grid, which starts at the origin: built on that part, then placed in the picture
    part = block_result("dq", heat_blocks=strength_to_heat(pooled, decision.threshold_z),
                        mask_blocks=decided, block=8, shape=(shape[0] - top, shape[1] - left),
                        kind_of={"jpeg-single": decided}, score=score,
                        params={**params, "threshold_z": round(decision.threshold_z, 3)}, summary=summary,
                        explanation=EXPLANATION, details=details, min_area=6 * 64, nfa=decision.nfa,
                        what="piece compressed once")
    return placed_at_origin(part, shape, origin)
