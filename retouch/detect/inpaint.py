"""Inpainting artifacts: exemplar fills (many small copied patches) and diffusion fills (smooth along isophotes).

Method
------
- Exemplar cue: exemplar-based inpainting (Criminisi, Pérez & Toyama 2004) fills a hole with many small patches
  copied from nearby, each at its own displacement. A dense nearest-neighbour field (small raw neighbourhoods,
  vectorised PatchMatch with local search; see ``retouch.detect._patchmatch``) with a short minimum offset finds, for
  such pixels, twins elsewhere that share even their film grain, so the match distance relative to the patches'
  own feature energy is far below what look-alikes reach; unlike a clone stamp, the displacements are scattered,
  so the clone detector's local affine check rejects them. The density of such near-exact, incoherent matches
  over a neighbourhood is the exemplar evidence.
- Diffusion cue (cf. Li, Luo & Huang 2017, "Localization of diffusion-based inpainting in digital images", IEEE
  TIFS): diffusion inpainting (Telea, Navier-Stokes) propagates intensities along isophotes, so the second
  derivative along the isophote direction is abnormally small in the fill and its film grain is gone. Per block,
  the log energy of that derivative is compared with blocks of the same brightness over the image.
Both cues are turned into block z-scores, pooled, put on their empirical scale and bounded for ``false_alarms``
expected false detections per image (``_blocks.decision_threshold``); regions say which cue fired
(``evidence["cue"]``).

Limits: the exemplar cue finds fills made of copied pieces large enough to hold the compared neighbourhood. A fill
that copies only the unknown part of each patch (the usual front-to-centre order) is a mosaic of pieces of about 45
pixels for 9-pixel patches, whether each source is the best of the whole surroundings (Criminisi's exhaustive
search) or of a random sample. Measured on generated prints with every filled pixel's true source recorded: at the
true offset the 3 x 3 match was better than the best look-alike within 20 pixels for only 13-25 % of the filled
pixels (windows fitted to the piece, up to 16 pixels, or pre-smoothing against scan noise did not change this), and
a count of near-equal pixels in a 9 x 9 window scored no higher at the true offset than at the best of 1500 random
ones; so after scanning (blur across the pieces' edges, scan noise, JPEG) such fills are not found (paired
comparison finds them, and error-level analysis finds a digital one saved again as JPEG); at analysis scales below
1 the pieces shrink further. Two traces of the mosaic itself were measured on 12 such prints and not kept: the
grain's correlation between neighbouring pixels, lower where pieces meet (median pixel AUC 0.62 to 0.72; 0.5 to 0.6
where the scan's blur exceeds about 0.7 px), and the energy of short horizontal and vertical steps along the
pieces' straight edges against diagonal ones (0.48 to 0.54). Nor was the nearest-neighbour field's coherence
(neighbours sharing one offset, as the pixels of one copied piece would; 5 x 5 neighbourhoods): 0.29 to 0.46 on 6
prints and 0.23 to 0.45 on 3 digital fills, as the field does not find the pieces' sources. An exemplar fill from
another photograph, or one re-grained afterwards, leaves no twins; naturally smooth areas (clear sky, a plain wall)
can look diffused when the scan has almost no grain; diffusion fills are also what airbrush and digital smoothing
produce, so the cue says "smoothed along isophotes", not which tool.
"""

from __future__ import annotations

import cv2
import numpy as np

from retouch.detect._blocks import (
    NOTHING_TO_JUDGE,
    binned_reference,
    block_decision,
    block_mean,
    block_result,
    decision_score,
    decision_threshold,
    pooled_z,
    standardise,
    strength_to_heat,
)
from retouch.detect._patchmatch import patchmatch, raw_patch_features, reduce_features
from retouch.registry import register
from retouch.imaging import bounded, to_gray_float, upscale_to
from retouch.result import AnalysisResult

