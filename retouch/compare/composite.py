"""Shared pieces of a composite: the parts of the questioned image taken from the reference, each placed anew.

When no single transform maps the reference onto the questioned image (a figure cut from one print and pasted,
scaled and turned, into another picture; a face pasted onto another body), the pair may still share pieces.
:func:`shared_pieces` finds them, each with its own similarity (scale, rotation, shift), and says where each
lies in both images.

Method
------
SIFT keypoints (Lowe 2004), a questioned image under a quarter of ``FEATURE_PIXELS`` doubled in size first, on
two copies of each image (contrast-normalised, as registration uses, and as
scanned, since a painted-over print keeps its outlines better than its grain), Lowe's ratio test, matches made
one-to-one; the same against the questioned image mirrored left to right, since a piece is often pasted
mirrored (a figure turned to face the other way). Pieces are then found one after the other (sequential RANSAC),
in each orientation: 2-point similarity hypotheses drawn
from a seeded generator, the hypothesis with most matches within ``tolerance`` kept and refitted by least squares
on them, its matches and every match that falls inside its outline taken away, and the search run again.
A piece is accepted a contrario (Moisan & Stival 2004, as in ORSA): under the null hypothesis the questioned end
of a wrong match falls anywhere in the questioned image, so it lands within ``tolerance`` of where the piece
predicts with probability ``p = pi tolerance^2 / area``; the number of false alarms of a piece with ``k``
distinct matching places out of ``n`` is ``tests * P(Binomial(n, p) >= k)``, with ``tests`` the number of 2-match
samples that could have proposed it, counted for every piece tried in either orientation (the mirrored search
doubles the tests, so a chance piece is no likelier for it). A piece is reported when its NFA is at most
``nfa_threshold`` (0.01: about one false piece in a hundred pairs of different photographs).

The count's independence fails on real pictures (one texture gives several keypoints), so a piece also needs
``min_matches`` (8) distinct places. A piece with fewer, down to ``confirmed_matches`` (4), is the last one
searched in its orientation and is kept only when a second test confirms it (:func:`confirmed_piece`): over the
piece's own outline, the fine edges of both pictures (sampled as the growth below samples them) point the same
way under its similarity more often than chance allows (binomial NFA at most ``nfa_threshold``) and more than
under each of 999 wrong placements of the reference (moved by at least a coarse cell, the piece kept on it), the
pair's own null. The places test where a few keypoints land; the second tests the edges around and between them.
The places were chosen because their keypoints' descriptors (histograms of these same orientations) agree, so
the found placement is not quite exchangeable with the wrong ones near its places: a chance alignment of one
repeated edge pattern (a lattice) can agree near one or two places of a line of them. So the agreement must hold
in more than one part of the outline: each of its two halves (split across its longest extent, through its
centroid) must agree beyond chance at the 1 % level and beyond all its own wrong placements. When one half alone
agrees, the piece is cut to the places in it (a place matched by chance stretches the hull of the places to
itself), which must still be ``confirmed_matches`` distinct ones, a piece's worth on their own, and the cut piece,
outlined by the hull of those places, must pass the first test again, its tests doubled for the half chosen.

A piece its places alone carry is never refused by the edges, but its outline, the hull of its places, is
stretched as far as a place matched by chance (:func:`cut_piece`). The same halves are tested over it; when one
half agrees (beyond chance at the 1 % level and beyond all its own wrong placements, at least 99 of them) and the
other is shown not to share structure (its edges agree no more than chance allows at the 1 % level, and less often
than the agreeing half's, a binomial lower tail at that half's rate at the 1 % level), the piece is cut to the
places in the agreeing half, and tested again while each cut leaves a place out and keeps ``min_matches``
distinct ones; a cut to fewer, down to ``confirmed_matches``, stands only when the cut outline passes the first
test (then the piece is a confirmed one, not halved again). A half too smooth to tell (few clear edges, or edges
that agree beyond chance but not beyond the wrong placements) keeps its places: the cut follows evidence that the
pictures differ there, not the lack of evidence that they agree.

Growing a piece (:func:`grown_piece`): features match only where texture survived, so a figure whose face
was kept and whose coat was repainted is found as its face. Around the matched places the pair may still share
fine structure under the piece's own transform: the reference is placed by it and, in cells of two grids (12
and 6 cells along the questioned image's longest side, at most half a megapixel), the clear gradients of both
(above each picture's median and LSD's quantisation bound, sampled every 3 px after a 2 px Gaussian) are
counted, with how many point the same way within pi/8 (the alignment count of Desolneux, Moisan and Morel).
Chance agreement is each cell's own: its two orientation histograms taken independently (1/8 for spread
orientations, more where both are dominated by one direction). A cell passes when its binomial tail times the
number of cells tested is at most ``nfa_threshold`` and when it is lower than any cell's under 49 wrong
placements (the placed reference shifted cyclically by at least a coarse cell): one straight edge crossing a
cell in both pictures agrees along its length as a single chance event, which the binomial count alone would
take for dozens, and the wrong placements measure that on the pair itself. Within a passing cell only its
parts (cells of a grid twice as fine as the finest) that agree beyond chance at the 1 % level on their own are
taken, those connected to the piece, each as the hull of its agreeing samples, closed over the gaps between
them: a coarse cell holding a pasted head also holds the host around it.

Parameters
----------
reference, questioned : ndarray
    Gray or RGB images.
nfa_threshold : float
    Largest number of false alarms for a reported piece.
grow, growth : bool, GrowthOptions
    Whether to grow the pieces' outlines, and how.

min_matches, confirmed_matches : int
    Distinct places a piece needs on its own, and with the second test.

Limits: a piece needs at least ``min_matches`` (8) distinct matched places, or 4 and edges over its outline that
agree beyond the pair's own null: a piece repainted all over (a painted portrait from a photograph) keeps few
places, and where its outline holds no clear edges in both pictures (a soft, heavily blurred copy) it is not
confirmed. Between unrelated pictures whose wrong placements are exchangeable with the found one, the second
test alone passes at most once in 1000, and the halves and the cut only refuse more (a piece confirmed passed it
over its outline as found); the cut of a piece its places alone carry only shrinks its outline, never adds a
piece, and what it can lose is the part of a true piece beyond the cut line: real places in the half that fails
(the split runs through the outline's centroid, so a half holding a chance place may hold real ones too), and a
part whose edges were repainted into other edges. The growth, run after, reaches again what of such a part still
shares structure; the found placement is not quite exchangeable (its places were chosen because
keypoints agree there), which is why the joint rate is measured (``benchmarks/unrelated_pieces.py``). A pasted
piece whose places crowd into a few pixels has an outline too small to hold the edges that would confirm it, and
may be refused even where its edges agree around it (more so once cut to such a crowd). The outline of a piece
is the hull of its matched points, widened by a tenth, grown over the cells where the pictures share structure
beyond chance: the paste's true edge is not traced, and a part repainted smooth
(shared outline edges only) is not reached. With 49 wrong placements, a pair of unrelated pictures whose
placements are exchangeable passes a cell of a grid with probability at most 1 in 50 (two grids: 1 in 25), and
only a passing cell touching the piece grows it.
The independence the NFA assumes fails on repeated structure (rows of windows, tiles); distinct places are
counted on a grid of ``tolerance`` cells to limit it.

References: D. Lowe, "Distinctive image features from scale-invariant keypoints", IJCV 2004; L. Moisan and
B. Stival, "A probabilistic criterion to detect rigid point matches between two images and estimate the
fundamental matrix", IJCV 2004; A. Desolneux, L. Moisan and J.-M. Morel, "Meaningful alignments", IJCV 2000;
R. Grompone von Gioi et al., "LSD: a fast line segment detector with a false detection control", PAMI 2010.

Example
-------
>>> pieces = shared_pieces(reference, questioned)  # doctest: +SKIP
>>> [(round(p.scale, 2), round(p.rotation_deg)) for p in pieces]  # doctest: +SKIP
[(0.6, 4)]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from retouch.compare.register import normalise_for_matching
from retouch.imaging import bounded, nearest_neighbours, to_gray_float

FEATURE_PIXELS = 1_200_000
RATIO = 0.85
MIN_MATCHES = 8
CONFIRMED_MATCHES = 4  # a piece with fewer distinct places than MIN_MATCHES, at least this many, if confirmed
MAX_PIECES = 6
HYPOTHESES = 3000
TOLERANCE_FRACTION = 0.006  # of the questioned image's longest side at matching resolution
SCALE_RANGE = (1 / 8, 8.0)
LOCAL_LEVEL = -2.0  # log10: a grown cell's parts agree beyond chance at the 1 % level


@dataclass(frozen=True)
class SharedPiece:
    """One piece both images show: the similarity mapping reference pixels onto questioned pixels (3x3, full
    resolution), its scale and rotation (degrees in image coordinates, y down: positive turns clockwise as seen,
    as :class:`~retouch.compare.register.Registration` counts it), the outline of the piece in each image
    (polygons, full-resolution pixels), the distinct matched places, and its number of false alarms."""

    transform: np.ndarray
    scale: float
    rotation_deg: float
    questioned_outline: np.ndarray
    reference_outline: np.ndarray
    matches: int
    nfa: float
    mirrored: bool = False  # the piece is the reference's mirror image (``rotation_deg`` then turns the mirror)
    grown_fraction: float = 0.0  # area its outline was grown by where the pictures share structure, per own
    # a piece under ``MIN_MATCHES`` places is kept only when its own outline shares fine structure beyond chance
    # (:func:`confirmed_piece`): the binomial tail (log10) of the agreement there, and the lowest tail of the same
    # outline under the wrong placements; 0.0 for a piece its places alone carry
    structure_log10_tail: float = 0.0
    structure_null_log10_tail: float = 0.0
    confirmed: bool = False
    structure_half_log10_tails: tuple[float, ...] = ()  # the same tail over each half of the outline
    places_left_out: int = 0  # matched places the outline was cut away from (its edges did not agree there)
    # the matched places in the questioned image (full-resolution pixels)
    questioned_places: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    # for the part of a registered pair that agrees, where the rest is new content: the structure test's record
    # (:func:`retouch.compare.agreement.overlap_agreement`); None for a piece the feature search found
    agreement: dict | None = None

    @staticmethod
    def _box(outline: np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        x0, y0 = np.floor(outline.min(axis=0)).astype(int)
        x1, y1 = np.ceil(outline.max(axis=0)).astype(int)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(shape[1], x1), min(shape[0], y1)
        return int(x0), int(y0), int(max(1, x1 - x0)), int(max(1, y1 - y0))

    def questioned_box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        return self._box(self.questioned_outline, shape)

    def reference_box(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        return self._box(self.reference_outline, shape)


def _matches(reference8: list[np.ndarray], questioned8: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Matched keypoint positions (reference, questioned), one-to-one, from every pair of copies."""
    sift = cv2.SIFT_create(nfeatures=6000, contrastThreshold=0.02)
    sources, targets, distances = [], [], []
    for ref8, q8 in zip(reference8, questioned8):
        keys_r, desc_r = sift.detectAndCompute(ref8, None)
        keys_q, desc_q = sift.detectAndCompute(q8, None)
        if desc_r is None or desc_q is None or len(desc_r) < 2 or len(desc_q) < 2:
            continue
        nearest, distance = nearest_neighbours(desc_r, desc_q, 2)
        passed = np.flatnonzero(distance[:, 0] < RATIO * distance[:, 1])
        sources.append(np.float32([keys_r[i].pt for i in passed]).reshape(-1, 2))
        targets.append(np.float32([keys_q[nearest[i, 0]].pt for i in passed]).reshape(-1, 2))
        distances.append(distance[passed, 0] / np.maximum(distance[passed, 1], 1e-6))
    if not sources:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    src, dst, ratio = np.concatenate(sources), np.concatenate(targets), np.concatenate(distances)
    # one-to-one on a 2-px grid at each end: several keypoints at one place (scales, orientations, the two
    # copies) are one piece of evidence, not several
    order = np.argsort(ratio, kind="stable")
    src, dst = src[order], dst[order]
    _, first_dst = np.unique(np.round(dst / 2.0).astype(np.int64), axis=0, return_index=True)
    keep = np.zeros(len(dst), bool)
    keep[first_dst] = True
    src, dst = src[keep], dst[keep]
    _, first_src = np.unique(np.round(src / 2.0).astype(np.int64), axis=0, return_index=True)
    return src[np.sort(first_src)], dst[np.sort(first_src)]


