"""JPEG traces: the file's quantization tables and quality, JPEG ghosts, and misaligned block grids.

Method
------
- Quality: the luminance table is compared with the IJG table scaled for every quality 1..100.
- JPEG ghosts (Farid 2009): the image is recompressed at a sweep of qualities; per 16x16 window the squared
  difference is normalised across the sweep; the quality with the strongest spatial contrast gives robust z-scores
  of windows that respond as if saved at another quality. Windows whose difference hardly varies over the sweep
  (flat areas) are not judged.
- Block grid (after Li, Yuan & Yu 2009 and Nikoukhah et al.'s ZERO, 2021): the excess of pixel differences across
  block boundaries gives a grid phase per window; windows where another phase dominates the image's own grid were
  compressed separately (a pasted or shifted JPEG piece). Sought only where the image's grid is clear.
Groups of windows are judged a-contrario (``_blocks.group_decision``). Ghosts need the file's tables; the grid test
also runs on a PNG or TIFF that shows the grid of an earlier life as a JPEG.

Limits
------
A region recompressed at the same quality as the rest leaves no ghost; resizing or rotating the whole file erases
both cues; a print retouched before scanning has no JPEG trace of the retouching.

References
----------
H. Farid, "Exposing digital forgeries from JPEG ghosts", IEEE TIFS 4(1), 2009.
T. Nikoukhah, J. Anger, M. Colom, J.-M. Morel, R. Grompone von Gioi, "ZERO: a local JPEG grid origin detector
based on the number of DCT zeros and its applications in image forensics", IPOL 11, 2021.
"""


from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from retouch.detect._blocks import (
    block_mean,
    block_result,
    block_saturation,
    content_classes,
    finite_or_none,
    bonferroni_z,
    group_decision,
    nfa_score,
    pooled_z,
    standardise,
    standardise_by_content,
    strength_to_heat,
)
from retouch.detect._options import options_params, resolve_options
from retouch.detect._recompress import recompression_error
from retouch.registry import register
from retouch.imaging import to_uint8
from retouch.result import AnalysisResult

STANDARD_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)

FALSE_ALARM_CONTROL = ("a-contrario: a region's NFA is the number of 16x16 tile tests times the chance that one "
                       "tile of an untouched photograph scores as high against the tiles of its content class "
                       "(texture, brightness, colourfulness; a Gaussian widened by tail_margin)")

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


@dataclass(frozen=True)
class JpegOptions:
    """Options of :func:`jpeg_traces`.

    Attributes
    ----------
    qualities : tuple of int
        Recompression sweep for the ghost analysis (50 to 90 by 5).
    nfa_threshold : float
        A region is decided when its number of false alarms is at most this (0.01).
    tail_margin : float
        Width of the null model of a tile score against a standard Gaussian (see
        ``_blocks.null_tail``), calibrated on untouched photographs and scans by ``benchmarks.false_alarms``.
    grid_contrast : float
        Global grid contrast (excess of the main phase's boundary energy) below which shifted grids are not
        sought; a grid is still "present" (the file is analysed) from 0.15 (0.25).
    ghost_min_range : float
        Tiles whose recompression difference varies by less than this over the sweep (mean squared grey
        levels) are not judged for ghosts: they recompress alike at every quality (1.0).
    """

    qualities: tuple[int, ...] = (50, 55, 60, 65, 70, 75, 80, 85, 90)
    nfa_threshold: float = 0.01
    tail_margin: float = 1.6
    grid_contrast: float = 0.25
    ghost_min_range: float = 1.0


@register("jpeg", title="JPEG traces: quality, ghosts, block grid", uses_jpeg=True,
          description="Reads the file's JPEG tables and quality; finds regions with a different compression "
                      "history (JPEG ghosts) or a shifted 8x8 grid (pasted JPEG pieces).")
