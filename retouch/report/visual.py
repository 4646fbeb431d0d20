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
    "shared": (40, 190, 80),
    "damage": (150, 150, 150),
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


def _inferno_palette() -> np.ndarray:
    """The inferno colour map as a (256, 3) RGB table, the colours :func:`colorize_heatmap` gives each level."""
    return colorize_heatmap(np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0))[0]


INFERNO = _inferno_palette()
# the opacity of each level in a layer, as in heatmap_rgba: rising with the square root of the value
LAYER_ALPHA = np.round(np.sqrt(np.arange(256) / 255.0) * 230.0).astype(np.uint8)
# zlib settings of the report's map previews (palette images): the run-length strategy, as for the maps on disk
# (retouch.io.write.PNG_OPTIONS), is about twice as fast as level 3 of the default strategy at a similar size
PREVIEW_PNG_LEVEL = 1
PREVIEW_PNG_STRATEGY = 3  # zlib's Z_RLE


def map_preview(heatmap: np.ndarray, max_side: int) -> np.ndarray:
    """A [0, 1] heatmap shrunk (area interpolation) to at most ``max_side`` on its longest side, as uint8
    levels 0..255: the one small copy a report's pictures of that map are drawn from."""
    values = np.clip(shrink(np.asarray(heatmap, np.float32), max_side), 0.0, 1.0)
    # OpenCV's rounding (half to even, as np.round) and saturation in one pass over the float copy
    return cv2.convertScaleAbs(values, alpha=255.0)


def palette_png(levels: np.ndarray, *, see_through: bool = False) -> bytes:
    """PNG bytes of uint8 map ``levels`` as an 8-bit palette image in the inferno colours (one byte a pixel,
    a quarter of RGBA); ``see_through`` adds each level's opacity (``LAYER_ALPHA``) for layering over the
    photograph, as :func:`heatmap_rgba` draws it."""
    picture = Image.fromarray(np.ascontiguousarray(levels, dtype=np.uint8))
    picture.putpalette(INFERNO.tobytes(), rawmode="RGB")
    options = {"transparency": LAYER_ALPHA.tobytes()} if see_through else {}
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=PREVIEW_PNG_LEVEL, compress_type=PREVIEW_PNG_STRATEGY,
                 **options)
    return buffer.getvalue()


def heatmap_over_photo(photo: np.ndarray, heatmap: np.ndarray, *, max_side: int | None = None) -> np.ndarray:
    """The photograph in gray with the heatmap's colours laid over it, opaque where the map is high (RGB uint8).

    The same blend as the report's layer over the photograph (:func:`heatmap_rgba`), flattened into one picture:
    a reader sees where on the photograph a map is bright, which a map alone (mostly dark) does not show.
    """
    gray = gray8(photo)
    values = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)
    if max_side:
        gray, values = shrink(gray, max_side), shrink(values, max_side)
    return levels_over_gray(gray, np.round(values * np.float32(255.0)).astype(np.uint8))


def gray8(photo: np.ndarray) -> np.ndarray:
    """The photograph as one uint8 gray plane (the base every map is laid over)."""
    eight = to_uint8(photo)
    return eight if eight.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(eight[:, :, :3]), cv2.COLOR_RGB2GRAY)


def _blend_table() -> np.ndarray:
    """RGB of every (gray, level) pair, row ``gray * 256 + level``: the level's inferno colour over the gray at
    the level's layer opacity (``LAYER_ALPHA``), rounded to the nearest value."""
    gray = np.arange(256, dtype=np.float64)[:, None, None]
    alpha = LAYER_ALPHA.astype(np.float64)[None, :, None] / 255.0
    colour = INFERNO.astype(np.float64)[None, :, :]
    return np.round(gray * (1.0 - alpha) + colour * alpha).astype(np.uint8).reshape(256 * 256, 3)


_BLEND = _blend_table()


