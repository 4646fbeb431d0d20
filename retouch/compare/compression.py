"""A scan's last JPEG compression, read from its decoded pixels, and that compression applied to another image.

Method
------
A JPEG file stores each 8x8 block's DCT coefficients divided by a quantisation table and rounded, so once it is
decoded (even if then saved as PNG) the coefficients of its blocks, on its block grid, lie close to integer
multiples of the table's entries. The grid origin is the one of the 64 that leaves the most coefficients close
to such multiples (as in Nikoukhah et al. 2021, "ZERO": a JPEG grid maximises the number of zeros); each entry is
the largest step that at least ``agreement`` of the block coefficients fall onto (Fan & de Queiroz 2003 estimate
tables from decoded pixels in this way). Entries whose coefficients are all near zero cannot be read; they take
the value of the IJG table of the quality that best fits the entries that could be read, and at least twice the
largest coefficient seen there (so that compressing with it zeroes what the file had zeroed).

:func:`recompressed` quantises another image (the prediction of the questioned scan from the reference) with
that table on that grid, so the comparison sees the same losses on both sides: a fine texture that the
questioned file's compression flattened is flattened in the prediction too, instead of reading as removed.

Limits: only the luminance table is estimated (comparisons run on gray); a file resampled or turned after its
last compression has no grid left, and none is reported; with quality 98 or above the steps are 1 or 2 and
compressing again changes almost nothing, so nothing is reported either.

References
----------
Z. Fan and R. L. de Queiroz, "Identification of bitmap compression history: JPEG detection and quantizer
estimation", IEEE Trans. Image Processing 12(2), 2003.
T. Nikoukhah, J. Anger, M. Colom, J.-M. Morel, R. Grompone von Gioi, "ZERO: a local JPEG grid origin detector
based on the number of DCT zeros and its applications in image forensics", IPOL 11, 2021.

Example
-------
>>> import numpy as np, cv2
>>> rng = np.random.default_rng(0)
>>> smooth = cv2.GaussianBlur(rng.random((256, 256)).astype(np.float32), (0, 0), 3) * 2000
>>> image = np.clip(smooth - smooth.mean() + 128, 0, 255).astype(np.uint8)
>>> decoded = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], 0)
>>> history = jpeg_history(decoded)
>>> history.origin
(0, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 8
MAX_BLOCKS = 6000  # blocks sampled to find the grid and the table (enough for a stable count at every origin)
TOLERANCE = 1.1  # grey levels: how far from a multiple a decoded coefficient may fall (rounding, clipping)
MIN_STEP = 3  # a table whose steps are all below this (quality ~95+) is not worth simulating


def _dct_matrix() -> np.ndarray:
    n = np.arange(BLOCK)
    matrix = np.sqrt(2.0 / BLOCK) * np.cos((2 * n[None, :] + 1) * n[:, None] * np.pi / (2 * BLOCK))
    matrix[0] /= np.sqrt(2.0)
    return matrix


DCT = _dct_matrix()

# The IJG (libjpeg) luminance table at quality 50, in natural (row-major) order.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], float).reshape(8, 8)


def ijg_table(quality: int) -> np.ndarray:
    """The IJG luminance table libjpeg uses at ``quality`` (1-100)."""
    quality = int(np.clip(quality, 1, 100))
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((IJG_LUMINANCE * scale + 50) / 100), 1, 255)


@dataclass(frozen=True)
class JpegHistory:
    """The last JPEG compression of an image: its luminance ``table`` (8x8, natural order), the ``origin``
    ``(row, column)`` of its block grid in the image, which entries were read from the pixels (``measured``)
    and the IJG quality closest to the table."""

    table: np.ndarray
    origin: tuple[int, int]
    measured: np.ndarray
    quality: int

    def to_dict(self) -> dict[str, object]:
        return {"origin": list(self.origin), "quality_closest": self.quality,
                "table": self.table.astype(int).ravel().tolist(), "entries_measured": int(self.measured.sum())}


def block_coefficients(image: np.ndarray, origin: tuple[int, int], *, limit: int | None = None,
                       seed: int = 0) -> np.ndarray:
    """DCT coefficients (n, 8, 8) of the whole 8x8 blocks of ``image`` (grey levels 0-255) on the grid at
    ``origin``; with ``limit``, a fixed random subset of at most that many blocks."""
    top, left = origin
    rows, cols = (image.shape[0] - top) // BLOCK, (image.shape[1] - left) // BLOCK
    if rows <= 0 or cols <= 0:
        return np.zeros((0, BLOCK, BLOCK))
    tiles = image[top:top + rows * BLOCK, left:left + cols * BLOCK].astype(np.float64) - 128.0
    tiles = tiles.reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK)
    if limit is not None and len(tiles) > limit:
        tiles = tiles[np.sort(np.random.default_rng(seed).choice(len(tiles), limit, replace=False))]
    return DCT @ tiles @ DCT.T


def _grid_origin(image: np.ndarray) -> tuple[tuple[int, int], float]:
    """The grid origin whose blocks hold the most near-zero AC coefficients, and the share of them it holds
    beyond the median origin's (0 when no origin stands out)."""
    scores = np.zeros((BLOCK, BLOCK))
    for top in range(BLOCK):
        for left in range(BLOCK):
            coefficients = block_coefficients(image, (top, left), limit=MAX_BLOCKS // 4)
            if len(coefficients) == 0:
                continue
            ac = coefficients.reshape(len(coefficients), -1)[:, 1:]
            scores[top, left] = float(np.mean(np.abs(ac) < 0.5))
    best = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return (int(best[0]), int(best[1])), float(scores[best] - np.median(scores))


def _step(values: np.ndarray, *, agreement: float, largest: int) -> int | None:
    """The largest quantisation step (3..``largest``) onto whose non-zero multiples ``agreement`` of the clearly
    non-zero ``values`` (beyond the rounding noise of decoded pixels) fall, beyond the share that would by
    chance; 1 when no step of 3 or more qualifies although many values (a twentieth) spread beyond the noise
    (a step of 1 or 2 cannot be told from the rounding noise); ``None`` when too few values are clearly
    non-zero to tell."""
    clear = values[np.abs(values) > 3.0]
    if clear.size < 20:
        return None
    for step in range(largest, 2, -1):
        on = np.abs(clear - step * np.round(clear / step)) < TOLERANCE
        chance = 2.0 * TOLERANCE / step
        if on.sum() >= 20 and on.mean() >= chance + agreement * (1.0 - chance):
            return step
    return 1 if clear.size >= 0.05 * values.size else None


def jpeg_history(image: np.ndarray, *, agreement: float = 0.7, min_grid_margin: float = 0.04
                 ) -> JpegHistory | None:
    """The last JPEG compression of ``image`` (uint8 gray or its grey levels as floats 0-255), or ``None`` when
    no block grid stands out (never compressed, resampled since, or compressed at quality ~95 or above).

    Parameters
    ----------
    agreement : float
        Share of a frequency's clearly non-zero coefficients that must fall on multiples of its step.
    min_grid_margin : float
        How much larger the best origin's share of near-zero AC coefficients must be than the median origin's.
    """
    gray = np.asarray(image, np.float64)
    if min(gray.shape[:2]) < 4 * BLOCK:
        return None
    origin, margin = _grid_origin(gray)
    if margin < min_grid_margin:
        return None
    coefficients = block_coefficients(gray, origin, limit=MAX_BLOCKS)
    table = np.zeros((BLOCK, BLOCK))
    measured = np.zeros((BLOCK, BLOCK), bool)
    fine = np.zeros((BLOCK, BLOCK), bool)  # entries whose coefficients spread but fit no step of 3 or more
    for u in range(BLOCK):
        for v in range(BLOCK):
            step = _step(coefficients[:, u, v], agreement=agreement, largest=120)
            if step is None:
                continue
            table[u, v], measured[u, v] = step, step > 1
            fine[u, v] = step == 1
    if measured.sum() < 3:
        return None
    # the IJG quality whose table best matches the entries read (in log steps), for the entries not read
    qualities = np.arange(10, 100)
    errors = [np.mean(np.abs(np.log(ijg_table(q)[measured]) - np.log(table[measured]))) for q in qualities]
    quality = int(qualities[int(np.argmin(errors))])
    fill = ijg_table(quality)
    largest_seen = np.max(np.abs(coefficients), axis=0)
    unread = ~measured & ~fine  # every coefficient near zero: whatever the step, it zeroed all of them
    table[unread] = np.maximum(fill[unread], np.ceil(2.0 * largest_seen[unread] + 1.0))
    table[fine] = np.minimum(fill[fine], 2.0)
    if np.median(table[measured]) < MIN_STEP:
        return None
    return JpegHistory(table=np.clip(table, 1, 255), origin=origin, measured=measured, quality=quality)


def recompressed(image: np.ndarray, history: JpegHistory) -> np.ndarray:
    """``image`` (float grey levels 0-1) quantised with ``history``'s table on its grid, as a JPEG encoder and
    decoder would (8-bit rounding included); the partial blocks at the borders are left as they are."""
    levels = np.clip(np.asarray(image, np.float64) * 255.0, 0.0, 255.0)
    top, left = history.origin
    rows, cols = (levels.shape[0] - top) // BLOCK, (levels.shape[1] - left) // BLOCK
    out = levels.copy()
    if rows > 0 and cols > 0:
        region = levels[top:top + rows * BLOCK, left:left + cols * BLOCK] - 128.0
        tiles = region.reshape(rows, BLOCK, cols, BLOCK).transpose(0, 2, 1, 3)
        coefficients = DCT @ tiles @ DCT.T
        quantised = np.round(coefficients / history.table) * history.table
        restored = DCT.T @ quantised @ DCT
        restored = restored.transpose(0, 2, 1, 3).reshape(rows * BLOCK, cols * BLOCK) + 128.0
        out[top:top + rows * BLOCK, left:left + cols * BLOCK] = restored
    return (np.clip(np.round(out), 0.0, 255.0) / 255.0).astype(np.float32)
