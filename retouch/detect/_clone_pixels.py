"""Pixel-level work on copy-move pairs: the map a pair follows, its exact extent, and which side is the copy.

The extent is drawn from the pixel difference between the image and its warped self (a copy differs from its
source by noise, requantisation and resampling only); the target call reads two physical traces, the
low-passed grain of a resampled copy and the seam around a stamped one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from retouch.detect._clone_significance import fine_detail


def pixels_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero(mask)`` of a 2-D mask, listed from its bounding box: the same coordinates in the same order,
    without visiting every pixel of the image for an area that covers a small part of it."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.nonzero(mask)
    columns = np.flatnonzero(mask.any(axis=0))
    top, left = int(rows[0]), int(columns[0])
    ys, xs = np.nonzero(mask[top: int(rows[-1]) + 1, left: int(columns[-1]) + 1])
    return ys + top, xs + left


def pair_map(member: np.ndarray, oy: np.ndarray, ox: np.ndarray) -> np.ndarray | None:
    """The affine map (2x3, pixel -> its twin) that the offset field follows over ``member`` (RANSAC fit)."""
    ys, xs = pixels_of(member)
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


def refine_map(gray: np.ndarray, affine: np.ndarray, region: np.ndarray, *, max_pixels: int = 160_000,
                max_shift: float = 3.0) -> np.ndarray | None:
    """``affine`` (pixel -> its twin) fitted to the pixels of ``region`` and its twin by ECC (enhanced correlation
    coefficient, Evangelidis & Psarakis 2008; a full affine), or None when the fit fails or would move the
    region's box corners by more than ``max_shift`` px (the keypoint maps' RANSAC tolerance: farther, it found
    something else than the map it started from).

    Keypoint maps are fitted to a few keypoint positions, each known to a fraction of a pixel, and are good to
    a pixel or two across the area (a mirrored x0.75 stamp: 2.4 px off at its far edge); the area's own pixels
    pin the map down to a small fraction of one. The fit runs on crops around the two sides, at most
    ``max_pixels`` of the region's box (a large area pins the map down long before), so it costs milliseconds."""
    ys, xs = pixels_of(region)
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


