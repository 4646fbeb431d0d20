"""Noise-residual inconsistency: areas whose high-frequency residual does not match the rest of the picture.

Method
------
After Splicebuster (Cozzolino, Poggi & Verdoliva 2015). The luminance's third-order derivative (the residual
of a cubic predictor, ``[1, -3, 3, -1]``), along rows and along columns, keeps the camera's noise, its
demosaicing and its JPEG history and drops most of the scene. It is quantised (step ``step`` grey levels) and
truncated to {-1, 0, 1}; four consecutive residuals, along the residual's own direction and across it, form one
of 81 patterns, merged to 25 by the symmetries of reversal and sign. Each window (``window`` pixels, every 8
pixels) gets the histogram of its patterns (two 25-bin halves: along and across), whose square roots are
whitened by a principal-component projection (``components`` dimensions).

The histograms are first centred on the median histogram of windows of similar scene texture (the gradient
of the smoothed luminance, ``texture_bins`` bins). The host camera's residual is then one Gaussian, fitted on
the 70 % of windows closest to it by concentration steps (FastMCD, Rousseeuw & Van Driessen 1999; Splicebuster
fits a Gaussian and a uniform outlier class by EM instead); a window's evidence is the logarithm of its
Mahalanobis distance from that Gaussian, on the picture's own robust scale, and a cell's the mean over the
windows that hold it. Clipped pixels (near 0 or 255) and flat patches are left out: their residual says nothing
of the source. Groups of cells are judged a-contrario (``_blocks.group_decision``, one test per
non-overlapping window): a region is decided when a group at least as far from the host is expected fewer than
``nfa_threshold`` times on an untouched photograph with as many windows (``tail_margin`` widens the null for
the heavy tails real photographs show, calibrated by ``benchmarks.false_alarms``).

Limits
------
It finds a piece whose noise, demosaicing or compression differs from the host's: a paste from another camera
or another JPEG history. A piece from the same camera, or a picture resized or recompressed strongly as a
whole after the edit, leaves too little difference. Scene content still shows through the residual: smooth
gradients, fine regular texture and strong edges differ from the rest of a picture even when untouched, which
is why the decision needs a wide margin (3.0), and pieces whose camera differs only by its noise level are
often ranked first on the map without being decided; small pieces (under about a window) are diluted in their
windows. On small JPEG-born web pictures (CASIA) the residual mostly shows the scene: the map is near chance there.
On scanned prints the "camera" is the scanner and the film grain, and the method then compares grain.

References
----------
D. Cozzolino, G. Poggi, L. Verdoliva, "Splicebuster: a new blind image splicing detector", IEEE WIFS 2015.
J. Fridrich, J. Kodovsky, "Rich models for steganalysis of digital images", IEEE TIFS 7(3), 2012.

P. J. Rousseeuw, K. Van Driessen, "A fast algorithm for the minimum covariance determinant estimator",
Technometrics 41(3), 1999.

Examples
--------
>>> from skimage import data
>>> result = noise_residual(data.astronaut())
>>> result.method
'residual'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from retouch.detect._blocks import (
    block_result,
    finite_or_none,
    group_decision,
    nfa_score,
    standardise,
    strength_to_heat,
)
from retouch.detect._options import options_params, resolve_options
from retouch.imaging import to_gray_float
from retouch.registry import register
from retouch.result import AnalysisResult

FALSE_ALARM_CONTROL = ("a-contrario: a region's NFA is the number of windows tested times the chance that one "
                       "window of an untouched photograph lies as far from the picture's own residual model (a "
                       "Gaussian widened by tail_margin)")

EXPLANATION = (
    "Every camera leaves its own fine noise in a photograph, shaped by its sensor, its processing and its JPEG "
    "compression. This map compares the noise pattern of each area with the pattern of the rest of the picture. "
    "Bright areas have a noise pattern unlike the rest, as a piece pasted in from another photograph often has. "
    "Limits: a piece taken from a photograph of the same camera and compression looks the same; a picture "
    "resized or strongly recompressed after the edit loses the difference; very smooth or very regular areas "
    "(sky gradients, fine fabric) can differ by themselves, so only strong and extended differences are marked."
)

CELL = 8  # window positions and histograms are counted on 8x8 cells


@dataclass(frozen=True)
class ResidualOptions:
    """Options of :func:`noise_residual`.

    Attributes
    ----------
    step : float
        Quantisation step of the third-order residual, in 8-bit grey levels (6: residuals within +-3 are 0).
    window : int
        Side of a window in pixels, a multiple of 8; 0 chooses 64 below 1.5 megapixels, else 128.
    components : int
        Dimensions kept by the whitening projection of the histograms (25).
    nfa_threshold : float
        A region is decided when its number of false alarms is at most this (0.01).
    tail_margin : float
        Width of the null model of a window score against a standard Gaussian (see ``_blocks.null_tail``),
        calibrated on untouched photographs by ``benchmarks.false_alarms``.
    min_windows : int
        Fewest valid windows for the analysis to apply (60): fewer cannot fit the host model.
    """

    step: float = 6.0
    window: int = 0
    components: int = 25
    nfa_threshold: float = 0.01
    tail_margin: float = 3.0
    min_windows: int = 60
    texture_bins: int = 8


def _symmetry_classes() -> np.ndarray:
    """For each of the 81 patterns of four values in {-1, 0, 1} (base-3 code of the values plus one), the index
    of its class under reversal and sign change (25 classes)."""
    codes = np.arange(81)
    digits = np.stack([(codes // 3 ** k) % 3 for k in range(4)], axis=1)  # digit k weighs 3**k
    weights = 3 ** np.arange(4)
    reversed_code = digits[:, ::-1] @ weights
    negated = 80 - codes  # each digit d becomes 2 - d
    negated_reversed = 80 - reversed_code
    representative = np.minimum(np.minimum(codes, reversed_code), np.minimum(negated, negated_reversed))
    _, classes = np.unique(representative, return_inverse=True)
    return classes.astype(np.uint8)


CLASSES = _symmetry_classes()
BINS = int(CLASSES.max()) + 1  # 25


def quantised_residuals(luminance: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Third-order residuals along rows and along columns of ``luminance`` (8-bit scale), quantised by ``step``
    and truncated to {0, 1, 2} (that is -1, 0, 1 plus one), as uint8 at the input's shape (borders 1)."""
    kernel = np.array([[-1.0, 3.0, -3.0, 1.0]], np.float32) / np.float32(step)
    out = []
    for k in (kernel, kernel.T):
        residual = cv2.filter2D(luminance, cv2.CV_32F, k, anchor=(1, 0) if k.shape[0] == 1 else (0, 1),
                                borderType=cv2.BORDER_REFLECT)
        # round half away from zero, truncate at +-1: |r| < 0.5 -> 0, else sign
        quantised = np.ones(residual.shape, np.uint8)
        quantised[residual >= 0.5] = 2
        quantised[residual <= -0.5] = 0
        out.append(quantised)
    return out[0], out[1]


