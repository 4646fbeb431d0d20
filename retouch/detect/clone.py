"""Clone-stamp (copy-move) detection: regions filled with material copied from the same photograph.

Method
------
Dense-field copy-move detection after Cozzolino, Poggi & Verdoliva (2015, "Efficient dense-field copy-move forgery
detection", IEEE TIFS): rotation-invariant Zernike-moment features for the disc around every pixel, an approximate
nearest-neighbour field by vectorised PatchMatch with a minimum offset, a median filter of the field, and dense
linear fitting: a copied region (shifted, rotated or mildly scaled) has an offset field that is locally affine, so
the residual of a local affine fit is near zero there and large where matches are accidental. A pixel is a clone
candidate where that residual is small and its match is much closer than matches are in this image generally (a
stamped copy carries the same grain as its source, independent grain does not match). Candidates are cleaned
(opening, hysteresis growth, closing, minimum area) and mirrored: every detection is mapped through its offset to
its source. Each pair's affine map is then fitted to its offset field and the copied area redrawn from the pixel
difference between the image and its warped self (a copy differs from its source by scan noise only, so the extent
is exact to the scan's blur instead of the feature disc's radius). Copies enlarged or shrunk by more than about
20 % no longer match by their disc features (the discs describe different amounts of scene), and copies turned on
the print before scanning often match their source too loosely (resampled, then rescanned grain). Both are found
from SIFT self-matches (scale- and rotation-invariant): the matched keypoint pairs are grouped by the similarity
map they follow (sequential RANSAC: largest consensus set, removed, repeat; rotation by any angle, scale 0.4 to
2.5, with a minimum count of agreeing pairs and a minimum displacement). Every map seeds the dense field, and those
that rescale by more than about 20 % or turn by more than 30 degrees are checked directly by the same pixel
difference over the whole image. Those are also sought among pairs admitted by a looser ratio test
(``loose_ratio``, for the pixel check only): an enlarged copy's keypoints often match their source's less
distinctly.

Mirrored copies (a stamp flipped left to right, then possibly turned and rescaled) are found the same way from
SIFT matches between the image and its flipped self (keypoints mapped back; a keypoint's match with its own mirror
image skipped): the pairs are grouped by similarity maps fitted to mirrored targets, so each map flips
(determinant < 0), and every such map is checked at the pixels (the dense field is not seeded with them). A mirror
map is also what the two halves of a symmetric subject follow (a face, a facade, a badge), and where their
structure outweighs their texture they pass the pixel test; what tells a flipped copy is that it carries its
source's grain. A mirrored area is kept only when the finest detail of its two sides (image minus its 1-px blur)
correlates by at least ``min_mirror_correlation`` and differs by at most ``max_mirror_difference`` times what two
independent grain fields of this image would (generated mirrored stamps: correlation 0.71 to 0.91, ratio 0.36 to
0.70; symmetric subjects: correlation 0.15 to 0.88, ratio 0.75 to 3.6). The two sides are compared under the map
refitted to the area's own pixels (ECC): a keypoint map can be a pixel or two off across the area, which
decorrelates grain about a pixel fine.

Every pair, plain or mirrored, must share its grain: the finest detail of its two sides may differ by at most
``max_grain_difference`` times what two independent grain fields of this image would (a copy differs from its
source by scan noise and JPEG only). Repeated objects match in shape and pass the feature and pixel tests: on the
sample photographs, a flag's stars (grace_hopper) and a lattice tower against the sky (rocket) were reported in
every way of saving, with difference ratios of 1.3 to 1.6 and 4.5 to 32; 76 pairs found in 78 generated stamps
(JPEG 70 to 95, scan blur up to 1.5 px, scale 0.6 to 1.7, turned 45 degrees, 768 to 4000 px) had 0.17 to 0.78.
A copy rescaled or turned a little can exceed the bound too, because resampling makes its edges and textures
differ from its source's (a digital stamp of the quality benchmark, enlarged 1.08 times and turned 3.4 degrees on
a scan with little grain: correlation 0.86, difference 1.45, as the stars have: 0.81 to 0.87 and 1.3 to 1.6); its
flat parts still share their grain. So a pair over the bound is kept when the least structured half of its area
passes the mirrored copy's test (that stamp: correlation 0.91, difference 0.48; the stars' and the tower's flat
halves: differences of 1.0 to 33 on the sample photographs). The two sides of a pair rescaled by more than
``exp(min_log_scale)`` are compared in the larger side's frame, the smaller side resampled to it before its
finest detail is taken, as the copy's was (an enlarged copy's grain is upsampled: against its source's native
grain, an x1.7 stamp differed by 1.46 and was dropped). The pairs dropped stay in the heat map at half strength,
below the sources of called pairs.

Which side is the copy (target) is decided from two physical traces, in this order:

- interpolation: a stamp that was rotated (or moved by a fraction of a pixel) was resampled, and resampling
  low-passes the film grain, so the copy has less of the finest detail than its source (log ratio of the
  energy of image minus its 1-px blur, inside both areas; used when it exceeds ``interpolation_margin``).
  Between two sides of clearly different size that comparison is mute (the smaller side is the rougher one
  either way), so each side is compared with its own surroundings instead: an enlarged copy is an upsampled
  one, its grain weaker and coarser than the native grain around it, while the source matches its
  surroundings (used when the larger side is smoother than its surroundings, and than the smaller side is
  relative to its own, by ``rescale_margin`` in log energy; for enlargements from about x1.3. A shrunk copy can
  come out smoother or rougher than its surroundings, depending on the factor, so that direction is left to
  the seam);
- seam: a copy's content does not continue into the surroundings it was stamped on, its source's does (mean
  difference across the outline of the grain-smoothed image; used when the log ratio between the two sides
  exceeds ``seam_margin``).

The decision mask marks the target only when one of these calls is confident, and both sides otherwise; each
pair reports the cue used (``target_call``: interpolation, seam or undecided) and its margin.

Analysis runs on a copy bounded to ``analysis_pixels`` and is mapped back to full size.

Limits: copies smaller than ``min_area_fraction`` of the image are missed, and strongly rescaled or turned copies
are found only when SIFT pairs enough keypoints between copy and source (at least five agreeing pairs; a stamp
enlarged 1.7 times on the print had 3 in one of 10 generated cases, at the looser ratio test); a mirrored copy is
found only through SIFT (same limit); a copy whose grain was lost (heavy blur or recompression, a stamp re-grained
by hand) is dropped with the look-alikes and symmetric subjects, while a subject mirror-symmetric to the pixel
including its grain (a digitally mirrored picture, a symmetric graphic) is reported as a copy, which it is;
repeated objects that share their fine detail too (a pattern printed or repeated digitally) are reported as copies
and need an expert's look; heavy recompression or blur of the whole image weakens the grain that separates copies
from look-alikes. The target call is an inference: the interpolation cue says nothing about an unrotated
whole-pixel stamp, and the seam cue fails where the copy was stamped onto similar, smooth surroundings (then both
sides are marked); between two sides of clearly different size the interpolation cue compares each side with its
surroundings, which a copy stamped over an area of different texture (a smooth wall into foliage) can mislead, and
a deliberately re-grained stamp could reverse either form.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import cKDTree

from retouch.detect._patchmatch import local_affine_residual, patchmatch, reduce_features, zernike_features
from retouch.registry import register
from retouch.imaging import bounded, nearest_neighbours, to_gray_float, upscale_to
from retouch.result import AnalysisResult, Region

EXPLANATION = (
    "A retoucher can hide a person by stamping background copied from elsewhere in the same picture over them. "
    "This analysis looks, for every point, for the most similar spot elsewhere in the image, allowing for "
    "rotation, rescaling and mirroring. Where a whole area finds its twin at a consistent displacement, and the "
    "twins share even their film grain, the area is marked as a copy; the report pairs each copied area (target) "
    "with where it came from (source). Which one is the copy is told by two traces: a copy that was turned or "
    "enlarged has been redrawn pixel by pixel and lost some of its finest grain, and a copy does not continue "
    "into the scene around it as the original does. When neither trace is clear, both sides are marked. Limits: "
    "very small copies, strongly enlarged or shrunk copies with few distinct points, mirrored copies whose grain "
    "was lost, and genuinely repetitive subjects (rows of identical windows, patterned cloth) are hard cases; "
    "the copy/original call is an inference, so check the pair."
)


def _components(mask: np.ndarray, min_area: int) -> tuple[int, np.ndarray, np.ndarray]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return count, np.where(keep[labels], labels, 0), stats


def _rescaled_copies(gray: np.ndarray, maps: list[np.ndarray], *, min_offset: int, min_area: int,
                     min_log_scale: float, min_angle: float, min_mirror_correlation: float = 0.6,
                     max_mirror_difference: float = 0.8) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Copies enlarged or shrunk by more than ``exp(min_log_scale)`` or turned by more than ``min_angle`` degrees,
    found by checking each SIFT-proposed map that does so directly at the pixels: the disc features of a rescaled
    copy differ from its source's (they describe different amounts of scene), and a copy turned on the print
    before scanning has its grain resampled and rescanned, which often leaves its feature distance too large for
    the dense field; but the image equals its warped self there down to the grain.

    Returns, per map that holds a copy, the area whose twin under the map is its equal, and the offset field
    (dy, dx) the map implies everywhere.
    """
    def strong(affine: np.ndarray) -> bool:
        # near its own size and orientation the dense field finds a copy, and places its outline better; a
        # mirrored copy it does not find at all
        if np.linalg.det(affine[:, :2]) < 0:
            return True
        log_scale = abs(np.log(np.sqrt(abs(np.linalg.det(affine[:, :2])))))
        angle = abs(np.degrees(np.arctan2(affine[1, 0], affine[0, 0])))
        return bool(log_scale >= min_log_scale or angle >= min_angle)

    maps = [a for a in maps if strong(a)]
    if not maps:
        return []
    height, width = gray.shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)

    def twin_field(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The offsets (dy, dx) the map implies at every pixel, and where the twin is far enough and inside."""
        twin_x = affine[0, 0] * xs + affine[0, 1] * ys + affine[0, 2] - xs
        twin_y = affine[1, 0] * xs + affine[1, 1] * ys + affine[1, 2] - ys
        zone = ((np.hypot(twin_x, twin_y) >= min_offset) & (xs + twin_x >= 0) & (xs + twin_x <= width - 1)
                & (ys + twin_y >= 0) & (ys + twin_y <= height - 1))
        return twin_y, twin_x, zone

    found = []
    for affine in maps:
        twin_y, twin_x, zone = twin_field(affine)
        # seeded by the whole zone, the pixel test also keeps chance look-alikes scattered over the image; a copy
        # is one area of at least ``min_area``, and the grain test and the map's refinement need that area alone
        same = _components(_copy_extent(gray, affine, zone, zone), min_area)[1] > 0
        if same.any():
            # a mirror map is also what two halves of a symmetric subject (a face, a facade) follow, and their
            # outlines agree to the pixel test where structure outweighs texture: only shared fine texture
            # (the copied grain) tells a flipped copy
            if np.linalg.det(affine[:, :2]) < 0:
                # the grain is about a pixel fine: a keypoint map a pixel or two off across the area (2.4 px at
                # the far edge of a generated mirrored x0.75 stamp) decorrelates a copy's grain from its source's,
                # so the map is first fitted to the area's pixels
                refined = _refine_map(gray, affine, same)
                if refined is not None:
                    refined_y, refined_x, refined_zone = twin_field(refined)
                    refit = _copy_extent(gray, refined, refined_zone, refined_zone & same)
                    if refit.sum() >= min_area:
                        affine, same, twin_y, twin_x = refined, refit, refined_y, refined_x
                # ... over the whole area and over its least structured half: the edges of repeated symmetric
                # objects (a flag's stars) agree to their finest detail (whole area 0.80-0.86 on the astronaut
                # photograph's flag), the grain between them does not (0.09-0.11), while a mirrored copy's
                # flattest half shares its grain as the whole does (0.69-0.83 on generated stamps)
                fine = _fine_detail(gray)
                tests = [_shared_grain(gray, affine, same, min_log_scale=min_log_scale, flattest=share, fine=fine)
                         for share in (1.0, 0.5)]
                if not all(correlation >= min_mirror_correlation and ratio <= max_mirror_difference
                           for correlation, ratio in tests):
                    continue
            found.append((same, twin_y, twin_x))
    return found


def _refine_map(gray: np.ndarray, affine: np.ndarray, region: np.ndarray, *, max_pixels: int = 160_000,
                max_shift: float = 3.0) -> np.ndarray | None:
    """``affine`` (pixel -> its twin) fitted to the pixels of ``region`` and its twin by ECC (enhanced correlation
    coefficient, Evangelidis & Psarakis 2008; a full affine), or None when the fit fails or would move the
    region's box corners by more than ``max_shift`` px (the keypoint maps' RANSAC tolerance: farther, it found
    something else than the map it started from).

    Keypoint maps are fitted to a few keypoint positions, each known to a fraction of a pixel, and are good to
    a pixel or two across the area (a mirrored x0.75 stamp: 2.4 px off at its far edge); the area's own pixels
    pin the map down to a small fraction of one. The fit runs on crops around the two sides, at most
    ``max_pixels`` of the region's box (a large area pins the map down long before), so it costs milliseconds."""
    ys, xs = np.nonzero(region)
    if ys.size < 64:
        return None
    height, width = gray.shape
    # the shift test is on the corners of the whole region's box, the fit on a window of it at most
    # ``max_pixels`` large (centred on the region's median point)
    corners = np.float64([[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.min(), ys.max()], [xs.max(), ys.max()]])
    margin, half = 4, int(np.sqrt(max_pixels)) // 2
    cy, cx = int(np.median(ys)), int(np.median(xs))
    y0, y1 = max(int(ys.min()) - margin, cy - half, 0), min(int(ys.max()) + margin + 1, cy + half, height)
    x0, x1 = max(int(xs.min()) - margin, cx - half, 0), min(int(xs.max()) + margin + 1, cx + half, width)
    window = np.float64([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    twins = window @ affine[:, :2].T + affine[:, 2]
    v0, u0 = max(int(np.floor(twins[:, 1].min())) - margin, 0), max(int(np.floor(twins[:, 0].min())) - margin, 0)
    v1 = min(int(np.ceil(twins[:, 1].max())) + margin + 1, height)
    u1 = min(int(np.ceil(twins[:, 0].max())) + margin + 1, width)
    if v1 - v0 < 8 or u1 - u0 < 8:
        return None
    template = np.ascontiguousarray(gray[y0:y1, x0:x1], np.float32)
    source = np.ascontiguousarray(gray[v0:v1, u0:u1], np.float32)
    # in crop coordinates: template pixel p -> its twin A (p + (x0, y0)) + b - (u0, v0)
    crop_map = affine.copy()
    crop_map[:, 2] = affine[:, :2] @ np.float64([x0, y0]) + affine[:, 2] - np.float64([u0, v0])
    # ECC's mask lies on the input image (the twin side): the region carried over by the map
    twin_mask = cv2.warpAffine(region[y0:y1, x0:x1].astype(np.uint8), crop_map.astype(np.float32),
                               (u1 - u0, v1 - v0), flags=cv2.INTER_NEAREST)
    if twin_mask.sum() < 64:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-6)
    try:
        _, fitted = cv2.findTransformECC(template, source, crop_map.astype(np.float32), cv2.MOTION_AFFINE,
                                         criteria, twin_mask, 3)
    except cv2.error:  # no convergence (flat area, or the map drifted off the crop)
        return None
    fitted = fitted.astype(np.float64)
    refined = fitted.copy()
    refined[:, 2] = fitted[:, 2] + np.float64([u0, v0]) - fitted[:, :2] @ np.float64([x0, y0])
    moved = corners @ (refined[:, :2] - affine[:, :2]).T + (refined[:, 2] - affine[:, 2])
    if not np.isfinite(moved).all() or np.abs(moved).max() > max_shift:
        return None
    return refined


def _fine_detail(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The image's finest detail (image minus its 1-px blur) and its typical level (median local RMS)."""
    detail = gray - cv2.GaussianBlur(gray, (0, 0), 1.0)
    return detail, float(np.median(np.sqrt(np.maximum(cv2.boxFilter(detail * detail, -1, (7, 7)), 0.0))))


def _shared_grain(gray: np.ndarray, affine: np.ndarray, region: np.ndarray, *, min_log_scale: float,
                  flattest: float = 1.0, fine: tuple[np.ndarray, float] | None = None) -> tuple[float, float]:
    """Whether ``region`` and its twin under ``affine`` share their finest detail (image minus its 1-px blur:
    grain, scan noise, the scene's finest texture), as (correlation, difference ratio); with ``flattest`` < 1,
    only on that share of the region's pixels with the least structure (gradient of the 2-px blurred image, the
    larger of the two sides'), where the grain is all there is to compare. A map that rescales by more than
    ``exp(min_log_scale)`` is compared in the larger side's frame (see below).

    A stamped copy carries its source's grain, so the two differ by scan noise and JPEG only: correlation about
    0.7 to 0.9 and an RMS difference of 0.35 to 0.7 times what two independent grain fields would give (the
    image's median local RMS of that detail, times sqrt 2), on generated prints. Two halves of a symmetric subject
    agree in shape only: on photographs given a mirror-symmetric outline but their own texture the correlation is
    0.15 to 0.45; on a symmetric scene printed with its own grain on each half it reaches 0.86 where strong
    structure dominates the detail, but the difference ratio stays above 0.75 (it measures the grain the halves
    do not share, not the structure they do). ``fine``: ``_fine_detail(gray)`` when already computed."""
    height, width = gray.shape
    detail, level = fine if fine is not None else _fine_detail(gray)
    zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))  # > 1: the twin is the larger side
    if abs(np.log(zoom)) >= min_log_scale:
        # a rescaled copy's grain was resampled with it: both sides are compared in the larger side's frame, the
        # smaller one resampled there first and only then stripped to its finest detail, as the copy was
        if zoom > 1:
            region = cv2.warpAffine(region.view(np.uint8), affine.astype(np.float32), (width, height),
                                    flags=cv2.INTER_NEAREST).astype(bool)
            affine = cv2.invertAffineTransform(affine)
        twin = cv2.warpAffine(gray, affine.astype(np.float32), (width, height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        warped = twin - cv2.GaussianBlur(twin, (0, 0), 1.0)
    else:
        warped = cv2.warpAffine(detail, affine.astype(np.float32), (width, height),
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    a, b = detail[region].astype(np.float64), warped[region].astype(np.float64)
    if flattest < 1.0:
        smooth = cv2.GaussianBlur(gray, (0, 0), 2.0)
        structure = np.hypot(cv2.Sobel(smooth, cv2.CV_32F, 1, 0), cv2.Sobel(smooth, cv2.CV_32F, 0, 1))
        twin_structure = cv2.warpAffine(structure, affine.astype(np.float32), (width, height),
                                        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_REFLECT)
        structure = np.maximum(structure[region], twin_structure[region])
        flat = structure <= np.quantile(structure, flattest)
        a, b = a[flat], b[flat]
    ratio = float(np.sqrt(np.mean((a - b) ** 2)) / (np.sqrt(2.0) * level + 1e-9))
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt(max((a * a).sum() * (b * b).sum(), 1e-20))), ratio


def _shares_grain(gray: np.ndarray, affine: np.ndarray, region: np.ndarray, *, max_difference: float,
                  min_flat_correlation: float, max_flat_difference: float, min_log_scale: float) -> bool:
    """The grain test every pair must pass: the finest detail of the whole area differs by at most
    ``max_difference`` times what independent grain would, or, where it differs more, the least structured half
    of the area still shares its grain (correlation and difference as a mirrored copy must): a copy rescaled or
    turned a little is resampled, and its edges and textures then differ from its source's more than its flat
    parts do (a digital stamp enlarged 1.08 and turned 3.4 degrees: whole area 1.45, flattest half correlation
    0.91 and difference 0.48), while repeated objects' flat parts carry grain of their own (a flag's stars:
    correlation 0.36 to 0.80 at differences of 1.0 to 2.9)."""
    fine = _fine_detail(gray)
    if _shared_grain(gray, affine, region, min_log_scale=min_log_scale, fine=fine)[1] <= max_difference:
        return True
    correlation, ratio = _shared_grain(gray, affine, region, min_log_scale=min_log_scale, flattest=0.5, fine=fine)
    return correlation >= min_flat_correlation and ratio <= max_flat_difference


def _drop_grainless(gray: np.ndarray, labels: np.ndarray, *, radius: int, min_grain: float) -> np.ndarray:
    """Remove detections whose typical pixel has no grain to share with its twin (median local RMS of the
    distance from the 3x3 median below ``min_grain``): a uniform area, such as a margin clipped to white, matches
    any other part of itself exactly, which proves nothing about copying."""
    if not labels.any():
        return labels
    # distance from the 3x3 median: grain and noise, but neither flat areas nor straight edges (a straight edge
    # matches itself shifted along its length as exactly as a flat area does)
    detail = gray - cv2.medianBlur(gray, 3)
    size = (2 * radius + 1, 2 * radius + 1)
    grain = np.sqrt(np.maximum(cv2.boxFilter(detail * detail, -1, size), 0.0))
    inside = labels > 0
    ids, per_label = labels[inside], grain[inside]
    order = np.argsort(ids, kind="stable")
    ids, per_label = ids[order], per_label[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    medians = {int(ids[a]): float(np.median(per_label[a:b])) for a, b in zip(starts, np.r_[starts[1:], ids.size])}
    grainless = [label for label, median in medians.items() if median < min_grain]
    return np.where(np.isin(labels, grainless), 0, labels) if grainless else labels


def _seam_evidence(gray: np.ndarray, region: np.ndarray) -> float:
    """How badly a region's content fails to continue across its outline: the mean difference, along the
    outline, between the local mean just inside and just outside (masked box means of the grain-smoothed
    image). An original area continues into its surroundings; a stamped copy meets a background it was not
    photographed against. Larger means more seam-like (the target side of a copy)."""
    kernel = np.ones((3, 3), np.uint8)
    inside = region.astype(np.float32)
    outside = 1.0 - inside
    outline = (cv2.dilate(region.astype(np.uint8), kernel).astype(bool)
               & ~cv2.erode(region.astype(np.uint8), kernel).astype(bool))
    if not outline.any() or region.all():
        return 0.0
    smooth = cv2.GaussianBlur(gray, (0, 0), 1.5)
    size = (9, 9)
    mean_in = cv2.boxFilter(smooth * inside, -1, size, normalize=False) / (
        cv2.boxFilter(inside, -1, size, normalize=False) + 1e-6)
    mean_out = cv2.boxFilter(smooth * outside, -1, size, normalize=False) / (
        cv2.boxFilter(outside, -1, size, normalize=False) + 1e-6)
    return float(np.mean(np.abs(mean_in - mean_out)[outline]))


def _pair_map(member: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> np.ndarray | None:
    """The affine map (2x3, pixel -> its twin) that the offset field follows over ``member`` (RANSAC fit)."""
    ys, xs = np.nonzero(member)
    if ys.size < 12:
        return None
    step = max(1, ys.size // 4000)
    ys, xs = ys[::step], xs[::step]
    source = np.float32(np.column_stack([xs, ys]))
    target = np.float32(np.column_stack([xs + ox[ys, xs], ys + oy[ys, xs]]))
    affine, inliers = cv2.estimateAffine2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=1.5)
    if affine is None or inliers is None or inliers.sum() < 12:
        return None
    return affine.astype(np.float64)


def _copy_extent(gray: np.ndarray, affine: np.ndarray, zone: np.ndarray, seed: np.ndarray,
                 ratio: float = 0.35) -> np.ndarray:
    """Pixels of ``zone`` whose neighbourhood equals, down to the grain, its image under ``affine``.

    Feature discs blur a copy's outline by their radius; the pixel difference between the image and its warped
    self does not, so it draws the copied area to within the scan's blur (a stamped copy and its source differ
    by scan noise only, look-alikes by their whole grain). Kept: connected parts touching ``seed``.
    """
    height, width = gray.shape
    warped = cv2.warpAffine(gray, affine.astype(np.float32), (width, height),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    size = (7, 7)
    error = cv2.boxFilter((gray - warped) ** 2, -1, size)
    contrast = (cv2.boxFilter(gray * gray, -1, size) - cv2.boxFilter(gray, -1, size) ** 2
                + cv2.boxFilter(warped * warped, -1, size) - cv2.boxFilter(warped, -1, size) ** 2)
    same = (error < ratio * np.maximum(contrast, 1e-6)) & zone
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    same = cv2.morphologyEx(same.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    same = cv2.morphologyEx(same, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    count, labels = cv2.connectedComponents(same, connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[seed & (labels > 0)])] = True
    keep[0] = False
    return keep[labels]


def _fine_energy(gray: np.ndarray, region: np.ndarray) -> float:
    """Mean energy of the finest detail (image minus its 1-px blur) inside ``region``, edges excluded."""
    inner = cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if inner.sum() < 20:
        return float("nan")
    detail = gray - cv2.GaussianBlur(gray, (0, 0), 1.0)
    return float(np.mean(detail[inner] ** 2))


def _relative_fine_energy(gray: np.ndarray, region: np.ndarray, *, ring: int = 12) -> float:
    """log of the finest detail's typical energy inside ``region`` over that in a ring around it (median of the
    5x5 local energy of image minus its 1-px blur, edges of the region excluded): near 0 for an area that carries
    the same grain as its surroundings, negative for one smoother than them (an enlarged, i.e. upsampled, copy),
    positive for a rougher one."""
    kernel = np.ones((5, 5), np.uint8)
    inner = cv2.erode(region.astype(np.uint8), kernel).astype(bool)
    outer = cv2.dilate(region.astype(np.uint8), np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)).astype(bool)
    around = outer & ~cv2.dilate(region.astype(np.uint8), kernel).astype(bool)
    if inner.sum() < 20 or around.sum() < 20:
        return float("nan")
    detail = gray - cv2.GaussianBlur(gray, (0, 0), 1.0)
    local = cv2.boxFilter(detail * detail, -1, (5, 5))
    return float(np.log((np.median(local[inner]) + 1e-12) / (np.median(local[around]) + 1e-12)))


def _closeness(distance: np.ndarray, energy: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> np.ndarray:
    """Match distance relative to the two patches' own feature energy: about 1 for look-alikes, near 0 only for
    copies (which share their grain), whatever the local texture."""
    height, width = distance.shape
    ys, xs = np.mgrid[0:height, 0:width]
    partner = energy[np.clip(ys + oy, 0, height - 1), np.clip(xs + ox, 0, width - 1)]
    return np.where(np.isfinite(distance), distance / (energy + partner + 1e-3), np.inf).astype(np.float32)


def _dominant_offsets(oy: np.ndarray, ox: np.ndarray, selected: np.ndarray, *, min_count: int,
                      most: int = 6) -> list[tuple[int, int]]:
    if not selected.any():
        return []
    keys = (oy[selected] // 2).astype(np.int64) * 100_000 + (ox[selected] // 2).astype(np.int64)
    values, counts = np.unique(keys, return_counts=True)
    order = np.argsort(counts)[::-1][:most]
    found = []
    for key, count in zip(values[order], counts[order], strict=True):
        if count < min_count:
            break
        dy, dx = int(np.floor(key / 100_000 + 0.5)), int(key - np.floor(key / 100_000 + 0.5) * 100_000)
        found += [(2 * dy, 2 * dx), (-2 * dy, -2 * dx)]
    return found


# The strongest keypoints kept. A 768 px print has about 18,000 at this contrast threshold, and a small stamp on a
# plain background can keep too few of its own among 8,000 (1 to 3 pairs agreeing with its map where 5 are
# needed). Measured with 20,000: 4 fewer misses among 48 development stamps rescaled 0.6 to 1.7 (8 -> 4), but
# clone took twice as long (5.4 -> 10 to 11.5 s; matching grows with the square of the count) and the flag's
# stars of a 1 MP scan of grace_hopper were then reported as a copy; so 8,000 stay.
MAX_KEYPOINTS = 8_000


def _sift(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """SIFT keypoint positions (x, y) and descriptors of the contrast-equalised 8-bit image."""
    eight = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(
        np.round(np.clip(cv2.GaussianBlur(gray, (0, 0), 0.8), 0, 1) * 255).astype(np.uint8))
    sift = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS, contrastThreshold=0.01)
    keypoints, descriptors = sift.detectAndCompute(eight, None)
    if descriptors is None or len(keypoints) < 10:
        return np.zeros((0, 2), np.float32), None
    return np.float32([k.pt for k in keypoints]), descriptors


# Lowe's ratio test for the SIFT pairs whose maps seed the dense field (the looser ``loose_ratio`` pairs only
# reach the pixel check)
SEED_RATIO = 0.6


def _same_map(a: np.ndarray, b: np.ndarray, shape: tuple[int, int], tolerance: float = 6.0) -> bool:
    """Whether two 2x3 maps move the image's corners and centre to within ``tolerance`` px of each other (the
    same copy found twice; its second pixel check would only repeat the first)."""
    height, width = shape
    points = np.float64([[0, 0], [width, 0], [0, height], [width, height], [width / 2, height / 2]])
    return bool(np.abs(points @ (a[:, :2] - b[:, :2]).T + (a[:, 2] - b[:, 2])).max() <= tolerance)


def _group_maps(sources: np.ndarray, targets: np.ndarray, twin: np.ndarray, *, min_offset: int, max_maps: int,
                min_inliers: int, threshold: float, scale_range: tuple[float, float],
                reflect: bool) -> list[np.ndarray]:
    """Sequential RANSAC of similarity maps source -> target (see ``keypoint_proposals``). With ``reflect`` the
    targets are mirrored (x -> -x) before the fit and the map composed with the mirror again, so it flips."""
    flip = np.float32([-1, 1]) if reflect else np.float32([1, 1])
    alive = np.ones(len(sources), bool)
    maps: list[np.ndarray] = []
    for _ in range(3 * max_maps):  # a rejected fit removes its pairs too; the cap bounds time on look-alikes
        if len(maps) >= 2 * max_maps or alive.sum() < 2 * min_inliers:
            break
        live = np.flatnonzero(alive)
        affine, inliers = cv2.estimateAffinePartial2D(sources[live], targets[live] * flip, method=cv2.RANSAC,
                                                      ransacReprojThreshold=threshold, maxIters=4000,
                                                      confidence=0.999, refineIters=10)
        if affine is None or inliers is None or inliers.sum() < min_inliers:
            break
        affine = affine * flip[:, None]  # the mirror applied to the fitted map's output again
        members = live[inliers.ravel().astype(bool)]
        alive[members] = False
        alive[twin[members]] = False  # the same pairs read backwards follow the inverse map
        zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
        # measured on the larger side: RANSAC fits either orientation of a rescaled copy's pairs, and the smaller
        # side's spread (an x1.7 stamp's source keypoints: 23 px) alone would make the test depend on which
        spread = max(np.ptp(sources[members], axis=0).max(), np.ptp(targets[members], axis=0).max())
        if not scale_range[0] <= zoom <= scale_range[1] or spread < min_offset:
            continue
        maps.append(affine)
        maps.append(cv2.invertAffineTransform(affine))
    return maps


def keypoint_proposals(gray: np.ndarray, min_offset: int, *, max_maps: int = 8, min_inliers: int = 5,
                       threshold: float = 3.0, scale_range: tuple[float, float] = (0.4, 2.5),
                       mirrored: bool = False, ratio: float = SEED_RATIO,
                       own: tuple[np.ndarray, np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Similarity maps between repeated parts of one image, from SIFT self-matches (Amerini et al. 2011, g2NN):
    each keypoint's nearest other keypoint, when far away and closer than ``ratio`` times the next one, makes a
    pair.

    Pairs are grouped by the map they follow, not by their displacement: a copy turned or rescaled relative to
    its source has a displacement that changes across it (a half turn spreads it over twice the copy's size), so
    no displacement bin holds enough of its pairs. Sequential RANSAC of a similarity (rotation by any angle,
    scale, shift) takes the largest consensus set, removes it and repeats. A map is kept when at least
    ``min_inliers`` pairs agree within ``threshold`` px, its scale lies in ``scale_range``, its pairs are at least
    ``min_offset`` apart and spread over more than one spot (a few keypoints on one blob can agree on anything).
    Each map is returned with its inverse (either side may be the copy).

    ``mirrored``: maps that also flip (determinant < 0) instead. SIFT descriptors are not mirror-invariant, so
    the image's descriptors are matched against those of its left-right flipped self, whose keypoints are mapped
    back; a keypoint's match with its own mirror image (a locally symmetric blob) is skipped.

    ``own``: the image's SIFT keypoints and descriptors (``_sift(gray)``) when already computed.
    """
    return keypoint_maps(gray, min_offset, ratios=(ratio,), max_maps=max_maps, min_inliers=min_inliers,
                         threshold=threshold, scale_range=scale_range, mirrored=mirrored, own=own)[0]


def keypoint_maps(gray: np.ndarray, min_offset: int, *, ratios: tuple[float, ...], max_maps: int = 8,
                  min_inliers: int = 5, threshold: float = 3.0, scale_range: tuple[float, float] = (0.4, 2.5),
                  mirrored: bool = False,
                  own: tuple[np.ndarray, np.ndarray | None] | None = None) -> list[list[np.ndarray]]:
    """``keypoint_proposals`` for several ratio-test thresholds at once (one list of maps per entry of
    ``ratios``): the descriptors are matched once, and only the pairs' grouping is repeated."""
    points, descriptors = own if own is not None else _sift(gray)
    if descriptors is None:
        return [[] for _ in ratios]
    if mirrored:
        flipped_points, others_descriptors = _sift(np.ascontiguousarray(gray[:, ::-1]))
        if others_descriptors is None:
            return [[] for _ in ratios]
        other_points = flipped_points.copy()
        other_points[:, 0] = gray.shape[1] - 1 - flipped_points[:, 0]
    else:
        other_points, others_descriptors = points, descriptors
    # each pair with the smallest ratio (nearest / next distance) at which it was found, from either end
    pairs: dict[tuple, float] = {}
    loosest = max(ratios)
    # a keypoint's own twin (itself, or its mirror image at the same place) is no evidence of copying
    if mirrored:
        # the few keypoint pairs within 2 px, found once with a k-d tree: testing every pair, chunk by chunk,
        # cost 0.3 s of a 0.5-megapixel image's 2 s
        near = cKDTree(points).sparse_distance_matrix(cKDTree(other_points), 2.0, output_type="ndarray")
        query_of, other_of = near["i"], near["j"]
        dx = other_points[other_of, 0] - points[query_of, 0]
        dy = other_points[other_of, 1] - points[query_of, 1]
        twins = dx * dx + dy * dy < 4.0  # the dense test's own float32 arithmetic, so the same pairs are excluded
        query_of, other_of = query_of[twins], other_of[twins]
        order = np.argsort(query_of, kind="stable")
        query_of, other_of = query_of[order], other_of[order]

        def excluded(rows: slice) -> tuple[np.ndarray, np.ndarray]:
            first, last = np.searchsorted(query_of, [rows.start, rows.stop])
            return query_of[first:last] - rows.start, other_of[first:last]
    else:
        def excluded(rows: slice) -> tuple[np.ndarray, np.ndarray]:
            return np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)
    nearest, distance = nearest_neighbours(descriptors, others_descriptors, 2, excluded=excluded)
    first, second = distance.astype(np.float64).T
    usable = np.isfinite(second)
    # two equally near candidates at distance 0 (exact duplicates) are as ambiguous as any tie
    closeness = np.divide(first, second, out=np.full(first.shape, np.inf), where=usable & (second > 0))
    match = nearest[:, 0]
    apart = np.hypot(*(other_points[match] - points).T) >= min_offset
    for query in np.flatnonzero(usable & (closeness < loosest) & apart):
        a, b = points[query], other_points[match[query]]
        # one orientation per pair of keypoints: a match found from both ends counts once (mirrored, the two ends
        # are keypoints of different images, so the pair is known by its two places)
        ends = (tuple(np.round(a, 1)), tuple(np.round(b, 1))) if mirrored else (int(query), int(match[query]))
        key = (min(ends), max(ends))
        pairs[key] = min(float(closeness[query]), pairs.get(key, np.inf))
    found = []
    for ratio in ratios:
        chosen = sorted(key for key, closeness in pairs.items() if closeness < ratio)
        if len(chosen) < min_inliers:
            found.append([])
            continue
        if mirrored:
            ends = np.float32(chosen)  # (pairs, 2 ends, xy)
        else:
            index = np.array(chosen, np.int64)
            ends = np.stack([points[index[:, 0]], points[index[:, 1]]], axis=1)
        # both orientations: a pair whose ends are listed in the other order than the copy's still fits the map
        sources = np.concatenate([ends[:, 0], ends[:, 1]])
        targets = np.concatenate([ends[:, 1], ends[:, 0]])
        twin = np.concatenate([np.arange(len(ends)) + len(ends), np.arange(len(ends))])
        found.append(_group_maps(sources, targets, twin, min_offset=min_offset, max_maps=max_maps,
                                 min_inliers=min_inliers, threshold=threshold, scale_range=scale_range,
                                 reflect=mirrored))
    return found


@register("clone", title="Clone stamp (copy-move)",
          description="Areas copied from elsewhere in the same picture (also rotated), paired with their source.")
def copy_move(
    image: np.ndarray,
    *,
    analysis_pixels: int = 700_000,
    radius: int = 6,
    min_offset_fraction: float = 0.04,
    max_affine_residual: float = 1.0,
    match_ratio: float = 0.3,
    min_area_fraction: float = 0.002,
    iterations: int = 2,
    interpolation_margin: float = 0.1,
    seam_margin: float = 0.15,
    min_grain: float = 0.5 / 255,
    min_log_scale: float = 0.18,
    min_angle: float = 30.0,
    min_mirror_correlation: float = 0.6,
    max_mirror_difference: float = 0.8,
    rescale_margin: float = 0.2,
    loose_ratio: float = 0.8,
    max_grain_difference: float = 1.0,
) -> AnalysisResult:
    """Dense copy-move detection.

    Parameters
    ----------
    image : ndarray
        uint8/uint16 gray or RGB image.
    analysis_pixels : int
        Analysis runs on a copy with at most this many pixels.
    radius : int
        Radius in analysis pixels of the disc described by the Zernike features.
    min_offset_fraction : float
        Shortest copy displacement considered, as a fraction of the analysed image's longer side.
    max_affine_residual : float
        Largest mean squared residual (pixels^2) of the local affine fit of the offset field inside a copy.
    match_ratio : float
        A copied pixel's feature distance must be below this fraction of the image's median match distance.
    min_area_fraction : float
        Smallest reported copy, as a fraction of the image.
    iterations : int
        PatchMatch iterations.
    interpolation_margin : float
        Smallest |log ratio| of fine-detail energy between the two sides for the resampling call.
    seam_margin : float
        Smallest |log ratio| of seam strength between the two sides for the seam call.
    min_grain : float
        Smallest median RMS of the grain (image minus its 3x3 median, in [0, 1] units) inside a detection: flatter
        areas (clipped margins, flat digital fills, clean straight edges) carry nothing that could prove a copy.
    rescale_margin : float
        Between two sides of clearly different size, the larger one is called the copy (enlarged, so upsampled)
        when its log ratio of fine-detail energy to that of its own surroundings is below -``rescale_margin``
        and below the smaller side's by as much.
    min_log_scale : float
        Keypoint-proposed maps that rescale by more than ``exp(min_log_scale)`` are checked at the pixels too
        (rescaled copies defeat the disc features).
    min_angle : float
        Keypoint-proposed maps that turn by more than this many degrees are checked at the pixels too (copies
        turned on the print before scanning are often too far from their source in feature distance).
    min_mirror_correlation : float
        A mirrored copy (found from SIFT matches with the flipped image, checked at the pixels) is kept only when
        the finest detail of its two sides correlates at least this much: a copy shares its grain, the two halves
        of a symmetric subject do not.
    max_mirror_difference : float
        ... and only when the RMS difference of that detail between the two sides is at most this fraction of
        what two independent grain fields of this image would give (a copy differs by scan noise and JPEG only).
        Both bounds are also the test for the least structured half of a pair that exceeds
        ``max_grain_difference`` as a whole.
    loose_ratio : float
        SIFT self-matches are also paired at this looser ratio test (nearest over next descriptor distance; the
        maps that seed the dense field use 0.6), and the rescaled or turned maps those pairs follow are checked at
        the pixels only. An enlarged stamp's keypoints match their source's with ratios of 0.6 to 0.8 more often
        than below 0.6 (the four generated x1.7 stamps missed with 0.6 alone: 1 to 4 agreeing pairs at 0.6, 3 to
        8 at 0.8, where five are needed); the extra chance pairs this admits are left to the pixel test.
    max_grain_difference : float
        Every pair is kept only when the finest detail of its two sides differs by at most this fraction of what
        two independent grain fields of this image would give (1: no more alike than any two areas; see
        ``_shared_grain``). Repeated objects (a flag's stars, a lattice tower) agree in shape and pass the
        feature and pixel tests; a stamped copy also carries its source's grain. A pair over the bound is still
        kept when its least structured half shares its grain (``min_mirror_correlation``,
        ``max_mirror_difference``): resampling a copy changes its edges more than its flat parts.
    """
    gray = to_gray_float(image)
    shape = gray.shape
    small, scale = bounded(gray, analysis_pixels)
    features = zernike_features(cv2.GaussianBlur(small, (0, 0), 0.7), radius)
    min_offset = max(2 * radius + 1, int(min_offset_fraction * max(small.shape)))
    own_keypoints = _sift(small)  # shared by the plain and the mirrored matching
    # the loose ratio test's maps go to the pixel check only (see ``loose_ratio``), never to the dense field
    proposals, loose_maps = keypoint_maps(small, min_offset, ratios=(SEED_RATIO, loose_ratio), own=own_keypoints)
    loose_maps = [a for a in loose_maps if not any(_same_map(a, b, small.shape) for b in proposals)]
    # mirrored maps are checked at the pixels only: the dense field is not seeded with them
    mirror_maps = keypoint_proposals(small, min_offset, mirrored=True, own=own_keypoints)
    features = reduce_features(features, 8)
    energy = np.einsum("ijk,ijk->ij", features, features)
    oy, ox, distance = patchmatch(features, min_offset=min_offset, iterations=iterations, proposals=proposals)
    # second pass: displacements shared by many unusually close matches become proposals for every pixel, so a
    # copied area that random sampling hit in a few places is filled in everywhere
    closeness = _closeness(distance, energy, oy, ox)
    dominant = _dominant_offsets(oy, ox, closeness < match_ratio, min_count=max(30, small.size // 5000))
    if dominant:
        proposals = proposals + [np.float32([[1, 0, dx], [0, 1, dy]]) for dy, dx in dominant]
        oy, ox, distance = patchmatch(features, min_offset=min_offset, iterations=1, proposals=proposals,
                                      initial=(oy, ox, distance), seed=1)
    oy_f = cv2.medianBlur(oy.astype(np.float32), 5)
    ox_f = cv2.medianBlur(ox.astype(np.float32), 5)
    residual = local_affine_residual(oy_f, ox_f, window=2 * radius + 1)
    closeness = _closeness(distance, energy, oy, ox)
    strong = (residual < max_affine_residual) & (closeness < match_ratio)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    strong = cv2.morphologyEx(strong.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    # hysteresis: a copy's outer pixels (whose feature discs straddle the seam) match less well; they join a
    # detection when their offsets still fit it and their matches are still close
    weak = (residual < 3 * max_affine_residual) & (closeness < 1.6 * match_ratio)
    weak = cv2.morphologyEx(weak.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    count_w, labels_w = cv2.connectedComponents(weak, connectivity=8)
    grown = np.zeros(count_w, bool)
    grown[np.unique(labels_w[strong])] = True
    grown[0] = False
    candidate = cv2.morphologyEx((grown[labels_w] | strong).astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    min_area = max(20, int(min_area_fraction * small.size))
    # features describe a disc of ``radius``: exact matches stop that far inside a copy's edge, so detections
    # are grown back by that much
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius - 1, 2 * radius - 1))
    candidate = cv2.dilate(candidate.astype(np.uint8), disc).astype(bool)
    checked = _rescaled_copies(small, proposals + loose_maps + mirror_maps, min_offset=min_offset,
                               min_area=min_area, min_log_scale=min_log_scale, min_angle=min_angle,
                               min_mirror_correlation=min_mirror_correlation,
                               max_mirror_difference=max_mirror_difference)
    for same, twin_y, twin_x in checked:
        oy_f[same], ox_f[same] = twin_y[same], twin_x[same]
        candidate |= same
    count, labels, stats = _components(candidate, min_area)
    labels = _drop_grainless(small, labels, radius=radius, min_grain=min_grain)
    height, width = small.shape
    ys, xs = np.nonzero(labels)
    partner_labels = np.zeros(count, np.int64)
    mean_offsets = {}
    for label in np.unique(labels[labels > 0]):
        member = labels == label
        dy, dx = float(np.median(oy_f[member])), float(np.median(ox_f[member]))
        mean_offsets[int(label)] = (dy, dx)
        py = np.clip(np.nonzero(member)[0] + np.round(oy_f[member]).astype(int), 0, height - 1)
        px = np.clip(np.nonzero(member)[1] + np.round(ox_f[member]).astype(int), 0, width - 1)
        landed = labels[py, px]
        landed = landed[landed > 0]
        partner_labels[label] = int(np.bincount(landed).argmax()) if landed.size else 0
    target_small = np.zeros(small.shape, bool)
    source_small = np.zeros(small.shape, bool)
    pairs = []
    undecided_small = np.zeros(small.shape, bool)
    look_alike_small = np.zeros(small.shape, bool)  # pairs alike in shape whose grain differs
    seen = set()
    for label, (dy, dx) in mean_offsets.items():
        if label in seen:
            continue
        member = labels == label
        partner = int(partner_labels[label])
        if partner and partner != label and partner in mean_offsets:
            other = labels == partner
            seen.update({label, partner})
        else:  # the source side did not pass on its own: mirror the detection through its offsets
            my, mx = np.nonzero(member)
            other = np.zeros(small.shape, bool)
            other[np.clip(my + np.round(oy_f[member]).astype(int), 0, height - 1),
                  np.clip(mx + np.round(ox_f[member]).astype(int), 0, width - 1)] = True
            other = cv2.morphologyEx(other.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
            seen.add(label)
        affine = _pair_map(member, oy_f, ox_f)
        interpolation = 0.0
        if affine is not None:
            zone = cv2.dilate(member.astype(np.uint8), disc).astype(bool)
            refined = _copy_extent(small, affine, zone, member)
            if refined.sum() >= min_area:
                member = refined
                other = cv2.warpAffine(member.astype(np.uint8), affine.astype(np.float32), (width, height),
                                       flags=cv2.INTER_NEAREST).astype(bool)
            # look-alikes agree in shape; only a copy shares its source's grain (measured values in the
            # module docstring)
            if not _shares_grain(small, affine, member, max_difference=max_grain_difference,
                                 min_flat_correlation=min_mirror_correlation,
                                 max_flat_difference=max_mirror_difference, min_log_scale=min_log_scale):
                look_alike_small |= cv2.dilate((zone | member | other).astype(np.uint8), disc).astype(bool)
                continue
            fine_a, fine_b = _fine_energy(small, member), _fine_energy(small, other)
            # between two sides of different size the direct comparison is mute: an enlarged copy is smoother than
            # its source, a shrunk one rougher, and either way the smaller side is the rougher one
            zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))  # > 1: ``other`` is the larger side
            rescaled = abs(np.log(zoom)) >= min_log_scale
            if np.isfinite(fine_a) and np.isfinite(fine_b) and fine_a > 0 and fine_b > 0 and not rescaled:
                interpolation = float(np.log(fine_b / fine_a))  # > 0: ``member`` is the low-passed side
            elif rescaled:
                # ... but each side against its own surroundings is not: an enlarged copy was upsampled, so its
                # grain is weaker and coarser than the native grain around it (negative log ratio), while its
                # source matches its surroundings. Only that direction is called: a shrunk copy can come out
                # smoother (x0.75) or rougher (x0.6, aliased grain) than its surroundings, so with the smaller side
                # the copy the seam decides. Generated prints: larger side -0.45 to -1.44 when it is the copy at
                # x1.33 and x1.7, its source -0.1 to +0.27; both within about 0.1 of 0 at x0.6
                larger, smaller = (other, member) if zoom > 1 else (member, other)
                rel_large, rel_small = _relative_fine_energy(small, larger), _relative_fine_energy(small, smaller)
                enlarged = min(-rel_large, rel_small - rel_large)  # > 0: the larger side is an upsampled copy
                if np.isfinite(enlarged) and enlarged >= rescale_margin:
                    interpolation = enlarged if zoom < 1 else -enlarged  # > 0: ``member`` is the copy
        cut_a, cut_b = _seam_evidence(small, member), _seam_evidence(small, other)
        seam = float(np.log((cut_a + 1e-6) / (cut_b + 1e-6)))  # > 0: ``member`` has the stronger seam
        if abs(interpolation) >= interpolation_margin:  # rescaled pairs reach here only past ``rescale_margin``
            # a rotated (or sub-pixel shifted) stamp was resampled: its grain is low-passed, its source's not
            member_is_target, cue, margin = interpolation > 0, "interpolation", abs(interpolation)
        elif abs(seam) >= seam_margin:
            member_is_target, cue, margin = seam > 0, "seam", abs(seam)
        else:
            member_is_target, cue, margin = seam >= 0, "undecided", abs(seam)
        target, source = (member, other) if member_is_target else (other, member)
        if cue == "undecided":  # no reliable call: both sides go into the decision
            undecided_small |= target | source
        target_small |= target
        source_small |= source & ~target
        pairs.append((target, source, (dy, dx) if member_is_target else (-dy, -dx), margin, cue))
    heat_small = np.clip(1.0 - residual / (2.0 * max_affine_residual), 0, 1) * np.clip(1.0 - closeness, 0, 1)
    heat_small = cv2.GaussianBlur(heat_small.astype(np.float32), (0, 0), 1.5)
    # look-alikes matched as well as copies do but failed the grain test: at half strength they stay visible
    # below the sources of called pairs, instead of at the level of a decided copy
    heat_small[look_alike_small] *= 0.5
    # the map ranks what the decision marks (copies, and both sides of undecided pairs) above the sources of
    # confidently called pairs, which stay visible but below them
    heat_small = np.maximum(heat_small, source_small.astype(np.float32) * 0.6)
    heat_small = np.maximum(heat_small, (target_small | undecided_small).astype(np.float32) * 0.9)
    heatmap = upscale_to(heat_small, shape)
    target_full = upscale_to(target_small, shape)
    source_full = upscale_to(source_small, shape)
    undecided_full = upscale_to(undecided_small, shape)
    regions: list[Region] = []
    for pair_id, (target, source, (dy, dx), margin, cue) in enumerate(pairs, start=1):
        boxes = []
        for side in (target, source):
            x, y, w, h = cv2.boundingRect(side.astype(np.uint8))
            boxes.append([int(x / scale), int(y / scale), max(1, int(round(w / scale))), max(1, int(round(h / scale)))])
        score = float(heat_small[target].mean()) if target.any() else 0.0
        common = {"pair_id": pair_id, "offset_px": [round(dx / scale, 1), round(dy / scale, 1)],
                  "target_call": cue, "target_call_margin": round(margin, 3)}
        target_area = int(round(target.sum() / scale**2))
        source_area = int(round(source.sum() / scale**2))
        if target_area > 0:
            regions.append(Region(bbox=tuple(boxes[0]), area=target_area, score=score, kind="clone-target",
                                  evidence={**common, "source_bbox": boxes[1]}))
        if source_area > 0:
            regions.append(Region(bbox=tuple(boxes[1]), area=source_area, score=score, kind="clone-source",
                                  evidence={**common, "target_bbox": boxes[0]}))
    copied = float(target_small.mean())
    if pairs:
        score = float(np.clip(0.5 + 0.5 * np.tanh(copied / 0.01), 0, 1))
        summary = (f"{len(pairs)} copied area(s) found, covering {100 * copied:.2f} % of the image, each paired "
                   "with the place it was copied from.")
    else:
        strongest = float(np.percentile(heat_small, 99.9))
        score = float(np.clip(0.45 * strongest, 0, 0.45))
        summary = "No area copied from elsewhere in the picture was found."
    # The decision marks the copy of every pair whose target call was confident and both sides of the others
    # (copy and original are the same pixels; without a clear trace either may have been stamped over the other).
    return AnalysisResult(
        method="clone", heatmap=heatmap, mask=target_full | undecided_full, regions=regions, score=score,
        params={"analysis_pixels": analysis_pixels, "analysis_scale": round(scale, 6), "radius": radius,
                "min_offset_px": min_offset, "max_affine_residual": max_affine_residual,
                "match_ratio": match_ratio, "min_area_fraction": min_area_fraction, "iterations": iterations,
                "interpolation_margin": interpolation_margin, "seam_margin": seam_margin,
                "min_grain": min_grain, "min_log_scale": min_log_scale,
                "min_angle": min_angle, "min_mirror_correlation": min_mirror_correlation,
                "max_mirror_difference": max_mirror_difference, "rescale_margin": rescale_margin,
                "loose_ratio": loose_ratio, "max_grain_difference": max_grain_difference},
        summary=summary, explanation=EXPLANATION,
        details={"pairs": len(pairs), "keypoint_proposals": len(proposals) // 2, "copied_fraction": round(copied, 6),
                 "source_fraction": round(float(source_full.mean()), 6)},
    )
