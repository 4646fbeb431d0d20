"""What two scans of one print share besides their content: a model of their global differences.

Two scans of one photograph differ everywhere: the second print was exposed and developed on its own (another
tone curve), re-photographed or scanned at another sharpness, lit unevenly, resampled and saved with other
compression, and each carries its own grain and scanner noise. :func:`fit_pair_model` estimates those global
processes from the registered pair itself, and :meth:`PairModel.predict` says what the questioned scan would
look like if they were all that happened to it; an edit is what that prediction does not explain.

Method
------
1. Tone: the questioned grey level as a monotone function of the reference's, both smoothed by
   ``tone_smoothing_px`` so grain does not flatten the curve. In each of ``tone_bins`` quantile bins of the
   reference the curve takes the median of the questioned levels, trimmed twice to the values within two robust
   standard deviations (a figure painted out makes a second, minority mode that a plain median or histogram
   matching follows part of the way), then the bins are made non-decreasing (isotonic regression, weights =
   pixel counts).
2. Illumination: a quadratic surface fitted to the tone-mapped residual by iteratively reweighted least squares
   (Tukey weights) on block medians: a print lit unevenly when re-photographed is brighter on one side.
3. Sharpness: the sharper of the two images is blurred with the Gaussian (among ``blur_sigmas``) that brings
   the two closest (median absolute difference); then a small radially symmetric kernel (rings up to 3 px,
   fitted by reweighted least squares) absorbs what a Gaussian does not (unsharp masking, lens softness).
4. Compression: when the analysis runs at the questioned file's own resolution and its decoded pixels hold a
   JPEG grid (:mod:`retouch.compare.compression`), the prediction is compressed with the estimated table on
   that grid, so detail that compression removed from the questioned file is removed from the prediction too.

Everything is estimated with robust statistics over the pixels it is given (``valid``), so a change covering a
minority of them barely moves the model; but an edit that fills one tone range (a dark object pasted over the
darkest part of a light scene) dominates that range's bins and bends the curve there. ``compare_pair``
therefore fits the model a second time without the change it decided (and a margin).

Limits: a tone change confined to one part of the print (dodging, a retouched face tone) is not global and is
left to the change decision; a tone curve that is not monotone (solarisation) is flattened; heavy local
distortion (a print bent when re-photographed) is not a global process either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from retouch.compare.compression import JpegHistory, jpeg_history, recompressed

SAMPLE_PIXELS = 200_000


@dataclass(frozen=True)
class ModelOptions:
    """Calibration of the pair model (see the module docstring)."""

    tone_smoothing_px: float = 3.0
    tone_bins: int = 48
    tone_trim: float = 2.0  # robust standard deviations kept around a bin's median when trimming
    blur_sigmas: tuple[float, ...] = (0.4, 0.7, 1.0, 1.4, 2.0, 2.8)
    illumination_block_px: int = 16
    keep_ratio: float = 0.98  # a stage is kept when it brings the median difference below this share of before
    simulate_compression: bool = True


@dataclass
class PairModel:
    """The global differences between a registered reference and the questioned scan (analysis frame)."""

    tone_levels: np.ndarray  # reference grey levels (increasing) ...
    tone_values: np.ndarray  # ... and the questioned levels they map to
    illumination: np.ndarray  # six coefficients of a quadratic surface in normalised coordinates
    reference_blur: float  # Gaussian sigma applied to the reference (0: none)
    questioned_blur: float  # Gaussian sigma applied to the questioned (0: none)
    kernel: np.ndarray  # 7x7 residual sharpness kernel applied after the tone curve
    kernel_offset: float
    compression: JpegHistory | None = None
    residual_spread: float = float("nan")  # robust spread of what the model leaves, grey levels / 255
    fit_rounds: int = 1  # fits in all: the later ones leave out the change the one before decided
    fit_share: float = 1.0  # share of the overlap the last fit used
    timings_s: dict[str, float] = field(default_factory=dict)

    def tone(self, reference: np.ndarray) -> np.ndarray:
        return np.interp(reference, self.tone_levels, self.tone_values).astype(np.float32)

    def illumination_field(self, shape: tuple[int, int]) -> np.ndarray:
        return _surface(self.illumination, shape)

    def predict(self, reference: np.ndarray) -> np.ndarray:
        """The questioned scan as the model predicts it from the registered ``reference`` (float gray [0, 1],
        analysis frame), before compression (see :meth:`compressed`)."""
        image = cv2.GaussianBlur(reference, (0, 0), self.reference_blur) if self.reference_blur > 0 else reference
        toned = self.tone(image)
        sharpened = cv2.filter2D(toned, -1, self.kernel, borderType=cv2.BORDER_REFLECT) + self.kernel_offset
        return np.clip(sharpened + self.illumination_field(reference.shape), 0.0, 1.0).astype(np.float32)

    def compressed(self, prediction: np.ndarray) -> np.ndarray:
        """``prediction`` after the questioned file's own JPEG compression, when one was found."""
        return recompressed(prediction, self.compression) if self.compression is not None else prediction

    def questioned_view(self, questioned: np.ndarray) -> np.ndarray:
        """The questioned scan as compared: blurred when it was the sharper of the two."""
        if self.questioned_blur > 0:
            return cv2.GaussianBlur(questioned, (0, 0), self.questioned_blur)
        return questioned

    def to_dict(self) -> dict[str, Any]:
        """What the model found, for the report (tone curve at 9 points, blur, illumination range, JPEG)."""
        points = np.linspace(0.0, 1.0, 9)
        return {
            "tone_curve": {"reference": points.round(3).tolist(),
                           "questioned": np.interp(points, self.tone_levels, self.tone_values).round(3).tolist()},
            "reference_blur_px": round(self.reference_blur, 2),
            "questioned_blur_px": round(self.questioned_blur, 2),
            "kernel_sum": round(float(self.kernel.sum()), 4),
            "illumination_coefficients": np.round(self.illumination, 5).tolist(),
            "questioned_jpeg": self.compression.to_dict() if self.compression is not None else None,
            "residual_spread": round(float(self.residual_spread), 5),
            "fit_rounds": self.fit_rounds,
            "fit_share_of_overlap": self.fit_share,
        }