def copy_extent(gray: np.ndarray, affine: np.ndarray, zone: np.ndarray, seed: np.ndarray,
                ratio: float = 0.35, *, textured_zone: np.ndarray | None = None, min_detail: float = 0.0,
                max_unshared: float = 0.5) -> np.ndarray:
    """Pixels of ``zone`` whose neighbourhood equals, down to the grain, its image under ``affine``.

    Feature discs blur a copy's outline by their radius; the pixel difference between the image and its warped
    self does not, so it draws the copied area to within the scan's blur (a stamped copy and its source differ
    by scan noise only, look-alikes by their whole grain). Kept: connected parts touching ``seed``.

    ``textured_zone``: pixels that may join too where the finest detail (image minus its 1-px blur, the image
    resampled first) carries the copy as well: its RMS over both neighbourhoods at least ``min_detail`` and their
    difference at most ``max_unshared`` of their energy. A smooth gradient or a stripe equals itself moved along
    its length, and a flat or clipped area any other; none of them carries grain to tell a copy by.
    """
    height, width = gray.shape
    warped = cv2.warpAffine(gray, affine.astype(np.float32), (width, height),
                            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    size = (7, 7)
    error = cv2.boxFilter((gray - warped) ** 2, -1, size)
    contrast = (cv2.boxFilter(gray * gray, -1, size) - cv2.boxFilter(gray, -1, size) ** 2
                + cv2.boxFilter(warped * warped, -1, size) - cv2.boxFilter(warped, -1, size) ** 2)
    allowed = zone
    if textured_zone is not None:
        detail, warped_detail = fine_detail(gray), fine_detail(warped)
        energy = cv2.boxFilter(detail * detail, -1, size) + cv2.boxFilter(warped_detail * warped_detail, -1, size)
        unshared = cv2.boxFilter((detail - warped_detail) ** 2, -1, size)
        allowed = zone | (textured_zone & (energy >= 2.0 * min_detail**2) & (unshared <= max_unshared * energy))
    same = (error < ratio * np.maximum(contrast, 1e-6)) & allowed
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    same = cv2.morphologyEx(same.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    same = cv2.morphologyEx(same, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    count, labels = cv2.connectedComponents(same, connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[seed & (labels > 0)])] = True
    keep[0] = False
    return keep[labels]


def fine_energy(gray: np.ndarray, region: np.ndarray) -> float:
    """Mean energy of the finest detail (image minus its 1-px blur) inside ``region``, edges excluded."""
    inner = cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if inner.sum() < 20:
        return float("nan")
    detail = gray - cv2.GaussianBlur(gray, (0, 0), 1.0)
    return float(np.mean(detail[inner] ** 2))


def relative_fine_energy(gray: np.ndarray, region: np.ndarray, *, ring: int = 12) -> float:
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


def seam_evidence(gray: np.ndarray, region: np.ndarray) -> float:
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


@dataclass(frozen=True)
class TargetCall:
    """Which side of a pair is the copy: ``member_is_target`` for the side the pair was found from, the cue that
    decided (``interpolation``, ``seam`` or ``undecided``) and its margin (an absolute log ratio)."""

    member_is_target: bool
    cue: str
    margin: float


def call_target(gray: np.ndarray, member: np.ndarray, other: np.ndarray, affine: np.ndarray, *,
                min_log_scale: float, interpolation_margin: float, seam_margin: float,
                rescale_margin: float) -> TargetCall:
    """Which side is the copy, from two physical traces, in this order.

    Interpolation: a stamp that was rotated or moved by a fraction of a pixel was resampled, and resampling
    low-passes the grain, so the copy has less of the finest detail than its source (log ratio of the energy of
    image minus its 1-px blur inside both sides, used beyond ``interpolation_margin``). Between sides of clearly
    different size (scale beyond ``exp(min_log_scale)``) that comparison is mute, so each side is compared with
    its own surroundings: an enlarged copy was upsampled, its grain weaker than the native grain around it (used
    when the larger side is smoother than its surroundings, and than the smaller side is relative to its own, by
    ``rescale_margin``; a shrunk copy is left to the seam). Seam: a copy's content does not continue into the
    surroundings it was stamped on, its source's does (used beyond ``seam_margin``). Otherwise undecided.
    ``affine`` maps ``member`` onto ``other``.
    """
    interpolation = 0.0
    energy_member, energy_other = fine_energy(gray, member), fine_energy(gray, other)
    zoom = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))  # > 1: ``other`` is the larger side
    rescaled = abs(np.log(zoom)) >= min_log_scale
    if not rescaled and np.isfinite(energy_member) and np.isfinite(energy_other) and min(energy_member,
                                                                                          energy_other) > 0:
        interpolation = float(np.log(energy_other / energy_member))  # > 0: ``member`` is the low-passed side
    elif rescaled:
        larger, smaller = (other, member) if zoom > 1 else (member, other)
        relative_large = relative_fine_energy(gray, larger)
        relative_small = relative_fine_energy(gray, smaller)
        enlarged = min(-relative_large, relative_small - relative_large)  # > 0: the larger side was upsampled
        if np.isfinite(enlarged) and enlarged >= rescale_margin:
            interpolation = enlarged if zoom < 1 else -enlarged  # > 0: ``member`` is the copy
    seam_member, seam_other = seam_evidence(gray, member), seam_evidence(gray, other)
    seam = float(np.log((seam_member + 1e-6) / (seam_other + 1e-6)))  # > 0: ``member`` has the stronger seam
    if abs(interpolation) >= interpolation_margin:
        return TargetCall(interpolation > 0, "interpolation", abs(interpolation))
    if abs(seam) >= seam_margin:
        return TargetCall(seam > 0, "seam", abs(seam))
    return TargetCall(seam >= 0, "undecided", abs(seam))
