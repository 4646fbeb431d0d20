"""A generated box of scans: several copies of each of several photographs, as an archive's box holds them.

Each photograph is printed once per copy (its own paper, tone and grain, as prints made from one negative at
different times), then re-photographed or scanned with its own geometry (scale, a slight turn, sometimes a quarter
turn, a crop of the margins), blur, dust and noise, and stored as a JPEG at its own quality or as a PNG. No copy
is edited: the box is the ground truth for grouping copies (:mod:`retouch.compare.copies`), not for detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from retouch.samples.archive import PrintStyle, ScanStyle, make_print, scan
from retouch.samples.forge import random_view
from retouch.samples.sources import BOX_SOURCES, load_source

# How much two copies of one photograph differ: the geometry of re-photographing a print on a copy stand or a
# scanner bed (not a handheld snapshot: no strong perspective, turns of a few degrees, crops of the margins).
COPY_GEOMETRY = {"scale_range": (0.75, 1.33), "max_angle": 2.0, "quarter_turns": True, "mirror_chance": 0.0,
                 "perspective": 0.005, "max_crop": 0.1}


@dataclass
class BoxScan:
    """One file of the box: ``name`` (``scan017.jpg``), its bytes and format, and which photograph it shows
    (``photograph``, the index into the box's photographs)."""

    name: str
    data: bytes
    file_format: str
    photograph: int
    info: dict[str, Any] = field(default_factory=dict)


def make_box(seed: int, *, photographs: int = 10, copies: int = 3, size: int = 512) -> list[BoxScan]:
    """``photographs`` different photographs (at most ``len(BOX_SOURCES)``), ``copies`` scans of each.

    Parameters
    ----------
    seed : int
        Fixes every random choice.
    photographs, copies : int
        How many photographs and how many scans of each.
    size : int
        Longest side of each print in pixels, before the copy's own scale.

    Returns
    -------
    list of BoxScan
        In a shuffled order (the order of a box is no clue to what belongs together).
    """
    if not 1 <= photographs <= len(BOX_SOURCES):
        raise ValueError(f"a box holds 1 to {len(BOX_SOURCES)} different photographs, not {photographs}")
    rng = np.random.default_rng(seed)
    scans = []
    for index, source in enumerate(BOX_SOURCES[:photographs]):
        photo = load_source(source)
        for copy in range(copies):  # noqa: B007 - recorded in the info
            style = PrintStyle.random(rng)
            print_image = make_print(photo, rng, size=size, style=style)
            transform, shape, view = random_view(print_image.shape, rng, **COPY_GEOMETRY)
            copied = cv2.warpPerspective(print_image, transform, (shape[1], shape[0]), flags=cv2.INTER_AREA,
                                         borderMode=cv2.BORDER_REFLECT)
            scan_style = ScanStyle.random(rng)
            _, data, file_format = scan(copied, rng, scan_style)
            scans.append(BoxScan(name="", data=data, file_format=file_format, photograph=index,
                                 info={"source": source, "copy": copy, "view": view,
                                       "scan_style": scan_style.to_dict()}))
    order = rng.permutation(len(scans))
    for number, scan_index in enumerate(order):  # named as a scanning session names files: no clue in the name
        suffix = ".jpg" if scans[scan_index].file_format == "JPEG" else ".png"
        scans[scan_index].name = f"scan{number + 1:03d}{suffix}"
    return [scans[i] for i in order]