EXPLANATION = (
    "Inpainting fills a hole automatically. Exemplar fills copy many small patches from around the hole, so "
    "each filled point has an almost identical twin nearby, down to the film grain; diffusion fills smear the "
    "surrounding tones inwards along the lines of equal brightness, leaving an area that is unnaturally smooth "
    "along those lines and has no grain. This map marks areas where either trace is far stronger than anywhere "
    "else in the picture. Limits: a fill copied from another photograph or re-grained afterwards leaves no twins; "
    "a scan with almost no grain makes plain skies and walls look smooth; smoothing by airbrush or software "
    "leaves the same diffusion trace, so the map says 'smoothed', not which tool did it."
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


@register("inpaint", title="Inpainting (exemplar and diffusion fills)",
          description="Areas filled by many small copied patches (exemplar inpainting) or smoothed along "
                      "isophotes without grain (diffusion inpainting, airbrush).")
def inpainting_traces(
    image: np.ndarray,
    *,
    analysis_pixels: int = 1_000_000,
    radius: int = 3,
    min_offset: int = 6,
    near_exact: float = 0.15,
    false_alarms: float = 0.5,
) -> AnalysisResult:
    """Exemplar and diffusion inpainting evidence.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image.
    analysis_pixels : int
        Analysis runs on a copy bounded to this many pixels.
    radius : int
        The exemplar cue compares (2 radius - 1)-pixel square neighbourhoods.
    min_offset : int
        Shortest displacement (analysis pixels) a twin may have.
    near_exact : float
        Relative match distance below which a twin counts as a copy.
    false_alarms : float
        Expected number of falsely flagged block groups per untouched image, per cue.
    """
    gray_full = to_gray_float(image)
    shape = gray_full.shape
    gray, scale = bounded(gray_full, analysis_pixels)
    block = 8
    params = {"analysis_pixels": analysis_pixels, "analysis_scale": round(scale, 6), "radius": radius,
              "min_offset": min_offset, "near_exact": near_exact, "false_alarms": false_alarms, "block": block}
    brightness = block_mean(cv2.GaussianBlur(gray, (0, 0), 2.0), block)
    usable = (brightness > 0.02) & (brightness < 0.98)
    if not usable.any():
        return AnalysisResult.skipped_result("inpaint", shape, NOTHING_TO_JUDGE, params=params,
                                             explanation=EXPLANATION)
    # exemplar patches are copied unrotated and small: a pixel's own small neighbourhood, not a rotation-
    # invariant disc that would straddle several copied patches, is what finds its twin
    reduced = reduce_features(raw_patch_features(gray, 2 * radius - 1), 8)
    energy = np.einsum("ijk,ijk->ij", reduced, reduced)
    oy, ox, distance = patchmatch(reduced, min_offset=min_offset, iterations=2, seed=3, global_samples=1,
                                  local_samples=8, local_radius=48)
    height, width = gray.shape
    ys, xs = np.mgrid[0:height, 0:width]
    partner = energy[np.clip(ys + oy, 0, height - 1), np.clip(xs + ox, 0, width - 1)]
    relative = np.where(np.isfinite(distance), distance / (energy + partner + 1e-3), 1.0)
    twins = block_mean((relative < near_exact).astype(np.float32), block)
    # exemplar: the fraction of near-exact twins, against blocks of the same brightness
    twin_score = np.log(twins + 0.02)
    expected, spread = binned_reference(twin_score, brightness, usable, bins=8)
    exemplar = standardise(pooled_z(np.clip((twin_score - expected) / spread, -6, 6), 1), usable)
    # diffusion: isophote curvature energy far below its level at that brightness
    curvature = np.log(block_mean(_isophote_energy(gray), block) + 1e-4)
    expected, spread = binned_reference(curvature, brightness, usable, bins=10)
    diffusion = standardise(pooled_z(np.clip((expected - curvature) / spread, -6, 6), 1), usable)
    exemplar[~usable] = 0.0
    diffusion[~usable] = 0.0
    threshold = decision_threshold(int(usable.sum()) * 2, false_alarms)
    exemplar_mask = block_decision(exemplar, threshold, min_blocks=4)
    diffusion_mask = block_decision(diffusion, threshold, min_blocks=4)
    mask_blocks = exemplar_mask | diffusion_mask
    strength = np.maximum(exemplar, diffusion)
    heat = strength_to_heat(strength, threshold)
    score = decision_score(strength, mask_blocks, usable, threshold)
    small_result = block_result(
        "inpaint", heat_blocks=heat, mask_blocks=mask_blocks, block=block, shape=gray.shape,
        kind_of={"inpainted": mask_blocks}, score=score, params={}, summary="", explanation="", details={},
        min_area=4 * block * block,
    )
    regions = []
    exemplar_full = upscale_to(np.repeat(np.repeat(exemplar_mask, block, 0), block, 1), gray.shape)
    for region in small_result.regions:
        x, y, w, h = region.bbox
        share = float(exemplar_full[y:y + h, x:x + w].mean()) if w and h else 0.0
        cue = "exemplar" if share >= 0.5 else "diffusion"
        regions.append(type(region)(
            bbox=(int(x / scale), int(y / scale), max(1, int(round(w / scale))), max(1, int(round(h / scale)))),
            area=int(round(region.area / scale**2)), score=region.score, kind="inpainted",
            evidence={"cue": cue, "exemplar_share": round(share, 3)}))
    flagged = float(mask_blocks.mean())
    if regions:
        cues = sorted({r.evidence["cue"] for r in regions})
        summary = f"Inpainting traces ({' and '.join(cues)}) in {100 * flagged:.2f} % of the image."
    else:
        summary = "No exemplar or diffusion inpainting trace stands out."
    return AnalysisResult(
        method="inpaint", heatmap=upscale_to(small_result.heatmap, shape), mask=upscale_to(small_result.mask, shape),
        regions=regions, score=score,
        params={**params, "threshold_z": round(threshold, 3)},
        summary=summary, explanation=EXPLANATION,
        details={"blocks_exemplar": int(exemplar_mask.sum()), "blocks_diffusion": int(diffusion_mask.sum())},
    )