def _sample(valid: np.ndarray, count: int, seed: int) -> np.ndarray:
    index = np.flatnonzero(valid)
    if index.size <= count:
        return index
    return np.sort(np.random.default_rng(seed).choice(index, size=count, replace=False))


def _trimmed_median(values: np.ndarray, trim: float, rounds: int = 2) -> float:
    centre = float(np.median(values))
    for _ in range(rounds):
        spread = 1.4826 * float(np.median(np.abs(values - centre))) + 1e-4
        kept = values[np.abs(values - centre) <= trim * spread]
        if kept.size < 10:
            break
        centre = float(np.median(kept))
    return centre


def fit_tone_curve(reference: np.ndarray, questioned: np.ndarray, sample: np.ndarray, *, bins: int,
                   trim: float) -> tuple[np.ndarray, np.ndarray]:
    """Monotone map of (smoothed) reference levels onto questioned levels: trimmed medians in quantile bins of the
    reference, made non-decreasing by isotonic regression. Returns the bin centres and their mapped levels."""
    from scipy.optimize import isotonic_regression

    r = reference.ravel()[sample]
    q = questioned.ravel()[sample]
    edges = np.unique(np.quantile(r, np.linspace(0.0, 1.0, bins + 1)))
    if edges.size < 3:  # a flat reference: one level, mapped to the questioned's median
        level = float(np.median(r))
        return np.array([level - 1e-3, level + 1e-3]), np.full(2, float(np.median(q)))
    index = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, edges.size - 2)
    order = np.argsort(index, kind="stable")
    index, r, q = index[order], r[order], q[order]
    starts = np.searchsorted(index, np.arange(edges.size - 1))
    ends = np.searchsorted(index, np.arange(edges.size - 1), side="right")
    centres, levels, counts = [], [], []
    for start, end in zip(starts, ends):  # at most ``bins`` bins, each a median of its own pixels
        if end - start < 5:
            continue
        # the bin's level is its centre plus the trimmed median of the differences: trimming the questioned levels
        # themselves shifted a skewed bin's median away from the reference's, and two identical files differed
        centre = float(np.median(r[start:end]))
        centres.append(centre)
        levels.append(centre + _trimmed_median(q[start:end] - r[start:end], trim))
        counts.append(end - start)
    centres_arr = np.asarray(centres)
    mapped = np.asarray(isotonic_regression(np.asarray(levels), weights=np.asarray(counts, float)).x, np.float64)
    # strictly increasing abscissae for np.interp (ties between bins of equal median)
    centres_arr = centres_arr + np.arange(centres_arr.size) * 1e-7
    # the end bins' centres lie inside the range (smoothing pulls the extremes in): continue the curve to 0 and 1
    # along the slope of its last few bins instead of holding it flat, which turned the darkest and lightest
    # pixels of two identical files into differences
    reach = min(3, centres_arr.size - 1)
    low_slope = (mapped[reach] - mapped[0]) / max(centres_arr[reach] - centres_arr[0], 1e-6)
    high_slope = (mapped[-1] - mapped[-1 - reach]) / max(centres_arr[-1] - centres_arr[-1 - reach], 1e-6)
    low_slope, high_slope = float(np.clip(low_slope, 0.0, 4.0)), float(np.clip(high_slope, 0.0, 4.0))
    start = mapped[0] - low_slope * max(centres_arr[0], 0.0)
    end = mapped[-1] + high_slope * max(1.0 - centres_arr[-1], 0.0)
    levels_out = np.concatenate([[min(0.0, centres_arr[0] - 1e-6)], centres_arr,
                                 [max(1.0, centres_arr[-1] + 1e-6)]])
    return levels_out, np.concatenate([[start], mapped, [end]])


