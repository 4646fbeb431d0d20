"""The compiled PatchMatch searches behind :func:`retouch.detect._patchmatch.compiled_patchmatch` and
:func:`retouch.detect._patchmatch.upsampled_field`, and the element-wise passes of
:func:`retouch.detect._patchmatch.zernike_features` (numba).

numba caches the compiled kernel beside this module, or in the user's cache folder where the install is read-only
(``NUMBA_CACHE_DIR`` chooses another); only the first call after an install compiles it (about ten seconds),
later processes load it from the cache.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _random(state: np.uint64) -> np.uint64:
    """One step of xorshift64 (Marsaglia 2003): a fast, seedable stream; its high bits are used."""
    state ^= state << np.uint64(13)
    state ^= state >> np.uint64(7)
    state ^= state << np.uint64(17)
    return state


@njit(cache=True, nogil=True, inline="always")
def _below(state: np.uint64, bound: int) -> int:
    """An integer in [0, bound) from the state's high 32 bits (multiply-shift, no division)."""
    return int(((state >> np.uint64(32)) * np.uint64(bound)) >> np.uint64(32))


@njit(cache=True, nogil=True, inline="always")
def _try(features: np.ndarray, own: np.ndarray, height: int, width: int, y: int, x: int, dy: int, dx: int,
         min_offset_sq: int, best_d: np.float32, best_y: int, best_x: int) -> tuple[np.float32, int, int]:
    """The better of the current match and offset (dy, dx) for pixel (y, x): the candidate counts when its target
    lies inside the image, it is at least ``min_offset`` long and its squared feature distance is smaller."""
    target_y, target_x = y + dy, x + dx
    outside = target_y < 0 or target_y >= height or target_x < 0 or target_x >= width
    if outside or dy * dy + dx * dx < min_offset_sq:
        return best_d, best_y, best_x
    target = target_y * width + target_x
    total = np.float32(0.0)
    for channel in range(own.shape[0]):
        diff = own[channel] - features[target, channel]
        total += diff * diff
    if total < best_d:
        return total, dy, dx
    return best_d, best_y, best_x


@njit(cache=True, nogil=True, inline="always")
def _visit(features: np.ndarray, own: np.ndarray, width: int, height: int, row: int, column: int,
           step: int) -> tuple[int, int, int]:
    """The pixel a sweep visits at (``row``, ``column``) of its order (raster order for ``step`` 1, reverse raster
    order for -1): its y, x and flat index, with its feature vector copied into ``own``."""
    y = row if step == 1 else height - 1 - row
    x = column if step == 1 else width - 1 - column
    index = y * width + x
    for channel in range(own.shape[0]):
        own[channel] = features[index, channel]
    return y, x, index


@njit(cache=True, nogil=True, inline="always")
def _propagate(features: np.ndarray, own: np.ndarray, height: int, width: int, y: int, x: int, oy: np.ndarray,
               ox: np.ndarray, best: np.ndarray, jump: int, min_offset_sq: int, best_d: np.float32, best_y: int,
               best_x: int) -> tuple[np.float32, int, int]:
    """The best of the current match and the offsets of the four neighbours ``jump`` pixels away (above, left,
    below, right for a positive ``jump``; a neighbour without a match, or with the current offset, is skipped)."""
    for side in range(4):
        ny = y - jump if side == 0 else (y + jump if side == 2 else y)
        nx = x - jump if side == 1 else (x + jump if side == 3 else x)
        if ny < 0 or ny >= height or nx < 0 or nx >= width:
            continue
        neighbour = ny * width + nx
        dy, dx = oy[neighbour], ox[neighbour]
        if best[neighbour] == np.inf or (dy == best_y and dx == best_x):
            continue
        best_d, best_y, best_x = _try(features, own, height, width, y, x, dy, dx, min_offset_sq, best_d, best_y,
                                      best_x)
    return best_d, best_y, best_x


@njit(cache=True, nogil=True, inline="always")
def _try_proposals(features: np.ndarray, own: np.ndarray, height: int, width: int, y: int, x: int,
                   proposals: np.ndarray, min_offset_sq: int, best_d: np.float32, best_y: int, best_x: int
                   ) -> tuple[np.float32, int, int]:
    """The best of the current match and the twins of pixel (y, x) under each 2x3 map of ``proposals``."""
    for which in range(proposals.shape[0]):
        affine = proposals[which]
        dy = int(np.rint(affine[1, 0] * x + affine[1, 1] * y + affine[1, 2])) - y
        dx = int(np.rint(affine[0, 0] * x + affine[0, 1] * y + affine[0, 2])) - x
        best_d, best_y, best_x = _try(features, own, height, width, y, x, dy, dx, min_offset_sq, best_d, best_y,
                                      best_x)
    return best_d, best_y, best_x


