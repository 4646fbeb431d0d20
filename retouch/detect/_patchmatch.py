"""Rotation-invariant patch features and a compiled PatchMatch nearest-neighbour field (clone's search).

Features are magnitudes of Zernike moments (Khotanzad & Hong 1990) of a disc around every pixel, computed by
convolving the image with the Zernike filter bank (a rotation of the patch only changes the moments' phases), and
projected on their principal components.
The nearest-neighbour field follows PatchMatch (Barnes et al. 2009) as adapted to copy-move detection by
Cozzolino, Poggi & Verdoliva (2015): random initialisation, propagation of good offsets from neighbours and
random search, with offsets shorter than a minimum length forbidden so a patch cannot match itself.
:func:`compiled_patchmatch` visits pixel after pixel in a numba kernel (``_patchmatch_kernel``) that reads
candidates' feature vectors directly; :func:`coarse_to_fine_patchmatch` runs that kernel
on the grid of every second pixel of every second row and brings the field to full resolution with a few sweeps
(clone's search, for features smooth at that step). Random candidates anywhere in the image are what a search
spends its time on (the latency of reading their feature vectors); on the grid most of those reads stay in the
processor's cache (``benchmarks/results/patchmatch.md``).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

ZERNIKE_ORDERS = [(1, 1), (2, 0), (2, 2), (3, 1), (3, 3), (4, 0), (4, 2), (4, 4), (5, 1), (5, 3), (5, 5)]


def _radial(n: int, m: int, rho: np.ndarray) -> np.ndarray:
    out = np.zeros_like(rho)
    for k in range((n - m) // 2 + 1):
        coefficient = ((-1) ** k * math.factorial(n - k)
                       / (math.factorial(k) * math.factorial((n + m) // 2 - k) * math.factorial((n - m) // 2 - k)))
        out += coefficient * rho ** (n - 2 * k)
    return out


def zernike_features(gray: np.ndarray, radius: int) -> np.ndarray:
    """(H, W, F) float32 magnitudes of Zernike moments of the disc of ``radius`` around each pixel."""
    coords = np.arange(-radius, radius + 1, dtype=np.float64)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    rho = np.hypot(xx, yy) / (radius + 0.5)
    theta = np.arctan2(yy, xx)
    inside = rho <= 1.0
    # the compiled kernels (numba) are imported here, as the searches import theirs
    from retouch.detect._patchmatch_kernel import interleave_standardised, magnitude

    image = gray.astype(np.float32)
    channels = []
    for n, m in ZERNIKE_ORDERS:
        radial = _radial(n, m, rho) * inside
        real = (radial * np.cos(m * theta)).astype(np.float32)
        imag = (radial * np.sin(m * theta)).astype(np.float32)
        real -= real[inside].mean() * inside if m == 0 else 0.0  # zero DC: invariant to brightness offsets
        response_re = cv2.filter2D(image, -1, real, borderType=cv2.BORDER_REFLECT)
        if m == 0:
            channels.append(np.abs(response_re))
        else:
            response_im = cv2.filter2D(image, -1, imag, borderType=cv2.BORDER_REFLECT)
            # not cv2.magnitude: its vectorised and scalar paths round differently, so its result depends on the
            # arrays' alignment in memory (and the field, and a borderline decision, would follow the allocator)
            channels.append(magnitude(response_re, response_im))
    return interleave_standardised(tuple(channels))


def reduce_features(features: np.ndarray, dims: int) -> np.ndarray:
    """Project features on their ``dims`` principal components (cheaper distances, noise averaged).

    The components are the right singular vectors of a centred sample of the rows, applied to the centred stack
    in its own precision (float32)."""
    flat = features.reshape(-1, features.shape[2])
    centred = flat - flat.mean(axis=0)
    sample = centred[:: max(1, centred.shape[0] // 50_000)]
    _, _, components = np.linalg.svd(sample, full_matrices=False)
    reduced = centred @ components[:dims].T
    return np.ascontiguousarray(reduced.reshape(features.shape[0], features.shape[1], dims), dtype=np.float32)


def _starting_field(initial: tuple[np.ndarray, np.ndarray, np.ndarray] | None, height: int, width: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Own copies (offset y, offset x as int32, distance as float32) of ``initial``, or an empty field: offsets
    0 at distance inf."""
    if initial is not None:
        oy, ox, best = (np.array(a, copy=True) for a in initial)
        return oy.astype(np.int32), ox.astype(np.int32), best.astype(np.float32)
    return (np.zeros((height, width), np.int32), np.zeros((height, width), np.int32),
            np.full((height, width), np.inf, np.float32))


