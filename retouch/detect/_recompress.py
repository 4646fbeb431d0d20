"""JPEG recompression of a grey image, the costly step of error-level analysis and JPEG ghosts."""

from __future__ import annotations

import math

import cv2
import numpy as np

from retouch.detect._blocks import block_mean
from retouch.imaging import for_each_strip, strip_workers


def recompression_error(gray: np.ndarray, quality: int) -> np.ndarray:
    """Absolute difference (8-bit) between ``gray`` and its JPEG recompression at ``quality``.

    JPEG codes every 8x8 block on its own (a grey image has no chroma subsampling; only the entropy coding links
    blocks, and it is lossless), so strips cut on the block grid recompress to exactly the pixels of the whole
    image. Strips are coded in parallel threads (OpenCV releases the GIL): it is the largest cost of both.
    """
    error = np.empty_like(gray)

    def recompress(top: int, bottom: int) -> None:
        error[top:bottom] = _strip_error(gray[top:bottom], quality)

    for_each_strip(recompress, _strip_cuts(gray.shape[0], 8))
    return error


def recompression_block_error(gray: np.ndarray, quality: int, block: int) -> np.ndarray:
    """``block_mean(recompression_error(gray, quality), block)``, each strip averaged in its own thread as soon
    as it is recompressed (strips are cut on both the JPEG grid and the block grid)."""
    means = np.empty((gray.shape[0] // block, gray.shape[1] // block), np.float32)

    def recompress(top: int, bottom: int) -> None:
        strip = block_mean(_strip_error(gray[top:bottom], quality), block)
        means[top // block: top // block + strip.shape[0]] = strip

    for_each_strip(recompress, _strip_cuts(gray.shape[0], math.lcm(8, block)))
    return means


def _strip_cuts(rows: int, unit: int) -> list[int]:
    """Row cuts into one strip per worker, each cut on a multiple of ``unit`` rows."""
    parts = strip_workers(rows)
    return [0, *[(rows * k // parts) // unit * unit for k in range(1, parts)], rows]


def _strip_error(gray: np.ndarray, quality: int) -> np.ndarray:
    ok, buffer = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    decoded = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE)
    return cv2.absdiff(gray, decoded, dst=decoded)


def recompression_block_sqdiff(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Per 8x8 block, the mean over pixels and channels of the squared difference between 8-bit ``pixels`` (gray
    or BGR, cropped to whole blocks from its own origin) and their JPEG recompression at ``quality``, float32.

    Strips are coded in parallel threads. Colour is coded with OpenCV's chroma subsampling in 16-row units, and
    its decoder interpolates chroma across those units, so each strip is coded with 16 rows of its neighbours on
    either side and keeps its own rows: the same pixels as the whole picture's recompression.
    """
    rows, cols = pixels.shape[0] // 8, pixels.shape[1] // 8
    means = np.empty((rows, cols), np.float32)
    context = 16 if pixels.ndim == 3 else 0

    def recompress(top: int, bottom: int) -> None:
        first, last = max(top - context, 0), min(bottom + context, rows * 8)
        part = np.ascontiguousarray(pixels[first:last, : cols * 8])
        ok, buffer = cv2.imencode(".jpg", part, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)[top - first: bottom - first]
        part = part[top - first: bottom - first]
        difference = cv2.absdiff(part, decoded)
        squared = cv2.multiply(difference, difference, dtype=cv2.CV_32F)
        if squared.ndim == 3:
            squared = squared.mean(axis=2, dtype=np.float32)
        means[top // 8: bottom // 8] = block_mean(squared, 8)

    for_each_strip(recompress, _strip_cuts(rows * 8, 16))
    return means
