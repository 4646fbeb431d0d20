"""Forge archival prints the ways Soviet retouchers and today's forgers did, with exact ground truth.

Edits act on the print (before scanning), as airbrush, gouache and scissors did, or on a compressed scan
(``history="digital"``), as a modern forger would. Each edit returns the new print and the exact footprint of the
changed pixels. Removal methods: ``diffusion`` (smooth inpainting), ``exemplar`` (many small patches copied from
nearby), ``clone`` (one block of background stamped over, optionally rotated and rescaled, at random or at a given
``stamp`` geometry, which may also mirror the block), ``airbrush`` (soft-edged paint without grain); ``pasteup``
glues in a piece of another print. ``regrain=True`` re-adds matching grain over the fill, as a careful retoucher
would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from retouch.samples.archive import (
    PrintStyle,
    ScanStyle,
    add_grain,
    encode,
    make_print,
    scan,
)
from retouch.samples.sources import PHOTO_SOURCES, load_source

REMOVAL_METHODS = ("diffusion", "exemplar", "clone", "airbrush")
FORGERY_METHODS = (*REMOVAL_METHODS, "pasteup")


@dataclass
class ForgeryCase:
    """One scan: ``image`` as stored (decoded), ``mask`` True where pixels were manipulated."""

    image: np.ndarray
    mask: np.ndarray
    original: np.ndarray
    method: str
    file_bytes: bytes
    file_format: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class PairCase:
    """Two scans of one photograph: ``reference`` (untouched print) and ``questioned`` (doctored, re-photographed)."""

    reference: np.ndarray
    questioned: np.ndarray
    mask_reference: np.ndarray
    mask_questioned: np.ndarray
    transform: np.ndarray
    reference_bytes: bytes
    questioned_bytes: bytes
    reference_format: str
    questioned_format: str
    info: dict[str, Any] = field(default_factory=dict)


def figure_mask(shape: tuple[int, int], rng: np.random.Generator, *, area_fraction: float,
                avoid: np.ndarray | None = None) -> np.ndarray:
    """A standing figure (body, shoulders, head) covering about ``area_fraction`` of the image."""
    height, width = shape
    area = area_fraction * height * width
    body_h = np.sqrt(area / 0.55)  # the silhouette fills ~55 % of a body_h x body_h/1.6 box... roughly
    body_w = body_h / 2.2
    for _ in range(50):
        cx = rng.uniform(body_w * 0.7, width - body_w * 0.7)
        top = rng.uniform(0.05 * height, max(0.06 * height, height - body_h * 1.02))
        mask = np.zeros(shape, np.uint8)
        head_r = int(body_w * 0.28)
        head_c = (int(cx), int(top + head_r))
        cv2.circle(mask, head_c, head_r, 1, -1)
        torso_top = top + 2 * head_r * 0.9
        torso = (int(cx), int(torso_top + (body_h - 2 * head_r) / 2))
        cv2.ellipse(mask, torso, (int(body_w / 2), int((body_h - 2 * head_r) / 2)), 0, 0, 360, 1, -1)
        # irregular outline, as a retoucher's brush follows a figure
        wobble = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), max(2.0, body_w / 10))
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(1.0, body_w / 16))
        mask = (soft + 0.6 * wobble / (np.abs(wobble).max() + 1e-6) * 0.3) > 0.5
        if avoid is not None and (mask & avoid).any():
            continue
        if 0.5 * area <= mask.sum() <= 1.8 * area:
            return mask
    return mask


def person_mask(shape: tuple[int, int], rng: np.random.Generator, *, area_fraction: float) -> np.ndarray:
    """A standing person seen from the front (head, neck, shoulders, coat, arms, legs), covering about
    ``area_fraction`` of the image, feet in the lower part of the frame as in a group photograph."""
    height, width = shape
    tall = float(np.clip(np.sqrt(area_fraction * height * width / 0.16), 0.2 * height, 0.95 * height))
    cx = float(rng.uniform(0.15 * width + 0.15 * tall, 0.85 * width - 0.15 * tall))
    feet = float(rng.uniform(min(height - 2.0, max(tall, 0.8 * height)), height - 2.0))
    top = feet - tall
    unit = tall / 8.0  # a head is an eighth of a figure
    mask = np.zeros(shape, np.uint8)

    def pt(dx: float, dy: float) -> tuple[int, int]:
        return (int(round(cx + dx * unit)), int(round(top + dy * unit)))

    cv2.ellipse(mask, pt(0, 0.55), (int(0.38 * unit), int(0.5 * unit)), 0, 0, 360, 1, -1)  # head
    cv2.fillConvexPoly(mask, np.array([pt(-0.18, 0.9), pt(0.18, 0.9), pt(0.2, 1.3), pt(-0.2, 1.3)]), 1)  # neck
    lean = float(rng.uniform(-0.08, 0.08))
    coat = np.array([pt(-0.95, 1.35), pt(0.95, 1.35), pt(0.8 + lean, 4.3), pt(0.85, 5.0), pt(-0.85, 5.0),
                     pt(-0.8 + lean, 4.3)])
    cv2.fillPoly(mask, [coat], 1)  # shoulders and coat
    for side in (-1, 1):  # arms hang beside the coat, slightly out from the body
        swing = float(rng.uniform(0.0, 0.25))
        cv2.fillConvexPoly(mask, np.array([pt(side * 0.75, 1.4), pt(side * 1.05, 1.5),
                                           pt(side * (1.15 + swing), 4.3), pt(side * (0.85 + swing), 4.4)]), 1)
        cv2.fillConvexPoly(mask, np.array([pt(side * 0.08, 4.8), pt(side * 0.62, 4.8), pt(side * 0.55, 7.8),
                                           pt(side * 0.15, 7.8)]), 1)  # a leg
        cv2.ellipse(mask, pt(side * 0.42, 7.85), (int(0.32 * unit), int(0.15 * unit)), 0, 0, 360, 1, -1)  # a shoe
    return mask.astype(bool)


def paint_person(print_image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *,
                 style: PrintStyle) -> np.ndarray:
    """The print with a person standing in ``mask``: a dark coat shaded from the light side, a lighter face, soft
    photographic edges and the print's own grain, so that the untouched print shows someone to vanish."""
    ys, xs = np.nonzero(mask)
    top, bottom = ys.min(), ys.max()
    span = max(bottom - top, 1)
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]].astype(np.float32)
    depth = float(style.white - style.black)
    coat = style.black + depth * float(rng.uniform(0.08, 0.22))
    light = np.clip((xx - xs.mean()) / max(xs.std(), 1.0), -2, 2) * float(rng.choice([-1, 1])) * 0.03 * depth
    tone = coat + light
    head = (yy - top) < 0.12 * span
    tone = np.where(head, style.black + depth * float(rng.uniform(0.55, 0.75)) + light, tone).astype(np.float32)
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8)
    figure = add_grain(np.clip(tone, 0, 1).astype(np.float32), rng, strength=style.grain,
                       correlation=style.grain_correlation)
    return (print_image * (1 - alpha) + figure * alpha).astype(np.float32)


