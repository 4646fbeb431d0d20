"""JPEG grid votes: areas of a picture that lack the JPEG block grid the rest of it carries, or carry another one.

Method
------
A JPEG file quantises the DCT of every 8x8 block of its grid, so once decoded, the blocks of that grid have many
DCT coefficients that round to zero, and blocks placed at any other of the 64 possible origins have few. Following
ZERO (Nikoukhah et al. 2021), the luminance's DCT is taken at every pixel position (63 AC coefficients, the JPEG
scale), the zeros of each block are counted, and each 8x8 cell of the picture votes for the grid origin of the
block, among the 64 that start inside it, with the most zeros (no vote on a tie, as in flat areas). The
picture's main grid is the origin most cells vote for; it must be far beyond chance (binomial, 1 in 64),
otherwise the picture shows no JPEG history in its pixels and the analysis does not apply.

Pixels decoded from a JPEG keep that grid when saved again as PNG or TIFF, or as a JPEG on the same grid. A piece
pasted in after being resized, rotated or taken from another JPEG at another alignment votes for other origins or
at random. The null model of a cell's vote is the share of main votes among cells of the same texture (textured
cells of a high-quality JPEG lose their vote more often); a window of cells (5x5) scores the shortfall of main
votes against that expectation (a Stouffer sum of the cells' standardised residuals), and groups of windows are
judged a-contrario (``_blocks.group_decision``).

Limits
------
Needs a JPEG history in the pixels: on a never-compressed picture, or one resized or rotated after its last
compression, it does not apply. A picture compressed again as a whole on the same grid after the edit (a splice
saved as JPEG) carries the last grid everywhere; the paste then shows only in error levels, ghosts or double
quantisation. Flat areas (sky, walls) cast no vote and are not judged.

References
----------
T. Nikoukhah, J. Anger, M. Colom, J.-M. Morel, R. Grompone von Gioi, "ZERO: a local JPEG grid origin detector
based on the number of DCT zeros and its applications in image forensics", Image Processing On Line 11, 2021.

Examples
--------
>>> from skimage import data
>>> grid_votes(data.camera()).skipped is not None  # never JPEG-compressed: no grid in its pixels
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from retouch.detect._blocks import (
    block_mean,
    block_result,
    finite_or_none,
    group_decision,
    nfa_score,
    strength_to_heat,
)
from retouch.detect._options import options_params, resolve_options
from retouch.registry import register
from retouch.imaging import to_gray_float
from retouch.result import AnalysisResult

EXPLANATION = (
    "A JPEG file compresses its picture in 8x8 blocks on a fixed grid, and the pixels keep that grid even when "
    "the picture is later saved as PNG or TIFF. This map shows where the grid is missing or shifted: a piece "
    "pasted in from another picture, resized or placed off the grid, does not share it. Bright areas have far "
    "fewer cells on the picture's own grid than cells of the same texture elsewhere. Limits: it needs a JPEG history in the "
    "pixels; a picture saved again as a JPEG after the edit, or resized as a whole, carries one grid everywhere "
    "and this test then shows nothing; plain areas (sky, walls) cannot be judged."
)

FALSE_ALARM_CONTROL = ("a-contrario: a region's NFA is the number of cell windows tested times the chance that "
                       "a window of an untouched JPEG-born picture lacks as many main-grid votes (a Gaussian "
                       "widened by tail_margin); the main grid itself must be beyond chance at NFA 1e-6")


@dataclass(frozen=True)
class GridOptions:
    """Options of :func:`grid_votes`.

    Attributes
    ----------
    nfa_threshold : float
        A region is decided when its number of false alarms is at most this (0.01).
    tail_margin : float
        Width of the null model of a window score against a standard Gaussian (see
        ``_blocks.null_tail``), calibrated on untouched photographs and scans by ``benchmarks.false_alarms``.
    window : int
        Side, in 8x8 cells, of the window whose votes are pooled (7).
    max_pixels : int
        Above this many pixels the votes are taken on every other band of 256 rows, to bound the time (8,000,000).
    """

    nfa_threshold: float = 0.01
    tail_margin: float = 1.5
    window: int = 7
    max_pixels: int = 8_000_000


def _dct_rows() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix, as JPEG uses (row k is the k-th basis vector)."""
    k = np.arange(8)[:, None]
    i = np.arange(8)[None, :]
    basis = np.cos(np.pi * (2 * i + 1) * k / 16) * np.sqrt(2 / 8)
    basis[0] /= math.sqrt(2)
    return basis.astype(np.float32)