@njit(cache=True, nogil=True, inline="always")
def _seeded(seed: int) -> np.uint64:
    """The random stream's starting state for ``seed`` (a few steps in, away from the seed's simple bits)."""
    state = np.uint64(0x9E3779B97F4A7C15) ^ np.uint64(seed * 2 + 1)
    for _ in range(8):
        state = _random(state)
    return state


@njit(cache=True, nogil=True, inline="always")
def _try_random(features: np.ndarray, own: np.ndarray, height: int, width: int, y: int, x: int,
                state: np.uint64, centre_y: int, centre_x: int, reach: int, min_offset_sq: int,
                best_d: np.float32, best_y: int, best_x: int) -> tuple[np.uint64, np.float32, int, int]:
    """One random offset within ``reach`` of (``centre_y``, ``centre_x``) in each direction, tried for pixel
    (y, x); returns the advanced random state with the better match."""
    span = 2 * reach + 1
    state = _random(state)
    dy = centre_y + _below(state, span) - reach
    state = _random(state)
    dx = centre_x + _below(state, span) - reach
    best_d, best_y, best_x = _try(features, own, height, width, y, x, dy, dx, min_offset_sq, best_d, best_y,
                                  best_x)
    return state, best_d, best_y, best_x


@njit(cache=True, nogil=True, inline="always")
def _search_around(features: np.ndarray, own: np.ndarray, height: int, width: int, y: int, x: int,
                   state: np.uint64, first_radius: float, shrink: float, min_offset_sq: int, best_d: np.float32,
                   best_y: int, best_x: int) -> tuple[np.uint64, np.float32, int, int]:
    """Random search: one random offset around the best one at each radius from ``first_radius`` down to 1,
    divided by ``shrink`` each time (each placed around the best found by the one before)."""
    radius = first_radius
    while radius >= 1.0 and best_d < np.inf:
        state, best_d, best_y, best_x = _try_random(features, own, height, width, y, x, state, best_y, best_x,
                                                    int(radius), min_offset_sq, best_d, best_y, best_x)
        radius /= shrink
    return state, best_d, best_y, best_x


@njit(cache=True, nogil=True)
def search(features: np.ndarray, height: int, width: int, oy: np.ndarray, ox: np.ndarray, best: np.ndarray,
           proposals: np.ndarray, min_offset_sq: int, iterations: int, global_samples: int, seed: int) -> None:
    """PatchMatch in place on flat (H*W, D) features and flat fields: the kernel of
    :func:`retouch.detect._patchmatch.compiled_patchmatch`."""
    state = _seeded(seed)
    own = np.empty(features.shape[1], np.float32)
    first_radius = max(height, width) / 8.0
    # pass 0 tries the proposals; then each iteration is two passes: uniformly random samples for every
    # pixel, then a sweep (raster order, reverse raster order in every other iteration) that propagates the
    # offsets of the neighbours at 1, 2, 4 and 8 pixels (the ones visited before in this sweep carry fresh
    # offsets, so a good offset travels across the whole image in one sweep) and searches around the best one at
    # radii shrinking by four. Sampling first lets every pixel propagate from neighbours on both sides that have
    # already sampled in this iteration.
    for phase in range(2 * iterations + 1):
        if phase == 0 and proposals.shape[0] == 0:
            continue
        sweep = (phase - 1) // 2
        step = 1 if sweep % 2 == 0 else -1
        for row in range(height):
            for column in range(width):
                y, x, index = _visit(features, own, width, height, row, column, step)
                best_d, best_y, best_x = best[index], oy[index], ox[index]
                if phase == 0:
                    best_d, best_y, best_x = _try_proposals(features, own, height, width, y, x, proposals,
                                                            min_offset_sq, best_d, best_y, best_x)
                elif phase % 2 == 1:
                    for _ in range(global_samples):
                        state = _random(state)
                        dy = _below(state, height) - y
                        state = _random(state)
                        dx = _below(state, width) - x
                        best_d, best_y, best_x = _try(features, own, height, width, y, x, dy, dx, min_offset_sq,
                                                      best_d, best_y, best_x)
                else:
                    jump = step
                    for _ in range(4):
                        best_d, best_y, best_x = _propagate(features, own, height, width, y, x, oy, ox, best, jump,
                                                            min_offset_sq, best_d, best_y, best_x)
                        jump *= 2
                    state, best_d, best_y, best_x = _search_around(features, own, height, width, y, x, state,
                                                                   first_radius, 4.0, min_offset_sq, best_d,
                                                                   best_y, best_x)
                best[index], oy[index], ox[index] = best_d, best_y, best_x