def compiled_patchmatch(features: np.ndarray, *, min_offset: int, iterations: int = 5, global_samples: int = 3,
                        proposals: list[np.ndarray] | None = None,
                        initial: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, seed: int = 0
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate nearest neighbour (excluding offsets shorter than ``min_offset``) for every pixel.

    PatchMatch (Barnes et al. 2009), compiled with numba. Each of the ``iterations`` first tries, at every
    pixel, ``global_samples`` uniformly random targets (so that small copied areas are hit at all); then sweeps
    the image (raster order, reverse raster order in every other iteration) trying at each pixel the offsets of
    its neighbours at 1, 2, 4 and 8 pixels in the four directions (propagation; the neighbours already visited
    in the sweep carry fresh offsets, so a good offset travels across the whole image in one sweep) and random
    offsets around its best one at radii shrinking by four from an eighth of the image's longer side. A
    candidate is kept when its target lies inside the image, it is at least ``min_offset`` long and its squared
    feature distance is smaller.

    ``proposals`` are 2x3 affine maps (pixel -> its presumed copy) tried for every pixel before the sweeps, e.g.
    from keypoint matches: they seed the field where random sampling would rarely land. ``initial`` (offset y,
    offset x, distance) continues an earlier field. The same ``seed`` gives the same field.

    Returns (offset y, offset x, squared feature distance), each (H, W); the distance is ``inf`` (offsets 0) at
    a pixel for which no allowed candidate was tried.
    """
    features = np.ascontiguousarray(features, dtype=np.float32)
    height, width = features.shape[:2]
    oy, ox, best = _starting_field(initial, height, width)
    affines = np.array([np.asarray(a, dtype=np.float64)[:2, :3] for a in proposals or []],
                       dtype=np.float64).reshape(-1, 2, 3)
    # numba is imported here, not with the module: commands that never search a field do not pay for it
    from retouch.detect._patchmatch_kernel import search

    search(features.reshape(height * width, -1), height, width, oy.reshape(-1), ox.reshape(-1), best.reshape(-1),
           affines, int(min_offset) ** 2, int(iterations), int(global_samples), int(seed))
    return oy, ox, best


def coarse_grid(features: np.ndarray) -> np.ndarray:
    """Every second pixel of every second row of ``features`` (H, W, D), contiguous: the grid
    :func:`coarse_to_fine_patchmatch` searches first (grid pixel (y, x) is pixel (2y, 2x))."""
    return np.ascontiguousarray(features[::2, ::2], dtype=np.float32)


def halved_map(affine: np.ndarray) -> np.ndarray:
    """A 2x3 map between pixels (x -> A x + b) as a map between grid pixels (x' -> A x' + b / 2, x = 2 x')."""
    affine = np.asarray(affine, np.float64)[:2, :3]
    return np.hstack([affine[:, :2], affine[:, 2:3] / 2])


def upsampled_field(features: np.ndarray, coarse: tuple[np.ndarray, ...], *, min_offset: int,
                    proposals: list[np.ndarray] | None = None, sweeps: int = 2, radius: int = 4, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full-resolution field from a field of the grid (:func:`coarse_grid`; ``coarse`` is its offset y and
    offset x, with its distance or not, which is not read): at every pixel, the ``proposals`` and its grid
    parent's offset doubled and moved by up to a pixel either way (a doubled offset is even, the true one within
    a pixel of it); then ``sweeps`` sweeps (raster order, reverse raster order in every other one) of propagation
    from the four nearest neighbours and random search around the best at radii ``radius``, ``radius // 2``, ...
    1 (``_patchmatch_kernel.refine``). Offsets shorter than ``min_offset`` are
    excluded. Returns (offset y, offset x, squared feature distance) as :func:`compiled_patchmatch` does."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    height, width = features.shape[:2]
    coarse_oy = np.ascontiguousarray(coarse[0], dtype=np.int32)
    coarse_ox = np.ascontiguousarray(coarse[1], dtype=np.int32)
    if coarse_oy.shape != ((height + 1) // 2, (width + 1) // 2):
        raise ValueError(f"a coarse field of shape {coarse_oy.shape} is not the grid of a {height} x {width} "
                         "image")
    oy, ox, best = _starting_field(None, height, width)
    affines = np.array([np.asarray(a, dtype=np.float64)[:2, :3] for a in proposals or []],
                       dtype=np.float64).reshape(-1, 2, 3)
    from retouch.detect._patchmatch_kernel import refine

    refine(features.reshape(height * width, -1), height, width, oy.reshape(-1), ox.reshape(-1), best.reshape(-1),
           coarse_oy.reshape(-1), coarse_ox.reshape(-1), coarse_oy.shape[1], affines, int(min_offset) ** 2,
           int(sweeps), int(radius), int(seed))
    return oy, ox, best


def coarse_to_fine_patchmatch(features: np.ndarray, *, min_offset: int, iterations: int = 2,
                              global_samples: int = 3, proposals: list[np.ndarray] | None = None, seed: int = 0,
                              sweeps: int = 2, radius: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate nearest neighbour (excluding offsets shorter than ``min_offset``) for every pixel, searched on
    the grid of every second pixel of every second row first, for smooth features (the Zernike moments of a disc
    several pixels wide): the options and results of :func:`compiled_patchmatch`.

    The search's cost is the latency of reading the feature vectors of random candidates across the whole
    image; on a grid a quarter the size most of those reads stay in the processor's cache. The grid's field is
    searched by :func:`compiled_patchmatch` (``iterations``, ``global_samples``, the ``proposals`` carried to the
    grid, ``min_offset`` halved), then brought to full resolution by :func:`upsampled_field` (``sweeps``,
    ``radius``). The same ``seed`` gives the same field.
    """
    grid = coarse_grid(features)
    coarse_min = (int(min_offset) + 1) // 2
    coarse = compiled_patchmatch(grid, min_offset=coarse_min, iterations=iterations, global_samples=global_samples,
                                 proposals=[halved_map(a) for a in proposals or []], seed=seed)
    return upsampled_field(features, coarse, min_offset=min_offset, proposals=proposals, sweeps=sweeps,
                           radius=radius, seed=seed + 1)


def local_affine_residual(oy: np.ndarray, ox: np.ndarray, window: int) -> np.ndarray:
    """Mean squared residual of a least-squares affine fit of the offset field in each ``window`` (dense linear
    fitting, Cozzolino et al. 2015): near zero inside a copied region, whatever its rotation or scale."""
    height, width = oy.shape
    # The window's coordinates vary along one axis each: the box filter of x is its one-dimensional box filter
    # along a row (the same reflection at the border), and as the filter is separable, box(x * y) = box(x) box(y),
    # so the coordinates' covariance in every window is zero and their variances are a row and a column.
    xx = np.arange(width, dtype=np.float64)[None, :]
    yy = np.arange(height, dtype=np.float64)[:, None]

    def box(values: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(values, cv2.CV_64F, (window, window), normalize=True, borderType=cv2.BORDER_REFLECT)

    def box_along(values: np.ndarray) -> np.ndarray:  # a (1, W) row or an (H, 1) column
        size = (window, 1) if values.shape[0] == 1 else (1, window)
        return cv2.boxFilter(values, cv2.CV_64F, size, normalize=True, borderType=cv2.BORDER_REFLECT)

    mx, my = box_along(xx), box_along(yy)
    sxx = box_along(xx * xx) - mx * mx + 1e-9
    syy = box_along(yy * yy) - my * my + 1e-9
    residual = np.zeros((height, width))
    for field in (oy.astype(np.float64), ox.astype(np.float64)):
        mf = box(field)
        sfx = box(field * xx) - mf * mx
        sfy = box(field * yy) - mf * my
        variance = box(field * field) - mf * mf
        # the least-squares slopes are sfx / sxx and sfy / syy; what they explain of the variance
        explained = sfx * sfx / sxx + sfy * sfy / syy
        residual += np.maximum(variance - explained, 0.0)
    return residual.astype(np.float32)
