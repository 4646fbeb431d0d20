"""Small array helpers shared by analyses: colour/depth conversion and bounded analysis resolution."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

import cv2
import numpy as np

from retouch.errors import InputError


def checked_image(image: np.ndarray, *, role: str = "image") -> np.ndarray:
    """``image`` as the analyses take it: (H, W) gray or (H, W, 3) colour (a fourth, alpha, channel is ignored),
    with at least one pixel and uint8, uint16, bool or [0, 1] float samples; raises
    :class:`~retouch.errors.InputError` naming ``role``.

    A one-channel (H, W, 1) array is gray and a two-channel one gray with alpha (Pillow's "LA"), whose alpha is
    dropped as the loader drops it: both reached OpenCV's colour conversion and failed there with its own error.
    Anything else is refused here, so a caller learns which argument is wrong instead of reading a traceback
    from deep inside a detector (an empty array, for one, failed in the margin search).
    """
    array = np.asarray(image)
    if array.dtype != bool and not (np.issubdtype(array.dtype, np.integer) or
                                    np.issubdtype(array.dtype, np.floating)):
        raise InputError(f"{role}: samples of type {array.dtype} are not grey levels; pass uint8 or uint16 pixels")
    if np.issubdtype(array.dtype, np.integer) and array.dtype not in (np.uint8, np.uint16):
        # int32 and the like have no agreed grey scale (0..255? 0..65535?), and were read as floats in [0, 1]
        raise InputError(f"{role}: samples of type {array.dtype} have no agreed grey scale; pass uint8 or uint16 "
                         "pixels (or floats in [0, 1])")
    if np.issubdtype(array.dtype, np.floating) and array.size and not (
            np.isfinite(low := float(np.min(array))) and np.isfinite(high := float(np.max(array)))
            and low >= 0.0 and high <= 1.0):
        raise InputError(f"{role}: float samples must be finite grey levels in [0, 1]; scale the image, or pass "
                         "uint8 or uint16 pixels")
    if array.ndim == 3 and array.shape[2] in (1, 2):
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"{role}: an image array must be (H, W) gray or (H, W, 3) RGB, got shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{role}: the image has no pixels (shape {array.shape})")
    return array


def to_gray_float(image: np.ndarray) -> np.ndarray:
    """float32 luminance in [0, 1] from uint8/uint16/float gray or RGB (H, W[, 3])."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[:, :, :3]
    # scaled in place: a 24 MP RGB scan's float copy is 290 MB, and a second one for the quotient cost 3x the time
    if array.dtype == np.uint8:
        gray = array.astype(np.float32)
        gray /= 255.0
    elif array.dtype == np.uint16:
        gray = array.astype(np.float32)
        gray /= 65535.0
    elif array.dtype == bool:
        gray = array.astype(np.float32)
    else:
        gray = array.astype(np.float32)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    elif gray.ndim != 2:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {array.shape}")
    return gray


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 version of a uint8/uint16/[0, 1]-float image, same channels."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def inverted_tones(image: np.ndarray) -> np.ndarray:
    """The negative of a uint8/uint16/[0, 1]-float image (each channel turned end for end), same type."""
    array = np.asarray(image)
    if array.dtype in (np.uint8, np.uint16):
        return np.iinfo(array.dtype).max - array
    return (1.0 - array).astype(array.dtype, copy=False)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) for display."""
    array = to_uint8(image)
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def analysis_scale(shape: tuple[int, ...], max_pixels: int) -> float:
    """Scale factor (<= 1) that brings an image of ``shape`` to at most ``max_pixels`` pixels."""
    pixels = int(shape[0]) * int(shape[1])
    if max_pixels <= 0 or pixels <= max_pixels:
        return 1.0
    return math.sqrt(max_pixels / pixels)


def bounded(image: np.ndarray, max_pixels: int) -> tuple[np.ndarray, float]:
    """Downscale ``image`` (area interpolation) to at most ``max_pixels``; returns the image and the scale used."""
    scale = analysis_scale(image.shape, max_pixels)
    if scale >= 1.0:
        return image, 1.0
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def upscale_to(values: np.ndarray, shape: tuple[int, ...], *, nearest: bool = False) -> np.ndarray:
    """Map an analysis-resolution map back to the full ``shape`` (H, W)."""
    height, width = int(shape[0]), int(shape[1])
    if values.shape[:2] == (height, width):
        return values
    if values.dtype == bool:
        out = cv2.resize(values.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        return out.astype(bool)
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(values, (width, height), interpolation=interpolation)


# EXIF orientation (1-8): how the stored pixels are turned for display. Detectors that read the JPEG block grid
# must see the pixels as stored, since turning an image whose sides are not multiples of 8 moves the grid.
_INVERSE_ORIENTATION = {6: 8, 8: 6}


def to_display(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """The stored ``pixels`` turned or flipped for display per an EXIF orientation tag (1 = as stored); a view."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1, :]
    if orientation == 5:
        return np.swapaxes(pixels, 0, 1)
    if orientation == 6:
        return np.rot90(pixels, k=-1)
    if orientation == 7:
        return np.swapaxes(pixels, 0, 1)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(pixels, k=1)
    return pixels


