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
every scan within ``sure_bits``) are candidate copies, nearest first. Registration decides
(:func:`retouch.compare.register`, the same one ``retouch compare`` uses, on the small pictures): candidates it
aligns are copies, those it refuses are not. Copies are joined transitively (union-find), and a candidate pair
already joined through others is not registered again.

Limits: a copy whose hash is not among the ``neighbours`` nearest of any other copy of its photograph (a heavy
crop, in a box of many similar photographs) stays alone; registration refuses copies that share too little
(a detail enlarged from a print), as ``retouch compare`` does. Measured in ``benchmarks/results/metadata.md``.

References
----------
Zauner, C. (2010). Implementation and benchmarking of perceptual image hash functions. Master's thesis, Upper
Austria University of Applied Sciences, Hagenberg.

Example
-------
>>> from retouch.samples.box import make_box
>>> from retouch.io import load_image_bytes
>>> box = make_box(1, photographs=2, copies=2, size=256)
>>> prints = [copy_print(load_image_bytes(s.data, name=s.name).pixels) for s in box]
>>> sorted(sorted(box[i].photograph for i in group) for group in group_copies(prints).groups)
[[0, 0], [1, 1]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from retouch.errors import NotSamePhotographError
from retouch.imaging import checked_image, content_box, to_uint8

REGISTER_SIDE = 640  # px: grainy copies of 300-400 px did not register (benchmarks/results/metadata.md)
NEIGHBOURS = 6
SURE_BITS = 10  # of 64: closer than different photographs come (benchmarks/results/metadata.md)
MAX_BITS = 30  # of 64: no copy lay further in the measurement; two random hashes lie 32 apart


@dataclass(frozen=True)
class CopyPrint:
    """What grouping keeps of one scan: the pHash of its picture in its eight orientations (``hashes``, uint64,
    the picture as given first) and the picture, gray, at most :data:`REGISTER_SIDE` pixels a side (``small``)."""

    hashes: np.ndarray
    small: np.ndarray

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


def _gray_picture(image: np.ndarray) -> np.ndarray:
    """uint8 gray picture inside its uniform margins."""
    gray = to_uint8(checked_image(image))
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray[:, :, :3], cv2.COLOR_RGB2GRAY)
    top, bottom, left, right = content_box(gray)
    if min(bottom - top, right - left) >= 16:
        gray = gray[top:bottom, left:right]
    return np.ascontiguousarray(gray)


def _phash(gray: np.ndarray) -> int:
    import imagehash
    from PIL import Image

    bits = imagehash.phash(Image.fromarray(gray), hash_size=8).hash.flatten()
    return int(np.packbits(bits).view(">u8")[0])


def _orientations(gray: np.ndarray) -> list[np.ndarray]:
    turned = [np.rot90(gray, k) for k in range(4)]
    return [np.ascontiguousarray(view) for picture in turned for view in (picture, picture[:, ::-1])]


def perceptual_hash(image: np.ndarray) -> str:
    """The pHash of ``image`` inside its uniform margins, as 16 hexadecimal digits (64 bits)."""
    return f"{_phash(_reduced(_gray_picture(image))):016x}"


def _reduced(gray: np.ndarray) -> np.ndarray:
    scale = min(1.0, REGISTER_SIDE / max(gray.shape))
    if scale >= 1.0:
        return gray
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def copy_print(image: np.ndarray) -> CopyPrint:
    """A scan's :class:`CopyPrint` (``image``: uint8/uint16 gray or RGB, display orientation)."""
    small = _reduced(_gray_picture(image))
    hashes = np.array([_phash(view) for view in _orientations(small)], np.uint64)
    return CopyPrint(hashes=hashes, small=small)


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


def same_photograph(a: CopyPrint, b: CopyPrint) -> bool:
    """Whether registration aligns the two small pictures on their features (:func:`retouch.compare.register`,
    without its feature-free fallback: copies of one photograph share features, and that fallback is what makes
    a refusal slow)."""
    from retouch.compare.register import register

    try:
        register(a.small, b.small, refine=False, fallback=False)
    except NotSamePhotographError:
        return False
    return True


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
