"""Rotation-invariant patch features and a compiled PatchMatch nearest-neighbour field (clone's search).

Features are magnitudes of Zernike moments (Khotanzad & Hong 1990) of a disc around every pixel, computed by
convolving the image with the Zernike filter bank (a rotation of the patch only changes the moments' phases), or
a small square neighbourhood projected on its principal components (for unrotated copies).
The nearest-neighbour field follows PatchMatch (Barnes et al. 2009) as adapted to copy-move detection by
Cozzolino, Poggi & Verdoliva (2015): random initialisation, propagation of good offsets from neighbours and
random search, with offsets shorter than a minimum length forbidden so a patch cannot match itself. Three searches
give such a field: :func:`patchmatch` evaluates every step for all pixels at once (whole-array numpy and
cv2.remap); :func:`compiled_patchmatch` visits pixel after pixel in a numba kernel (``_patchmatch_kernel``) that
reads candidates' feature vectors directly; :func:`coarse_to_fine_patchmatch` runs that kernel
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
            channels.append(cv2.magnitude(response_re, response_im))
    features = np.stack(channels, axis=2)
    scale = features.reshape(-1, features.shape[2]).std(axis=0) + 1e-6
    return (features / scale).astype(np.float32)


def reduce_features(features: np.ndarray, dims: int) -> np.ndarray:
    """Project features on their ``dims`` principal components (cheaper distances, noise averaged)."""
    flat = features.reshape(-1, features.shape[2])
    centred = flat - flat.mean(axis=0)
    sample = centred[:: max(1, centred.shape[0] // 50_000)]
    _, _, components = np.linalg.svd(sample, full_matrices=False)
    reduced = centred @ components[:dims].T
    return np.ascontiguousarray(reduced.reshape(features.shape[0], features.shape[1], dims), dtype=np.float32)


def projected_patch_features(gray: np.ndarray, size: int, dims: int) -> np.ndarray:
    """``reduce_features(raw_patch_features(gray, size), dims)`` (each component up to its sign) without the
    (H, W, size*size) stack: the principal components are found on the same sample of patches, then each
    projection is one correlation of the image with the component as a size x size kernel."""
    half = size // 2
    image = gray.astype(np.float32)
    padded = cv2.copyMakeBorder(image, half, half, half, half, cv2.BORDER_REFLECT)
    height, width = gray.shape
    shifts = [(dy, dx) for dy in range(size) for dx in range(size)]
    # the mean of every raw feature over all pixels, as reduce_features centres by it
    window_means = np.array([padded[dy:dy + height, dx:dx + width].mean(dtype=np.float64) for dy, dx in shifts])
    feature_mean = window_means - window_means.mean()
    chosen = np.arange(0, height * width, max(1, (height * width) // 50_000))
    ys, xs = np.divmod(chosen, width)
    patches = np.stack([padded[ys + dy, xs + dx] for dy, dx in shifts], axis=1).astype(np.float64)
    patches -= patches.mean(axis=1, keepdims=True)
    # the right singular vectors of the sample are the eigenvectors of its scatter matrix: a size^2 x size^2
    # eigenproblem instead of an SVD of the 50,000-row sample (half a second of a loaded core at 1 MP)
    centred = patches - feature_mean
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
    components = eigenvectors[:, np.argsort(eigenvalues)[::-1]].T
    planes = []
    for component in components[:dims]:
        # component . (patch - its mean) = (component - its mean) . patch
        kernel = (component - component.mean()).reshape(size, size).astype(np.float32)
        plane = cv2.filter2D(image, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT)
        planes.append(plane - np.float32(component @ feature_mean))
    return np.ascontiguousarray(np.stack(planes, axis=2), dtype=np.float32)


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
                        initial: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, seed: int = 0,
                        local_samples: int = 0, local_radius: int = 64
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate nearest neighbour (excluding offsets shorter than ``min_offset``) for every pixel: the
    options and results of :func:`patchmatch`, searched by a compiled kernel (a different random stream and
    order, so the field differs in detail at equal settings).

    PatchMatch (Barnes et al. 2009), compiled with numba. Each of the ``iterations`` first tries, at every
    pixel, ``global_samples`` uniformly random targets (so that small copied areas are hit at all) and
    ``local_samples`` random offsets within ``local_radius`` (exemplar fills copy from close by); then sweeps
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
           affines, int(min_offset) ** 2, int(iterations), int(global_samples), int(local_samples),
           int(local_radius), int(seed))
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
    excluded. Returns (offset y, offset x, squared feature distance) as :func:`patchmatch` does."""
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
    several pixels wide): the options and results of :func:`patchmatch` without local samples.

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


# cv2.remap refuses a plane with a side of SHRT_MAX pixels or more: a strip scan some thousand times longer than it
# is high keeps such a side even at analysis scale, and the detectors stopped with an internal error
_REMAP_LIMIT = 32767