def dct_zero_counts(luminance: np.ndarray) -> np.ndarray:
    """For every pixel position (y, x), the number of the 63 AC coefficients of the 8x8 block starting there whose
    JPEG-scale DCT rounds to zero (|c| < 0.5); uint8, same shape (blocks running off the border are mirrored).

    The 2-D DCT is separable: 8 row filters, then 8 column filters on each, one OpenCV correlation per basis
    function over the whole image (every origin at once), where block-by-block transforms cost ten times as much.
    """
    basis = _dct_rows()
    centred = np.asarray(luminance, np.float32) - 128.0
    along_rows = [cv2.filter2D(centred, cv2.CV_32F, basis[v][None, :], anchor=(0, 0),
                               borderType=cv2.BORDER_REFLECT) for v in range(8)]
    counts = np.zeros(centred.shape, np.uint8)
    for u in range(8):
        for v in range(8):
            if u == 0 and v == 0:
                continue  # the DC coefficient says nothing of the grid
            coefficient = cv2.filter2D(along_rows[v], cv2.CV_32F, basis[u][:, None], anchor=(0, 0),
                                       borderType=cv2.BORDER_REFLECT)
            # inRange gives 255 where |c| <= 0.5: subtracting 255 in uint8 adds one (mod 256; counts stay <= 63)
            np.subtract(counts, cv2.inRange(coefficient, -0.5, 0.5), out=counts)
    return counts


def cell_votes(counts: np.ndarray) -> np.ndarray:
    """Each 8x8 cell's vote: the origin (8 oy + ox, 0..63) of the block with the most zeros among the 64 starting
    inside it, or -1 on a tie for the most."""
    rows, cols = counts.shape[0] // 8, counts.shape[1] // 8
    per_cell = (counts[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3)
                .reshape(rows, cols, 64))
    best = per_cell.argmax(axis=2)
    top = np.take_along_axis(per_cell, best[..., None], axis=2)[..., 0]
    ties = (per_cell == top[..., None]).sum(axis=2) > 1
    return np.where(ties, -1, best).astype(np.int16)


def _luminance(image: np.ndarray) -> np.ndarray:
    """JPEG's luminance (0.299 R + 0.587 G + 0.114 B) in 8-bit units, unrounded."""
    return to_gray_float(image) * np.float32(255.0)


