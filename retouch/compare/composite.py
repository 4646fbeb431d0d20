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

Parameters
----------
reference, questioned : ndarray
    Gray or RGB images.
nfa_threshold : float
    Largest number of false alarms for a reported piece.

Limits: a piece needs at least ``min_matches`` (8) distinct matched places: a piece repainted all over (a painted
portrait from a photograph) keeps few, and a piece with fewer texture features than that is not found. The
outline of a piece is the hull of its matched points, widened by a tenth: the paste's true edge is not traced.
The independence the NFA assumes fails on repeated structure (rows of windows, tiles); distinct places are
counted on a grid of ``tolerance`` cells to limit it.

References: D. Lowe, "Distinctive image features from scale-invariant keypoints", IJCV 2004; L. Moisan and
B. Stival, "A probabilistic criterion to detect rigid point matches between two images and estimate the
fundamental matrix", IJCV 2004.

Example
-------
>>> pieces = shared_pieces(reference, questioned)  # doctest: +SKIP
>>> [(round(p.scale, 2), round(p.rotation_deg)) for p in pieces]  # doctest: +SKIP
[(0.6, 4)]
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.stats import binom

from retouch.compare.register import normalise_for_matching
from retouch.imaging import bounded, nearest_neighbours, to_gray_float

FEATURE_PIXELS = 1_200_000
RATIO = 0.85
MIN_MATCHES = 8
MAX_PIECES = 6
HYPOTHESES = 3000
TOLERANCE_FRACTION = 0.006  # of the questioned image's longest side at matching resolution
SCALE_RANGE = (1 / 8, 8.0)


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


def _log10_nfa(n: int, k: int, p: float, tests: float) -> float:
    tail = binom.logsf(k - 1, n, p) / np.log(10.0)
    return float(np.log10(max(tests, 1.0)) + tail)


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
                  min_matches: int = MIN_MATCHES, seed: int = 0) -> list[SharedPiece]:
    """The pieces of ``questioned`` taken from ``reference``, as they are or mirrored, largest evidence first (see
    the module docstring)."""
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
        for a, b, members, log_nfa in _pieces_of(src, dst, tolerance, p_chance, len(searches), rng,
                                                 nfa_threshold=nfa_threshold, min_matches=min_matches):
            small = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag], [0.0, 0.0, 1.0]])
            q_points = dst[members]
            if mirrored:  # back to the questioned image's own frame
                small = flip @ small
                q_points = np.stack([width - 1.0 - q_points[:, 0], q_points[:, 1]], axis=1)
            q_outline = _outline(q_points)
            transform = np.diag([1 / q_scale, 1 / q_scale, 1.0]) @ small @ np.diag([ref_scale, ref_scale, 1.0])
            pieces.append(SharedPiece(
                transform=transform, scale=float(abs(a) * ref_scale / q_scale),
                rotation_deg=float(np.degrees(np.angle(a))), questioned_outline=q_outline / q_scale,
                reference_outline=_outline(src[members]) / ref_scale,
                matches=min(_distinct(src[members], tolerance), _distinct(dst[members], tolerance)),
                nfa=float(10.0 ** max(log_nfa, -300.0)),
                mirrored=mirrored))
    pieces.sort(key=lambda piece: (piece.nfa, -piece.matches))
    kept: list[SharedPiece] = []
    for piece in pieces:  # a symmetric piece (a face) is found both ways: one piece, the stronger
        centre = tuple(float(v) for v in piece.questioned_outline.mean(axis=0))
        if not any(cv2.pointPolygonTest(other.questioned_outline.astype(np.float32), centre, False) >= 0
                   for other in kept):
            kept.append(piece)
    return kept[:MAX_PIECES]


def _pieces_of(src: np.ndarray, dst: np.ndarray, tolerance: float, p_chance: float, orientations: int,
               rng: np.random.Generator, *, nfa_threshold: float, min_matches: int
               ) -> list[tuple[complex, complex, np.ndarray, float]]:
    """Sequential RANSAC over one set of matches: each piece's similarity ``(a, b)``, its matches (indices) and its
    log10 NFA, the tests counted over every round so far and every orientation searched."""
    alive = np.ones(len(src), bool)
    tests = 0.0
    found_pieces = []
    for _ in range(MAX_PIECES):
        index = np.flatnonzero(alive)
        if len(index) < min_matches:
            break
        found = _best_piece(src[index], dst[index], tolerance, rng)
        if found is None:
            break
        a, b, agree = found
        members = index[agree]
        k = min(_distinct(src[members], tolerance), _distinct(dst[members], tolerance))
        tests += len(index) * (len(index) - 1) / 2.0
        log_nfa = _log10_nfa(len(index), k, p_chance, orientations * tests)
        if k < min_matches or log_nfa > np.log10(nfa_threshold):
            break
        q_outline = _outline(dst[members])
        alive[members] = False
        inside = np.array([cv2.pointPolygonTest(q_outline.astype(np.float32), (float(x), float(y)), False) >= 0
                           for x, y in dst])
        alive &= ~inside
        found_pieces.append((a, b, members, log_nfa))
    return found_pieces
