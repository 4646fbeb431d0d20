"""JPEG traces: the file's quantization tables and quality, JPEG ghosts, and misaligned block grids.

Method
------
- Quality: the luminance quantization table is compared with the IJG standard table scaled for every quality
  1..100 (the libjpeg scaling rule); the closest quality and whether it matches exactly are reported.
- JPEG ghosts (Farid 2009, "Exposing digital forgeries from JPEG ghosts", IEEE TIFS): the image is recompressed
  at a sweep of qualities; for each quality the squared difference is averaged over 16x16 windows and normalised
  per window across the sweep. A region that was compressed at a quality below the file's last one shows a
  "ghost": a dip of its difference at that quality that the rest of the image does not share (or the
  reverse for a region pasted in after the first compression). The sweep quality with the strongest spatial
  contrast is kept, its map is turned into robust z-scores and bounded for ``false_alarms`` expected false
  detections. Windows whose difference hardly varies over the sweep (flat sky, a plain wall) are not judged:
  normalised, their rounding noise read as ghosts (10.4 % of an untouched photograph saved twice was marked).
- Block grid (in the spirit of Li, Yuan & Yu 2009 and of Nikoukhah et al. 2021, "ZERO: a local JPEG grid
  origin detector based on the number of DCT zeros"): the blocking artifact is the excess of pixel
  differences across block boundaries; its phase (0..7 horizontally and vertically) is measured in local
  windows and compared with the image's main grid. A region whose grid origin differs from the image's was
  compressed separately, then pasted or shifted (a crop of a JPEG, a pasted JPEG).

The shifted-grid test runs only when the image's own grid is clear (global contrast above ``grid_contrast``):
on weak grids the local phase is noise. Skips ghost and quality analysis on files that are not JPEG; the grid
test still runs on any input, because a PNG or TIFF may carry the grid of an earlier life as a JPEG, and it
returns "not applicable" when no grid is present at all.

Limits: a region recompressed at the same quality as the rest leaves no ghost; resizing or rotating the whole
image after compression destroys both cues; a print retouched by hand before scanning has one digital history
and no JPEG trace of the retouching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from retouch.detect._blocks import (
    block_decision,
    block_mean,
    block_result,
    bonferroni_z,
    decision_score,
    pooled_z,
    standardise,
    strength_to_heat,
)
from retouch.detect._recompress import recompression_error
from retouch.registry import register
from retouch.imaging import to_uint8
from retouch.result import AnalysisResult

STANDARD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)

EXPLANATION = (
    "A JPEG file remembers how it was compressed. This analysis reads the file's compression tables (and so its "
    "quality), then looks for two traces of editing after a first compression: 'ghosts', areas that respond to "
    "recompression as if they had been saved at another quality than their surroundings, and block grids, "
    "areas whose 8x8 compression grid is shifted against the rest, as when a piece of another JPEG is pasted "
    "in. Bright areas are where either trace is unusual. Limits: both traces concern only the digital file; a "
    "print retouched by hand and then scanned shows none. Resizing, rotating or heavily recompressing the "
    "whole file erases them."
)


def ijg_table(quality: int) -> np.ndarray:
    """The IJG (libjpeg) luminance table for ``quality`` in 1..100."""
    quality = int(np.clip(quality, 1, 100))
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((STANDARD_LUMINANCE * scale + 50) / 100), 1, 255)


def estimate_quality(tables: Mapping[int, Sequence[int]]) -> dict[str, object]:
    """Closest IJG quality for the luminance table, with the mean absolute table difference at that quality."""
    luminance = np.asarray(tables.get(0, next(iter(tables.values()))), np.float64)
    errors = np.array([np.abs(ijg_table(q) - luminance).mean() for q in range(1, 101)])
    best = int(np.argmin(errors)) + 1
    return {"quality": best, "table_difference": round(float(errors[best - 1]), 3),
            "standard_tables": bool(errors[best - 1] < 0.5)}


def _ghost_maps(gray: np.ndarray, qualities: Sequence[int], window: int
                ) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Per tile and quality, the recompression difference rescaled to [0, 1] over the sweep (Farid's
    normalisation), the qualities, and each tile's range over the sweep (mean squared grey levels)."""
    maps = []
    for quality in qualities:
        # the squared difference from the 8-bit absolute one: exact in float32, one full-size float image
        difference = recompression_error(gray, quality).astype(np.float32)
        maps.append(block_mean(cv2.multiply(difference, difference, dst=difference), window))
    stack = np.stack(maps)
    lo, hi = stack.min(axis=0), stack.max(axis=0)
    return (stack - lo) / np.maximum(hi - lo, 1e-3), list(qualities), hi - lo


