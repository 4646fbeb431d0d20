"""Whether a registered pair is one photograph: where the questioned image's fine structure agrees with the
reference placed by the registration, and whether that agreeing part is only a minority of the questioned picture.

A comparison judges an edit against the pair's own global differences, which presumes that most of what it
compares is one photograph. A composite whose piece of the source happens to carry the registration (a figure
cut out and placed into a new picture, which one similarity or homography maps) breaks that: most of the
questioned picture is new content, it becomes the background an edit is judged against, and nothing is reported.
:func:`overlap_agreement` tests the presumption from the pair itself.

Method
------
The reference is placed on the questioned image by the registration's transform, both are read at most at
``options.pixels`` (the work frame of :func:`~retouch.compare.composite.grown_piece`), and their gradient
orientations compared after a 2 px Gaussian, sampled every 3 px, wherever either picture has a clear gradient
(above LSD's quantisation bound, as the structure test of the composite module; one picture's flat area where the
other has edges is a disagreement, a soft copy of an edge keeps its orientation). The questioned frame is cut
into square cells, ``cells`` along the registered overlap's longest side. A cell of the overlap *agrees* when its
orientations point the same way (within pi/8) more often than chance allows at the 1 % level (binomial tail, the
chance each cell's own from its two orientation histograms, as :func:`~retouch.compare.composite._cell_tails`);
it is *shown to differ* when it does not and its agreement falls below the agreeing cells' pooled rate at the 1 %
level (binomial lower tail): enough edges to tell, and they do not agree as the shared part does. Cells too smooth
to tell count for neither side, and so do cells beyond the overlap: the questioned picture beyond the reference is
not compared, since a reference cropped tighter than the questioned photograph leaves edges there too.

The test: the questioned picture is one photograph with edits as long as its new content (cells of the overlap
shown to differ) is at most half of the cells that tell; it is a composite when, with each telling cell new
content with chance one half, as many new cells or more would occur with probability at most ``level`` (1 %,
binomial upper tail). An edit of a quarter to a third of one photograph leaves the rest agreeing and is far from
it; the breakdown point is the one the robust pair model and background rest on. False-alarm control: under the
null hypothesis (at most half of the telling cells new), the test fires with probability at most 1 % per pair if
cells were independent; neighbouring cells of one large edit are not, so an edit covering well over half of the
telling cells of one photograph may be called a composite (then its unedited part is reported as the piece it
shares).

The shared piece reported is the largest 8-connected group of agreeing cells, outlined by the hulls of its
agreeing samples, closed over the gaps between them (as :func:`~retouch.compare.composite.grown_piece` outlines
its parts); its number of false alarms is the binomial tail of the agreement over its samples (chance the
samples' cells' own, weighted by their samples) times the cells tested.

Limits: a piece placed into a picture of the same layout and texture direction (a wall of vertical edges on
vertical edges) tells little per cell; smooth new content (sky) counts for neither side; the cell grid is coarse
(a sixteenth of the overlap), so the outline follows cells where the piece's edge holds none.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retouch.compare.composite import (
    LOCAL_LEVEL,
    GrowthOptions,
    _agreeing,
    _chance,
    _gradients,
    _log10_binomial_tail,
    placed_reference,
)
from retouch.imaging import bounded, to_gray_float

OVERLAP_CELLS = 16  # cells along the registered overlap's longest side
COMPOSITE_LEVEL = -2.0  # log10: the new content a majority of the telling cells at the 1 % level


@dataclass(frozen=True)
class OverlapAgreement:
    """The structure test of a registered pair (see the module docstring): cells that agree, cells of the overlap
    shown to differ, the cell side (full-resolution pixels), the log10 binomial tail of the new content's count,
    and the largest agreeing part (polygon, questioned full-resolution pixels; None when no cell agrees) with the
    log10 NFA of its agreement."""

    agreeing: int
    differing: int
    cell_px: float
    log10_p: float
    piece: np.ndarray | None
    piece_log10_nfa: float
    level: float = COMPOSITE_LEVEL

    @property
    def composite(self) -> bool:
        """The agreeing part is shown to be a minority of the telling cells, and it is a piece beyond chance."""
        return (self.piece is not None and self.log10_p <= self.level
                and self.piece_log10_nfa <= self.level)

    def to_dict(self) -> dict:
        return {"agreeing_cells": self.agreeing, "differing_cells": self.differing,
                "cell_px": round(self.cell_px, 1), "log10_p": round(self.log10_p, 2),
                "piece_log10_nfa": round(max(self.piece_log10_nfa, -300.0), 2), "composite": self.composite}


def overlap_agreement(reference: np.ndarray, questioned: np.ndarray, transform: np.ndarray, *,
                      cells: int = OVERLAP_CELLS, level: float = COMPOSITE_LEVEL,
                      options: GrowthOptions = GrowthOptions()) -> OverlapAgreement | None:
    """Where the questioned image's fine structure agrees with ``reference`` placed by ``transform`` (3x3,
    reference pixels to questioned pixels), and whether that part is only a minority of the questioned picture
    (see the module docstring).

    Parameters
    ----------
    reference, questioned : ndarray
        Gray or RGB images.
    transform : ndarray
        The registration's 3x3 map of reference pixels onto questioned pixels.
    cells : int
        Cells along the registered overlap's longest side.
    level : float
        log10 of the largest chance of the new content's count for a composite.
    options : GrowthOptions
        The work frame's size, the gradients' smoothing and sampling and the orientation precision.

    Returns
    -------
    OverlapAgreement or None
        None when the placed reference covers none of the questioned frame.
    """
    q_small, q_scale = bounded(to_gray_float(questioned), options.pixels)
    ref = to_gray_float(reference)
    height, width = q_small.shape
    placed = np.diag([q_scale, q_scale, 1.0]) @ np.asarray(transform, np.float64)
    warped, covered = placed_reference(ref, placed, (width, height), options.sigma)
    if not covered.any():
        return None
    magnitude_r, angle_r = _gradients(warped, options.sigma)
    magnitude_q, angle_q = _gradients(q_small, options.sigma)
    sample = np.zeros((height, width), bool)
    sample[::options.step, ::options.step] = True
    floor = 8 * (2.0 / 255.0) / np.sin(options.precision * np.pi)  # as the structure test's (composite module)
    clear = covered & sample & ((magnitude_q > floor) | (magnitude_r > floor))
    ys, xs = np.nonzero(covered)
    extent = max(int(ys.max() - ys.min()) + 1, int(xs.max() - xs.min()) + 1)
    cell = max(8, int(np.ceil(extent / cells)))
    rows, cols = -(-height // cell), -(-width // cell)
    index = (np.arange(height)[:, None] // cell) * cols + np.arange(width)[None, :] // cell
    agree = _agreeing(angle_r, clear, angle_q, clear, options.precision)

    def counts(where: np.ndarray) -> np.ndarray:
        return np.bincount(index[where], minlength=rows * cols).reshape(rows, cols).astype(np.float64)

    n, k = counts(clear), counts(agree)
    bins = 16
    histograms = []
    for angle in (angle_r, angle_q):
        which = (np.mod(angle[clear], 2 * np.pi) * (bins / (2 * np.pi))).astype(np.int64) % bins
        per_cell = np.bincount(index[clear] * bins + which, minlength=rows * cols * bins).reshape(rows, cols, bins)
        histograms.append(per_cell / np.maximum(n, 1.0)[:, :, None])
    chance = _chance(histograms[0], histograms[1], options.precision)
    tails = np.where(n > 0, _log10_binomial_tail(k, np.maximum(n, 1.0), chance), 0.0)
    padded = np.zeros((rows * cell, cols * cell))
    padded[:height, :width] = covered
    share = padded.reshape(rows, cell, cols, cell).mean(axis=(1, 3))
    inside = share >= 0.5
    agreeing = inside & (tails <= LOCAL_LEVEL)
    from scipy.stats import binom  # imported here, as in the composite module (import cost)

    rate = float(k[agreeing].sum() / max(n[agreeing].sum(), 1.0))
    lower = np.where(n > 0, binom.logcdf(k, np.maximum(n, 1.0), rate) / np.log(10.0), 0.0)
    differing = inside & ~agreeing & (lower <= LOCAL_LEVEL)
    new = int(differing.sum())
    telling = int(agreeing.sum()) + new
    log10_p = float(binom.logsf(new - 1, telling, 0.5) / np.log(10.0)) if telling else 0.0
    piece, piece_nfa = _largest_part(agreeing, agree, cell, (height, width), n, k, chance)
    if piece is not None:
        piece = np.clip(piece / q_scale, 0, [questioned.shape[1], questioned.shape[0]])
    tests = int(inside.sum())
    return OverlapAgreement(agreeing=int(agreeing.sum()), differing=int(differing.sum()),
                            cell_px=cell / q_scale, log10_p=log10_p, piece=piece,
                            piece_log10_nfa=piece_nfa + float(np.log10(max(tests, 1))), level=level)


def _largest_part(agreeing: np.ndarray, agree: np.ndarray, cell: int, shape: tuple[int, int], n: np.ndarray,
                  k: np.ndarray, chance: np.ndarray) -> tuple[np.ndarray | None, float]:
    """The largest 8-connected group of ``agreeing`` cells as a polygon (work-frame pixels): the hulls of each
    cell's agreeing samples, closed over the gaps between them; and the log10 binomial tail of the agreement over
    its samples (chance weighted by the cells' samples). (None, 0.0) when no cell agrees."""
    count, labels = cv2.connectedComponents(agreeing.astype(np.uint8), connectivity=8)
    if count < 2:
        return None, 0.0
    sizes = np.bincount(labels.ravel(), minlength=count)
    sizes[0] = 0
    part = labels == int(np.argmax(sizes))
    samples, agreed = float(n[part].sum()), float(k[part].sum())
    p = float((chance[part] * n[part]).sum() / max(samples, 1.0))
    tail = float(_log10_binomial_tail(agreed, max(samples, 1.0), p))
    height, width = shape
    hulls = np.zeros((height, width), np.uint8)
    for row, col in zip(*np.nonzero(part)):
        y0, x0 = row * cell, col * cell
        ys, xs = np.nonzero(agree[y0:y0 + cell, x0:x0 + cell])
        if len(xs) >= 3:
            cv2.fillPoly(hulls, [cv2.convexHull(np.stack([xs + x0, ys + y0], axis=1).astype(np.int32))], 1)
        else:
            hulls[y0:y0 + cell, x0:x0 + cell] = 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cell | 1, cell | 1))
    area = cv2.morphologyEx(hulls, cv2.MORPH_CLOSE, disc)
    contours, _ = cv2.findContours(area, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None, 0.0
    return max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64), tail
