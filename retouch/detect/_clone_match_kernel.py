"""The compiled pass behind :func:`retouch.detect._clone_keypoints.self_matches` (numba): the two nearest
candidates of every row and every column of one block of a symmetric distance matrix.

numba caches the compiled kernel beside this module (or in the user's cache folder, see ``_patchmatch_kernel``).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def two_nearest_in_block(dots: np.ndarray, norms: np.ndarray, top: int, left: int, columns_too: bool,
                         indices: np.ndarray, distances: np.ndarray) -> None:
    """Fold one block of dot products into the running two nearest, in place.

    ``dots[i, j]`` is the dot product of descriptor ``top + i`` with candidate ``left + j`` (``-inf`` where the
    pair may not be chosen); the squared distance is ``|a|^2 + |b|^2 - 2 a.b`` from ``norms`` (squared norms).
    Rows ``top + i`` take their candidates from the block's columns; with ``columns_too`` the block also stands
    for its transpose (the matrix is symmetric) and rows ``left + j`` take theirs from the block's rows.
    ``indices`` (n, 2) and ``distances`` (n, 2, squared) hold each row's nearest and second nearest so far,
    nearest first; a candidate replaces one only when strictly nearer, so among equals the one seen first stays
    (blocks are folded in increasing order of columns, so that is the smallest index, as ``argmin`` keeps)."""
    rows, cols = dots.shape
    for i in range(rows):
        row = top + i
        first_d, second_d = distances[row, 0], distances[row, 1]
        first_i, second_i = indices[row, 0], indices[row, 1]
        for j in range(cols):
            column = left + j
            twice = np.float32(-2.0) * dots[i, j]
            distance = (twice + norms[column]) + norms[row]
            if distance < second_d:
                if distance < first_d:
                    second_d, second_i = first_d, first_i
                    first_d, first_i = distance, column
                else:
                    second_d, second_i = distance, column
            if columns_too:
                distance = (twice + norms[row]) + norms[column]
                if distance < distances[column, 1]:
                    if distance < distances[column, 0]:
                        distances[column, 1], indices[column, 1] = distances[column, 0], indices[column, 0]
                        distances[column, 0], indices[column, 0] = distance, row
                    else:
                        distances[column, 1], indices[column, 1] = distance, row
        distances[row, 0], distances[row, 1] = first_d, second_d
        indices[row, 0], indices[row, 1] = first_i, second_i