def _similarities(src: np.ndarray, dst: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """2-point similarity hypotheses as complex (a, b) with ``dst = a * src + b``."""
    count = len(src)
    first = rng.integers(0, count, HYPOTHESES)
    second = (first + rng.integers(1, count, HYPOTHESES)) % count
    s = src[:, 0] + 1j * src[:, 1]
    d = dst[:, 0] + 1j * dst[:, 1]
    span = s[second] - s[first]
    usable = np.abs(span) > 1.0
    a = np.where(usable, (d[second] - d[first]) / np.where(usable, span, 1.0), 0.0)
    b = d[first] - a * s[first]
    return a[usable], b[usable]


def _distinct(points: np.ndarray, cell: float) -> int:
    return len(np.unique(np.floor(points / cell).astype(np.int64), axis=0))


def _log10_binomial_tail(k: np.ndarray | int, n: np.ndarray | int, p: np.ndarray | float) -> np.ndarray:
    """log10 of the chance of at least ``k`` successes in ``n`` trials of chance ``p`` (elementwise)."""
    # imported here: scipy.stats costs about 0.4 s per process, and `retouch analyze` imports this package for
    # the perceptual hash its metadata detector uses
    from scipy.stats import binom

    return binom.logsf(np.asarray(k) - 1, n, p) / np.log(10.0)


def _log10_nfa(n: int, k: int, p: float, tests: float) -> float:
    return float(np.log10(max(tests, 1.0)) + _log10_binomial_tail(k, n, p))


def _best_piece(src: np.ndarray, dst: np.ndarray, tolerance: float, rng: np.random.Generator
                ) -> tuple[complex, complex, np.ndarray] | None:
    """The similarity most matches agree with (refitted on them) and which matches agree."""
    a, b = _similarities(src, dst, rng)
    scale = np.abs(a)
    sane = (scale > SCALE_RANGE[0]) & (scale < SCALE_RANGE[1])
    a, b = a[sane], b[sane]
    if not len(a):
        return None
    s = src[:, 0] + 1j * src[:, 1]
    d = dst[:, 0] + 1j * dst[:, 1]
    counts = np.zeros(len(a), np.int64)
    for start in range(0, len(a), 256):  # hypotheses x matches in chunks
        error = np.abs(a[start:start + 256, None] * s[None, :] + b[start:start + 256, None] - d[None, :])
        counts[start:start + 256] = (error <= tolerance).sum(axis=1)
    best = int(np.argmax(counts))
    best_a, best_b = complex(a[best]), complex(b[best])
    agree = np.abs(best_a * s + best_b - d) <= tolerance
    for _ in range(2):  # least-squares refit on the agreeing matches, kept when at least as many agree
        design = np.stack([s[agree], np.ones(int(agree.sum()))], axis=1)
        (fit_a, fit_b), *_ = np.linalg.lstsq(design, d[agree], rcond=None)
        refit = np.abs(fit_a * s + fit_b - d) <= tolerance
        if refit.sum() < agree.sum() or not SCALE_RANGE[0] < abs(fit_a) < SCALE_RANGE[1]:
            break
        best_a, best_b, agree = complex(fit_a), complex(fit_b), refit
    return best_a, best_b, agree


def _outline(points: np.ndarray) -> np.ndarray:
    """Convex hull of ``points`` widened by a tenth about its centre."""
    hull = cv2.convexHull(points.astype(np.float32)).reshape(-1, 2)
    centre = hull.mean(axis=0)
    return centre + 1.1 * (hull - centre)


def shared_pieces(reference: np.ndarray, questioned: np.ndarray, *, nfa_threshold: float = 0.01,
                  min_matches: int = MIN_MATCHES, confirmed_matches: int = CONFIRMED_MATCHES, seed: int = 0,
                  grow: bool = True, growth: GrowthOptions | None = None) -> list[SharedPiece]:
    """The pieces of ``questioned`` taken from ``reference``, as they are or mirrored, largest evidence first (see
    the module docstring). A piece with fewer than ``min_matches`` distinct places but at least
    ``confirmed_matches`` is kept only when :func:`confirmed_piece` finds that the pictures share fine structure
    over its outline beyond chance (``confirmed_matches=min_matches`` turns that off). With ``grow`` (default) each
    piece's outline is grown where the pictures share structure under its transform (:func:`grown_piece`,
    calibrated by ``growth``, ``GrowthOptions()`` when None); without, the outline is the hull of its matched
    places."""
    growth = growth or GrowthOptions()
    candidates = candidate_pieces(reference, questioned, nfa_threshold=nfa_threshold, min_matches=min_matches,
                                  confirmed_matches=confirmed_matches, seed=seed)
    kept = kept_pieces(reference, questioned, candidates, growth)
    if not grow:
        return kept
    return [grown_piece(reference, questioned, piece, growth) for piece in kept]


def kept_pieces(reference: np.ndarray, questioned: np.ndarray, candidates: list[tuple[SharedPiece, bool]],
                growth: GrowthOptions | None = None) -> list[SharedPiece]:
    """The pieces :func:`shared_pieces` reports from :func:`candidate_pieces`' ``candidates``: one piece where
    two overlap (the stronger), a piece under the places' floor only when :func:`confirmed_piece` confirms it,
    a piece its places carry with its outline cut to where the edges agree (:func:`cut_piece`), at most
    ``MAX_PIECES``."""
    kept: list[SharedPiece] = []

    def on_kept(piece: SharedPiece) -> bool:
        centre = tuple(float(v) for v in piece.questioned_outline.mean(axis=0))
        return any(cv2.pointPolygonTest(other.questioned_outline.astype(np.float32), centre, False) >= 0
                   for other in kept)

    for piece, needs_confirmation in candidates:
        # a symmetric piece (a face) is found both ways: one piece, the stronger
        if on_kept(piece):
            continue
        if needs_confirmation:
            piece = confirmed_piece(reference, questioned, piece, growth or GrowthOptions())
            if not piece.confirmed:
                continue
        else:
            piece = cut_piece(reference, questioned, piece, growth or GrowthOptions())
        if on_kept(piece):  # its outline may have been cut onto a stronger piece
            continue
        kept.append(piece)
    return kept[:MAX_PIECES]


def candidate_pieces(reference: np.ndarray, questioned: np.ndarray, *, nfa_threshold: float = 0.01,
                     min_matches: int = MIN_MATCHES, confirmed_matches: int = CONFIRMED_MATCHES, seed: int = 0
                     ) -> list[tuple[SharedPiece, bool]]:
    """Every piece the matched places find at NFA ``nfa_threshold``, as outlined by its places, strongest first,
    each with whether it holds fewer than ``min_matches`` distinct places (and so needs a second test before
    :func:`shared_pieces` reports it)."""
    ref_small, ref_scale = bounded(to_gray_float(reference), FEATURE_PIXELS)
    q_small, q_scale = bounded(to_gray_float(questioned), FEATURE_PIXELS)
    if q_small.size * 4 <= FEATURE_PIXELS:
        # a piece pasted into a small picture is a few dozen pixels across, too few for SIFT's finest octave:
        # the picture is matched at twice its size (PS-Battles I46, a photograph shown on a screen 120 px wide,
        # had no piece found as it was and 153 matched places doubled)
        q_small = cv2.resize(q_small, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
        q_scale *= 2.0
    tolerance = TOLERANCE_FRACTION * max(q_small.shape)
    p_chance = min(1.0, np.pi * tolerance**2 / float(q_small.size))
    rng = np.random.default_rng(seed)
    reference8 = [normalise_for_matching(ref_small), np.round(255 * np.clip(ref_small, 0, 1)).astype(np.uint8)]
    width = q_small.shape[1]
    flip = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # its own inverse
    searches = []
    for mirrored in (False, True):
        shown = np.ascontiguousarray(q_small[:, ::-1]) if mirrored else q_small
        src, dst = _matches(reference8, [normalise_for_matching(shown),
                                         np.round(255 * np.clip(shown, 0, 1)).astype(np.uint8)])
        searches.append((mirrored, src, dst))
    pieces = []
    for mirrored, src, dst in searches:
        for a, b, members, log_nfa, sub_floor in _pieces_of(
                src, dst, tolerance, p_chance, len(searches), rng, nfa_threshold=nfa_threshold,
                min_matches=min_matches, confirmed_matches=min(confirmed_matches, min_matches)):
            small = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag], [0.0, 0.0, 1.0]])
            q_points = dst[members]
            if mirrored:  # back to the questioned image's own frame
                small = flip @ small
                q_points = np.stack([width - 1.0 - q_points[:, 0], q_points[:, 1]], axis=1)
            q_outline = _outline(q_points)
            transform = np.diag([1 / q_scale, 1 / q_scale, 1.0]) @ small @ np.diag([ref_scale, ref_scale, 1.0])
            pieces.append((SharedPiece(
                transform=transform, scale=float(abs(a) * ref_scale / q_scale),
                rotation_deg=float(np.degrees(np.angle(a))), questioned_outline=q_outline / q_scale,
                reference_outline=_outline(src[members]) / ref_scale,
                matches=min(_distinct(src[members], tolerance), _distinct(dst[members], tolerance)),
                nfa=float(10.0 ** max(log_nfa, -300.0)),
                mirrored=mirrored, questioned_places=q_points / q_scale), sub_floor))
    pieces.sort(key=lambda entry: (entry[0].nfa, -entry[0].matches))
    return pieces