def _grid_phase_strength(gray: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int], float]:
    """Local block-grid phase agreement with the global grid, per ``window`` tile.

    Returns (local strength of the image's main grid, local strength of the best other phase, global phase,
    global grid contrast).
    """
    image = gray.astype(np.float32)
    dx = np.pad(np.abs(np.diff(image, axis=1)), ((0, 0), (0, 1)))  # boundary between column x and x+1
    dy = np.pad(np.abs(np.diff(image, axis=0)), ((0, 1), (0, 0)))
    height, width = dx.shape
    columns = np.arange(width) % 8
    rows = np.arange(height) % 8
    # mean boundary energy at each phase, from the column (row) means: no per-phase copies of the image
    col_energy = (np.bincount(columns, weights=dx.mean(axis=0, dtype=np.float64), minlength=8)
                  / np.bincount(columns))
    row_energy = np.bincount(rows, weights=dy.mean(axis=1, dtype=np.float64), minlength=8) / np.bincount(rows)
    phase = (int(np.argmax(col_energy)), int(np.argmax(row_energy)))
    contrast = float((col_energy.max() / (np.median(col_energy) + 1e-6)
                      + row_energy.max() / (np.median(row_energy) + 1e-6)) / 2 - 1)
    # per tile: the boundary excess at every phase; phase 7 means the boundary after pixel 7 (origin 0). A
    # window of 16 holds two lines of each phase: sum them by reshaping, in one pass per direction.
    tiles_y, tiles_x = height // window, width // window
    per = window // 8
    dx_tiles = dx[: tiles_y * window, : tiles_x * window].reshape(tiles_y, window, tiles_x, per, 8)
    dy_tiles = dy[: tiles_y * window, : tiles_x * window].reshape(tiles_y, per, 8, tiles_x, window)
    scale = 8.0 / (window * window)
    local_x = (dx_tiles.sum(axis=(1, 3), dtype=np.float32).transpose(2, 0, 1)
               + dy_tiles.sum(axis=(1, 4), dtype=np.float32).transpose(1, 0, 2)) * scale
    baseline = np.median(local_x, axis=0) + 1e-3
    main = local_x[phase[0]] / baseline  # (phase bookkeeping is per direction; the sum keeps both)
    others = np.max(np.delete(local_x, phase[0], axis=0), axis=0) / baseline
    return main, others, phase, contrast


@register("jpeg", title="JPEG traces: quality, ghosts, block grid", uses_jpeg=True,
          description="Reads the file's JPEG tables and quality; finds regions with a different compression "
                      "history (JPEG ghosts) or a shifted 8x8 grid (pasted JPEG pieces).")