def jpeg_traces(image: np.ndarray, *, jpeg_quantization: Mapping[int, Sequence[int]] | None = None,
                options: JpegOptions | None = None, **changes: Any) -> AnalysisResult:
    """JPEG quality estimate, ghost map and grid-alignment map.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image.
    jpeg_quantization : mapping, optional
        The file's quantization tables; ``None`` when the file is not a JPEG (ghosts are then skipped).
    options : JpegOptions, optional
        Calibration and decision options (defaults: ``JpegOptions()``); keyword ``changes`` override its fields.

    Returns
    -------
    AnalysisResult
        ``jpeg-ghost`` and ``jpeg-grid`` regions, each with ``evidence["nfa"]``; the quality estimate in
        ``details``.

    Examples
    --------
    >>> from skimage import data
    >>> jpeg_traces(data.camera()).skipped is not None  # a PNG without any block grid
    True
    """
    options = resolve_options(JpegOptions(), options, changes)
    qualities, grid_contrast, ghost_min_range = options.qualities, options.grid_contrast, options.ghost_min_range
    eight = to_uint8(image)
    gray = cv2.cvtColor(eight, cv2.COLOR_RGB2GRAY) if eight.ndim == 3 else eight
    shape = gray.shape
    window = 16
    details: dict[str, object] = {}
    params = {**options_params(options), "window": window, "false_alarm_control": FALSE_ALARM_CONTROL}
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
    dx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    texture = block_mean(cv2.magnitude(dx, cv2.Sobel(gray, cv2.CV_32F, 0, 1)), window)[: tiles[0], : tiles[1]]
    saturation = block_saturation(eight, window)
    classes = content_classes(usable, texture, brightness,
                              None if saturation is None else saturation[: tiles[0], : tiles[1]])
    tests = int(usable.sum()) * 2
    nfa = np.full(tiles, np.inf)
    best_nfa = np.inf
    decisions = []

    def decide(z: np.ndarray) -> np.ndarray:
        nonlocal nfa, best_nfa
        decision = group_decision(z, tests=tests, margin=options.tail_margin, nfa_threshold=options.nfa_threshold,
                                  min_blocks=4)
        nfa = np.minimum(nfa, decision.nfa)
        best_nfa = min(best_nfa, decision.best_nfa)
        decisions.append(decision)
        return decision.mask

    threshold = options.tail_margin * bonferroni_z(tests, options.nfa_threshold)
    kinds: dict[str, np.ndarray] = {}
    strength = np.zeros(tiles, np.float32)
    if grid_test:
        # a tile testifies to a shifted grid when another phase beats the main one clearly
        shift = np.log(others + 1e-3) - np.log(main + 1e-3)
        grid_z = standardise_by_content(pooled_z(np.clip(standardise(shift, usable), -6, 6), 1), usable, classes)
        # a statistical outlier is not enough: another phase must really dominate the main one locally
        dominated = (cv2.blur(others.astype(np.float32), (3, 3)) > 1.5) & (cv2.blur(main.astype(np.float32), (3, 3)) < 1.15)
        grid_z[(~usable) | ~dominated] = 0.0
        grid_mask = decide(grid_z)
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
        ghost_z = np.maximum(standardise_by_content(pooled_z(ghost, 1), informative, classes),
                             standardise_by_content(pooled_z(-ghost, 1), informative, classes))
        ghost_z[~informative] = 0.0
        ghost_mask = decide(ghost_z)
        kinds["jpeg-ghost"] = ghost_mask
        strength = np.maximum(strength, ghost_z)
        details["ghost_quality"] = sweep[best]
    mask_blocks = np.zeros(tiles, bool)
    for blocks in kinds.values():
        mask_blocks |= blocks
    mask_blocks &= usable
    heat = strength_to_heat(strength, threshold)
    score = nfa_score(best_nfa, options.nfa_threshold, decided=bool(mask_blocks.any()))
    details["smallest_nfa"] = finite_or_none(best_nfa)
    if decisions:
        details["null"] = decisions[0].null_record(decisions[1:])
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
                        details=details, min_area=4 * window * window, nfa=nfa, what="JPEG anomaly")
