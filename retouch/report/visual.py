"""Pictures for reports: colour heatmaps, overlays with region outlines, the flicker animation, thumbnails.

Array functions only (the caller writes files); every picture is rendered from a result, never re-derived.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import cv2
import numpy as np
from PIL import Image

from retouch.imaging import to_rgb8, to_uint8
from retouch.result import Region

KIND_COLOURS = {  # RGB; removals red, additions blue, retouching amber, single-image cues magenta
    "removed": (230, 40, 40),
    "added": (40, 110, 240),
    "retouched": (245, 170, 20),
    "clone-source": (40, 200, 200),
}
DEFAULT_COLOUR = (220, 40, 200)


def kind_colour(kind: str) -> tuple[int, int, int]:
    return KIND_COLOURS.get(kind, DEFAULT_COLOUR)


def colorize_heatmap(heatmap: np.ndarray) -> np.ndarray:
    """A [0, 1] heatmap as an RGB image (inferno colour map: dark = unremarkable, bright = suspect)."""
    values = np.round(np.clip(heatmap, 0.0, 1.0) * 255.0).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(values, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def heatmap_rgba(heatmap: np.ndarray, *, max_side: int | None = None) -> np.ndarray:
    """A heatmap as RGBA for layering over the photograph: colour from the map, opacity rising with the value."""
    values = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
    if max_side:
        values = shrink(values, max_side)
    rgb = colorize_heatmap(values)
    alpha = np.round(np.sqrt(values) * 230.0).astype(np.uint8)
    return np.dstack([rgb, alpha])


def shrink(image: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (area interpolation) so the longest side is at most ``max_side``; never upscales."""
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.dtype == bool:
        return cv2.resize(image.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def overlay(image: np.ndarray, heatmap: np.ndarray, mask: np.ndarray, regions: Sequence[Region], *,
            kind_colours: bool = True) -> np.ndarray:
    """The photograph dimmed to gray, the heatmap tinted over it, the decision outlined, regions boxed."""
    eight = to_uint8(image)
    gray = eight if eight.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(eight[:, :, :3]), cv2.COLOR_RGB2GRAY)
    # one gray plane and one channel at a time in float32 (about 16 bytes a pixel at the peak, where three-channel
    # float canvases took 40): the overlay is drawn at the scan's full size
    weight = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0) * np.float32(0.65)
    dimmed = gray.astype(np.float32)
    dimmed *= np.float32(0.8)
    dimmed += np.float32(20.0)
    dimmed *= np.float32(1.0) - weight
    out = np.empty((*gray.shape, 3), np.uint8)
    for channel, colour in enumerate(DEFAULT_COLOUR):
        tinted = weight * np.float32(colour)
        tinted += dimmed
        np.clip(tinted, 0, 255, out=tinted)
        out[:, :, channel] = tinted
    del weight, dimmed
    thickness = max(2, round(max(out.shape[:2]) / 500))
    if mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, thickness // 2))
    for region in regions:
        x, y, w, h = region.bbox
        colour = kind_colour(region.kind) if kind_colours else DEFAULT_COLOUR
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), colour, thickness)
    return out


def flicker_gif(first: np.ndarray, second: np.ndarray, *, max_side: int = 900, frame_ms: int = 600) -> bytes:
    """A looping two-frame GIF alternating the aligned reference and the questioned image."""
    frames = [Image.fromarray(shrink(to_rgb8(frame), max_side)) for frame in (first, second)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0,
                   optimize=True)
    return buffer.getvalue()


def jpeg_bytes(image: np.ndarray, *, quality: int = 88) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(to_rgb8(image)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()