def _with_person(clean_print: np.ndarray, rng: np.random.Generator, *, style: PrintStyle, area_fraction: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The print with a person painted in, and the area a retoucher removing them paints over: the figure and a
    margin of a few pixels, as a brush never follows an outline exactly."""
    figure = person_mask(clean_print.shape, rng, area_fraction=area_fraction)
    margin = max(3, round(max(clean_print.shape) / 250)) | 1
    target = cv2.dilate(figure.astype(np.uint8), np.ones((margin, margin), np.uint8)).astype(bool)
    return paint_person(clean_print, figure, rng, style=style), target


def _feather(mask: np.ndarray, radius: float) -> np.ndarray:
    if radius <= 0:
        return mask.astype(np.float32)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), radius)
    return np.maximum(soft, mask.astype(np.float32) * 0.0)


def diffusion_fill(image: np.ndarray, mask: np.ndarray, *, method: str = "telea") -> np.ndarray:
    """Fill ``mask`` by diffusion inpainting (Telea 2004 or Navier-Stokes, as OpenCV implements them)."""
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    radius = 5
    eight = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    filled = cv2.inpaint(eight, mask.astype(np.uint8), radius, flag).astype(np.float32) / 255.0
    # keep the untouched pixels bit-exact; only the fill comes from the 8-bit inpainting
    return np.where(mask, filled, image).astype(np.float32)


def exemplar_fill(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, patch: int = 9,
                  candidates: int = 400) -> np.ndarray:
    """Fill ``mask`` patch by patch with the best-matching patch from the known surroundings (Criminisi-like).

    Patches are filled from the outside in; each is chosen among random candidate positions outside the hole
    by the sum of squared differences on the already known pixels.
    """
    out = image.copy()
    known = ~mask.copy()
    height, width = image.shape
    half = patch // 2
    ys, xs = np.nonzero(mask)
    y0, y1 = max(0, ys.min() - 4 * patch), min(height, ys.max() + 4 * patch)
    x0, x1 = max(0, xs.min() - 4 * patch), min(width, xs.max() + 4 * patch)
    valid = ~cv2.dilate(mask.astype(np.uint8), np.ones((patch, patch), np.uint8)).astype(bool)
    valid[:half, :] = valid[-half - 1:, :] = False
    valid[:, :half] = valid[:, -half - 1:] = False
    window = np.zeros_like(valid)
    window[y0:y1, x0:x1] = True
    pool = np.argwhere(valid & window)
    if len(pool) < 10:
        pool = np.argwhere(valid)
    step = max(2, patch // 2)
    for _ in range(4 * (max(y1 - y0, x1 - x0) // step + 2)):
        remaining = mask & ~known
        if not remaining.any():
            break
        boundary = remaining & cv2.dilate(known.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        targets = np.argwhere(boundary)[:: max(1, step)]
        for ty, tx in targets:
            if known[ty, tx]:
                continue
            ty = int(np.clip(ty, half, height - half - 1))
            tx = int(np.clip(tx, half, width - half - 1))
            tgt = out[ty - half:ty + half + 1, tx - half:tx + half + 1]
            tknown = known[ty - half:ty + half + 1, tx - half:tx + half + 1]
            choice = pool[rng.integers(0, len(pool), size=min(candidates, len(pool)))]
            offs = np.arange(-half, half + 1)
            rows = choice[:, 0, None, None] + offs[None, :, None]
            cols = choice[:, 1, None, None] + offs[None, None, :]
            patches = image[rows, cols]
            cost = (((patches - tgt[None]) ** 2) * tknown[None]).sum(axis=(1, 2))
            best = patches[int(np.argmin(cost))]
            fill = ~tknown & mask[ty - half:ty + half + 1, tx - half:tx + half + 1]
            tgt[fill] = best[fill]
            known[ty - half:ty + half + 1, tx - half:tx + half + 1] |= fill
    leftover = mask & ~known
    if leftover.any():
        out = diffusion_fill(out, leftover)
    return out


def clone_fill(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, rotate: bool,
               stamp: tuple[float, float] | tuple[float, float, bool] | None = None
               ) -> tuple[np.ndarray, dict[str, Any]]:
    """Stamp a block of the picture from elsewhere over ``mask``, soft-edged by 1.5 px; with ``rotate`` the block
    is also turned (up to 25 degrees) and rescaled (0.9 to 1.12), as a retoucher fitting it to the perspective.

    ``stamp`` (angle in degrees, scale[, mirror]) sets the block's geometry instead: the random angle and scale
    are still drawn (and ignored), so the rest of the case is drawn as without it; the source is then chosen so
    that the turned and rescaled block lies inside the picture and clear of the target (``info["stamp_inside"]``
    says whether such a place was found). A true third element flips the block left to right about its centre
    before it is turned (``info["mirrored"]``). Without ``stamp`` the stamp is placed exactly as it always was.
    """
    height, width = image.shape
    ys, xs = np.nonzero(mask)
    box_h, box_w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    angle = float(rng.uniform(-25, 25)) if rotate else 0.0
    zoom = float(rng.uniform(0.9, 1.12)) if rotate else 1.0
    mirrored = False
    if stamp is not None:
        angle, zoom = float(stamp[0]), float(stamp[1])
        mirrored = bool(stamp[2]) if len(stamp) > 2 else False
        if not zoom > 0:
            raise ValueError(f"the stamp's scale must be positive, got {zoom}")
    flip = np.diag([-1.0, 1.0]) if mirrored else np.eye(2)
    # where the target's bounding box comes from in the picture, relative to the source centre
    corners = np.array([[xs.min(), ys.min()], [xs.max(), ys.min()], [xs.max(), ys.max()], [xs.min(), ys.max()]],
                       np.float64) - (xs.mean(), ys.mean())
    inverse = np.linalg.inv(cv2.getRotationMatrix2D((0.0, 0.0), angle, zoom)[:, :2] @ flip)  # target -> source
    reach = corners @ inverse.T
    found = False
    for _ in range(200):
        dx = int(rng.integers(-width, width))
        dy = int(rng.integers(-height // 3, height // 3 + 1))
        if stamp is None:
            if abs(dx) < box_w * 1.1 and abs(dy) < box_h * 1.1:
                continue
            if not (0 <= xs.min() + dx and xs.max() + dx < width
                    and 0 <= ys.min() + dy and ys.max() + dy < height):
                continue
        else:
            source = reach + (xs.mean() + dx, ys.mean() + dy)
            low, high = source.min(axis=0), source.max(axis=0)
            if not (low[0] >= 0 and high[0] < width - 1 and low[1] >= 0 and high[1] < height - 1):
                continue
            span_w, span_h = high - low + 1
            gap_x = abs((low[0] + high[0]) / 2 - (xs.min() + xs.max()) / 2)
            gap_y = abs((low[1] + high[1]) / 2 - (ys.min() + ys.max()) / 2)
            if gap_x < 0.55 * (box_w + span_w) and gap_y < 0.55 * (box_h + span_h):
                continue
        found = True
        break
    else:
        dx, dy = (width // 2 if xs.mean() < width / 2 else -width // 2), 0
    centre = (float(xs.mean() + dx), float(ys.mean() + dy))
    # the source patch, rotated and scaled about its own centre, moved onto the target
    rotation = cv2.getRotationMatrix2D(centre, angle, zoom)
    if mirrored:  # flipped left to right about the source centre first: x -> 2 cx - x
        rotation = rotation @ np.array([[-1.0, 0.0, 2 * centre[0]], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    rotation[:, 2] -= (dx, dy)
    moved = cv2.warpAffine(image, rotation, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    alpha = _feather(mask, 1.5)
    out = image * (1 - alpha) + moved * alpha
    info: dict[str, Any] = {"offset": [dx, dy], "angle_deg": round(angle, 2), "scale": round(zoom, 3)}
    if stamp is not None:
        info["stamp_inside"] = found
        info["mirrored"] = mirrored
    return out.astype(np.float32), info


def airbrush_fill(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Soft-edged paint: a heavily smoothed diffusion fill, sprayed with a feathered edge, no grain."""
    base = diffusion_fill(image, cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool))
    paint = cv2.GaussianBlur(base, (0, 0), max(3.0, np.sqrt(mask.sum()) / 12))
    alpha = np.clip(_feather(cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)), 4.0) * 1.3, 0, 1)
    alpha = np.where(mask, 1.0, alpha)
    tone = float(rng.uniform(-0.03, 0.03))  # gouache never matches the print's tone exactly
    return (image * (1 - alpha) + np.clip(paint + tone, 0, 1) * alpha).astype(np.float32)