@njit(cache=True, nogil=True)
def refine(features: np.ndarray, height: int, width: int, oy: np.ndarray, ox: np.ndarray, best: np.ndarray,
           coarse_oy: np.ndarray, coarse_ox: np.ndarray, coarse_width: int, proposals: np.ndarray,
           min_offset_sq: int, sweeps: int, radius: int, seed: int) -> None:
    """The full-resolution pass of :func:`retouch.detect._patchmatch.upsampled_field`, in place on flat (H*W, D)
    features and flat fields; ``coarse_oy`` and ``coarse_ox`` (flat, ``coarse_width`` columns) are the field of
    the grid of every second pixel of every second row.

    Pass 0 tries, at every pixel, the proposals and its grid parent's offset (the grid pixel at or just above and
    left of it) doubled and moved by up to a pixel either way; the other grid neighbours' offsets arrive by
    propagation from the pixels they are parent to. Each of the ``sweeps`` then propagates the offsets of the
    four nearest neighbours (raster order, reverse raster order in every other sweep) and searches around the
    best at radii ``radius``, ``radius // 2``, ... 1."""
    state = _seeded(seed)
    own = np.empty(features.shape[1], np.float32)
    for sweep in range(sweeps + 1):
        step = 1 if sweep % 2 == 0 else -1
        for row in range(height):
            for column in range(width):
                y, x, index = _visit(features, own, width, height, row, column, step)
                best_d, best_y, best_x = best[index], oy[index], ox[index]
                if sweep == 0:
                    best_d, best_y, best_x = _try_proposals(features, own, height, width, y, x, proposals,
                                                            min_offset_sq, best_d, best_y, best_x)
                    parent = (y // 2) * coarse_width + x // 2
                    centre_y, centre_x = 2 * coarse_oy[parent], 2 * coarse_ox[parent]
                    for shift_y in range(-1, 2):
                        for shift_x in range(-1, 2):
                            best_d, best_y, best_x = _try(features, own, height, width, y, x, centre_y + shift_y,
                                                          centre_x + shift_x, min_offset_sq, best_d, best_y,
                                                          best_x)
                else:
                    best_d, best_y, best_x = _propagate(features, own, height, width, y, x, oy, ox, best, step,
                                                        min_offset_sq, best_d, best_y, best_x)
                    # radius, radius // 2, ... 1: integer halving is the float radius halved and truncated
                    state, best_d, best_y, best_x = _search_around(features, own, height, width, y, x, state,
                                                                   float(radius), 2.0, min_offset_sq, best_d,
                                                                   best_y, best_x)
                best[index], oy[index], ox[index] = best_d, best_y, best_x


@njit(cache=True, nogil=True)
def interleave_standardised(channels: tuple[np.ndarray, ...]) -> np.ndarray:
    """(H, W, F) float32: the F (H, W) float32 ``channels`` side by side, each divided by its standard deviation
    over the image plus 1e-6; the kernel of :func:`retouch.detect._patchmatch.zernike_features`.

    The same numbers, to the bit, as ``np.stack(channels, axis=2)`` divided by ``std(axis=0) + 1e-6`` of its
    (H * W, F) rows: numpy reduces a C-ordered stack along its first axis row after row, each column's float32
    sum in turn, and divides a float32 sum by the count in float64 before rounding to float32; this does the
    same, without the stack's temporaries (its deviations and their squares)."""
    count = len(channels)
    height, width = channels[0].shape
    pixels = height * width
    features = np.empty((height, width, count), np.float32)
    total = np.zeros(count, np.float32)
    for y in range(height):
        for x in range(width):
            for channel in range(count):
                value = channels[channel][y, x]
                features[y, x, channel] = value
                total[channel] += value
    mean = np.empty(count, np.float32)
    for channel in range(count):
        mean[channel] = np.float32(np.float64(total[channel]) / np.float64(pixels))
    squares = np.zeros(count, np.float32)
    for y in range(height):
        for x in range(width):
            for channel in range(count):
                deviation = features[y, x, channel] - mean[channel]
                squares[channel] += deviation * deviation
    scale = np.empty(count, np.float32)
    for channel in range(count):
        deviation = np.sqrt(np.float32(np.float64(squares[channel]) / np.float64(pixels)))
        scale[channel] = deviation + np.float32(1e-6)
    for y in range(height):
        for x in range(width):
            for channel in range(count):
                features[y, x, channel] /= scale[channel]
    return features


@njit(cache=True, nogil=True)
def magnitude(real: np.ndarray, imag: np.ndarray) -> np.ndarray:
    """sqrt(real^2 + imag^2) of two (H, W) float32 arrays, element by element in float32 (each product rounded,
    then the sum, then the root): the same numbers wherever the arrays lie in memory."""
    height, width = real.shape
    out = np.empty((height, width), np.float32)
    for y in range(height):
        for x in range(width):
            a, b = real[y, x], imag[y, x]
            out[y, x] = np.sqrt(a * a + b * b)
    return out
