"""Which encoder's quantization tables a JPEG file carries: a hint of the last program that saved it.

Method
------
A JPEG file stores the quantization tables its encoder chose; most programs do not choose them freely but take
them from their JPEG library or their own presets, so the tables name a family of encoders (Farid 2006,
"Digital image ballistics from JPEG quantization"; Kornblum 2008, "Using JPEG quantization tables to identify
imagery processed by software"). Two families are matched exactly here, both from sources that can be checked:

- libjpeg's quality scale (IJG libjpeg, libjpeg-turbo, and so Pillow, OpenCV, GIMP, ImageMagick and most scanner
  drivers): the standard's example tables (ITU T.81, Annex K) scaled by ``5000 / q`` below quality 50 and
  ``200 - 2 q`` above, rounded and clamped (to 255 in a baseline file). The base tables are read back from a file
  that the libjpeg Pillow links against writes at quality 50, so they are the very tables that library uses.
- Adobe Photoshop's settings, as Pillow ships them (``PIL.JpegPresets``: "JPEG quality settings equivalent to the
  Photoshop settings"), named by Pillow's preset names.

Limits: a table names a family, not a program (every libjpeg-based program writes the same tables at the same
quality); a program may copy another's tables; cameras and many other programs use tables of their own, which are
reported as not matched rather than guessed.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

LIBJPEG = "libjpeg"
PHOTOSHOP = "photoshop"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class EncoderMatch:
    """The encoder family whose tables a file's tables equal.

    ``family`` is :data:`LIBJPEG`, :data:`PHOTOSHOP` or :data:`UNKNOWN`; ``quality`` the libjpeg quality of the
    luminance table (and ``chroma_quality`` of the colour table, when it differs), ``presets`` the Pillow preset
    names whose tables are equal; ``closest_quality`` and ``table_difference`` (mean absolute difference of the
    luminance table from libjpeg's at that quality) describe an unmatched table.
    """

    family: str
    quality: int | None = None
    chroma_quality: int | None = None
    presets: tuple[str, ...] = ()
    closest_quality: int | None = None
    table_difference: float | None = None

    def to_dict(self) -> dict[str, object]:
        return {"family": self.family, "quality": self.quality, "chroma_quality": self.chroma_quality,
                "presets": list(self.presets), "closest_quality": self.closest_quality,
                "table_difference": self.table_difference}


@functools.cache
def libjpeg_base_tables() -> tuple[np.ndarray, np.ndarray]:
    """libjpeg's luminance and chrominance base tables (natural order): the tables it writes at quality 50."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality=50)
    with Image.open(buffer) as image:
        tables = image.quantization
    return np.asarray(tables[0], np.int64), np.asarray(tables[1], np.int64)


def libjpeg_table(base: np.ndarray, quality: int, *, baseline: bool = True) -> np.ndarray:
    """``base`` scaled to ``quality`` (1..100) by libjpeg's rule (``jpeg_quality_scaling`` and
    ``jpeg_add_quant_table``): values clamped to 1..255 in a baseline file, to 1..32767 otherwise."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((np.asarray(base, np.int64) * scale + 50) // 100, 1, 255 if baseline else 32767)


@functools.cache
def _libjpeg_tables() -> tuple[dict[tuple[int, ...], frozenset[int]], dict[tuple[int, ...], frozenset[int]]]:
    """Every libjpeg table (baseline and not) by its values, to the qualities that give it (clamping makes the
    lowest qualities agree)."""
    luminance, chrominance = libjpeg_base_tables()
    lookups: tuple[dict[tuple[int, ...], set[int]], dict[tuple[int, ...], set[int]]] = ({}, {})
    for lookup, base in zip(lookups, (luminance, chrominance)):
        for quality in range(1, 101):
            for baseline in (False, True):
                lookup.setdefault(tuple(libjpeg_table(base, quality, baseline=baseline).tolist()), set()).add(quality)
    return ({k: frozenset(v) for k, v in lookups[0].items()}, {k: frozenset(v) for k, v in lookups[1].items()})


@functools.cache
def _photoshop_presets() -> dict[str, tuple[tuple[int, ...], ...]]:
    from PIL import JpegPresets

    presets = {}
    for name, preset in JpegPresets.presets.items():
        tables = preset.get("quantization")
        if tables:
            presets[name] = tuple(tuple(int(v) for v in table) for table in tables)
    return presets


def identify_encoder(tables: Mapping[int, Sequence[int]]) -> EncoderMatch:
    """Match a file's quantization tables (natural order, as Pillow gives them) against the known families.

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (16, 16)).save(buffer, "JPEG", quality=87)
    >>> identify_encoder(Image.open(buffer).quantization).quality
    87
    """
    ordered = [tuple(int(v) for v in tables[key]) for key in sorted(tables)]
    if not ordered or any(len(table) != 64 for table in ordered):
        return EncoderMatch(UNKNOWN)
    presets = tuple(name for name, preset in _photoshop_presets().items()
                    if preset[0] == ordered[0] and (len(ordered) < 2 or len(preset) < 2 or preset[1] == ordered[1]))
    luminance_lookup, chrominance_lookup = _libjpeg_tables()
    qualities = luminance_lookup.get(ordered[0], frozenset())
    chroma_qualities = chrominance_lookup.get(ordered[1], frozenset()) if len(ordered) > 1 else qualities
    if qualities and chroma_qualities:
        common = qualities & chroma_qualities
        quality = max(common or qualities)
        chroma = quality if common else max(chroma_qualities)
        return EncoderMatch(LIBJPEG, quality=quality, chroma_quality=None if chroma == quality else chroma,
                            presets=presets)
    if presets:
        return EncoderMatch(PHOTOSHOP, presets=presets)
    luminance = np.asarray(ordered[0], np.float64)
    base = libjpeg_base_tables()[0]
    errors = [float(np.abs(libjpeg_table(base, q, baseline=False) - luminance).mean()) for q in range(1, 101)]
    closest = int(np.argmin(errors)) + 1
    return EncoderMatch(UNKNOWN, closest_quality=closest, table_difference=round(errors[closest - 1], 3))
