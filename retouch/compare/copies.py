"""Group the copies of one photograph among many scans: perceptual hashes propose, registration confirms.

Method
------
Each scan is reduced to a small gray picture inside its uniform margins and given a perceptual hash (pHash,
Zauner 2010, as the ``imagehash`` package computes it: the signs of the lowest 8 x 8 DCT coefficients of a
32 x 32 reduction against their median) in each of the eight orientations of a print on a scanner bed (four
quarter turns, mirrored or not). The distance between two scans is the smallest Hamming distance between the first
scan's hash and the other's eight. Re-scanning, tone, grain and recompression move a pHash by a few bits; a crop
of the margins or a slight turn moves it by up to about a third of its 64 bits, as far as two different
photographs may lie, so a hash alone cannot decide. It proposes: each scan's ``neighbours`` nearest scans (and
every scan within ``sure_bits``) are candidate copies, nearest first. A feature registration decides: SIFT
keypoints computed once per scan (on the picture softened and equalised with CLAHE, so tone and fading do not hide
them), matched with Lowe's ratio test, and fitted with one similarity transform by RANSAC: candidates with enough
matches agreeing on it are copies (features are computed once per scan, since grouping tries many pairs).
Copies are joined transitively (union-find), and a candidate pair already joined through others is not tried
again.

Limits: a copy whose hash is not among the ``neighbours`` nearest of any other copy of its photograph (a heavy
crop, in a box of many similar photographs) stays alone; copies that share too few keypoints (a detail enlarged
from a print; a photograph as plain as a night sky, under grain) are not confirmed and stay alone. Measured,
with the rejected alternatives, in ``benchmarks/results/metadata.md``.

References
----------
Zauner, C. (2010). Implementation and benchmarking of perceptual image hash functions. Master's thesis, Upper
Austria University of Applied Sciences, Hagenberg.

Example
-------
>>> from retouch.samples.box import make_box
>>> from retouch.io import load_image_bytes
>>> box = make_box(1, photographs=2, copies=2, size=768)
>>> prints = [copy_print(load_image_bytes(s.data, name=s.name).pixels) for s in box]
>>> sorted(sorted(box[i].photograph for i in group) for group in group_copies(prints).groups)
[[0, 0], [1, 1]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from retouch.hashing import gray_picture, phash_bits, reduced

FEATURES = 1500  # SIFT keypoints kept per scan
MIN_INLIERS = 25  # matches agreeing on one similarity; measured against different photographs in the benchmark
MIN_SCALE = 0.25  # a copy is at most four times larger or smaller than another
NEIGHBOURS = 6
SURE_BITS = 10  # of 64: closer than different photographs come (benchmarks/results/metadata.md)
MAX_BITS = 30  # of 64: no copy lay further in the measurement; two random hashes lie 32 apart


@dataclass(frozen=True, eq=False)
class CopyPrint:
    """What grouping keeps of one scan: the pHash of its picture in its eight orientations (``hashes``, uint64,
    the picture as given first), its SIFT keypoints' positions (``points``, float32 (n, 2)) and descriptors
    (``descriptors``, float32 (n, 128)) on the picture softened and equalised, at most
    :data:`retouch.hashing.REGISTER_SIDE` pixels a side."""

    hashes: np.ndarray
    points: np.ndarray
    descriptors: np.ndarray

    @property
    def hash_hex(self) -> str:
        return f"{int(self.hashes[0]):016x}"


@dataclass
class CopyGroups:
    """The outcome of :func:`group_copies`: ``groups`` of scan indices (each sorted; every scan in exactly one
    group, alone if no copy was found), the pairs registration ``confirmed`` and ``refused`` as
    ``(i, j, hash_bits)``, and how many registrations ran."""

    groups: list[list[int]]
    confirmed: list[tuple[int, int, int]] = field(default_factory=list)
    refused: list[tuple[int, int, int]] = field(default_factory=list)
    registrations: int = 0


def _orientations(gray: np.ndarray) -> list[np.ndarray]:
    turned = [np.rot90(gray, k) for k in range(4)]
    return [np.ascontiguousarray(view) for picture in turned for view in (picture, picture[:, ::-1])]


def _for_features(gray: np.ndarray) -> np.ndarray:
    """Grain softened, tones stretched and local contrast equalised: prints of one negative differ in tone,
    fading and grain, which would otherwise decide which keypoints are found."""
    soft = cv2.GaussianBlur(gray, (0, 0), 1.0)
    low, high = np.percentile(soft, [0.5, 99.5])
    stretched = np.clip((soft.astype(np.float32) - low) * (255.0 / max(float(high - low), 1.0)), 0, 255)
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(stretched.astype(np.uint8))


def copy_print(image: np.ndarray) -> CopyPrint:
    """A scan's :class:`CopyPrint` (``image``: uint8/uint16 gray or RGB, display orientation)."""
    small = reduced(gray_picture(image))
    hashes = np.array([phash_bits(view) for view in _orientations(small)], np.uint64)
    sift = cv2.SIFT_create(nfeatures=FEATURES, contrastThreshold=0.02)
    keypoints, descriptors = sift.detectAndCompute(_for_features(small), None)
    points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    descriptors = np.zeros((0, 128), np.float32) if descriptors is None else descriptors.astype(np.float32)
    return CopyPrint(hashes=hashes, points=points, descriptors=descriptors)


