"""An EXIF orientation tag turns the picture for display, never the evidence: the detectors read the pixels as
the file stores them (on its own JPEG block grid) and their results come back turned."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image
from skimage import data

from retouch.imaging import display_box, display_point, display_vector, to_display, to_stored
from retouch.io import load_image_bytes
from retouch.result import Region
from retouch.run.pipeline import analyze_image
from tests.helpers import image_bytes


@pytest.mark.parametrize("orientation", range(1, 9))
def test_points_boxes_and_vectors_follow_the_pixels(orientation: int) -> None:
    stored = np.zeros((5, 7), np.uint8)
    stored[1, 4] = 1  # (x, y) = (4, 1)
    stored[3, 5] = 2  # (5, 3): the displacement (1, 2) from the first
    shown = to_display(stored, orientation)
    assert np.array_equal(to_stored(shown, orientation), stored)
    (y1,), (x1,) = np.nonzero(shown == 1)
    (y2,), (x2,) = np.nonzero(shown == 2)
    assert display_point(4, 1, stored.shape, orientation) == (x1, y1)
    assert display_vector(1, 2, orientation) == (x2 - x1, y2 - y1)
    block = np.zeros((5, 7), bool)
    block[1:4, 2:6] = True  # (x, y, w, h) = (2, 1, 4, 3)
    ys, xs = np.nonzero(to_display(block, orientation))
    expected = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert display_box((2, 1, 4, 3), stored.shape, orientation) == expected
    region = Region(bbox=(2, 1, 4, 3), area=12, score=0.5, kind="clone-target",
                    evidence={"source_bbox": [2, 1, 4, 3], "offset_px": [1, 2], "pair_id": 1})
    turned = region.oriented(stored.shape, orientation)
    assert list(turned.bbox) == expected and turned.evidence["source_bbox"] == expected
    assert turned.evidence["offset_px"] == [x2 - x1, y2 - y1] and turned.evidence["pair_id"] == 1


def _tagged(jpeg: bytes, orientation: int) -> bytes:
    """The same JPEG data with an EXIF block holding only the orientation tag (nothing re-encoded)."""
    tiff = (b"MM\x00*\x00\x00\x00\x08" + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
            + b"\x00\x00\x00\x00")
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


@pytest.fixture(scope="module")
def pasted_jpeg() -> tuple[bytes, tuple[int, int, int, int]]:
    """A photograph saved at quality 65, a piece of another pasted in, saved again at 92; its sides (500 x 372)
    are not multiples of 8, so turning the pixels moves the JPEG grid."""
    first = np.asarray(Image.open(io.BytesIO(image_bytes(data.astronaut()[6:378, 6:506], "JPEG",
                                                         quality=65))))
    forged = first.copy()
    forged[150:250, 200:280] = data.coffee()[100:200, 200:280]
    return image_bytes(forged, "JPEG", quality=92), (200, 150, 80, 100)


def _overlaps(box: list[int] | tuple[int, ...], other: list[int] | tuple[int, ...]) -> bool:
    return (box[0] < other[0] + other[2] and other[0] < box[0] + box[2]
            and box[1] < other[1] + other[3] and other[1] < box[1] + box[3])


@pytest.mark.parametrize("orientation", [3, 6])
def test_tagged_file_gives_the_untagged_result_turned(pasted_jpeg, orientation: int) -> None:
    jpeg, paste = pasted_jpeg
    plain = load_image_bytes(_tagged(jpeg, 1), name="plain.jpg")
    tagged = load_image_bytes(_tagged(jpeg, orientation), name="tagged.jpg")
    assert tagged.exif_orientation == orientation
    assert np.array_equal(tagged.pixels, to_display(plain.pixels, orientation))
    runs = [analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, detectors="ela,jpeg,grain",
                          orientation=loaded.exif_orientation) for loaded in (plain, tagged)]
    assert any(_overlaps(region.bbox, paste) for region in runs[0].fused.regions)  # the paste is found at all
    for before, after in zip([*runs[0].results, runs[0].fused], [*runs[1].results, runs[1].fused]):
        assert np.array_equal(after.heatmap, to_display(before.heatmap, orientation)), before.method
        assert np.array_equal(after.mask, to_display(before.mask, orientation)), before.method
        assert [r.bbox for r in after.regions] == [tuple(display_box(r.bbox, plain.pixels.shape[:2], orientation))
                                                   for r in before.regions]
        assert after.score == before.score
    turned_paste = display_box(paste, plain.pixels.shape[:2], orientation)
    assert any(_overlaps(region.bbox, turned_paste) for region in runs[1].fused.regions)
