"""Inpainting artifacts: diffusion fills and airbrush (areas smoothed along isophotes, without grain).

Method
------
- Diffusion cue (cf. Li, Luo & Huang 2017): diffusion inpainting propagates intensities along isophotes, so the
  second derivative along the isophote is abnormally small in the fill; per block its log energy is compared with
  blocks of the same brightness and content class. Airbrush and digital smoothing leave the same trace.
The cue becomes pooled block z-scores judged a-contrario (``_blocks.group_decision``) on a copy bounded to
``analysis_pixels``, so the number of tests, and the false regions per image, do not grow with the scan; regions
give the cue (``evidence["cue"]``) and their number of false alarms (``evidence["nfa"]``).
- Full-resolution outline: on a larger scan each group decided by the diffusion cue is measured again at full
  resolution in a tile around it (the diffusion cue in 8-pixel blocks, against the same measure on a lattice of
  reference tiles over the scan), and its outline is redrawn from the full-resolution blocks that stand out and
  touch it (``evidence["outline"]``). The outline changes where a decided region lies, never how many are decided
  nor their NFA; memory is bounded by the tiles.

Limits
------
Exemplar fills (patches copied from around the hole) are not this detector's to find: copied texture is not
smooth (``compare`` with another copy finds them; a digital one saved again as JPEG leaves error-level and JPEG
traces). A fill re-grained afterwards hides the trace; naturally smooth areas look diffused when a scan has almost
no grain; airbrush and digital smoothing leave the same trace, so the cue says "smoothed", not which tool. Measured
alternatives that were not kept (among them an exemplar cue) are in ``benchmarks/results/detector_notes.md``.

References
----------
H. Li, W. Luo, J. Huang, "Localization of diffusion-based inpainting in digital images", IEEE TIFS 12(12), 2017.
"""


from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from retouch.detect._blocks import (
    EXTENT_Z,
    NOTHING_TO_JUDGE,
    binned_reference,
    block_mean,
    block_result,
    block_saturation,
    content_classes,
    finite_or_none,
    group_decision,
    median_of,
    nfa_score,
    pooled_z,
    standardise_by_content,
    strength_to_heat,
)
from retouch.detect._options import options_params, resolve_options
from retouch.detect.grain import grain_dominated, grain_profile
from retouch.registry import register
from retouch.imaging import bounded, to_gray_float, upscale_to
from retouch.result import AnalysisResult, regions_from_mask

FALSE_ALARM_CONTROL = ("a-contrario: a region's NFA is the number of block tests times the chance that one block "
                       "of an untouched photograph scores as high against the blocks of its content class "
                       "(texture, brightness, colourfulness; a Gaussian widened by tail_margin, or by "
                       "grain_tail_margin for grain-dominated pictures such as scanned prints)")

EXPLANATION = (
    "Diffusion inpainting fills a hole by smearing the surrounding tones inwards along the lines of equal "
    "brightness; an airbrush or a software smoothing tool does much the same. Either leaves an area that is "
    "unnaturally smooth along those lines and has no grain. This map marks areas where that trace is far stronger "
    "than anywhere else in the picture. Limits: fills made of copied patches (exemplar or clone-stamp fills) are "
    "not smooth and are not found here; a fill re-grained afterwards hides the trace; a scan with almost no grain "
    "makes plain skies and walls look smooth; the map says 'smoothed', not which tool did it."
)


def _isophote_energy(gray: np.ndarray) -> np.ndarray:
    """|second derivative along the isophote| = |(Ixx Iy^2 - 2 Ixy Ix Iy + Iyy Ix^2)| / |grad I|^2."""
    ix = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    iy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    ixx = cv2.Sobel(gray, cv2.CV_32F, 2, 0, ksize=3)
    iyy = cv2.Sobel(gray, cv2.CV_32F, 0, 2, ksize=3)
    ixy = cv2.Sobel(gray, cv2.CV_32F, 1, 1, ksize=3)
    norm = ix * ix + iy * iy + 1e-4
    return np.abs(ixx * iy * iy - 2 * ixy * ix * iy + iyy * ix * ix) / norm


def _block_texture(gray: np.ndarray, block: int) -> np.ndarray:
    """Mean gradient magnitude of each block (the texture a block's content class is judged by)."""
    dx = cv2.Sobel(gray, cv2.CV_32F, 1, 0)
    return block_mean(cv2.magnitude(dx, cv2.Sobel(gray, cv2.CV_32F, 0, 1)), block)