def _pieces_of(src: np.ndarray, dst: np.ndarray, tolerance: float, p_chance: float, orientations: int,
               rng: np.random.Generator, *, nfa_threshold: float, min_matches: int, confirmed_matches: int
               ) -> list[tuple[complex, complex, np.ndarray, float, bool]]:
    """Sequential RANSAC over one set of matches: each piece's similarity ``(a, b)``, its matches (indices), its
    log10 NFA, the tests counted over every round so far and every orientation searched, and whether it holds
    fewer than ``min_matches`` distinct places (at least ``confirmed_matches``): such a piece is the last one
    searched, and it still needs a second test (:func:`shared_pieces`)."""
    alive = np.ones(len(src), bool)
    tests = 0.0
    found_pieces = []
    for _ in range(MAX_PIECES):
        index = np.flatnonzero(alive)
        if len(index) < confirmed_matches:
            break
        found = _best_piece(src[index], dst[index], tolerance, rng)
        if found is None:
            break
        a, b, agree = found
        members = index[agree]
        k = min(_distinct(src[members], tolerance), _distinct(dst[members], tolerance))
        tests += len(index) * (len(index) - 1) / 2.0
        log_nfa = _log10_nfa(len(index), k, p_chance, orientations * tests)
        if k < confirmed_matches or log_nfa > np.log10(nfa_threshold):
            break
        if k < min_matches:
            found_pieces.append((a, b, members, log_nfa, True))
            break
        q_outline = _outline(dst[members])
        alive[members] = False
        inside = np.array([cv2.pointPolygonTest(q_outline.astype(np.float32), (float(x), float(y)), False) >= 0
                           for x, y in dst])
        alive &= ~inside
        found_pieces.append((a, b, members, log_nfa, False))
    return found_pieces