def _fetch(plane: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """``plane`` (H, W, up to 4 channels) at the integer-valued positions (``map_x``, ``map_y``), NaN outside it:
    cv2.remap (nearest), or the same values gathered by numpy where remap cannot take the plane's size."""
    height, width = plane.shape[:2]
    if max(height, width) < _REMAP_LIMIT:
        return cv2.remap(plane, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(float("nan"),) * 4)
    xs, ys = map_x.astype(np.int64), map_y.astype(np.int64)
    inside = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    candidate = np.full(plane.shape, np.nan, plane.dtype)
    candidate[inside] = plane[ys[inside], xs[inside]]
    return candidate


def patchmatch(features: np.ndarray, *, min_offset: int, iterations: int = 5, global_samples: int = 3,
               proposals: list[np.ndarray] | None = None,
               initial: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, seed: int = 0,
               local_samples: int = 0, local_radius: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate nearest neighbour (excluding offsets shorter than ``min_offset``) for every pixel.

    Each iteration tries, for all pixels at once: the offsets of neighbours at distances 8, 4, 2 and 1
    (propagation, jump-flooding style), ``global_samples`` uniformly random targets (so that small copied areas
    are hit at all), and random offsets around the current one at shrinking radii.

    ``local_samples`` further random offsets per iteration are drawn within ``local_radius`` (exemplar fills copy
    from close by). ``proposals`` are 2x3 affine maps (pixel -> its presumed copy) tried for every pixel before the iterations,
    e.g. from keypoint matches: they seed the field where random sampling would rarely land.

    Returns (offset y, offset x, squared feature distance), each (H, W).
    """
    height, width, dims = features.shape
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.int32)
    ys_f, xs_f = ys.astype(np.float32), xs.astype(np.float32)
    # candidates are fetched four channels at a time with cv2.remap (nearest, NaN outside the image): the gather
    # is bound by the latency of random reads, so a 16-byte pixel costs about what a 4-byte one does, and four
    # planes at once took a third of the time of one plane after another. Squared differences are summed in
    # groups of four and the groups added, the order numpy's float32 sum over (H, W, 4) slices used, so the
    # costs are the same to the bit.
    groups = [np.ascontiguousarray(features[:, :, start:start + 4]) for start in range(0, dims, 4)]
    min_offset_sq = np.float32(min_offset**2)
    oy, ox, best = _starting_field(initial, height, width)

    def consider(cy: np.ndarray, cx: np.ndarray) -> None:
        offset_y, offset_x = cy.astype(np.float32), cx.astype(np.float32)
        map_y, map_x = cv2.add(ys_f, offset_y), cv2.add(xs_f, offset_x)
        cost = None
        for group_features in groups:
            candidate = _fetch(group_features, map_x, map_y).reshape(group_features.shape)
            diff = cv2.subtract(group_features, candidate, dst=candidate)
            squared = cv2.multiply(diff, diff, dst=diff)
            group = squared[:, :, 0].copy()
            for channel in range(1, squared.shape[2]):
                group += squared[:, :, channel]
            cost = group if cost is None else cv2.add(cost, group, dst=cost)
        # NaN (outside the image) never compares below the best; too-short offsets are excluded explicitly
        better = cost < best
        better &= cv2.add(cv2.multiply(offset_y, offset_y), cv2.multiply(offset_x, offset_x)) >= min_offset_sq
        np.copyto(oy, cy, where=better)
        np.copyto(ox, cx, where=better)
        np.copyto(best, cost, where=better)

    def uniform() -> None:
        consider(rng.integers(0, height, size=(height, width), dtype=np.int32) - ys,
                 rng.integers(0, width, size=(height, width), dtype=np.int32) - xs)

    for affine in proposals or []:
        mapped_x = affine[0, 0] * xs + affine[0, 1] * ys + affine[0, 2]
        mapped_y = affine[1, 0] * xs + affine[1, 1] * ys + affine[1, 2]
        consider(np.round(mapped_y).astype(np.int32) - ys, np.round(mapped_x).astype(np.int32) - xs)
    for _ in range(iterations):
        for _ in range(global_samples):
            uniform()
        for _ in range(local_samples):
            consider(rng.integers(-local_radius, local_radius + 1, size=(height, width), dtype=np.int32),
                     rng.integers(-local_radius, local_radius + 1, size=(height, width), dtype=np.int32))
        for step in (8, 4, 2, 1):
            for dy, dx in ((step, 0), (-step, 0), (0, step), (0, -step)):
                consider(np.roll(oy, (dy, dx), axis=(0, 1)), np.roll(ox, (dy, dx), axis=(0, 1)))
        radius = max(height, width) / 8
        while radius >= 1:
            consider(oy + rng.integers(-int(radius), int(radius) + 1, size=(height, width), dtype=np.int32),
                     ox + rng.integers(-int(radius), int(radius) + 1, size=(height, width), dtype=np.int32))
            radius /= 4
    return oy, ox, best


def local_affine_residual(oy: np.ndarray, ox: np.ndarray, window: int) -> np.ndarray:
    """Mean squared residual of a least-squares affine fit of the offset field in each ``window`` (dense linear
    fitting, Cozzolino et al. 2015): near zero inside a copied region, whatever its rotation or scale."""
    height, width = oy.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)

    def box(values: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(values, cv2.CV_64F, (window, window), normalize=True, borderType=cv2.BORDER_REFLECT)

    # centre coordinates locally for conditioning
    mx, my = box(xx), box(yy)
    sxx = box(xx * xx) - mx * mx
    syy = box(yy * yy) - my * my
    sxy = box(xx * yy) - mx * my
    det = sxx * syy - sxy * sxy + 1e-9
    residual = np.zeros((height, width))
    for field in (oy.astype(np.float64), ox.astype(np.float64)):
        mf = box(field)
        sfx = box(field * xx) - mf * mx
        sfy = box(field * yy) - mf * my
        ax = (sfx * syy - sfy * sxy) / det
        ay = (sfy * sxx - sfx * sxy) / det
        variance = box(field * field) - mf * mf
        explained = ax * sfx + ay * sfy
        residual += np.maximum(variance - explained, 0.0)
    return residual.astype(np.float32)
