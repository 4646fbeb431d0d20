"""Exact duplicates: blocks of pixels that occur twice, identically, in one image (a copy moved by whole pixels and
saved without loss, or aligned to the JPEG grid).

Every ``block`` x ``block`` neighbourhood is hashed (a polynomial hash in 64-bit arithmetic, rows then columns)
and the hashes are sorted; a hash held by exactly two blocks that carry some contrast is an exact duplicate pair
(Fridrich, Soukal & Lukas, "Detection of copy-move forgery in digital images", DFRWS 2003, exact match). Hashes
held by more blocks are repeats (a pattern, a flat or clipped area) and say nothing. The displacements of the
pairs are counted; a copy of a few hundred pixels gives one displacement many votes, chance duplicates give
scattered single votes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# two fixed odd multipliers: the hash is deterministic, and collisions between different blocks (one in 2^64 per
# pair) are far rarer than the duplicates looked for
_ROW_BASE = np.uint64(0x9E3779B97F4A7C15)
_COLUMN_BASE = np.uint64(0xC2B2AE3D27D4EB4F)


@dataclass(frozen=True)
class ExactDuplicates:
    """Displacements (dy, dx) shared by at least the minimum number of exact duplicate block pairs, commonest
    first, with their votes, and for each the top-left corners of its first blocks (``starts[i]``: (n, 2))."""

    offsets: list[tuple[int, int]]
    votes: list[int]
    starts: list[np.ndarray]


def block_hashes(values: np.ndarray, block: int) -> np.ndarray:
    """A 64-bit hash of every ``block`` x ``block`` neighbourhood of an integer image, by its top-left corner:
    shape (H - block + 1, W - block + 1)."""
    data = values.astype(np.uint64)
    height, width = data.shape
    rows_out, cols_out = height - block + 1, width - block + 1
    with np.errstate(over="ignore"):
        across = np.zeros((height, cols_out), np.uint64)
        for offset in range(block):
            across *= _ROW_BASE
            across += data[:, offset:offset + cols_out]
        hashes = np.zeros((rows_out, cols_out), np.uint64)
        for offset in range(block):
            hashes *= _COLUMN_BASE
            hashes += across[offset:offset + rows_out]
    return hashes


def exact_duplicates(levels: np.ndarray, *, min_offset: int, block: int = 6, min_contrast: float = 2.0,
                     min_votes: int = 12, most: int = 8) -> ExactDuplicates:
    """The displacements of exact duplicate blocks in ``levels`` (an integer image: grey levels as stored).

    A block takes part when its standard deviation is at least ``min_contrast`` levels; a displacement is kept
    when at least ``min_votes`` duplicate pairs share it, it is at least ``min_offset`` long, and it is among the
    ``most`` commonest. Each displacement is given once, pointing down (or right)."""
    height, width = levels.shape
    if height < block or width < block:
        return ExactDuplicates([], [], [])
    hashes = block_hashes(levels, block)
    rows_out, cols_out = hashes.shape
    values = levels.astype(np.float32)
    mean = cv2.boxFilter(values, -1, (block, block), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    square = cv2.boxFilter(values * values, -1, (block, block), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    contrasted = (square - mean * mean)[:rows_out, :cols_out] >= min_contrast**2
    index = np.flatnonzero(contrasted.ravel())
    keys = hashes.ravel()[index]
    order = np.argsort(keys, kind="stable")
    keys, index = keys[order], index[order]
    equal = keys[1:] == keys[:-1]
    if not equal.any():
        return ExactDuplicates([], [], [])
    # runs of exactly two equal hashes: a run starts where the previous key differs and ends before the next does
    pair = equal & np.r_[True, ~equal[:-1]] & np.r_[~equal[1:], True]
    first, second = index[:-1][pair], index[1:][pair]
    dy = second // cols_out - first // cols_out
    dx = second % cols_out - first % cols_out
    backwards = (dy < 0) | ((dy == 0) & (dx < 0))
    first = np.where(backwards, second, first)
    dy, dx = np.where(backwards, -dy, dy), np.where(backwards, -dx, dx)
    far = dy * dy + dx * dx >= min_offset**2
    first, dy, dx = first[far], dy[far], dx[far]
    if dy.size == 0:
        return ExactDuplicates([], [], [])
    key = dy * (2 * width + 1) + dx  # dx in (-width, width): one integer per displacement
    found, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    offsets, votes, starts = [], [], []
    for chosen in np.argsort(counts)[::-1][:most]:
        if counts[chosen] < min_votes:
            break
        members = first[inverse == chosen]
        offsets.append((int(dy[inverse == chosen][0]), int(dx[inverse == chosen][0])))
        votes.append(int(counts[chosen]))
        starts.append(np.stack([members // cols_out, members % cols_out], axis=1))
    return ExactDuplicates(offsets, votes, starts)


def duplicate_area(shape: tuple[int, int], starts: np.ndarray, block: int) -> np.ndarray:
    """The pixels covered by the blocks whose top-left corners are ``starts`` ((n, 2): y, x)."""
    area = np.zeros(shape, np.uint8)
    area[starts[:, 0], starts[:, 1]] = 1
    # each corner stands for the block below and to the right of it
    kernel = np.ones((block, block), np.uint8)
    return cv2.dilate(area, kernel, anchor=(block - 1, block - 1)).astype(bool)
