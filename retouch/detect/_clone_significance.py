"""A-contrario significance of a copy-move pair: how often an untouched photograph like this one would show a
match this exact and this exclusive by chance.

Null hypothesis: the two sides of a pair are look-alikes (the image's own self-similarity: repeated objects,
symmetric subjects, textures, flat areas), not a copy. Look-alikes each carry their own noise; a copy carries its
source's noise, changed only by requantisation and resampling. The test is made in square cells of one side. For a
cell ``c`` and its twin under the pair's map,

    d(c) = mean_c (r - r_twin)^2 / mean_c (v + v_twin)

where ``r`` is the image's finest detail (image minus its 1-px Gaussian blur) and ``v`` the noise variance of that
detail at the cell's brightness (the image's noise level function, measured on its flattest cells). Two
independent noise fields give ``d`` about 1, structure that differs adds to it; an exact copy gives 0. A cell
*supports* a copy when it carries detail above the quantisation floor on both sides, ``d <= max_difference``, and
its twin is exclusive: ``d <= exclusivity * d_alt``, where ``d_alt`` is the best match of the cell under the
image's other recurrent displacements (a window of a facade, a tile, a letter matches many places equally well;
a copy matches its source much better than anything else).

The image's own rate ``p`` of supporting cells is measured on every cell outside the candidates, each against its
own best twin elsewhere in the image (the nearest-neighbour field). A pair whose ``n`` informative cells include
``k`` supporting ones has the number of false alarms

    NFA = M^2 * P[Binomial(n, p) >= k]

with ``M`` the image's informative cells (``M^2`` bounds the number of pairs of places that could have been
tested). ``NFA <= eps`` means that at most ``eps`` such pairs are expected, by chance, in an untouched photograph
of this size and kind (Desolneux, Moisan & Morel, "From Gestalt Theory to Image Analysis", 2008; applied to
copy-move by Ehret, "Robust copy-move forgery detection by false alarm control", arXiv 1906.00649).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.special import betainc

from retouch.detect._blocks import block_mean


# Added to both sides of the exclusivity test, in units of d: two twins that are both exact (a pattern repeated
# digitally, identical to the pixel) are equally good, not one infinitely better than the other
TIE = 0.05

# The displacements, around a cell's own, that a line or stripe through it would match as well as its own
LINE_SHIFTS = [(0, 4), (0, -4), (4, 0), (-4, 0), (3, 3), (-3, -3), (3, -3), (-3, 3)]

# The noise level function takes this quantile of the flattest cells' detail energy in each brightness band: a
# textured image has few truly flat cells, and a higher quantile there measures texture (which makes look-alike
# textures pass for copies), a lower one noise
NOISE_QUANTILE = 0.1
# ... and no brightness band's noise variance above this many times the median band's (sensor noise and film
# grain vary with brightness, but by less)
NOISE_SPREAD = 4.0


def fine_detail(gray: np.ndarray) -> np.ndarray:
    """The finest detail of an image: the image minus its 1-px Gaussian blur (grain, noise, finest texture)."""
    return gray - cv2.GaussianBlur(gray, (0, 0), 1.0)


@dataclass(frozen=True)
class CellEvidence:
    """What the significance test needs of one image, computed once: its finest detail, the noise variance of
    that detail at every pixel (from the noise level function), the cell size and the detail floor."""

    gray: np.ndarray
    detail: np.ndarray
    noise: np.ndarray
    cell: int
    min_detail: float  # mean squared detail a cell needs on both sides to carry evidence
    cell_energy: np.ndarray  # mean squared detail of every cell (grid shape)
    detail_noise: np.ndarray  # detail + 1j * noise (H, W) complex64: a pixel's two values gathered in one read

    @property
    def grid(self) -> tuple[int, int]:
        return self.gray.shape[0] // self.cell, self.gray.shape[1] // self.cell


def cell_evidence(gray: np.ndarray, *, cell: int, quantum: float, min_detail_quanta: float) -> CellEvidence:
    """The image's finest detail and its noise level function: the detail variance of the flattest half of the
    cells (low gradient energy, not clipped), its lower quartile per brightness decile, interpolated over
    brightness. A lower quartile of flat cells under-states the noise a little (d comes out larger, the test
    stricter); textured cells, whose detail holds structure as well, would overstate it."""
    detail = fine_detail(gray)
    smooth = cv2.GaussianBlur(gray, (0, 0), 2.0)
    energy = block_mean(detail * detail, cell)
    brightness = block_mean(smooth, cell)
    gradient = (cv2.Sobel(smooth, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(smooth, cv2.CV_32F, 0, 1) ** 2)
    structure = block_mean(gradient, cell)
    floor = quantum * quantum / 12.0  # the detail of 8-bit rounding noise alone, about
    unclipped = (brightness > 3 * quantum) & (brightness < 1 - 3 * quantum)
    eligible = unclipped & (structure <= np.quantile(structure[unclipped], 0.5) if unclipped.any() else unclipped)
    levels, centres = [], []
    if eligible.sum() >= 20:
        edges = np.quantile(brightness[eligible], np.linspace(0, 1, 11))
        for low, high in zip(edges[:-1], edges[1:], strict=True):
            chosen = eligible & (brightness >= low) & (brightness <= high)
            if chosen.sum() >= 5:
                centres.append(float(np.median(brightness[chosen])))
                levels.append(float(np.quantile(energy[chosen], NOISE_QUANTILE)))
    if centres:
        order = np.argsort(centres)
        # a brightness band without flat cells (a roof of tiles, a field of dirt) measures texture: no band's
        # noise variance is taken above NOISE_SPREAD times the median band's
        bands = np.minimum(np.asarray(levels)[order], NOISE_SPREAD * float(np.median(levels)))
        noise = np.interp(smooth, np.asarray(centres)[order], bands).astype(np.float32)
    else:
        noise = np.full(gray.shape, float(np.quantile(energy, 0.25)) if energy.size else floor, np.float32)
    np.maximum(noise, floor, out=noise)
    return CellEvidence(gray=gray, detail=detail, noise=noise, cell=cell,
                        min_detail=(min_detail_quanta * quantum) ** 2, cell_energy=energy,
                        detail_noise=cv2.merge([detail, noise]).view(np.complex64).reshape(gray.shape))


def informative_cells(evidence: CellEvidence) -> np.ndarray:
    """Cells whose own finest detail rises above the floor (flat, clipped or smoothed-out cells match anything)."""
    return evidence.cell_energy >= evidence.min_detail


def recurrent_offsets(offsets: list[tuple[int, int]]) -> np.ndarray:
    """The image's recurrent displacements (dy, dx) as a (K, 2) array, the form the tests take them in."""
    return np.asarray(offsets, np.float32).reshape(-1, 2)