def levels_over_gray(gray: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """uint8 map ``levels`` in the inferno colours over the uint8 ``gray`` photograph of the same size, each level
    as opaque as in a layer (``LAYER_ALPHA``): RGB uint8, one look-up a pixel in a table of every (gray, level)
    pair (a card is drawn in a few milliseconds)."""
    index = gray.astype(np.uint16) << np.uint16(8)
    index |= levels
    return np.take(_BLEND, index, axis=0)


def preview_over_photo(photo: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """:func:`heatmap_over_photo` for a photograph already shrunk and a map preview (uint8 levels, see
    :func:`map_preview`), the preview resized to the photograph's size: no full-size array is touched.
    ``photo`` may be the :func:`gray8` plane already, made once for several maps."""
    height, width = photo.shape[:2]
    if levels.shape[:2] != (height, width):
        levels = cv2.resize(levels, (width, height), interpolation=cv2.INTER_AREA)
    return levels_over_gray(gray8(photo), levels)


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


def _overlay_table() -> np.ndarray:
    """RGB of every (gray, heat level) pair, row ``gray * 256 + level``: the gray dimmed (x 0.8 + 20) and tinted
    towards ``DEFAULT_COLOUR`` with a weight of 0.65 x the heat, rounded down as a uint8 cast does."""
    gray = np.arange(256, dtype=np.float32)[:, None, None] * np.float32(0.8) + np.float32(20.0)
    weight = (np.arange(256, dtype=np.float32) / np.float32(255.0) * np.float32(0.65))[None, :, None]
    colour = np.asarray(DEFAULT_COLOUR, np.float32)[None, None, :]
    tinted = np.clip(gray * (np.float32(1.0) - weight) + weight * colour, 0, 255)
    return tinted.astype(np.uint8).reshape(256 * 256, 3)


_OVERLAY = _overlay_table()


def overlay(image: np.ndarray, heatmap: np.ndarray, mask: np.ndarray, regions: Sequence[Region], *,
            kind_colours: bool = True) -> np.ndarray:
    """The photograph dimmed to gray, the heatmap tinted over it, the decision outlined, regions boxed."""
    # drawn at the scan's full size by one look-up a pixel in a table of every (gray, heat level) pair: 3 bytes
    # a pixel for the picture and 2 for the index, where float canvases took 16 and ten times the time
    index = gray8(image).astype(np.uint16)
    index <<= np.uint16(8)
    index |= cv2.convertScaleAbs(np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0), alpha=255.0)
    out = np.take(_OVERLAY, index, axis=0)
    del index
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
    """JPEG bytes of a photograph for display: a gray one stays one gray plane (a third of the work and of the
    bytes of an RGB copy), RGB(A) as RGB."""
    eight = to_uint8(image)
    if eight.ndim == 3:
        eight = cv2.cvtColor(np.ascontiguousarray(eight[:, :, :3]), cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(eight), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError("JPEG encoding failed")
    return buffer.tobytes()


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def upright_turns(matrix: Sequence[Sequence[float]], *, tolerance_deg: float = 20.0) -> int:
    """Quarter turns ``k`` for ``np.rot90(questioned, k)`` to stand as the reference does, from a comparison's
    transform (reference pixel -> questioned pixel); 0 unless the copy is turned within ``tolerance_deg`` of a
    quarter, half or three-quarter turn. A mirrored copy (negative determinant) is left as the file stands: its
    angle is not a turn, and a left-right mirror would read as half a turn and be shown upside down."""
    linear = np.asarray(matrix, np.float64)[:2, :2]
    if np.linalg.det(linear) <= 0:
        return 0
    angle = float(np.degrees(np.arctan2(linear[1, 0], linear[0, 0])))
    quarters = round(angle / 90.0)
    if abs(angle - 90.0 * quarters) > tolerance_deg:
        return 0
    return quarters % 4


def turned_box(bbox: Sequence[int], turns: int, width: int, height: int) -> tuple[int, int, int, int]:
    """An ``(x, y, w, h)`` box of a ``width`` x ``height`` picture, placed as in ``np.rot90(picture, turns)``."""
    x, y, w, h = (int(v) for v in bbox)
    for _ in range(turns % 4):
        # one counter-clockwise quarter turn: a column becomes a row counted from the bottom
        x, y, w, h = y, width - (x + w), h, w
        width, height = height, width
    return x, y, w, h
