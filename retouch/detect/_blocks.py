"""Block statistics and the statistical decision shared by the block-based detectors (grain, ela).

Per-block means are computed with ``cv2.resize(..., INTER_AREA)`` (exact block averaging when the image is
cropped to whole blocks), so a 24-megapixel image is summarised in a few tens of milliseconds.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from retouch.result import AnalysisResult, regions_from_mask


def block_mean(values: np.ndarray, block: int) -> np.ndarray:
    """Mean of each ``block`` x ``block`` tile (the image is cropped to whole tiles)."""
    rows, cols = values.shape[0] // block, values.shape[1] // block
    cropped = np.ascontiguousarray(values[: rows * block, : cols * block], dtype=np.float32)
    return cv2.resize(cropped, (cols, rows), interpolation=cv2.INTER_AREA)


def binned_reference(values: np.ndarray, covariate: np.ndarray, eligible: np.ndarray, *, bins: int = 12,
                     quantile: float = 50.0, min_count: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A robust function ``values ~ f(covariate)`` from ``eligible`` blocks: per-bin ``quantile`` of values and
    robust spread (MAD); bins are covariate quantiles, sparse bins borrow the overall figures.

    Returns (expected value per block, robust spread per block).
    """
    pool = covariate[eligible]
    if pool.size < min_count:
        eligible = np.ones_like(eligible)
        pool = covariate[eligible]
    edges = np.quantile(pool, np.linspace(0, 1, bins + 1)[1:-1])
    index = np.searchsorted(edges, covariate, side="right")
    eligible_index = index[eligible]
    eligible_values = values[eligible]
    overall_centre = float(np.percentile(eligible_values, quantile))
    overall_spread = float(1.4826 * np.median(np.abs(eligible_values - np.median(eligible_values)))) + 1e-6
    centre = np.full(bins, overall_centre)
    spread = np.full(bins, overall_spread)
    for b in range(bins):  # a dozen bins, each a vectorised percentile
        chosen = eligible_values[eligible_index == b]
        if chosen.size >= min_count:
            centre[b] = np.percentile(chosen, quantile)
            spread[b] = 1.4826 * np.median(np.abs(chosen - np.median(chosen))) + 1e-6
    spread = np.maximum(spread, 0.5 * overall_spread)
    return centre[index], spread[index]


def bonferroni_z(tests: int, false_alarms: float = 1.0) -> float:
    """One-sided Gaussian z beyond which ``tests`` null tests give ``false_alarms`` expected alarms in total."""
    from statistics import NormalDist

    p = min(0.5, false_alarms / max(tests, 1))
    return float(-NormalDist().inv_cdf(p))


def pooled_z(z: np.ndarray, radius: int) -> np.ndarray:
    """Average z over a (2 radius + 1)^2 neighbourhood of blocks, rescaled to unit variance under independence."""
    size = 2 * radius + 1
    mean = cv2.boxFilter(z.astype(np.float32), -1, (size, size), borderType=cv2.BORDER_REFLECT)
    return mean * math.sqrt(size * size)


def standardise(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Centre and scale ``values`` by their median and MAD over ``where``: neighbouring blocks share content and
    noise, so pooled scores are not unit-variance; each map is put on its own empirical scale before a bound."""
    sample = values[where] if where.any() else values.ravel()
    centre = float(np.median(sample))
    spread = float(1.4826 * np.median(np.abs(sample - centre))) + 1e-6
    return (values - centre) / spread


def block_decision(z: np.ndarray, threshold: float, *, min_blocks: int, grow: float = 0.7) -> np.ndarray:
    """Hysteresis: groups of blocks above ``grow * threshold`` that contain a block above ``threshold`` and
    hold at least ``min_blocks`` blocks. The strict threshold controls false alarms; the lower one the extent."""
    weak = (z > grow * threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(weak, connectivity=8)
    strong_labels = np.unique(labels[z > threshold])
    keep = np.zeros(count, bool)
    keep[strong_labels] = True
    keep[0] = False
    keep &= stats[:, cv2.CC_STAT_AREA] >= min_blocks
    return keep[labels]


def decision_score(strength: np.ndarray, decided: np.ndarray, usable: np.ndarray, threshold: float) -> float:
    """Image-level score: above 0.5 only when something was decided, growing with the flagged evidence
    (strongest block and flagged extent); below 0.5 it says how close the strongest block came."""
    if decided.any():
        peak = float(strength[decided].max())
        extent = float(decided.sum()) / max(float(usable.sum()), 1.0)
        return float(np.clip(0.5 + 0.25 * np.tanh(peak / threshold - 1.0) + 0.25 * np.tanh(extent / 0.01), 0, 1))
    peak = float(strength[usable].max()) if usable.any() else 0.0
    return float(np.clip(0.5 * peak / threshold, 0.0, 0.49))


def blocks_to_image(values: np.ndarray, block: int, shape: tuple[int, int], *, smooth: bool) -> np.ndarray:
    """Blow a block map up to the full image (edge tiles replicate the last block)."""
    height, width = shape
    rows, cols = values.shape
    if values.dtype == bool:
        big = np.repeat(np.repeat(values, block, axis=0), block, axis=1)
    else:
        interpolation = cv2.INTER_LINEAR if smooth else cv2.INTER_NEAREST
        big = cv2.resize(values.astype(np.float32), (cols * block, rows * block), interpolation=interpolation)
    pad_y, pad_x = height - big.shape[0], width - big.shape[1]
    if pad_y > 0 or pad_x > 0:
        big = np.pad(big, ((0, max(pad_y, 0)), (0, max(pad_x, 0))), mode="edge")
    return big[:height, :width]


def block_result(method: str, *, heat_blocks: np.ndarray, mask_blocks: np.ndarray, block: int,
                 shape: tuple[int, int], kind_of: dict[str, np.ndarray], score: float, params: dict,
                 summary: str, explanation: str, details: dict, min_area: int) -> AnalysisResult:
    """Build the common result from block maps; ``kind_of`` maps a region kind to the blocks of that kind."""
    heatmap = blocks_to_image(heat_blocks, block, shape, smooth=True)
    mask = blocks_to_image(mask_blocks, block, shape, smooth=False)
    regions = []
    for kind, blocks in kind_of.items():
        kind_mask = blocks_to_image(blocks & mask_blocks, block, shape, smooth=False)
        regions += regions_from_mask(kind_mask, heatmap, kind=kind, min_area=min_area)
    regions.sort(key=lambda r: (-r.score, -r.area))
    return AnalysisResult(method=method, heatmap=heatmap, mask=mask, regions=regions, score=score, params=params,
                          summary=summary, explanation=explanation, details=details)
