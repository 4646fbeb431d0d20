"""Atomic writers: every output appears whole or not at all (temp file in the same folder, then rename)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file and ``os.replace`` so a crash never leaves half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # the temp file is named before it exists, so an interrupt (Ctrl-C, SIGTERM) that lands just after it is
    # created still finds it to remove; mkstemp returns the name only once the file is there
    temp_name = target.parent / f".{target.name}.{secrets.token_hex(8)}.part"
    try:
        # 0o666 less the umask, as for any file the user creates (mkstemp's 0600 would hide reports from colleagues)
        handle = os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, target)
    except FileExistsError:  # a 64-bit name taken already: another writer's file, not ours to remove
        raise
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, default=_json_default, allow_nan=False) + "\n")


# zlib's run-length strategy: on the maps (smooth fields, large flat areas) it measured about twice as fast as
# level 3 of the default strategy and 10-25 % smaller; on overlays as fast as level 1 (benchmarks/results/speed.md)
PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
# One row filter instead of libpng's trial of all five on every row, which was half of the encoding time: "up"
# for maps and pictures (the same size as the trial on the report's maps, 10 % larger on an overlay, at half the
# time), none for a two-level mask (its long runs need no filter). OpenCV before 4.11 has no such option.
_FILTER = getattr(cv2, "IMWRITE_PNG_FILTER", None)
PNG_OPTIONS_PICTURE = PNG_OPTIONS + ([_FILTER, cv2.IMWRITE_PNG_FILTER_UP] if _FILTER is not None else [])
PNG_OPTIONS_MASK = PNG_OPTIONS + ([_FILTER, cv2.IMWRITE_PNG_FILTER_NONE] if _FILTER is not None else [])


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8/uint16 gray or RGB(A) array (RGB order), or a bool mask (0/255), losslessly and
    quickly (``PNG_OPTIONS_PICTURE``, ``PNG_OPTIONS_MASK``)."""
    array = np.asarray(image)
    options = PNG_OPTIONS_PICTURE
    if array.dtype == bool:
        array = array.view(np.uint8) * np.uint8(255)
        options = PNG_OPTIONS_MASK
    elif array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"PNG needs uint8, uint16 or bool pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array), options)
    if not ok:
        raise OSError("PNG encoding failed")
    return buffer.tobytes()


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    return atomic_write_bytes(path, encode_png(image))


def heatmap_to_uint8(heatmap: np.ndarray) -> np.ndarray:
    """A [0, 1] float heatmap as uint8 gray (0..255), the on-disk form of every ``<detector>.png``."""
    values = np.clip(np.asarray(heatmap, np.float32), 0.0, 1.0)  # the one full-size float copy
    if np.isnan(values).any():  # no evidence, as AnalysisResult reads it (saturation would make NaN 255)
        np.nan_to_num(values, copy=False, nan=0.0)
    values *= np.float32(255.0)
    return cv2.convertScaleAbs(values)  # rounds half to even and saturates, as np.round then astype; values >= 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