def pattern_classes(quantised: np.ndarray, *, along_rows: bool) -> np.ndarray:
    """The symmetry class (0..24) of the four consecutive values starting at every pixel, along rows or
    columns; the last three columns (rows) repeat the pattern before them."""
    q = quantised.astype(np.uint8)
    if along_rows:
        width = q.shape[1] - 3
        code = q[:, :width] + 3 * q[:, 1:width + 1] + 9 * q[:, 2:width + 2] + 27 * q[:, 3:width + 3]
        code = np.pad(code, ((0, 0), (0, 3)), mode="edge")
    else:
        height = q.shape[0] - 3
        code = q[:height] + 3 * q[1:height + 1] + 9 * q[2:height + 2] + 27 * q[3:height + 3]
        code = np.pad(code, ((0, 3), (0, 0)), mode="edge")
    return CLASSES[code]


def cell_histograms(class_maps: Sequence[np.ndarray], valid: np.ndarray) -> np.ndarray:
    """Per 8x8 cell, the count of each pattern class among its valid pixels, summed over ``class_maps``:
    (rows, cols, BINS) float32."""
    rows, cols = valid.shape[0] // CELL, valid.shape[1] // CELL
    keep = valid[: rows * CELL, : cols * CELL]
    cell = ((np.arange(rows * CELL, dtype=np.int32) // CELL)[:, None] * cols
            + (np.arange(cols * CELL, dtype=np.int32) // CELL)[None, :])
    base = cell[keep] * BINS  # the cell of every valid pixel, once for all maps
    index = np.concatenate([base + classes[: rows * CELL, : cols * CELL][keep] for classes in class_maps])
    counts = np.bincount(index, minlength=rows * cols * BINS)
    return counts.reshape(rows, cols, BINS).astype(np.float32)


def usable_pixels(image: np.ndarray, luminance: np.ndarray) -> np.ndarray:
    """Pixels whose residual says something about the source: not within 3x3 of a pixel clipped near black or
    white in any channel (clipping flattens the noise), nor of a pixel of a perfectly flat 5x5 patch."""
    channels = image[..., :3] if image.ndim == 3 else image[..., None]
    top = 252 if image.dtype == np.uint8 else 252 * 257
    low = 6 if image.dtype == np.uint8 else 6 * 257
    clipped = ((channels <= low) | (channels >= top)).any(axis=2).astype(np.uint8)
    clipped = cv2.morphologyEx(clipped, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    spread = (cv2.dilate(luminance, np.ones((5, 5), np.uint8)) - cv2.erode(luminance, np.ones((5, 5), np.uint8)))
    bad = clipped | (spread < 0.5).astype(np.uint8)
    bad = cv2.dilate(bad, np.ones((9, 9), np.uint8))
    usable = bad == 0
    # the residual and its patterns run off the picture within 6 pixels of its border
    usable[:6], usable[-6:], usable[:, :6], usable[:, -6:] = False, False, False, False
    return usable


def window_features(image: np.ndarray, *, step: float, window_cells: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whitening input of every window position: (rows, cols, 2 BINS) square roots of the along and across
    pattern histograms of the window starting at each cell, and the share of its pixels that are usable."""
    luminance = to_gray_float(image) * np.float32(255.0)
    valid = usable_pixels(image, luminance)
    along_rows_residual, along_cols_residual = quantised_residuals(luminance, step)
    along = cell_histograms([pattern_classes(along_rows_residual, along_rows=True),
                             pattern_classes(along_cols_residual, along_rows=False)], valid)
    across = cell_histograms([pattern_classes(along_rows_residual, along_rows=False),
                              pattern_classes(along_cols_residual, along_rows=True)], valid)
    cells = np.concatenate([along, across], axis=2)
    rows, cols = cells.shape[:2]
    usable = cells[..., :BINS].sum(axis=2) / np.float32(2 * CELL * CELL)
    # window sums over window_cells x window_cells cells, anchored at the window's top-left cell
    size = (window_cells, window_cells)
    windows = cv2.boxFilter(cells, -1, size, normalize=False, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    share = cv2.boxFilter(usable, -1, size, normalize=True, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    out_rows, out_cols = max(rows - window_cells + 1, 0), max(cols - window_cells + 1, 0)
    windows = windows[:out_rows, :out_cols]
    share = share[:out_rows, :out_cols]
    totals = np.maximum(windows[..., :BINS].sum(axis=2, keepdims=True), 1.0)
    # the scene's structure at a coarser scale than the noise, per window: what the residual's histogram
    # depends on in an untouched picture, and what a pasted piece's different noise does not change
    smooth = cv2.GaussianBlur(luminance, (0, 0), 2.0)
    gradient = cv2.magnitude(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
    cell_gradient = cv2.resize(gradient[: rows * CELL, : cols * CELL], (cols, rows), interpolation=cv2.INTER_AREA)
    texture = cv2.boxFilter(cell_gradient, -1, size, normalize=True, anchor=(0, 0),
                            borderType=cv2.BORDER_CONSTANT)[:out_rows, :out_cols]
    # each half is a distribution over the same number of patterns (both residuals counted once per pixel)
    return np.sqrt(windows / totals), share, np.log1p(texture)


def conditional_centre(features: np.ndarray, covariate: np.ndarray, eligible: np.ndarray, bins: int
                       ) -> np.ndarray:
    """Per window, the median feature vector of the eligible windows of its covariate bin (bins: covariate
    quantiles), linearly interpolated between bin centres so that neighbouring textures get close centres."""
    pool = covariate[eligible]
    pooled = features[eligible]
    edges = np.quantile(pool, np.linspace(0, 1, bins + 1))
    index = np.clip(np.searchsorted(edges, covariate, side="right") - 1, 0, bins - 1)
    eligible_index = index[eligible]
    overall = np.median(pooled, axis=0)
    centres = np.stack([np.median(pooled[eligible_index == b], axis=0) if np.any(eligible_index == b) else overall
                        for b in range(bins)])
    positions = np.array([np.median(pool[eligible_index == b]) if np.any(eligible_index == b) else np.nan
                          for b in range(bins)])
    positions = np.where(np.isfinite(positions), positions, (edges[:-1] + edges[1:]) / 2)
    order = np.argsort(positions)
    positions, centres = positions[order], centres[order]
    place = np.clip(np.searchsorted(positions, covariate) - 1, 0, bins - 2)
    span = np.maximum(positions[place + 1] - positions[place], 1e-9)
    fraction = np.clip((covariate - positions[place]) / span, 0.0, 1.0)[:, None]
    return centres[place] * (1 - fraction) + centres[place + 1] * fraction


def whiten(features: np.ndarray, fit_on: np.ndarray, components: int) -> np.ndarray:
    """Project ``features`` (n, d) on the ``components`` leading principal axes of ``fit_on``, scaled to unit
    variance there."""
    centre = fit_on.mean(axis=0)
    covariance = np.cov(fit_on - centre, rowvar=False)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][:components]
    values = np.maximum(values[order], values[order][0] * 1e-6 + 1e-12)
    return (features - centre) @ (vectors[:, order] / np.sqrt(values))


def robust_host(points: np.ndarray, *, keep: float = 0.7, steps: int = 12
                ) -> tuple[np.ndarray, np.ndarray]:
    """The host's Gaussian (mean, covariance) from the ``keep`` share of windows closest to it, by concentration
    steps (Rousseeuw & Van Driessen's FastMCD from one start at the coordinate-wise median).

    A pasted piece's windows, being alike, inflate the spread of the very direction that separates them when
    every window is counted, and a Gaussian plus a uniform outlier class (Splicebuster's EM) keeps them in the
    Gaussian when the uniform density is spread over many dimensions; fitting on the closest share leaves them
    out as long as they are fewer than ``1 - keep`` of the windows.
    """
    count, dims = points.shape
    chosen = max(int(keep * count), dims + 2)
    centred = points - np.median(points, axis=0)
    distance = np.einsum("ij,ij->i", centred, centred)
    mean = covariance = None
    for _ in range(steps):
        closest = np.argpartition(distance, chosen - 1)[:chosen]
        subset = points[closest]
        new_mean = subset.mean(axis=0)
        covariance = np.cov(subset, rowvar=False) + 1e-6 * np.eye(dims)
        converged = mean is not None and np.abs(new_mean - mean).max() < 1e-6
        mean = new_mean
        distance, _ = _mahalanobis_squared(points, mean, covariance)
        if converged:
            break
    return mean, covariance


def _mahalanobis_squared(points: np.ndarray, mean: np.ndarray, covariance: np.ndarray
                         ) -> tuple[np.ndarray, float]:
    """Squared Mahalanobis distances of ``points`` and the log-determinant of ``covariance``."""
    factor = np.linalg.cholesky(covariance)
    # the inverse of the small triangular factor once, then one matrix product for all points (a solve per call
    # cost as much as the rest of the detector)
    whitened = (points - mean) @ np.linalg.inv(factor).T
    return np.einsum("ij,ij->i", whitened, whitened), 2.0 * float(np.log(np.diag(factor)).sum())


def _window_cells(shape: tuple[int, int], window: int) -> int:
    if window:
        return max(int(window) // CELL, 2)
    return 8 if shape[0] * shape[1] < 1_500_000 else 16


@register("residual", title="Noise residual consistency (Splicebuster-style)",
          description="Areas whose fine noise pattern (third-order residual co-occurrences) is unlike the rest of "
                      "the picture: pieces pasted from another camera or JPEG history.", default=False)
def noise_residual(image: np.ndarray, *, options: ResidualOptions | None = None, **changes: Any) -> AnalysisResult:
    """Noise-residual inconsistency, Splicebuster-style.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image.
    options : ResidualOptions, optional
        Method options (defaults: ``ResidualOptions()``); keyword ``changes`` override its fields.

    Returns
    -------
    AnalysisResult
        ``noise-residual`` regions, each with ``evidence["nfa"]``; the windows judged and the whitened dimensions
        in ``details``.
    """
    options = resolve_options(ResidualOptions(), options, changes)
    image = np.asarray(image)
    shape = image.shape[:2]
    window_cells = _window_cells(shape, options.window)
    params = {**options_params(options), "window_px": window_cells * CELL, "cell": CELL,
              "false_alarm_control": FALSE_ALARM_CONTROL}
    features, share, texture = window_features(image, step=options.step, window_cells=window_cells)
    valid = share >= 0.6
    if int(valid.sum()) < options.min_windows:
        reason = ("too few windows with usable noise (clipped or flat areas) to model the picture's residual"
                  if features.size else f"the picture is too small for {window_cells * CELL}-pixel windows")
        return AnalysisResult.skipped_result("residual", shape, reason, params=params, explanation=EXPLANATION)
    flat = features.reshape(-1, features.shape[2]).astype(np.float64)
    fit_on = flat[valid.ravel()]
    components = min(options.components, fit_on.shape[1], max(fit_on.shape[0] // 10, 2))
    if options.texture_bins > 1:
        flat = flat - conditional_centre(flat, texture.ravel(), valid.ravel(), options.texture_bins)
        fit_on = flat[valid.ravel()]
    reduced = whiten(flat, fit_on, components)
    # the host model from at most 4,000 windows spread over the picture (neighbouring windows overlap and share
    # most of their pixels; more add time, not information)
    fit_rows = reduced[valid.ravel()]
    mean, covariance = robust_host(fit_rows[:: max(fit_rows.shape[0] // 4000, 1)])
    distance, _ = _mahalanobis_squared(reduced, mean, covariance)
    # the log distance, on the picture's own robust scale: on real photographs the distances of untouched
    # windows are far heavier-tailed than the chi-square law of a Gaussian host (scene content shows through)
    log_distance = np.log(np.maximum(distance, 1e-9)).reshape(share.shape)
    z_windows = np.where(valid, standardise(log_distance, valid), 0.0).astype(np.float32)
    # back to cells: a cell's score is the mean over the windows that hold it
    rows, cols = shape[0] // CELL, shape[1] // CELL
    padded = np.zeros((rows, cols), np.float32)
    weight = np.zeros((rows, cols), np.float32)
    padded[: z_windows.shape[0], : z_windows.shape[1]] = z_windows
    weight[: z_windows.shape[0], : z_windows.shape[1]] = valid
    size = (window_cells, window_cells)
    anchor = (window_cells - 1, window_cells - 1)
    summed = cv2.boxFilter(padded, -1, size, normalize=False, anchor=anchor, borderType=cv2.BORDER_CONSTANT)
    held = cv2.boxFilter(weight, -1, size, normalize=False, anchor=anchor, borderType=cv2.BORDER_CONSTANT)
    covered = held > 0
    # the mean of unit-scale window scores: not standardised again, since averaging over a window's cells
    # shrinks the spread of the map and a second standardisation would inflate any smooth bump of content
    z = np.where(covered, summed / np.maximum(held, 1e-6), 0.0).astype(np.float32)
    # independent tests: windows that do not overlap
    tests = max(int(valid.sum()) // (window_cells * window_cells), 1)
    decision = group_decision(z, tests=tests, margin=options.tail_margin, nfa_threshold=options.nfa_threshold,
                              min_blocks=max(window_cells * window_cells // 4, 4))
    mask = decision.mask & covered
    heat = strength_to_heat(z, decision.threshold_z)
    score = nfa_score(decision.best_nfa, options.nfa_threshold, decided=bool(mask.any()))
    details = {"windows": int(valid.sum()), "components": components,
               "smallest_nfa": finite_or_none(decision.best_nfa), "null": decision.null_record()}
    if mask.any():
        summary = f"The noise residual differs from the rest of the picture in {100 * mask.mean():.2f} % of it."
    else:
        summary = "No area's noise residual differs from the rest of the picture beyond chance."
    return block_result("residual", heat_blocks=heat, mask_blocks=mask, block=CELL, shape=shape,
                        kind_of={"noise-residual": mask}, score=score,
                        params={**params, "threshold_z": round(decision.threshold_z, 3)}, summary=summary,
                        explanation=EXPLANATION, details=details, min_area=window_cells * CELL * CELL,
                        nfa=decision.nfa, what="area with another noise residual")