def jpeg_traces(
    image: np.ndarray,
    *,
    jpeg_quantization: Mapping[int, Sequence[int]] | None = None,
    qualities: Sequence[int] = (50, 55, 60, 65, 70, 75, 80, 85, 90),
    false_alarms: float = 0.01,
    grid_contrast: float = 0.25,
    ghost_min_range: float = 1.0,
) -> AnalysisResult:
    """JPEG quality estimate, ghost map and grid-alignment map.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image.
    jpeg_quantization : mapping, optional
        The file's quantization tables; ``None`` when the file is not a JPEG (ghosts are then skipped).
    qualities : sequence of int
        Recompression sweep for the ghost analysis.
    false_alarms : float
        Expected number of falsely flagged block groups per untouched image, per cue.
    grid_contrast : float
        Global grid contrast (excess of the main phase's boundary energy) below which shifted grids are not
        sought; a grid is still "present" (the file is analysed) from 0.15.
    ghost_min_range : float
        Tiles whose recompression difference varies by less than this over the sweep (mean squared grey
        levels) are not judged for ghosts: they recompress alike at every quality.
    """
    eight = to_uint8(image)
    gray = cv2.cvtColor(eight, cv2.COLOR_RGB2GRAY) if eight.ndim == 3 else eight
    shape = gray.shape
    window = 16
    details: dict[str, object] = {}
    params = {"qualities": [int(q) for q in qualities], "false_alarms": false_alarms, "window": window,
              "grid_contrast": grid_contrast, "ghost_min_range": ghost_min_range}
    main, others, phase, contrast = _grid_phase_strength(gray, window)
    tiles = (shape[0] // window, shape[1] // window)
    main, others = main[: tiles[0], : tiles[1]], others[: tiles[0], : tiles[1]]
    details["grid"] = {"origin_phase": list(phase), "contrast": round(contrast, 4)}
    has_grid = contrast > 0.15
    # Local phases are only trustworthy where the image's own grid is clear: on weak grids (contrast 0.15-0.25,
    # typical of single saves at quality 80-90) textured tiles picked another phase by chance, and the grid
    # test alone marked 2-4 % of some untouched scans. Ghosts are still sought on those files.
    grid_test = contrast > grid_contrast
    if jpeg_quantization is None and not has_grid:
        return AnalysisResult.skipped_result("jpeg", shape, "the file is not a JPEG and shows no JPEG block grid",
                                             params=params, explanation=EXPLANATION, details=details)
    brightness = block_mean(gray.astype(np.float32) / 255.0, window)[: tiles[0], : tiles[1]]
    usable = (brightness > 0.03) & (brightness < 0.97)
    tests = int(usable.sum())
    threshold = bonferroni_z(tests * 2, false_alarms)
    kinds: dict[str, np.ndarray] = {}
    strength = np.zeros(tiles, np.float32)
    if grid_test:
        # a tile testifies to a shifted grid when another phase beats the main one clearly
        shift = np.log(others + 1e-3) - np.log(main + 1e-3)
        grid_z = standardise(pooled_z(np.clip(standardise(shift, usable), -6, 6), 1), usable)
        # a statistical outlier is not enough: another phase must really dominate the main one locally
        dominated = (cv2.blur(others.astype(np.float32), (3, 3)) > 1.5) & (cv2.blur(main.astype(np.float32), (3, 3)) < 1.15)
        grid_z[(~usable) | ~dominated] = 0.0
        grid_mask = block_decision(grid_z, threshold, min_blocks=4)
        kinds["jpeg-grid"] = grid_mask
        strength = np.maximum(strength, grid_z)
    if jpeg_quantization is not None:
        details["quality_estimate"] = estimate_quality(jpeg_quantization)
        details["tables"] = {str(k): list(v) for k, v in jpeg_quantization.items()}
        normalised, sweep, sweep_range = _ghost_maps(gray, qualities, window)
        normalised = normalised[:, : tiles[0], : tiles[1]]
        # a tile that recompresses alike at every quality (flat sky, a plain wall) has no ghost to show, and
        # rescaled to [0, 1] its rounding noise read as dips and peaks
        informative = usable & (sweep_range[: tiles[0], : tiles[1]] >= ghost_min_range)
        contrasts = [float(np.percentile(n[informative], 95) - np.percentile(n[informative], 50))
                     if informative.any() else 0.0 for n in normalised]
        best = int(np.argmax(contrasts))
        # both directions: a dip where the rest is high (earlier compression at this quality) or the reverse
        ghost = np.where(informative, np.clip(standardise(normalised[best], informative), -6, 6), 0.0)
        ghost_z = np.maximum(standardise(pooled_z(ghost, 1), informative),
                             standardise(pooled_z(-ghost, 1), informative))
        ghost_z[~informative] = 0.0
        ghost_mask = block_decision(ghost_z, threshold, min_blocks=4)
        kinds["jpeg-ghost"] = ghost_mask
        strength = np.maximum(strength, ghost_z)
        details["ghost_quality"] = sweep[best]
    mask_blocks = np.zeros(tiles, bool)
    for blocks in kinds.values():
        mask_blocks |= blocks
    mask_blocks &= usable
    heat = strength_to_heat(strength, threshold)
    score = decision_score(strength, mask_blocks, usable, threshold)
    quality_note = ""
    if "quality_estimate" in details:
        quality_note = f" File quality about {details['quality_estimate']['quality']}."  # type: ignore[index]
    if mask_blocks.any():
        found = " and ".join(k.replace("jpeg-", "") for k, v in kinds.items() if v.any())
        summary = f"JPEG {found} anomalies in {100 * mask_blocks.mean():.2f} % of the image.{quality_note}"
    else:
        summary = f"No JPEG ghost or shifted grid found.{quality_note}"
    params["threshold_z"] = round(threshold, 3)
    # the maps cover whole windows; pad the block maps to the image through block_result
    return block_result("jpeg", heat_blocks=heat, mask_blocks=mask_blocks, block=window, shape=shape,
                        kind_of=kinds, score=score, params=params, summary=summary, explanation=EXPLANATION,
                        details=details, min_area=4 * window * window)