def to_stored(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Display-oriented ``pixels`` back as the file stores them (the inverse of :func:`to_display`); a view."""
    return to_display(pixels, _INVERSE_ORIENTATION.get(orientation, orientation))


def display_point(x: float, y: float, stored_shape: tuple[int, int], orientation: int) -> tuple[float, float]:
    """Where the stored pixel ``(x, y)`` of an image of ``stored_shape`` (height, width) appears for display."""
    last_x, last_y = stored_shape[1] - 1, stored_shape[0] - 1
    return {2: (last_x - x, y), 3: (last_x - x, last_y - y), 4: (x, last_y - y), 5: (y, x),
            6: (last_y - y, x), 7: (last_y - y, last_x - x), 8: (y, last_x - x)}.get(orientation, (x, y))


def display_box(box: Sequence[int], stored_shape: tuple[int, int], orientation: int) -> list[int]:
    """A stored-frame box ``(x, y, width, height)`` in the display frame (width and height swap when turned)."""
    x, y, width, height = (int(v) for v in box[:4])
    corners = [display_point(x, y, stored_shape, orientation),
               display_point(x + width - 1, y + height - 1, stored_shape, orientation)]
    left, top = (int(min(c[i] for c in corners)) for i in (0, 1))
    right, bottom = (int(max(c[i] for c in corners)) for i in (0, 1))
    return [left, top, right - left + 1, bottom - top + 1]


def display_vector(dx: float, dy: float, orientation: int) -> tuple[float, float]:
    """A stored-frame displacement in the display frame (no origin shift, only the turn or flip)."""
    return {2: (-dx, dy), 3: (-dx, -dy), 4: (dx, -dy), 5: (dy, dx), 6: (-dy, dx), 7: (-dy, -dx),
            8: (dy, -dx)}.get(orientation, (dx, dy))


def content_box(image: np.ndarray, *, tolerance: int = 2, grid: int = 8, reach: int = 17, edge_contrast: int = 64
                ) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the picture inside uniform margins.

    Margins are the outermost rows and columns whose values span at most ``tolerance`` grey levels (8-bit units):
    a digital frame or padding, a scanner bed clipped to white or black. On each side with a margin the ``grid``
    block holding the picture's edge is left out too, so the part keeps the file's JPEG block grid and none of
    the ringing JPEG leaves along the edge. That ringing can start up to ``reach`` lines before the picture's
    edge: a colour JPEG with halved chroma codes its colour in blocks of 16 pixels, and its decoder's chroma
    upsampling blurs one line further (padding off the 16-pixel grid left 4 ringing margin columns and rows
    inside the part, and 5 % of an untouched padded photograph was marked along them). The edge is the first
    line spanning more than ``edge_contrast`` grey levels (ringing is fainter than a picture against its margin)
    when that lies within ``reach`` of the first non-uniform line, else ``reach`` lines inside it. A margin so
    narrow that the ringing reaches the image's own border is not recognised (that border line is not uniform).
    Returns the whole image when it has no such margin, or when it is uniform throughout.
    """
    height, width = image.shape[:2]
    planes = image.reshape(height, width, -1)
    unit = 257 if image.dtype == np.uint16 else 1

    def span(lines: np.ndarray) -> np.ndarray:  # (lines, samples, channels) -> (lines,)
        return lines.max(axis=(1, 2)).astype(np.int64) - lines.min(axis=(1, 2))

    # most scans have none: four border lines decide that without reading the whole image
    border_rows, border_cols = planes[[0, height - 1]], planes[:, [0, width - 1]].transpose(1, 0, 2)
    if not ((span(border_rows) <= tolerance * unit).any() or (span(border_cols) <= tolerance * unit).any()):
        return 0, height, 0, width
    row_span, col_span = span(planes), span(planes.transpose(1, 0, 2))
    rows, cols = np.flatnonzero(row_span > tolerance * unit), np.flatnonzero(col_span > tolerance * unit)
    if rows.size == 0 or cols.size == 0:
        return 0, height, 0, width
    # Where there is a margin, the grid block holding the picture's edge is left out whole: JPEG rings within
    # the blocks that straddle the edge, and a sliver of ringing margin left in puts a straight border back
    top, bottom = _inside_edges(rows, row_span > edge_contrast * unit, height, grid, reach)
    left, right = _inside_edges(cols, col_span > edge_contrast * unit, width, grid, reach)
    if bottom - top < grid or right - left < grid:
        return 0, height, 0, width
    return top, bottom, left, right


def _inside_edges(varied: np.ndarray, contrasted: np.ndarray, size: int, grid: int, reach: int
                  ) -> tuple[int, int]:
    """Grid lines just inside the blocks holding the picture's first and last line along one axis (image edges
    stay): ``varied`` are the indices of the non-uniform lines, ``contrasted`` says per line whether it spans
    the picture's contrast; see ``content_box``."""
    first, last = int(varied[0]), int(varied[-1])
    strong = np.flatnonzero(contrasted)
    edge_first = int(strong[0]) if strong.size and strong[0] <= first + reach else first + reach
    edge_last = int(strong[-1]) if strong.size and strong[-1] >= last - reach else last - reach
    start = (edge_first // grid + 1) * grid if first > 0 else 0
    end = edge_last // grid * grid if last < size - 1 else size
    return start, end


def strip_workers(rows: int, *, min_rows: int = 256) -> int:
    """How many horizontal strips to work on at once: OpenCV's thread count (at most 4), fewer for short images."""
    return max(1, min(cv2.getNumThreads(), 4, rows // min_rows))


_STRIP_THREADS = 3  # the callers' strips beyond the first (strip_workers allows at most 4)
_strip_pool: ThreadPoolExecutor | None = None
_strip_pool_lock = threading.Lock()


def _forget_strip_pool() -> None:
    # a forked child inherits the pool object but not its threads: work handed to it would never run
    global _strip_pool
    _strip_pool = None


os.register_at_fork(after_in_child=_forget_strip_pool)


def _shared_strip_pool() -> ThreadPoolExecutor:
    """One pool for every call: starting and joining the threads of a pool of its own cost about 0.15 ms per call,
    a fixed cost that weighed on small images (ELA made two such calls)."""
    global _strip_pool
    with _strip_pool_lock:
        if _strip_pool is None:
            _strip_pool = ThreadPoolExecutor(max_workers=_STRIP_THREADS, thread_name_prefix="retouch-strip")
        return _strip_pool


def for_each_strip(work: Callable[[int, int], None], cuts: list[int]) -> None:
    """Call ``work(cuts[i], cuts[i + 1])`` for every strip, in parallel threads when there are several: OpenCV
    and numpy release the GIL, so strips of one image use every core. ``work`` writes its own rows only.

    The first strip runs in the calling thread, the others in a shared pool (a call made from inside that pool
    runs all its strips itself, so nested calls cannot wait on a pool they occupy)."""
    strips = list(zip(cuts[:-1], cuts[1:]))
    if len(strips) <= 1 or threading.current_thread().name.startswith("retouch-strip"):
        for top, bottom in strips:
            work(top, bottom)
        return
    pool = _shared_strip_pool()
    others = [pool.submit(work, top, bottom) for top, bottom in strips[1:]]
    try:
        work(*strips[0])
    finally:
        wait(others)  # no strip may still be writing when the caller reads the output, or unwinds
    for future in others:
        future.result()  # a strip's error is raised here


def nearest_neighbours(query: np.ndarray, train: np.ndarray, k: int, *,
                       excluded: Callable[[slice], tuple[np.ndarray, np.ndarray]] | None = None,
                       rows_per_chunk: int = 512
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``train`` to each row of ``query`` (exact, Euclidean), nearest first: indices
    (int64) and distances (float32), each of shape (len(query), min(k, len(train))).

    ``excluded(rows)``: for a slice of query rows, the candidates that may not be chosen (a keypoint itself, say)
    as two index arrays, rows counted from the slice's start and their train rows; a row with fewer than ``k``
    others gets distance inf in the last places. Pairs, not a rows x train mask: a dense mask for a handful of
    pairs cost more than the search.

    The same matches as OpenCV's brute-force matcher, about five times faster: squared distances come from one
    matrix product per chunk of query rows (BLAS), and the k smallest per row from k passes of argmin (a full
    partition of each row cost more than the product itself). Chunks run in the shared strip threads.
    """
    query = np.ascontiguousarray(query, np.float32)
    train = np.ascontiguousarray(train, np.float32)
    k = min(k, len(train))
    indices = np.empty((len(query), k), np.int64)
    distances = np.empty((len(query), k), np.float32)
    train_norms = np.einsum("ij,ij->i", train, train)

    def chunk(first: int, last: int) -> None:
        for top in range(first, last, rows_per_chunk):
            rows = slice(top, min(top + rows_per_chunk, last))
            block = query[rows]
            # |q - t|^2 = |t|^2 - 2 q.t + |q|^2; the last term is the same along a row, so it is added at the end
            score = block @ train.T
            score *= -2.0
            score += train_norms
            if excluded is not None:
                score[excluded(rows)] = np.inf  # (row, train) index pairs
            at = np.arange(len(block))
            for j in range(k):
                best = score.argmin(axis=1)
                indices[rows, j] = best
                distances[rows, j] = score[at, best]
                score[at, best] = np.inf
            distances[rows] += np.einsum("ij,ij->i", block, block)[:, None]

    parts = max(1, min(strip_workers(len(query), min_rows=rows_per_chunk), 2))
    for_each_strip(chunk, [len(query) * p // parts for p in range(parts + 1)])
    np.sqrt(np.maximum(distances, 0.0, out=distances), out=distances)
    return indices, distances