def _diffusion_blocks(gray: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Per ``block`` x ``block`` tile of ``gray``: brightness (smoothed mean) and log isophote curvature energy,
    the two measures of the diffusion cue."""
    brightness = block_mean(cv2.GaussianBlur(gray, (0, 0), 2.0), block)
    curvature = np.log(block_mean(_isophote_energy(gray), block) + 1e-4)
    return brightness, curvature


def _tile_blocks(gray: np.ndarray, top: int, left: int, height: int, width: int, block: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_diffusion_blocks` of the tile at (``top``, ``left``), measured with a margin of one block of
    context around it so that the derivatives at the tile's edge see real neighbours, not a border rule."""
    rows, cols = gray.shape
    y0, x0 = max(top - block, 0), max(left - block, 0)
    y1, x1 = min(top + height + block, rows), min(left + width + block, cols)
    brightness, curvature = _diffusion_blocks(gray[y0:y1, x0:x1], block)
    by, bx = (top - y0) // block, (left - x0) // block
    return (brightness[by:by + height // block, bx:bx + width // block],
            curvature[by:by + height // block, bx:bx + width // block])


def _reference_tiles(shape: tuple[int, int], tile: int, pixels: int) -> list[tuple[int, int]]:
    """Corners of about ``pixels / tile**2`` tiles of side ``tile`` on a regular lattice over ``shape``."""
    rows, cols = shape[0] // tile, shape[1] // tile
    wanted = max(1, pixels // (tile * tile))
    step = max(1, int(np.floor(np.sqrt(rows * cols / wanted))))
    return [(r * tile, c * tile) for r in range(step // 2, rows, step) for c in range(step // 2, cols, step)]


def _coarse_labels_at(labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, analysis_shape: tuple[int, int],
                      shape: tuple[int, int], coarse_block: int) -> np.ndarray:
    """The coarse block labels at full-resolution pixel ``rows`` x ``cols``, as the coarse mask maps onto the
    full image (each analysis block blown up, then the copy resized to ``shape`` by nearest neighbour)."""
    analysis_rows = np.minimum(rows * analysis_shape[0] // shape[0], analysis_shape[0] - 1) // coarse_block
    analysis_cols = np.minimum(cols * analysis_shape[1] // shape[1], analysis_shape[1] - 1) // coarse_block
    return labels[np.ix_(np.minimum(analysis_rows, labels.shape[0] - 1),
                         np.minimum(analysis_cols, labels.shape[1] - 1))]


def _full_resolution_outline(gray: np.ndarray, decided: np.ndarray, analysis_shape: tuple[int, int], *,
                             coarse_block: int, block: int, reference_pixels: int, extent_z: float,
                             min_blocks: int
                             ) -> dict[int, tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]]:
    """The diffusion cue at full resolution around each group of blocks decided on the bounded copy.

    ``decided`` holds the decision on the copy (blocks of ``coarse_block`` pixels of a copy of
    ``analysis_shape``). Each of its connected groups is measured again on the full-resolution ``gray`` in a tile
    around it (memory bounded by the tile), in ``block``-pixel blocks judged against the same measure on a lattice
    of reference tiles over the whole scan (about ``reference_pixels``, brightness-binned as on the copy, pooled
    3 x 3 and put on the lattice's own scale); the group's outline is the full-resolution blocks above
    ``extent_z`` (one-block gaps closed) connected to it, in parts of at least ``min_blocks`` blocks and a tenth
    of the largest part. The outline only redraws a group already decided: it decides nothing.

    Returns, per group label of ``decided`` (8-connected), its tile (top, left, height, width), the group's own
    pixels in the tile as the coarse mask maps them, and the outline (all False when nothing stands out at full
    resolution there).
    """
    shape = gray.shape
    scale = analysis_shape[0] / shape[0]
    tile = 32 * block
    corners = _reference_tiles(shape, tile, reference_pixels)
    if not corners:  # a strip narrower than a tile: no reference to judge the outline by
        return {}
    reference = [_tile_blocks(gray, top, left, tile, tile, block) for top, left in corners]
    count, labels = cv2.connectedComponents(decided.view(np.uint8), connectivity=8)
    margin = int(np.ceil(2 * coarse_block / scale / block)) * block
    groups, measured = [], []
    for label in range(1, count):
        block_rows, block_cols = np.nonzero(labels == label)
        top = max(0, (int(block_rows.min() * coarse_block / scale) - margin) // block * block)
        left = max(0, (int(block_cols.min() * coarse_block / scale) - margin) // block * block)
        bottom = int(np.ceil((block_rows.max() + 1) * coarse_block / scale)) + margin
        right = int(np.ceil((block_cols.max() + 1) * coarse_block / scale)) + margin
        bottom, right = min(shape[0] // block * block, bottom), min(shape[1] // block * block, right)
        height, width = (bottom - top) // block * block, (right - left) // block * block
        if height < 3 * block or width < 3 * block:
            continue
        groups.append((label, top, left, height, width))
        measured.append(_tile_blocks(gray, top, left, height, width, block))
    if not groups:
        return {}
    # one brightness-binned reference from the lattice's usable blocks, applied to every block measured
    every = reference + measured
    brightness = np.concatenate([b.ravel() for b, _ in every])
    curvature = np.concatenate([c.ravel() for _, c in every])
    usable = (brightness > 0.02) & (brightness < 0.98)
    eligible = usable.copy()
    eligible[sum(b.size for b, _ in reference):] = False
    if eligible.sum() < 100:  # the lattice is almost all clipped: no reference either
        return {}
    expected, spread = binned_reference(curvature, brightness, eligible, bins=10)
    z = np.where(usable, np.clip((expected - curvature) / spread, -6, 6), 0.0).astype(np.float32)
    pooled, start = [], 0
    for b, _ in every:
        pooled.append(pooled_z(z[start:start + b.size].reshape(b.shape), 1))
        start += b.size
    null = np.concatenate([values.ravel() for values in pooled[:len(reference)]])
    centre = float(median_of(null))
    mad = float(1.4826 * median_of(np.abs(null - centre))) + 1e-6
    outlines = {}
    for (label, top, left, height, width), fine in zip(groups, pooled[len(reference):]):
        above = (fine - centre) / mad > extent_z
        # one-block gaps (a grain clump left in a fill, a bridge of brighter blocks) do not split an outline
        above = cv2.morphologyEx(above.view(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).view(bool)
        centres_y = top + block * np.arange(height // block) + block // 2
        centres_x = left + block * np.arange(width // block) + block // 2
        group_blocks = _coarse_labels_at(labels, centres_y, centres_x, analysis_shape, shape,
                                         coarse_block) == label
        _, parts, sizes, _ = cv2.connectedComponentsWithStats(above.view(np.uint8), connectivity=8)
        touching = np.unique(parts[group_blocks & above])
        touching = touching[touching > 0]
        areas = sizes[touching, cv2.CC_STAT_AREA]
        # fragments beside the outline of one decided group are noise of the measure, not a second finding
        touching = touching[areas >= max(min_blocks, areas.max(initial=0) / 10)]
        outline = np.isin(parts, touching)
        group = _coarse_labels_at(labels, top + np.arange(height), left + np.arange(width), analysis_shape, shape,
                                  coarse_block) == label
        outlines[label] = ((top, left, height, width), group,
                           np.repeat(np.repeat(outline, block, 0), block, 1))
    return outlines


@dataclass(frozen=True)
class InpaintOptions:
    """Options of :func:`inpainting_traces`.

    Attributes
    ----------
    analysis_pixels : int
        Analysis runs on a copy bounded to this many pixels (1,000,000).
    nfa_threshold : float
        A region is decided when its number of false alarms is at most this (0.01).
    grain_level : float
        Grain level (see ``grain.grain_level``) from which a picture is grain-dominated, as film prints and their
        scans are, and judged with ``grain_tail_margin`` (0.0085).
    grain_uniformity : float
        ... and keeps at least this share of that level in its flattest tenth of blocks (see
        ``grain.grain_profile``; 0.7).
    grain_tail_margin : float
        Null width for grain-dominated pictures (1.4), calibrated by ``benchmarks.false_alarms``.
    tail_margin : float
        Width of the null model of a block score against a standard Gaussian (see
        ``_blocks.null_tail``), calibrated on untouched photographs and scans by ``benchmarks.false_alarms``.
    full_resolution_outline : bool
        On images larger than ``analysis_pixels``, redraw each decided region's outline from the diffusion cue at
        full resolution (True).
    """

    analysis_pixels: int = 1_000_000
    nfa_threshold: float = 0.01
    grain_level: float = 0.0085
    grain_uniformity: float = 0.7
    grain_tail_margin: float = 1.4
    tail_margin: float = 2.0
    full_resolution_outline: bool = True


@register("inpaint", title="Inpainting and airbrush (diffusion fills)",
          description="Areas smoothed along isophotes without grain (diffusion inpainting, airbrush, digital "
                      "smoothing).")
def inpainting_traces(image: np.ndarray, *, options: InpaintOptions | None = None, **changes: Any
                      ) -> AnalysisResult:
    """Diffusion inpainting and airbrush evidence.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image.
    options : InpaintOptions, optional
        Calibration and decision options (defaults: ``InpaintOptions()``); keyword ``changes`` override its
        fields.

    Returns
    -------
    AnalysisResult
        ``inpainted`` regions with their cue and ``evidence["nfa"]``.

    Examples
    --------
    >>> from skimage import data
    >>> inpainting_traces(data.camera()).method
    'inpaint'
    """
    options = resolve_options(InpaintOptions(), options, changes)
    analysis_pixels = options.analysis_pixels
    gray_full = to_gray_float(image)
    shape = gray_full.shape
    gray, scale = bounded(gray_full, analysis_pixels)
    block = 8
    params = {**options_params(options), "analysis_scale": round(scale, 6), "block": block,
              "false_alarm_control": FALSE_ALARM_CONTROL}
    brightness, curvature = _diffusion_blocks(gray, block)
    usable = (brightness > 0.02) & (brightness < 0.98)
    if not usable.any():
        return AnalysisResult.skipped_result("inpaint", shape, NOTHING_TO_JUDGE, params=params,
                                             explanation=EXPLANATION)
    classes = content_classes(usable, _block_texture(gray, block), brightness,
                              block_saturation(image, block, gray.shape))
    # isophote curvature energy far below its level at that brightness
    expected, spread = binned_reference(curvature, brightness, usable, bins=10)
    diffusion = standardise_by_content(pooled_z(np.clip((expected - curvature) / spread, -6, 6), 1), usable,
                                       classes)
    diffusion[~usable] = 0.0
    tests = int(usable.sum())
    level, uniformity = grain_profile(image)
    dominated = grain_dominated(level, uniformity, grain_level=options.grain_level,
                                grain_uniformity=options.grain_uniformity)
    margin = options.grain_tail_margin if dominated else options.tail_margin
    decision = group_decision(diffusion, tests=tests, margin=margin, nfa_threshold=options.nfa_threshold,
                              min_blocks=4, extent_z=EXTENT_Z)
    mask_blocks, nfa, threshold, best_nfa = decision.mask, decision.nfa, decision.threshold_z, decision.best_nfa
    heat = strength_to_heat(diffusion, threshold)
    score = nfa_score(best_nfa, options.nfa_threshold, decided=bool(mask_blocks.any()))
    small_result = block_result(
        "inpaint", heat_blocks=heat, mask_blocks=mask_blocks, block=block, shape=gray.shape,
        kind_of={"inpainted": mask_blocks}, score=score, params={}, summary="", explanation="", details={},
        min_area=4 * block * block, nfa=nfa, what="inpainting trace",
    )
    regions = []
    heatmap, mask = upscale_to(small_result.heatmap, shape), upscale_to(small_result.mask, shape)
    outlines = {}
    if scale < 1 and options.full_resolution_outline and mask_blocks.any():
        outlines = _full_resolution_outline(gray_full, mask_blocks, gray.shape, coarse_block=block, block=block,
                                            reference_pixels=analysis_pixels, extent_z=EXTENT_Z, min_blocks=4)
    # the coarse regions, in block_regions' order of labels: the connected groups of the decided blocks
    _, _, group_stats, _ = cv2.connectedComponentsWithStats(mask_blocks.view(np.uint8), connectivity=8)
    label_at = {(int(stats[0]) * block, int(stats[1]) * block): label
                for label, stats in enumerate(group_stats) if label}
    outlined = 0
    for region in small_result.regions:
        x, y, w, h = region.bbox
        evidence = {"cue": "diffusion", **region.evidence}
        outline = outlines.get(label_at.get((x, y), 0))
        if outline is not None and outline[2].any():
            (top, left, height, width), group, drawn = outline
            window = mask[top:top + height, left:left + width]
            # the coarse group's pixels, whole: its components in the tile, should resizing have rounded an edge
            _, pieces = cv2.connectedComponents(window.view(np.uint8), connectivity=8)
            hit = np.unique(pieces[group & window])
            window[np.isin(pieces, hit[hit > 0])] = False
            window |= drawn
            regions += [replace(part.shifted(left, top), kind="inpainted",
                                evidence={**evidence, "outline": "full resolution"})
                        for part in regions_from_mask(drawn, heatmap[top:top + height, left:left + width],
                                                      kind="inpainted")]
            outlined += 1
            continue
        regions.append(type(region)(
            bbox=(int(x / scale), int(y / scale), max(1, int(round(w / scale))), max(1, int(round(h / scale)))),
            area=int(round(region.area / scale**2)), score=region.score, kind="inpainted",
            evidence={**evidence, "outline": "analysis copy"}))
    flagged = float(mask_blocks.mean())
    if regions:
        summary = f"Smoothing along isophotes (diffusion fill or airbrush) in {100 * flagged:.2f} % of the image."
    else:
        summary = "No diffusion or airbrush trace stands out."
    return AnalysisResult(
        method="inpaint", heatmap=heatmap, mask=mask, regions=regions, score=score,
        params={**params, "threshold_z": round(threshold, 3)},
        summary=summary, explanation=EXPLANATION,
        details={"smallest_nfa": finite_or_none(best_nfa), "null": decision.null_record(),
                 "grain_level": round(level, 6), "grain_uniformity": round(uniformity, 3),
                 "null_width_used": margin,
                 "blocks_diffusion": int(mask_blocks.sum()),
                 "regions_outlined_at_full_resolution": outlined},
    )