@dataclass(frozen=True)
class GrowthOptions:
    """Calibration of :func:`grown_piece` (see the module docstring).

    ``pixels``: the questioned image is read at most at this size; ``cells``: the cell grids tried, as cells
    along its longest side; ``precision``: two gradient orientations agree when they differ by less than
    ``precision * pi``; ``sigma``: Gaussian smoothing (px) before the gradient; ``step``: gradients sampled every
    ``step`` px, about the smoothing's reach; ``placements``: wrong placements of the reference (cyclic shifts)
    that form the pair's own null; ``confirming_placements``: the same for the test of a piece under the
    places' floor (:func:`confirmed_piece`), over its outline alone; ``nfa_threshold``: the binomial test's
    largest expected number of cells passing by chance in one pair; ``seed``: the shifts' generator."""

    pixels: int = 500_000
    cells: tuple[int, ...] = (12, 6)
    precision: float = 1 / 8
    sigma: float = 2.0
    step: int = 3
    placements: int = 49
    confirming_placements: int = 999
    nfa_threshold: float = 0.01
    seed: int = 0


@dataclass(frozen=True)
class _Fields:
    """Gradient orientations of the placed reference and the questioned image in the work frame, their clear
    samples, where the placed reference covers, the work frame's scale (per full-resolution pixel), and where the
    frame lies in the reference's fields (which may reach beyond it)."""

    angle_r: np.ndarray
    clear_r: np.ndarray
    angle_q: np.ndarray
    clear_q: np.ndarray
    covered: np.ndarray
    scale: float
    offset: tuple[int, int] = (0, 0)  # (rows, columns) of the frame's origin in the reference's fields


@dataclass(frozen=True)
class _StructureCells:
    """One cell grid of the structure test (see the module docstring): per cell the log10 binomial tail (NaN
    where the placed reference covers under half the cell), the lowest tail any cell reached under the wrong
    placements, the cell side (work-frame pixels) and the number of cells tested."""

    tails: np.ndarray
    null_lowest: float
    cell: int
    tests: int