def hash_distances(prints: Sequence[CopyPrint]) -> np.ndarray:
    """(n, n) Hamming distances in bits: for each pair, the smallest between one scan's hash and the other's eight
    (symmetric; the diagonal is 64)."""
    if not prints:
        return np.zeros((0, 0), np.int64)
    first = np.array([p.hashes[0] for p in prints], np.uint64)
    every = np.stack([p.hashes for p in prints])  # (n, 8)
    bits = np.bitwise_count(first[:, None, None] ^ every[None, :, :]).min(axis=2).astype(np.int64)
    bits = np.minimum(bits, bits.T)
    np.fill_diagonal(bits, 64)
    return bits


def candidate_pairs(distances: np.ndarray, *, neighbours: int = NEIGHBOURS, sure_bits: int = SURE_BITS,
                    max_bits: int = MAX_BITS) -> list[tuple[int, int, int]]:
    """Pairs ``(i, j, bits)`` with ``i < j`` worth registering, nearest first: each scan's ``neighbours`` nearest
    within ``max_bits``, and every pair within ``sure_bits``."""
    count = len(distances)
    chosen: set[tuple[int, int]] = set()
    if count < 2:
        return []
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :min(neighbours, count - 1)]
    for i in range(count):
        for j in nearest[i]:
            if distances[i, j] <= max_bits:
                chosen.add((min(i, int(j)), max(i, int(j))))
    close_i, close_j = np.nonzero(np.triu(distances <= sure_bits, 1))
    chosen.update(zip(close_i.tolist(), close_j.tolist()))
    return sorted(((i, j, int(distances[i, j])) for i, j in chosen), key=lambda pair: (pair[2], pair[0], pair[1]))


def feature_inliers(a: CopyPrint, b: CopyPrint) -> int:
    """Keypoint matches (Lowe's ratio test, 0.8) consistent with one similarity transform (a print turned, scaled
    and shifted on the scanner bed), fitted by RANSAC (OpenCV offers MAGSAC++ for homographies only)."""
    if len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return 0
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < MIN_INLIERS:
        return 0
    source = a.points[[m.queryIdx for m in good]]
    target = b.points[[m.trainIdx for m in good]]
    model, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=3.0,
                                                 maxIters=2000, confidence=0.995, refineIters=0)
    if model is None or inliers is None:
        return 0
    scale = float(np.sqrt(abs(np.linalg.det(model[:, :2]))))
    if not MIN_SCALE <= scale <= 1.0 / MIN_SCALE:  # a collapsed fit: many matches onto one spot, not a copy
        return 0
    kept = inliers.ravel().astype(bool)
    # matches onto the same few keypoints (dust, a repeated texture) count once
    distinct = min(len(np.unique(np.round(source[kept]), axis=0)), len(np.unique(np.round(target[kept]), axis=0)))
    return int(distinct)


def same_photograph(a: CopyPrint, b: CopyPrint) -> bool:
    """Whether the two scans register: at least :data:`MIN_INLIERS` keypoint matches agree on one similarity
    transform (features computed once per scan, since grouping tries many pairs)."""
    return feature_inliers(a, b) >= MIN_INLIERS


def group_copies(prints: Sequence[CopyPrint], *, neighbours: int = NEIGHBOURS, sure_bits: int = SURE_BITS,
                 max_bits: int = MAX_BITS,
                 confirm: Callable[[CopyPrint, CopyPrint], bool] = same_photograph) -> CopyGroups:
    """Group scans that show the same photograph.

    Parameters
    ----------
    prints : sequence of CopyPrint
        One per scan (:func:`copy_print`).
    neighbours, sure_bits, max_bits : int
        Which pairs are proposed (:func:`candidate_pairs`).
    confirm : callable
        Decides a proposed pair (default: registration).

    Returns
    -------
    CopyGroups
        Groups in order of their first scan.
    """
    parent = list(range(len(prints)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    outcome = CopyGroups(groups=[])
    for i, j, bits in candidate_pairs(hash_distances(prints), neighbours=neighbours, sure_bits=sure_bits,
                                      max_bits=max_bits):
        if root(i) == root(j):
            continue
        outcome.registrations += 1
        if confirm(prints[i], prints[j]):
            parent[root(j)] = root(i)
            outcome.confirmed.append((i, j, bits))
        else:
            outcome.refused.append((i, j, bits))
    members: dict[int, list[int]] = {}
    for i in range(len(prints)):
        members.setdefault(root(i), []).append(i)
    outcome.groups = sorted(members.values(), key=lambda group: group[0])
    return outcome