def _sample_points(cell: int) -> list[tuple[int, int]]:
    """Five points of a cell (its centre and four inner corners) where the nearest-neighbour field is read."""
    near, far = max(1, cell // 4), cell - 1 - max(1, cell // 4)
    return [(cell // 2, cell // 2), (near, near), (near, far), (far, near), (far, far)]


def _field_at(oy: np.ndarray, ox: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nearest-neighbour displacement at (``ys``, ``xs``), clipped into the image."""
    height, width = oy.shape
    ys, xs = np.clip(ys, 0, height - 1), np.clip(xs, 0, width - 1)
    return oy[ys, xs].astype(np.int64), ox[ys, xs].astype(np.int64)


# Cells whose pixels are gathered at once: bounds the temporary arrays (a 24-megapixel image has 375,000 cells of
# 8 px, whose pixels and twins would take 200 MB at once) while keeping each numpy call long enough to be cheap
_CELLS_PER_CHUNK = 16_384


def _ratio_cells(evidence: CellEvidence, cy: np.ndarray, cx: np.ndarray, dy: np.ndarray, dx: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``d`` of the cells (``cy``, ``cx``) (grid indices, 1-D) against their twins at the whole-pixel
    displacements (``dy``, ``dx``) given per cell, inf where the twin leaves the image; and the unshared share of
    the two cells' detail (their difference over the sum of their energies: 0 identical, about 1 independent).

    Only the listed cells' pixels are read (the tests ask about a few cells, or about the informative ones): each
    cell's pixels and its twin's are gathered with one flat index into the image's (detail, noise) planes."""
    cell = evidence.cell
    height, width = evidence.detail.shape
    planes = evidence.detail_noise.reshape(-1)
    ratio = np.full(cy.shape, np.inf, np.float32)
    share = np.full(cy.shape, np.inf, np.float32)
    steps = np.arange(cell, dtype=np.int64)
    within = (steps[:, None] * width + steps[None, :]).ravel()  # a cell's pixels, from its top-left corner
    for first in range(0, cy.size, _CELLS_PER_CHUNK):
        chunk = slice(first, first + _CELLS_PER_CHUNK)
        top, left = cy[chunk].astype(np.int64) * cell, cx[chunk].astype(np.int64) * cell
        twin_top, twin_left = top + dy[chunk].astype(np.int64), left + dx[chunk].astype(np.int64)
        inside = ((twin_top >= 0) & (twin_top + cell <= height) & (twin_left >= 0) & (twin_left + cell <= width))
        if not inside.any():
            continue
        top, left, twin_top, twin_left = top[inside], left[inside], twin_top[inside], twin_left[inside]
        own = np.take(planes, (top * width + left)[:, None] + within)  # (cells, cell * cell): detail + 1j noise
        twin = np.take(planes, (twin_top * width + twin_left)[:, None] + within)
        difference = ((own.real - twin.real) ** 2).mean(axis=1)
        noise = own.imag.mean(axis=1) + twin.imag.mean(axis=1)
        energy = evidence.cell_energy[top // cell, left // cell] + (twin.real ** 2).mean(axis=1)
        where = np.flatnonzero(inside) + first
        ratio[where] = difference / np.maximum(noise, 1e-12)
        share[where] = difference / np.maximum(energy, 1e-12)
    return ratio, share


def _alternative_ratio(evidence: CellEvidence, oy: np.ndarray, ox: np.ndarray, recurrent: np.ndarray,
                       cy: np.ndarray, cx: np.ndarray, own_dy: np.ndarray, own_dx: np.ndarray, *,
                       min_offset: float) -> np.ndarray:
    """Per cell (``cy``, ``cx``: grid indices, 1-D), the smallest ``d`` among the twins it could have had instead
    of its own (displacement ``own_dy``, ``own_dx`` per cell): its own displacement reversed and doubled, its
    neighbours ``LINE_SHIFTS`` away, the nearest neighbours of its five sample points, the neighbours of its
    twin's points (a repeat's twin has twins of its own: a window of a facade, a letter), and the image's
    ``recurrent`` displacements ((K, 2): dy, dx). Displacements shorter than ``min_offset`` (the cell itself,
    reached back from its twin) are not alternatives, nor, except the line shifts, any within a cell of its
    own."""
    cell = evidence.cell
    best = np.full(cy.shape, np.inf, np.float32)
    if cy.size == 0:
        return best
    corner_y, corner_x = cy.astype(np.int64) * cell, cx.astype(np.int64) * cell
    twin_y = np.round(own_dy).astype(np.int64)
    twin_x = np.round(own_dx).astype(np.int64)
    # a periodic structure matches a period away in both directions (and two periods away), a copy its source
    # only: the displacement reversed and doubled are alternatives too. A line, an edge or a stripe matches
    # itself moved along its length: so are the displacement's neighbours a few pixels away, where a copy's
    # noise no longer matches
    options: list[tuple[np.ndarray, np.ndarray]] = [(-twin_y, -twin_x), (2 * twin_y, 2 * twin_x)]
    options += [(twin_y + sy, twin_x + sx) for sy, sx in LINE_SHIFTS]
    for py, px in _sample_points(cell):
        options.append(_field_at(oy, ox, corner_y + py, corner_x + px))
        back_y, back_x = _field_at(oy, ox, corner_y + py + twin_y, corner_x + px + twin_x)
        options.append((twin_y + back_y, twin_x + back_x))
    for index, (dy, dx) in enumerate(options):
        near_own = np.hypot(dy - own_dy, dx - own_dx) <= (cell if index >= 2 + len(LINE_SHIFTS) else 1.5)
        usable = np.flatnonzero(~near_own & (np.hypot(dy, dx) >= min_offset))
        if usable.size:
            ratio, _ = _ratio_cells(evidence, cy[usable], cx[usable], dy[usable], dx[usable])
            best[usable] = np.minimum(best[usable], ratio)
    for dy, dx in recurrent:
        far = np.flatnonzero(np.hypot(dy - own_dy, dx - own_dx) > cell)
        if far.size:
            shift_y, shift_x = np.full(far.size, int(dy)), np.full(far.size, int(dx))
            ratio, _ = _ratio_cells(evidence, cy[far], cx[far], shift_y, shift_x)
            best[far] = np.minimum(best[far], ratio)
    return best


def null_rate(evidence: CellEvidence, oy: np.ndarray, ox: np.ndarray, excluded: np.ndarray,
              recurrent: np.ndarray, *, max_difference: float, max_unshared: float,
              exclusivity: float, min_offset: float, min_rate: float) -> tuple[float, int]:
    """The image's own rate of supporting cells: each informative cell outside ``excluded`` (the candidates,
    both sides) against its best twin elsewhere (the best of the nearest-neighbour displacements at its five
    sample points), with Laplace's rule and at least ``min_rate``. Also returns the number of informative cells
    of the image."""
    cell = evidence.cell
    informative = informative_cells(evidence)
    cy, cx = np.nonzero(informative & ~excluded)
    best = np.full(cy.shape, np.inf, np.float32)
    best_share = np.ones(cy.shape, np.float32)
    best_dy = np.zeros(cy.shape, np.int64)
    best_dx = np.zeros(cy.shape, np.int64)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    for py, px in _sample_points(cell):
        dy, dx = _field_at(oy, ox, cy * cell + py, cx * cell + px)
        # a coherent field gives several of a cell's points the same displacement: each is measured once (a
        # repeat could not be strictly better)
        fresh = np.ones(cy.shape, bool)
        for earlier_dy, earlier_dx in seen:
            fresh &= (dy != earlier_dy) | (dx != earlier_dx)
        seen.append((dy, dx))
        chosen = np.flatnonzero(fresh)
        ratio, share = _ratio_cells(evidence, cy[chosen], cx[chosen], dy[chosen], dx[chosen])
        better = ratio < best[chosen]
        where = chosen[better]
        best[where] = ratio[better]
        best_share[where] = share[better]
        best_dy[where] = dy[where]
        best_dx[where] = dx[where]
    counted = np.isfinite(best)
    candidates = np.flatnonzero(counted & (best <= max_difference) & (best_share <= max_unshared))
    alternative = _alternative_ratio(evidence, oy, ox, recurrent, cy[candidates], cx[candidates],
                                     best_dy[candidates].astype(np.float32),
                                     best_dx[candidates].astype(np.float32), min_offset=min_offset)
    supporting = best[candidates] + TIE <= exclusivity * (alternative + TIE)
    rate = (float(supporting.sum()) + 1.0) / (float(counted.sum()) + 2.0)
    return max(rate, min_rate), int(informative.sum())


@dataclass(frozen=True)
class PairTest:
    """The outcome of one pair's test: informative cells, supporting cells, the rate and tests used, the NFA."""

    informative: int
    supporting: int
    rate: float
    tests: float
    nfa: float

    @property
    def log10_nfa(self) -> float:
        return float(np.log10(max(self.nfa, 1e-300)))


def number_of_false_alarms(informative: int, supporting: int, rate: float, tests: float) -> float:
    """``tests * P[Binomial(informative, rate) >= supporting]`` (``tests`` when nothing supports), at least
    1e-300 (the tail of a large exact copy underflows)."""
    if supporting <= 0:
        return float(tests)
    # P[Binomial(n, p) >= k] is the regularised incomplete beta function I_p(k, n - k + 1) (scipy.stats' binom.sf
    # evaluates the same function; scipy.special alone is a third of scipy.stats' import)
    with np.errstate(divide="ignore"):
        log_tail = float(np.log(betainc(supporting, informative - supporting + 1, rate)))
    return float(max(np.exp(np.log(tests) + log_tail), 1e-300))


def _cell_window(region: np.ndarray, cell: int, grid: tuple[int, int]) -> tuple[slice, slice] | None:
    """The rows and columns of cells (grid indices) that cover ``region``'s bounding box."""
    inside = region[: grid[0] * cell, : grid[1] * cell]
    # the box from the rows and columns holding any pixel: a tenth of listing every pixel's coordinates, and a
    # pair's test asks for it once per side and map tried
    ys = np.flatnonzero(inside.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(inside.any(axis=0))
    return slice(int(ys[0]) // cell, int(ys[-1]) // cell + 1), slice(int(xs[0]) // cell, int(xs[-1]) // cell + 1)


def twin_detail(evidence: CellEvidence, affine: np.ndarray, rows: slice, cols: slice
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over the cells ``rows`` x ``cols``: the finest detail and the noise variance of every pixel's twin under
    ``affine`` (pixel -> twin; the image is resampled first and only then stripped to its finest detail, as a
    resampled copy was), and where the twin lies inside the image."""
    cell, margin = evidence.cell, 4
    height, width = evidence.gray.shape
    y0, x0 = rows.start * cell - margin, cols.start * cell - margin
    size = ((cols.stop - cols.start) * cell + 2 * margin, (rows.stop - rows.start) * cell + 2 * margin)
    matrix = np.asarray(affine, np.float64).copy()
    matrix[:, 2] += matrix[:, :2] @ np.float64([x0, y0])  # crop pixel (u, v) is image pixel (u + x0, v + y0)
    matrix = matrix.astype(np.float32)
    warped = cv2.warpAffine(evidence.gray, matrix, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_REFLECT)
    noise = cv2.warpAffine(evidence.noise, matrix, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
    # a twin is inside when all four pixels its bilinear sample reads are
    inside = cv2.warpAffine(np.ones((height, width), np.uint8), matrix, size,
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0).astype(bool)
    inner = (slice(margin, -margin), slice(margin, -margin))
    return fine_detail(warped)[inner], noise[inner], inside[inner]


def pair_test(evidence: CellEvidence, region: np.ndarray, affine: np.ndarray, oy: np.ndarray, ox: np.ndarray,
              recurrent: np.ndarray, *, rate: float, tests: float, max_difference: float,
              max_unshared: float, exclusivity: float, min_offset: float
              ) -> tuple[PairTest, np.ndarray, np.ndarray]:
    """Test the cells of ``region`` against their twins under ``affine``. Returns the test, the per-cell ratio
    ``d`` and the supporting cells (both over the whole grid; inf and False outside the region's window)."""
    cell = evidence.cell
    grid_rows, grid_cols = evidence.grid
    ratio_grid = np.full((grid_rows, grid_cols), np.inf, np.float32)
    supporting_grid = np.zeros((grid_rows, grid_cols), bool)
    window = _cell_window(region, cell, evidence.grid)
    if window is None:
        return PairTest(0, 0, rate, tests, number_of_false_alarms(0, 0, rate, tests)), ratio_grid, supporting_grid
    rows, cols = window
    pixels = (slice(rows.start * cell, rows.stop * cell), slice(cols.start * cell, cols.stop * cell))
    detail, noise, inside = twin_detail(evidence, affine, rows, cols)
    difference = block_mean((evidence.detail[pixels] - detail) ** 2, cell)
    ratio = difference / np.maximum(block_mean(evidence.noise[pixels] + noise, cell), 1e-12)
    share = difference / np.maximum(evidence.cell_energy[rows, cols] + block_mean(detail * detail, cell), 1e-12)
    in_region = block_mean(region[pixels].astype(np.float32), cell) >= 0.5
    whole = block_mean(inside.astype(np.float32), cell) > 0.999
    twin_informative = block_mean(detail * detail, cell) >= evidence.min_detail
    informative = in_region & whole & (evidence.cell_energy[rows, cols] >= evidence.min_detail) & twin_informative
    centres_y = (np.arange(rows.start, rows.stop, dtype=np.float32) * cell + (cell - 1) / 2)[:, None]
    centres_x = (np.arange(cols.start, cols.stop, dtype=np.float32) * cell + (cell - 1) / 2)[None, :]
    own_dx = affine[0, 0] * centres_x + affine[0, 1] * centres_y + affine[0, 2] - centres_x
    own_dy = affine[1, 0] * centres_x + affine[1, 1] * centres_y + affine[1, 2] - centres_y
    close = informative & (ratio <= max_difference) & (share <= max_unshared)
    # only the close cells can support: their alternatives alone are measured
    near_y, near_x = np.nonzero(close)
    alternative = _alternative_ratio(evidence, oy, ox, recurrent, near_y + rows.start, near_x + cols.start,
                                     np.broadcast_to(own_dy, close.shape)[close],
                                     np.broadcast_to(own_dx, close.shape)[close], min_offset=min_offset)
    supporting = np.zeros(close.shape, bool)
    supporting[near_y, near_x] = ratio[close] + TIE <= exclusivity * (alternative + TIE)
    ratio_grid[rows, cols] = np.where(informative, ratio, np.inf)
    supporting_grid[rows, cols] = supporting
    n, k = int(informative.sum()), int(supporting.sum())
    nfa = number_of_false_alarms(n, k, rate, tests)
    return PairTest(informative=n, supporting=k, rate=rate, tests=tests, nfa=nfa), ratio_grid, supporting_grid