def _design(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    y = 2.0 * rows / max(shape[0] - 1, 1) - 1.0
    x = 2.0 * cols / max(shape[1] - 1, 1) - 1.0
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def _surface(coefficients: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if not np.any(coefficients):
        return np.zeros(shape, np.float32)
    y = np.linspace(-1.0, 1.0, shape[0], dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, shape[1], dtype=np.float32)[None, :]
    c = coefficients.astype(np.float32)
    return (c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * x * y + c[5] * y * y).astype(np.float32)


def fit_illumination(residual: np.ndarray, valid: np.ndarray, *, block: int) -> np.ndarray:
    """Quadratic surface through the block medians of ``residual`` (Tukey-reweighted least squares); zeros when
    the overlap holds too few blocks."""
    rows, cols = residual.shape[0] // block, residual.shape[1] // block
    if rows < 4 or cols < 4:
        return np.zeros(6)
    tiles = residual[:rows * block, :cols * block].reshape(rows, block, cols, block).transpose(0, 2, 1, 3)
    inside = valid[:rows * block, :cols * block].reshape(rows, block, cols, block).transpose(0, 2, 1, 3)
    full = inside.reshape(rows, cols, -1).mean(axis=2) > 0.9
    if full.sum() < 24:
        return np.zeros(6)
    medians = np.median(tiles.reshape(rows, cols, -1), axis=2)[full]
    r_index, c_index = np.nonzero(full)
    design = _design(residual.shape, (r_index + 0.5) * block, (c_index + 0.5) * block)
    # a few reweighting rounds converge for a smooth surface
    return tukey_least_squares(design, medians, rounds=5, spread_floor=1e-5)


def tukey_least_squares(design: np.ndarray, values: np.ndarray, *, rounds: int, spread_floor: float) -> np.ndarray:
    """Least squares reweighted with Tukey's biweight (c = 4.685 robust standard deviations of the misfit), so
    that the edits' pixels, far off the fit, weigh nothing."""
    weights = np.ones(values.size)
    coefficients = np.zeros(design.shape[1])
    for _ in range(rounds):
        root = np.sqrt(weights)
        coefficients = np.linalg.lstsq(design * root[:, None], values * root, rcond=None)[0]
        misfit = values - design @ coefficients
        spread = 1.4826 * float(np.median(np.abs(misfit))) + spread_floor
        u = misfit / (4.685 * spread)
        weights = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
    return coefficients


def _ring_filters() -> list[np.ndarray]:
    yy, xx = np.mgrid[-3:4, -3:4]
    distance = np.hypot(yy, xx)
    filters = []
    for low, high in ((0.0, 0.1), (0.9, 1.1), (1.3, 1.5), (1.9, 2.3), (2.7, 3.2)):
        ring = ((distance >= low) & (distance <= high)).astype(np.float32)
        filters.append(ring / ring.sum())
    return filters


def fit_kernel(source: np.ndarray, target: np.ndarray, sample: np.ndarray) -> tuple[np.ndarray, float]:
    """A 7x7 radially symmetric kernel and offset mapping ``source`` onto ``target`` (Tukey-reweighted least
    squares over ``sample``); the identity when the fit is degenerate."""
    filters = _ring_filters()
    columns = [cv2.filter2D(source, -1, f, borderType=cv2.BORDER_REFLECT).ravel()[sample] for f in filters]
    design = np.stack([*columns, np.ones(sample.size, np.float32)], axis=1).astype(np.float64)
    values = target.ravel()[sample].astype(np.float64)
    coefficients = tukey_least_squares(design, values, rounds=4, spread_floor=1e-6)
    kernel = sum(c * f for c, f in zip(coefficients[:-1], filters))
    if not np.all(np.isfinite(kernel)) or not 0.5 < float(kernel.sum()) < 2.0:
        return _identity_kernel(), 0.0
    return kernel.astype(np.float32), float(coefficients[-1])


def _identity_kernel() -> np.ndarray:
    identity = np.zeros((7, 7), np.float32)
    identity[3, 3] = 1.0
    return identity


def _spread(a: np.ndarray, b: np.ndarray, sample: np.ndarray) -> float:
    return float(np.median(np.abs(a.ravel()[sample] - b.ravel()[sample])))


def fit_pair_model(reference: np.ndarray, questioned: np.ndarray, valid: np.ndarray, *,
                   options: ModelOptions = ModelOptions(), full_resolution: bool = True) -> PairModel:
    """Estimate the global differences of a registered pair (float gray [0, 1], same frame; ``valid`` where the
    reference covers the questioned image). ``full_resolution``: the questioned image is at its file's own
    pixel grid, so its JPEG compression can be read and simulated."""
    import time

    timings: dict[str, float] = {}
    started = time.perf_counter()
    sample = _sample(valid, SAMPLE_PIXELS, seed=3)
    smooth_r = cv2.GaussianBlur(reference, (0, 0), options.tone_smoothing_px)
    smooth_q = cv2.GaussianBlur(questioned, (0, 0), options.tone_smoothing_px)
    levels, values = fit_tone_curve(smooth_r, smooth_q, sample, bins=options.tone_bins, trim=options.tone_trim)
    tone = lambda image: np.interp(image, levels, values).astype(np.float32)  # noqa: E731
    timings["tone"] = time.perf_counter() - started

    started = time.perf_counter()
    residual = np.where(valid, smooth_q - tone(smooth_r), 0.0).astype(np.float32)
    illumination = fit_illumination(residual, valid, block=options.illumination_block_px)
    surface = _surface(illumination, questioned.shape)
    toned = tone(reference)
    # each stage is kept only when it explains clearly more of the pair than the model without it (two files
    # identical but for an edit need none of them, and a blur chosen by a hair's breadth then made every edge
    # differ)
    if _spread(toned + surface, questioned, sample) > options.keep_ratio * _spread(toned, questioned, sample):
        illumination, surface = np.zeros(6), np.zeros(questioned.shape, np.float32)
    timings["illumination"] = time.perf_counter() - started

    started = time.perf_counter()
    plain = _spread(toned + surface, questioned, sample)
    best = (plain, 0.0, 0.0)
    for sigma in options.blur_sigmas:  # which of the two is sharper, and by how much
        blurred_r = tone(cv2.GaussianBlur(reference, (0, 0), sigma)) + surface
        best = min(best, (_spread(blurred_r, questioned, sample), sigma, 0.0),
                   (_spread(toned + surface, cv2.GaussianBlur(questioned, (0, 0), sigma), sample), 0.0, sigma))
    if best[0] > options.keep_ratio * plain:
        best = (plain, 0.0, 0.0)
    _, reference_blur, questioned_blur = best
    source = tone(cv2.GaussianBlur(reference, (0, 0), reference_blur) if reference_blur else reference)
    target = (cv2.GaussianBlur(questioned, (0, 0), questioned_blur) if questioned_blur else questioned) - surface
    kernel, offset = fit_kernel(source, target, sample)
    timings["sharpness"] = time.perf_counter() - started

    started = time.perf_counter()
    compression = None
    if options.simulate_compression and full_resolution and questioned_blur == 0:
        compression = jpeg_history(np.round(np.clip(questioned, 0, 1) * 255.0))
    timings["compression"] = time.perf_counter() - started
    model = PairModel(tone_levels=levels, tone_values=values, illumination=illumination,
                      reference_blur=float(reference_blur), questioned_blur=float(questioned_blur), kernel=kernel,
                      kernel_offset=offset, compression=compression, timings_s=timings)
    prediction = model.compressed(model.predict(reference))
    model.residual_spread = 1.4826 * _spread(prediction, model.questioned_view(questioned), sample)
    return model