def pasteup(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, *, size: int
            ) -> tuple[np.ndarray, dict[str, Any]]:
    """Glue in a piece of another print (another photograph, its own grain and tone) under ``mask``."""
    donor_name = str(rng.choice([*PHOTO_SOURCES, "rocket", "hubble"]))
    donor_style = PrintStyle.random(rng)
    donor_style = PrintStyle(donor_style.black, donor_style.white, donor_style.gamma,
                             grain=float(rng.uniform(0.06, 0.09)), grain_correlation=float(rng.uniform(1.3, 2.0)))
    donor = make_print(load_source(donor_name), rng, size=size, style=donor_style)
    donor = cv2.resize(donor, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    shift = (int(rng.integers(-image.shape[1] // 4, image.shape[1] // 4 + 1)), 0)
    donor = np.roll(donor, shift, axis=(1, 0))
    out = np.where(mask, donor, image)
    return out.astype(np.float32), {"donor": donor_name, "donor_grain": round(donor_style.grain, 4)}


def _footprint(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Pixels the edit changed by at least half a grey level."""
    return np.abs(after - before) >= (0.5 / 255.0)


def forge_print(print_image: np.ndarray, rng: np.random.Generator, *, method: str, area_fraction: float,
                regrain: bool, style: PrintStyle, size: int,
                stamp: tuple[float, float] | tuple[float, float, bool] | None = None,
                target: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Apply ``method`` to a print; returns (forged print, changed-pixel mask, description).

    ``target``: the area to remove (e.g. a person painted in by :func:`paint_person`); by default a figure-shaped
    area of ``area_fraction`` is drawn at random.

    ``stamp``: (angle in degrees, scale[, mirror]) of a clone stamp, instead of the random geometry (see
    ``clone_fill``);
    only for ``method="clone"``.
    """
    if stamp is not None and method != "clone":
        raise ValueError(f"a stamp geometry is only meaningful for method 'clone', not {method!r}")
    if target is None:
        target = figure_mask(print_image.shape, rng, area_fraction=area_fraction)
    info: dict[str, Any] = {"target_bbox": list(cv2.boundingRect(target.astype(np.uint8)))}
    if method == "diffusion":
        forged = diffusion_fill(print_image, target, method=str(rng.choice(["telea", "ns"])))
    elif method == "exemplar":
        forged = exemplar_fill(print_image, target, rng)
    elif method == "clone":
        forged, extra = clone_fill(print_image, target, rng, rotate=bool(rng.random() < 0.5), stamp=stamp)
        info.update(extra)
    elif method == "airbrush":
        forged = airbrush_fill(print_image, target, rng)
    elif method == "pasteup":
        forged, extra = pasteup(print_image, target, rng, size=size)
        info.update(extra)
    else:
        raise ValueError(f"unknown forgery method {method!r}; choose from {', '.join(FORGERY_METHODS)}")
    if regrain:
        weight = cv2.GaussianBlur(_footprint(print_image, forged).astype(np.float32), (0, 0), 1.0)
        forged = add_grain(forged, rng, strength=style.grain, correlation=style.grain_correlation, weight=weight)
    # The painted region is changed even where the fill happens to match a pixel's old value; feather tails
    # below half a grey level are dropped so that the mask is exactly where the print changed.
    mask = target | _footprint(print_image, forged)
    return np.where(mask, forged, print_image).astype(np.float32), mask, info


def make_forgery(seed: int, *, method: str, size: int = 512, source: str | None = None, regrain: bool = False,
                 history: str = "print", scan_style: ScanStyle | None = None, person: bool = False,
                 area_fraction: float | None = None,
                 stamp: tuple[float, float] | tuple[float, float, bool] | None = None) -> ForgeryCase:
    """An archive-style forged scan with its exact ground-truth mask.

    ``history="print"``: the print was retouched, then scanned once (the Soviet workflow).
    ``history="digital"``: a JPEG scan was edited and saved again (a modern fake; leaves JPEG traces).
    ``person=True``: a person is painted into the print first (the untouched scan shows them) and the forgery
    removes exactly that person.
    ``stamp``: (angle in degrees, scale) of a clone stamp, e.g. ``(45, 1.33)``, instead of the random geometry,
    or (angle, scale, mirror) with ``mirror=True`` for a block flipped left to right before it is turned; only
    for ``method="clone"`` (ValueError otherwise). Without it every case is generated exactly as before.
    """
    if stamp is not None and method != "clone":
        raise ValueError(f"a stamp geometry is only meaningful for method 'clone', not {method!r}")
    rng = np.random.default_rng(seed)
    source = source or str(rng.choice(PHOTO_SOURCES))
    style = PrintStyle.random(rng)
    clean_print = make_print(load_source(source), rng, size=size, style=style)
    fraction = area_fraction if area_fraction is not None else float(rng.uniform(0.015, 0.07))
    scan_style = scan_style or ScanStyle.random(rng)
    scan_seed = int(rng.integers(0, 2**31))
    clean_print, target = _with_person(clean_print, rng, style=style, area_fraction=fraction) if person else (
        clean_print, None)
    info: dict[str, Any] = {"seed": seed, "source": source, "method": method, "regrain": regrain,
                            "history": history, "print_style": style.to_dict(), "scan_style": scan_style.to_dict()}
    if history == "print":
        forged_print, mask, extra = forge_print(clean_print, rng, method=method, area_fraction=fraction,
                                                regrain=regrain, style=style, size=size, stamp=stamp, target=target)
        original, _, _ = scan(clean_print, np.random.default_rng(scan_seed), scan_style)
        image, data, fmt = scan(forged_print, np.random.default_rng(scan_seed), scan_style)
    elif history == "digital":
        first_quality = int(rng.integers(60, 86))
        first_style = ScanStyle(**{**scan_style.to_dict(), "jpeg_quality": first_quality})
        original, _, _ = scan(clean_print, np.random.default_rng(scan_seed), first_style)
        gray = original.astype(np.float32) / 255.0
        if gray.ndim == 3:
            gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
        forged_gray, mask, extra = forge_print(gray, rng, method=method, area_fraction=fraction,
                                               regrain=regrain, style=style, size=size, stamp=stamp, target=target)
        forged = original.astype(np.float32) / 255.0
        if forged.ndim == 3:  # apply the gray edit as a luminance change, keeping the sepia tint
            forged = np.clip(forged * (forged_gray / np.maximum(gray, 1e-3))[:, :, None], 0, 1)
        else:
            forged = forged_gray
        second_quality = int(np.clip(first_quality + rng.integers(8, 20), 0, 98))
        image, data, fmt = encode(np.round(forged * 255).astype(np.uint8), second_quality)
        info["jpeg_qualities"] = [first_quality, second_quality]
    else:
        raise ValueError(f"unknown history {history!r}; choose 'print' or 'digital'")
    info.update(extra)
    info["mask_fraction"] = round(float(mask.mean()), 5)
    return ForgeryCase(image=image, mask=mask, original=original, method=method, file_bytes=data,
                       file_format=fmt, info=info)


def stamp_source(case: ForgeryCase) -> np.ndarray:
    """Where a clone stamp's material came from: the stamped area mapped back through the stamp's own geometry
    (``info``: offset, angle, scale, mirrored), outside the stamped area itself; all False for other methods.
    Copy-move detectors rightly mark it: it is the other side of the copy, though its pixels were not changed."""
    if case.method != "clone" or "offset" not in case.info or not case.mask.any():
        return np.zeros(case.mask.shape, bool)
    ys, xs = np.nonzero(case.mask)
    dx, dy = case.info["offset"]
    centre = (float(xs.mean() + dx), float(ys.mean() + dy))
    forward = cv2.getRotationMatrix2D(centre, case.info["angle_deg"], case.info["scale"])
    if case.info.get("mirrored"):  # the block was flipped about the source centre before it was turned
        forward = forward @ np.array([[-1.0, 0.0, 2 * centre[0]], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    forward[:, 2] -= (dx, dy)
    height, width = case.mask.shape
    source = cv2.warpAffine(case.mask.astype(np.uint8), forward, (width, height),
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP).astype(bool)
    return source & ~case.mask


def make_authentic(seed: int, *, size: int = 512, source: str | None = None,
                   scan_style: ScanStyle | None = None) -> ForgeryCase:
    """An untouched archive-style scan (the negatives of every benchmark)."""
    rng = np.random.default_rng(seed)
    source = source or str(rng.choice(PHOTO_SOURCES))
    style = PrintStyle.random(rng)
    clean_print = make_print(load_source(source), rng, size=size, style=style)
    scan_style = scan_style or ScanStyle.random(rng)
    image, data, fmt = scan(clean_print, rng, scan_style)
    return ForgeryCase(image=image, mask=np.zeros(image.shape[:2], bool), original=image, method="none",
                       file_bytes=data, file_format=fmt,
                       info={"seed": seed, "source": source, "method": "none", "print_style": style.to_dict(),
                             "scan_style": scan_style.to_dict()})


def random_view(shape: tuple[int, int], rng: np.random.Generator, *, scale_range: tuple[float, float] = (0.5, 2.0),
                max_angle: float = 8.0, quarter_turns: bool = True, mirror_chance: float = 0.1,
                perspective: float = 0.03, max_crop: float = 0.3) -> tuple[np.ndarray, tuple[int, int], dict]:
    """A re-photographing geometry: 3x3 homography (print -> new frame) and the new frame's (height, width)."""
    height, width = shape
    scale = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    angle = float(rng.uniform(-max_angle, max_angle))
    turns = int(rng.integers(0, 4)) if quarter_turns and rng.random() < 0.3 else 0
    mirrored = bool(rng.random() < mirror_chance)
    centre = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]], float)
    flip = np.diag([-1.0, 1.0, 1.0]) if mirrored else np.eye(3)
    theta = np.deg2rad(angle + 90 * turns)
    rotate = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    zoom = np.diag([scale, scale, 1.0])
    keystone = np.eye(3)
    keystone[2, 0] = rng.uniform(-perspective, perspective) / max(width, height)
    keystone[2, 1] = rng.uniform(-perspective, perspective) / max(width, height)
    core = zoom @ rotate @ flip @ keystone @ centre
    corners = np.array([[0, 0, 1], [width, 0, 1], [width, height, 1], [0, height, 1]], float).T
    mapped = core @ corners
    mapped = mapped[:2] / mapped[2]
    lo, hi = mapped.min(axis=1), mapped.max(axis=1)
    # inscribed-ish frame: shrink the bounding box, then crop up to max_crop on each side
    span = hi - lo
    crops = rng.uniform(0.0, max_crop, size=4) * np.array([span[0], span[1], span[0], span[1]]) * 0.5
    inner = 0.12 * span if abs(angle) > 2 or turns % 2 else 0.04 * span
    x0, y0 = lo + inner + crops[:2]
    x1, y1 = hi - inner - crops[2:]
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]])
    transform = shift @ core
    out_shape = (max(16, int(round(y1 - y0))), max(16, int(round(x1 - x0))))
    return transform, out_shape, {"scale": round(scale, 4), "angle_deg": round(angle, 3), "quarter_turns": turns,
                                  "mirrored": mirrored, "crop_px": [round(float(c), 1) for c in crops]}


def make_pair(seed: int, *, size: int = 512, edit: str = "diffusion", source: str | None = None,
              geometry: dict[str, Any] | None = None, regrain: bool = False, person: bool = False) -> PairCase:
    """A reference scan of the untouched print and a re-photographed scan of the doctored print.

    ``edit`` is a removal method (``diffusion``, ``exemplar``, ``clone``, ``airbrush``), ``added`` (a piece of
    another print pasted in) or ``none`` (two honest scans of one print). ``transform`` maps reference pixel
    coordinates to questioned pixel coordinates. ``person=True`` (removals only): the removed figure is a person
    painted into the print first, visible in the reference.
    """
    rng = np.random.default_rng(seed)
    source = source or str(rng.choice(PHOTO_SOURCES))
    style = PrintStyle.random(rng)
    clean_print = make_print(load_source(source), rng, size=size, style=style)
    info: dict[str, Any] = {"seed": seed, "source": source, "edit": edit}
    if edit == "none":
        forged, mask = clean_print, np.zeros(clean_print.shape, bool)
    else:
        method = "pasteup" if edit == "added" else edit
        fraction = float(rng.uniform(0.015, 0.06))
        target = None
        if person and edit != "added":
            clean_print, target = _with_person(clean_print, rng, style=style, area_fraction=fraction)
        forged, mask, extra = forge_print(clean_print, rng, method=method, area_fraction=fraction, regrain=regrain,
                                          style=style, size=size, target=target)
        info.update(extra)
    reference_style = ScanStyle.random(rng)
    reference, reference_bytes, reference_format = scan(clean_print, rng, reference_style)
    transform, out_shape, view = random_view(clean_print.shape, rng, **(geometry or {}))
    rephotographed = cv2.warpPerspective(forged, transform, (out_shape[1], out_shape[0]), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REFLECT)
    # the second print was developed and aged on its own: new grain and a different tone curve
    new_gamma = float(rng.uniform(0.75, 1.3))
    rephotographed = np.power(np.clip(rephotographed, 0, 1), new_gamma) * float(rng.uniform(0.85, 1.0))
    rephotographed = add_grain(rephotographed.astype(np.float32), rng, strength=float(rng.uniform(0.015, 0.035)),
                               correlation=float(rng.uniform(0.7, 1.3)))
    questioned_style = ScanStyle.random(rng)
    questioned, questioned_bytes, questioned_format = scan(rephotographed, rng, questioned_style)
    mask_questioned = cv2.warpPerspective(mask.astype(np.uint8), transform, (out_shape[1], out_shape[0]),
                                          flags=cv2.INTER_NEAREST, borderValue=0).astype(bool)
    info.update({"view": view, "reference_scan": reference_style.to_dict(),
                 "questioned_scan": questioned_style.to_dict(), "questioned_gamma": round(new_gamma, 3),
                 "mask_fraction_questioned": round(float(mask_questioned.mean()), 5)})
    return PairCase(reference=reference, questioned=questioned, mask_reference=mask,
                    mask_questioned=mask_questioned, transform=transform, reference_bytes=reference_bytes,
                    questioned_bytes=questioned_bytes, reference_format=reference_format,
                    questioned_format=questioned_format, info=info)