def _gradients(gray: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    smooth = cv2.GaussianBlur(gray, (0, 0), sigma)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(gx, gy), np.arctan2(gy, gx)


def _agreeing(angle_r: np.ndarray, clear_r: np.ndarray, angle_q: np.ndarray, clear_q: np.ndarray,
              precision: float) -> np.ndarray:
    return clear_r & clear_q & (np.abs(np.angle(np.exp(1j * (angle_r - angle_q)))) < precision * np.pi)


def placed_reference(reference: np.ndarray, placed: np.ndarray, size: tuple[int, int], sigma: float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``reference`` (gray float) warped by ``placed`` (3x3) into a frame of ``size`` (width, height), replicated
    at its border, and where it covers the frame, less the reach of gradients smoothed by ``sigma``: the
    replicated border is no evidence."""
    warped = cv2.warpPerspective(reference, placed, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    covered = cv2.warpPerspective(np.ones(reference.shape, np.uint8), placed, size, flags=cv2.INTER_NEAREST)
    margin = int(np.ceil(3 * sigma)) + 2
    return warped, cv2.erode(covered, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)).astype(bool)


def _fields(reference: np.ndarray, questioned: np.ndarray, transform: np.ndarray,
            options: GrowthOptions, *, canvas: bool = False) -> _Fields | None:
    """The work frame of the structure test; None when the placed reference covers none of it. With ``canvas``
    the placed reference is kept beyond the frame too (up to a frame's size on every side), its fields offset by
    ``_Fields.offset``: wrong placements then move it, not wrap it."""
    q_small, q_scale = bounded(to_gray_float(questioned), options.pixels)
    ref = to_gray_float(reference)
    height, width = q_small.shape
    placed = np.diag([q_scale, q_scale, 1.0]) @ np.asarray(transform, np.float64)
    x0, y0, x1, y1 = 0, 0, width, height
    if canvas:
        corners = cv2.perspectiveTransform(np.float64([[[0, 0]], [[ref.shape[1], 0]], [[0, ref.shape[0]]],
                                                       [[ref.shape[1], ref.shape[0]]]]), placed).reshape(-1, 2)
        x0 = int(np.clip(np.floor(corners[:, 0].min()), -width, 0))
        y0 = int(np.clip(np.floor(corners[:, 1].min()), -height, 0))
        x1 = int(np.clip(np.ceil(corners[:, 0].max()), width, 2 * width))
        y1 = int(np.clip(np.ceil(corners[:, 1].max()), height, 2 * height))
    placed = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]]) @ placed
    warped, covered = placed_reference(ref, placed, (x1 - x0, y1 - y0), options.sigma)
    in_frame = covered[-y0:height - y0, -x0:width - x0]
    if not in_frame.any():
        return None
    magnitude_r, angle_r = _gradients(warped, options.sigma)
    magnitude_q, angle_q = _gradients(q_small, options.sigma)
    sample = np.zeros((height, width), bool)
    sample[::options.step, ::options.step] = True
    # a clear gradient: above the median over the compared part in each picture, and above what 8-bit
    # quantisation alone can turn by the precision (LSD's bound, 2 grey levels / sin(pi/8) per pixel): slow
    # ramps and flat, JPEG-blocked areas keep one orientation over wide areas and are no evidence
    floor = 8 * (2.0 / 255.0) / np.sin(options.precision * np.pi)  # Sobel weighs the per-pixel slope by 8
    clear_r = covered & (magnitude_r > max(floor, float(np.median(magnitude_r[covered]))))
    clear_q = sample & (magnitude_q > max(floor, float(np.median(magnitude_q[in_frame]))))
    return _Fields(angle_r, clear_r, angle_q, clear_q, covered, q_scale, (-y0, -x0))


def _cell_tails(angle_r: np.ndarray, clear_r: np.ndarray, angle_q: np.ndarray, clear_q: np.ndarray,
                cell: int, precision: float) -> np.ndarray:
    """log10 binomial tail of the orientation agreement per cell, the chance of agreement each cell's own: the
    two pictures' orientation histograms there (16 bins of pi/8) taken independently. Where both are dominated
    by one direction (level and upright edges, JPEG blocks) chance agreement is frequent; a contour or texture
    turning through many directions in both keeps it near ``precision``."""
    height, width = angle_q.shape
    rows, cols = -(-height // cell), -(-width // cell)
    clear = clear_r & clear_q
    agree = _agreeing(angle_r, clear_r, angle_q, clear_q, precision)
    index = (np.arange(height)[:, None] // cell) * cols + np.arange(width)[None, :] // cell
    n = np.bincount(index[clear], minlength=rows * cols).reshape(rows, cols).astype(np.float64)
    k = np.bincount(index[agree], minlength=rows * cols).reshape(rows, cols).astype(np.float64)
    bins = 16
    where = index[clear] * bins
    histograms = []
    for angle in (angle_r, angle_q):
        which = (np.mod(angle[clear], 2 * np.pi) * (bins / (2 * np.pi))).astype(np.int64) % bins
        counts = np.bincount(where + which, minlength=rows * cols * bins).reshape(rows, cols, bins)
        histograms.append(counts / np.maximum(n, 1.0)[:, :, None])
    hist_r, hist_q = histograms
    # orientations uniform within their bins: the same bin agrees within pi/8 always, a neighbouring one half
    # the time (uniform histograms give 1/8 exactly, scaled to ``precision``)
    chance = _chance(hist_r, hist_q, precision)
    return np.where(n > 0, _log10_binomial_tail(k, n, chance), 0.0)


def _structure_cells(fields: _Fields, options: GrowthOptions) -> list[_StructureCells]:
    """Per grid of ``options.cells``, the cells' tails and the lowest tail under the wrong placements (the placed
    reference shifted cyclically by at least a coarse cell): the pair's own null."""
    height, width = fields.angle_q.shape
    coarse = int(np.ceil(max(height, width) / min(options.cells)))
    shifts = [tuple(shift) for shift in _wrong_placements((height, width), options.placements, coarse,
                                                          options.seed)]
    grids = []
    for cells in options.cells:
        cell = max(8, int(np.ceil(max(height, width) / cells)))
        rows, cols = -(-height // cell), -(-width // cell)
        padded = np.zeros((rows * cell, cols * cell))
        padded[:height, :width] = fields.covered
        inside = padded.reshape(rows, cell, cols, cell).mean(axis=(1, 3)) >= 0.5
        if not inside.any():
            continue
        tails = _cell_tails(fields.angle_r, fields.clear_r, fields.angle_q, fields.clear_q, cell,
                            options.precision)
        tails[~inside] = np.nan
        lowest = 0.0
        for shift in shifts:
            null = _cell_tails(np.roll(fields.angle_r, shift, axis=(0, 1)),
                               np.roll(fields.clear_r, shift, axis=(0, 1)), fields.angle_q, fields.clear_q, cell,
                               options.precision)
            lowest = min(lowest, float(null[inside].min()))
        grids.append(_StructureCells(tails=tails, null_lowest=lowest, cell=cell, tests=int(inside.sum())))
    return grids


def _passing_cells(grid: _StructureCells, tests: int, options: GrowthOptions = GrowthOptions()) -> np.ndarray:
    """The cells of ``grid`` that pass both controls: the binomial NFA (tail times ``tests``, every cell of every
    grid) at most ``options.nfa_threshold``, and a tail lower than any cell reached under the wrong placements."""
    tails = np.nan_to_num(grid.tails, nan=0.0)
    return (tails + np.log10(max(tests, 1)) <= np.log10(options.nfa_threshold)) & (tails < grid.null_lowest)


def _own_mask(piece: SharedPiece, fields: _Fields) -> np.ndarray:
    own = np.zeros(fields.angle_q.shape, np.uint8)
    cv2.fillPoly(own, [np.round(piece.questioned_outline * fields.scale).astype(np.int32)], 1)
    return own


def _chance(hist_r: np.ndarray, hist_q: np.ndarray, precision: float) -> np.ndarray:
    """Chance that two orientations drawn independently from the histograms (16 bins of pi/8, last axis) agree
    within ``precision * pi``: orientations uniform within their bins, the same bin agrees always, a neighbouring
    one half the time (uniform histograms give 1/8, scaled to ``precision``); never below ``precision``."""
    chance = (hist_r * hist_q).sum(axis=-1) + 0.5 * (hist_r * (np.roll(hist_q, 1, axis=-1)
                                                               + np.roll(hist_q, -1, axis=-1))).sum(axis=-1)
    return np.clip(chance * (8 * precision), precision, 1.0)


def _region_tails(fields: _Fields, region: np.ndarray, shifts: np.ndarray, precision: float) -> np.ndarray:
    """log10 binomial tail of the orientation agreement over ``region`` (work frame) with the placed reference
    moved by each of ``shifts`` (rows of dy, dx; every one keeps the region inside the reference's fields), the
    chance each placement's own (its two orientation histograms over the region, as :func:`_cell_tails`). Only
    the questioned image's samples in the region are gathered, so a thousand placements cost about as much as
    one whole-frame pass."""
    ys, xs = np.nonzero(region & fields.clear_q)
    if not len(ys):
        return np.zeros(len(shifts))
    bins = 16
    angle_q = fields.angle_q[ys, xs]
    bin_q = (np.mod(angle_q, 2 * np.pi) * (bins / (2 * np.pi))).astype(np.int64) % bins
    tails = np.zeros(len(shifts))
    for start in range(0, len(shifts), 64):
        chunk = shifts[start:start + 64]
        rows = ys[None, :] + fields.offset[0] - chunk[:, :1]
        cols = xs[None, :] + fields.offset[1] - chunk[:, 1:]
        clear = fields.clear_r[rows, cols]
        angle_r = fields.angle_r[rows, cols]
        agree = clear & (np.abs(np.angle(np.exp(1j * (angle_r - angle_q[None, :])))) < precision * np.pi)
        n = clear.sum(axis=1).astype(np.float64)
        k = agree.sum(axis=1).astype(np.float64)
        placement = np.broadcast_to(np.arange(len(chunk))[:, None], clear.shape)[clear] * bins
        bin_r = (np.mod(angle_r[clear], 2 * np.pi) * (bins / (2 * np.pi))).astype(np.int64) % bins
        size = len(chunk) * bins
        hist_r = np.bincount(placement + bin_r, minlength=size).reshape(len(chunk), bins)
        hist_q = np.bincount(placement + np.broadcast_to(bin_q, clear.shape)[clear], minlength=size
                             ).reshape(len(chunk), bins)
        chance = _chance(hist_r / np.maximum(n, 1.0)[:, None], hist_q / np.maximum(n, 1.0)[:, None], precision)
        tails[start:start + len(chunk)] = np.where(n > 0, _log10_binomial_tail(k, np.maximum(n, 1.0), chance), 0.0)
    return tails


def _wrong_placements(shape: tuple[int, int], count: int, least: int, seed: int) -> np.ndarray:
    """``count`` cyclic shifts (dy, dx) of a frame of ``shape``, each at least ``least`` px along one axis."""
    height, width = shape
    rng = np.random.default_rng(seed)
    shifts: list[tuple[int, int]] = []
    while len(shifts) < count:
        dy, dx = int(rng.integers(0, height)), int(rng.integers(0, width))
        if min(dy, height - dy) >= least or min(dx, width - dx) >= least:
            shifts.append((dy, dx))
    return np.array(shifts, np.int64).reshape(-1, 2)


def _moves_within(fields: _Fields, region: np.ndarray, count: int, least: int, seed: int) -> np.ndarray:
    """Up to ``count`` moves (dy, dx) of the placed reference, each at least ``least`` px along one axis, that
    keep at least 95 % of ``region``'s box on the reference: the same part of the questioned image compared
    with other parts of the reference at the piece's scale and turn. Drawn from a seeded generator, at most 20
    tries per move; fewer when the reference is little larger than the region."""
    ys, xs = np.nonzero(region)
    top, left = ys.min() + fields.offset[0], xs.min() + fields.offset[1]
    box_h, box_w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    height, width = fields.covered.shape
    summed = cv2.integral(fields.covered.astype(np.uint8))
    rng = np.random.default_rng(seed)
    tries = 20 * count
    dy = rng.integers(top + box_h - height, top + 1, tries)  # the moved box stays inside the fields
    dx = rng.integers(left + box_w - width, left + 1, tries)
    y0, x0 = top - dy, left - dx
    inside = (summed[y0 + box_h, x0 + box_w] - summed[y0, x0 + box_w] - summed[y0 + box_h, x0]
              + summed[y0, x0]) / float(box_h * box_w)
    usable = (inside >= 0.95) & ((np.abs(dy) >= least) | (np.abs(dx) >= least))
    return np.stack([dy[usable], dx[usable]], axis=1)[:count].astype(np.int64)


def _halves(region: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two halves of ``region`` (work frame) on either side of the line through its centroid across its
    longest extent (its principal axis), and that axis as (centroid x, centroid y, direction x, direction y)."""
    ys, xs = np.nonzero(region)
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    centre = points.mean(axis=0)
    spread = np.cov((points - centre).T) if len(points) > 2 else np.eye(2)
    axis = np.linalg.eigh(spread)[1][:, -1]
    ahead = (points - centre) @ axis >= 0
    first, second = np.zeros_like(region), np.zeros_like(region)
    first[ys[ahead], xs[ahead]] = True
    second[ys[~ahead], xs[~ahead]] = True
    return first, second, np.concatenate([centre, axis])


def confirmed_piece(reference: np.ndarray, questioned: np.ndarray, piece: SharedPiece,
                    options: GrowthOptions = GrowthOptions(), *, tests: int = 2,
                    confirmed_matches: int = CONFIRMED_MATCHES) -> SharedPiece:
    """``piece`` with the second test of a piece under the places' floor done, its outline cut to the part its
    edges agree over.

    Over the piece's outline the fine edges of both pictures (as the structure test samples them, see the module
    docstring) must point the same way under the piece's similarity more often than chance allows (binomial NFA,
    the tail times ``tests``, the pieces under the floor a pair can offer, at most ``options.nfa_threshold``), and
    more than over the same outline with the placed reference moved to any of ``options.confirming_placements``
    wrong places (moves of at least a coarse cell that keep the outline on the reference; at least 99 are
    needed). Then the agreement must hold in more than one part: each half of the outline (split across its
    longest extent) must agree beyond chance at the 1 % level and beyond all its own wrong placements. When one
    half alone does, the piece is cut to it: its outline becomes the hull of the places in that half, which must
    leave at least one place out and hold at least ``confirmed_matches`` distinct ones (a piece's worth on their
    own), and the first test is run again over it, the tests doubled for the half chosen; it is not halved again
    (a few places crowded into a small hull leave too few edges in each half). A chance alignment of one repeated
    edge pattern agrees in one part of a line of places, not across a pasted piece; a place matched by chance
    stretches the hull to itself, and the cut leaves it out. Every piece confirmed passed the first test over
    its outline as found, so the halves and the cut only ever refuse more than that test alone."""
    fields = _fields(reference, questioned, piece.transform, options, canvas=True)
    if fields is None:
        return piece
    found = _outline_test(fields, piece, options, tests)
    if found is None:
        return piece
    tested, passed, agreeing, axis, _ = found
    if not passed or not any(agreeing):
        return tested
    if all(agreeing):
        return replace(tested, confirmed=True)
    cut = _cut_to_half(piece, agreeing, axis, fields.scale, questioned.shape[:2])
    if cut is None or cut.matches < confirmed_matches:  # nothing to cut away, or too few places left
        return tested
    found = _outline_test(fields, cut, options, 2 * tests)
    if found is None:
        return tested
    tested_cut, passed, _, _, _ = found
    return replace(tested_cut, confirmed=True) if passed else tested


def cut_piece(reference: np.ndarray, questioned: np.ndarray, piece: SharedPiece,
              options: GrowthOptions = GrowthOptions(), *, tests: int = 2, min_matches: int = MIN_MATCHES,
              confirmed_matches: int = CONFIRMED_MATCHES) -> SharedPiece:
    """``piece``, one its places alone carry, with its outline cut to the part where the two pictures share fine
    structure under its transform; ``piece`` as it is when no cut is shown.

    The halves test of :func:`confirmed_piece` over the piece's outline (the hull of its places): when one half
    agrees beyond chance at the 1 % level and beyond all its own wrong placements, and the other is shown not to
    share structure (:func:`_disagrees`: its edges agree no more than chance allows at the 1 % level, and less
    often than the agreeing half's, a binomial lower tail at that half's rate at the 1 % level: enough edges there
    to show they disagree, not too few to tell), the piece is cut to its places in the agreeing half and tested
    again, while each cut leaves a place out and keeps ``min_matches`` distinct places. A cut to fewer, down to ``confirmed_matches``, is kept only when its outline passes the whole-outline
    test of :func:`confirmed_piece` (tests doubled for the half chosen, ``tests`` as there), and is not halved
    again. Failing never refuses the piece (its places carry it) and a cut only shrinks its outline: no piece is
    added, and the places left out agreed with its transform yet lie where the pictures' edges do not."""
    fields = _fields(reference, questioned, piece.transform, options, canvas=True)
    if fields is None:
        return piece
    current = piece
    while True:
        found = _outline_test(fields, current, options, tests)
        if found is None:
            return current
        tested, _, agreeing, axis, counts = found
        if sum(agreeing) != 1 or not _disagrees(tested, counts, agreeing):
            return current
        cut = _cut_to_half(current, agreeing, axis, fields.scale, questioned.shape[:2])
        if cut is None or cut.matches < confirmed_matches:
            return current
        if cut.matches >= min_matches:
            current = cut
            continue
        found = _outline_test(fields, cut, options, 2 * tests)
        if found is None or not found[1]:
            return current
        return replace(found[0], confirmed=True)


def _cut_to_half(piece: SharedPiece, agreeing: list[bool], axis: np.ndarray, scale: float,
                 shape: tuple[int, int]) -> SharedPiece | None:
    """``piece`` cut to its places in the agreeing half (``axis`` as :func:`_halves` gives it, in the work frame of
    ``scale``), outlined by their hull; None when every place lies there."""
    places = piece.questioned_places
    ahead = (places * scale - axis[:2]) @ axis[2:] >= 0
    kept = places[ahead if agreeing[0] else ~ahead]
    if len(kept) == len(places) or len(kept) < 3:
        return None
    outline = _outline(kept)
    back = cv2.perspectiveTransform(outline.reshape(-1, 1, 2), np.linalg.inv(piece.transform)).reshape(-1, 2)
    distinct = _distinct(kept, TOLERANCE_FRACTION * max(shape))  # the places' distinct cells, as the search's
    return replace(piece, questioned_outline=outline, reference_outline=back, questioned_places=kept,
                   matches=min(piece.matches, distinct),
                   places_left_out=piece.places_left_out + len(places) - len(kept))


def _disagrees(tested: SharedPiece, counts: list[tuple[int, int]], agreeing: list[bool]) -> bool:
    """Whether the half of ``tested``'s outline that does not agree is shown not to share structure: its edges do
    not agree beyond chance even at the 1 % level (its binomial tail, ``tested.structure_half_log10_tails``), and
    they agree less often than the agreeing half's do, at the 1 % level (``counts``: agreeing and clear samples
    per half). A half with too few clear edges to tell (repainted smooth), or whose edges agree beyond chance but
    not beyond its wrong placements, is not."""
    from scipy.stats import binom

    other = 1 if agreeing[0] else 0
    (k_agree, n_agree), (k_other, n_other) = counts[1 - other], counts[other]
    if n_other == 0 or n_agree == 0 or tested.structure_half_log10_tails[other] <= LOCAL_LEVEL:
        return False
    return bool(binom.logcdf(k_other, n_other, k_agree / n_agree) / np.log(10.0) <= LOCAL_LEVEL)


def _outline_test(fields: _Fields, piece: SharedPiece, options: GrowthOptions, tests: int
                  ) -> tuple[SharedPiece, bool, list[bool], np.ndarray, list[tuple[int, int]]] | None:
    """The structure test of :func:`confirmed_piece` over ``piece``'s outline: the piece with its tails (not
    confirmed), whether the whole outline passes, whether each half agrees, the halves' axis (as
    :func:`_halves`) and each half's agreeing and clear samples at the found placement; None when the placed
    reference covers none of the outline."""
    height, width = fields.angle_q.shape
    oy, ox = fields.offset
    region = _own_mask(piece, fields).astype(bool) & fields.covered[oy:oy + height, ox:ox + width]
    if not region.any():
        return None
    coarse = int(np.ceil(max(height, width) / min(options.cells)))
    moves = _moves_within(fields, region, options.confirming_placements, coarse, options.seed)
    first, second, axis = _halves(region)
    tails = [_region_tails(fields, part, np.vstack([[[0, 0]], moves]), options.precision)
             for part in (region, first, second)]
    own, null = float(tails[0][0]), float(tails[0][1:].min(initial=0.0))
    halves = [(float(t[0]), float(t[1:].min(initial=0.0))) for t in tails[1:]]
    # with fewer wrong placements than a hundred the rank alone could not reach 1 %: neither the outline nor a
    # half agrees beyond the pair's own null
    ranked = len(moves) >= 99
    passed = bool(ranked and own < null and own + np.log10(max(tests, 1)) <= np.log10(options.nfa_threshold))
    agreeing = [ranked and tail <= LOCAL_LEVEL and tail < lowest for tail, lowest in halves]
    tested = replace(piece, structure_log10_tail=round(own, 2), structure_null_log10_tail=round(null, 2),
                     structure_half_log10_tails=tuple(round(tail, 2) for tail, _ in halves), confirmed=False)
    return tested, passed, agreeing, axis, [_agreement(fields, part, options.precision) for part in (first, second)]


def _agreement(fields: _Fields, region: np.ndarray, precision: float) -> tuple[int, int]:
    """Samples of ``region`` (work frame) clear in both pictures at the found placement, and how many of them
    agree: (agreeing, clear)."""
    height, width = fields.angle_q.shape
    oy, ox = fields.offset
    angle_r = fields.angle_r[oy:oy + height, ox:ox + width]
    clear_r = fields.clear_r[oy:oy + height, ox:ox + width]
    agree = _agreeing(angle_r, clear_r, fields.angle_q, fields.clear_q, precision) & region
    return int(agree.sum()), int((clear_r & fields.clear_q & region).sum())


def grown_piece(reference: np.ndarray, questioned: np.ndarray, piece: SharedPiece,
                options: GrowthOptions = GrowthOptions()) -> SharedPiece:
    """``piece`` with its outline grown over the cells connected to it where the two pictures share fine
    structure under the piece's own transform (see the module docstring); the piece as it is when none does."""
    fields = _fields(reference, questioned, piece.transform, options)
    if fields is None:
        return piece
    grids = _structure_cells(fields, options)
    tests = sum(grid.tests for grid in grids)
    height, width = fields.angle_q.shape
    own = _own_mask(piece, fields)
    # a passing cell is grown over its parts that agree beyond chance on their own, not its whole square: a
    # coarse cell holding a pasted head also holds the host around it. The parts are the cells of a grid twice
    # as fine, each at the 1 % level (the cell around it already passed the pair-wide controls)
    local_cell = max(4, int(np.ceil(max(height, width) / (2 * max(options.cells)))))
    local = _cell_tails(fields.angle_r, fields.clear_r, fields.angle_q, fields.clear_q, local_cell,
                        options.precision) <= LOCAL_LEVEL
    local_mask = np.kron(local.astype(np.uint8), np.ones((local_cell, local_cell), np.uint8))[:height, :width]
    chosen = np.zeros((height, width), np.uint8)
    for grid in grids:
        good = _passing_cells(grid, tests, options).astype(np.uint8)
        chosen |= np.kron(good, np.ones((grid.cell, grid.cell), np.uint8))[:height, :width] & local_mask
    # the chosen parts connected to the piece, each drawn as the hull of its agreeing samples (a part on an
    # outline holds background too), closed over the gaps between neighbouring parts
    _, labels = cv2.connectedComponents(chosen | own, connectivity=8)
    touching = np.unique(labels[own > 0])
    connected = np.isin(labels, touching[touching > 0]) & (chosen > 0) & (own == 0)
    agree = _agreeing(fields.angle_r, fields.clear_r, fields.angle_q, fields.clear_q, options.precision)
    hulls = np.zeros((height, width), np.uint8)
    for row, col in zip(*np.nonzero(local)):
        y0, x0 = row * local_cell, col * local_cell
        if not connected[y0:y0 + local_cell, x0:x0 + local_cell].any():
            continue
        ys, xs = np.nonzero(agree[y0:y0 + local_cell, x0:x0 + local_cell])
        if len(xs) >= 3:
            cv2.fillPoly(hulls, [cv2.convexHull(np.stack([xs + x0, ys + y0], axis=1).astype(np.int32))], 1)
    grown = (hulls > 0) & (own == 0)
    if not grown.any():
        return piece
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (local_cell | 1, local_cell | 1))
    area = cv2.morphologyEx((own | hulls).astype(np.uint8), cv2.MORPH_CLOSE, disc)
    grown = (area > 0) & (own == 0)
    contours, _ = cv2.findContours(area, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64) / fields.scale
    outline = np.clip(outline, 0, [questioned.shape[1], questioned.shape[0]])
    back = cv2.perspectiveTransform(outline.reshape(-1, 1, 2), np.linalg.inv(piece.transform)).reshape(-1, 2)
    return replace(piece, questioned_outline=outline, reference_outline=back,
                   grown_fraction=round(float(grown.sum()) / max(float(own.sum()), 1.0), 3))