def _analysed_rows(height: int, width: int, max_pixels: int) -> np.ndarray:
    """Rows whose cells are analysed: all, or alternate bands of 256 rows (32 cells) above ``max_pixels``."""
    rows = np.ones(height // 8, bool)
    if height * width > max_pixels:
        rows[(np.arange(height // 8) // 32) % 2 == 1] = False
    return rows


@register("grid", title="JPEG grid votes (missing or shifted 8x8 grid)",
          description="Areas lacking the JPEG block grid that the rest of the picture carries in its pixels, or "
                      "carrying another one: pieces pasted from another picture, resized or off the grid.")
def grid_votes(image: np.ndarray, *, options: GridOptions | None = None, **changes: Any) -> AnalysisResult:
    """Missing or shifted JPEG grid, from DCT-zero votes of every 8x8 cell.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image, as the file stores its pixels.
    options : GridOptions, optional
        Decision options (defaults: ``GridOptions()``); keyword ``changes`` override its fields.

    Returns
    -------
    AnalysisResult
        ``jpeg-grid`` regions, each with ``evidence["nfa"]``; the main grid origin in ``details``.
    """
    options = resolve_options(GridOptions(), options, changes)
    luminance = _luminance(image)
    shape = luminance.shape
    params = {**options_params(options), "cell": 8, "false_alarm_control": FALSE_ALARM_CONTROL}
    analysed = _analysed_rows(*shape, options.max_pixels)
    votes = np.full((shape[0] // 8, shape[1] // 8), -1, np.int16)
    band = 256
    for top in range(0, (shape[0] // 8) * 8, band):
        if not analysed[top // 8]:
            continue
        bottom = min(top + band + 8, shape[0])  # one cell of context below for blocks starting in the band
        part = cell_votes(dct_zero_counts(luminance[top:bottom]))
        rows = min(band // 8, votes.shape[0] - top // 8, part.shape[0])
        votes[top // 8: top // 8 + rows] = part[:rows]
    decisive = votes >= 0
    histogram = np.bincount(votes[decisive].astype(np.int64), minlength=64)
    cast = int(decisive.sum())
    main = int(histogram.argmax())
    # the main grid must be far beyond chance: binomial tail P(votes >= k) at 1 in 64, times 64 origins
    # (scipy.special's bdtrc, not scipy.stats: importing scipy.stats costs about a second per process)
    from scipy.special import bdtrc

    grid_nfa = float(64 * bdtrc(histogram[main] - 1, max(cast, 1), 1 / 64)) if cast else 1.0
    details: dict[str, Any] = {"main_origin": [main // 8, main % 8], "cells_voting": cast,
                               "main_share": round(histogram[main] / max(cast, 1), 4),
                               "grid_nfa": finite_or_none(grid_nfa)}
    if cast < 50 or grid_nfa > 1e-6:
        return AnalysisResult.skipped_result("grid", shape, "the pixels show no JPEG block grid (never "
                                             "compressed, or resized after their last compression)", params=params,
                                             explanation=EXPLANATION, details=details)
    # texture of each cell: its mean gradient magnitude, which decides how often a cell of an untouched
    # JPEG-born picture loses its vote
    dx = cv2.Sobel(luminance, cv2.CV_32F, 1, 0)
    gradient = cv2.magnitude(dx, cv2.Sobel(luminance, cv2.CV_32F, 0, 1))
    texture = np.log(block_mean(gradient, 8)[: votes.shape[0], : votes.shape[1]] + 1.0)
    on_main = (votes == main).astype(np.float32)
    share = _binned_share(on_main, texture, decisive, bins=8)
    size = (options.window, options.window)
    off_main = (decisive & (votes != main)).astype(np.float32)
    observed = cv2.boxFilter(off_main, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
    expected = cv2.boxFilter(np.where(decisive, 1.0 - share, 0.0).astype(np.float32), -1, size, normalize=False,
                             borderType=cv2.BORDER_CONSTANT)
    counted = cv2.boxFilter(decisive.astype(np.float32), -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
    z = _poisson_excess_z(np.rint(observed), np.maximum(expected, 1e-3))
    z[counted < 0.5 * options.window ** 2] = 0.0
    z[~analysed[: z.shape[0]]] = 0.0
    tests = max(int(decisive.sum()), 1)
    decision = group_decision(z.astype(np.float32), tests=tests, margin=options.tail_margin,
                              nfa_threshold=options.nfa_threshold, min_blocks=4)
    mask = decision.mask & (counted > 0)
    heat = strength_to_heat(z, decision.threshold_z)
    score = nfa_score(decision.best_nfa, options.nfa_threshold, decided=bool(mask.any()))
    details.update({"smallest_nfa": finite_or_none(decision.best_nfa), "null": decision.null_record(),
                    "cells_analysed_share": round(float(analysed.mean()), 3)})
    if mask.any():
        summary = (f"The picture's JPEG grid (origin {main // 8},{main % 8}) is missing or shifted in "
                   f"{100 * mask.mean():.2f} % of it.")
    else:
        summary = (f"The picture carries a JPEG grid (origin {main // 8},{main % 8}); no area lacks it beyond "
                   "chance.")
    return block_result("grid", heat_blocks=heat, mask_blocks=mask, block=8, shape=shape,
                        kind_of={"jpeg-grid": mask}, score=score,
                        params={**params, "threshold_z": round(decision.threshold_z, 3)}, summary=summary,
                        explanation=EXPLANATION, details=details, min_area=4 * 64, nfa=decision.nfa,
                        what="area without the picture's JPEG grid")


def _poisson_excess_z(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """The Gaussian z of the chance that a Poisson count of mean ``expected`` reaches ``observed`` (upper tail):
    off-grid votes are rare events in a JPEG-born picture (often 1 to 5 % of cells), where a Gaussian
    approximation of their count would make one stray vote look like a finding."""
    from scipy.special import ndtri, pdtrc

    tail = np.where(observed > 0, pdtrc(np.maximum(observed - 1, 0), expected), 1.0)
    return (-ndtri(np.clip(tail, 1e-300, 1.0))).astype(np.float32)


def _binned_share(values: np.ndarray, covariate: np.ndarray, eligible: np.ndarray, *, bins: int) -> np.ndarray:
    """Per cell, the mean of ``values`` over the eligible cells of its covariate bin (bins: covariate
    quantiles)."""
    pool = covariate[eligible]
    edges = np.quantile(pool, np.linspace(0, 1, bins + 1)[1:-1]) if pool.size else np.zeros(bins - 1)
    index = np.searchsorted(edges, covariate, side="right")
    sums = np.bincount(index[eligible], weights=values[eligible], minlength=bins)
    counts = np.bincount(index[eligible], minlength=bins)
    overall = float(values[eligible].mean()) if pool.size else 0.5
    share = np.where(counts >= 20, sums / np.maximum(counts, 1), overall)
    return share[index]
