"""Kinds of change within one region: a part replaced and a part reshaped, kept by their own evidence."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retouch.compare.kinds import classify_regions


def _head_removed_coat_lengthened(extend: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two scans (analysis frames, float gray) of a print whose seated figure's dark head was painted out with the
    background and the standing figure's coat above it lengthened by ``extend`` px over where the background was:
    the reference, the questioned scan, the changed pixels (one region) and the lengthened part of the coat."""
    height, width = 480, 600
    ys, xs = np.mgrid[0:height, 0:width]
    background = (0.55 + 0.1 * xs / width).astype(np.float32)
    head = (xs - 200) ** 2 + (ys - 295) ** 2 < 45 ** 2
    coat = (xs >= 170) & (xs < 440) & (ys >= 80) & (ys < 250)
    lengthened = (xs >= 170) & (xs < 440) & (ys >= 80) & (ys < 250 + extend)
    original, altered = background.copy(), background.copy()
    original[coat], original[head] = 0.3, 0.1
    altered[lengthened] = 0.3
    grain = cv2.GaussianBlur(np.random.default_rng(5).normal(0, 0.03, (height, width)).astype(np.float32), (0, 0),
                             0.8)

    def scanned(image: np.ndarray, seed: int) -> np.ndarray:  # one print's grain, each scan its own noise
        noise = np.random.default_rng(seed).normal(0, 0.01, image.shape)
        return (cv2.GaussianBlur(image, (0, 0), 0.6) + grain + noise).astype(np.float32)

    changed = cv2.dilate((head | (lengthened & ~coat)).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return scanned(original, 1), scanned(altered, 2), changed, lengthened & ~coat & ~head


@pytest.mark.parametrize("extend", [5, 7])
def test_a_reshaped_part_near_a_fifth_of_its_change_is_listed_either_side_of_it(extend: int) -> None:
    # the lengthened coat holds about 18 % (5 px) and 22 % (7 px) of the change: its kind rests on its own
    # evidence, not on its share of the region, so both read the same (a share cut at a fifth listed the second
    # and dropped the first)
    reference, questioned, changed, extension = _head_removed_coat_lengthened(extend)
    regions, owns = classify_regions(changed, changed.astype(np.float32), reference, questioned, min_area=30,
                                     valid=np.ones(changed.shape, bool))
    assert 0.15 < regions[0].evidence["reshaped_share"] < 0.25
    assert [r.kind for r in regions] == ["removed", "retouched"], [(r.kind, r.area) for r in regions]
    change, inside = regions
    assert change.area == int(changed.sum()) and inside.evidence["within"] == list(change.bbox)
    x, y, w, h = inside.bbox
    listed = np.zeros(changed.shape, bool)
    listed[y:y + h, x:x + w] = owns[1]
    # the retouched part lies on the lengthened coat (with the change's one-pixel margin) and covers most of it
    near = cv2.dilate(extension.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert (listed & extension).sum() > 0.6 * (extension & changed).sum()
    assert (listed & near).sum() > 0.9 * listed.sum()


def test_a_removal_alone_lists_no_reshaped_part() -> None:
    # a head painted out with nothing extended over it: one replaced part, nothing listed inside it
    reference, questioned, changed, _ = _head_removed_coat_lengthened(0)
    regions, _ = classify_regions(changed, changed.astype(np.float32), reference, questioned, min_area=30,
                                  valid=np.ones(changed.shape, bool))
    assert [r.kind for r in regions] == ["removed"], [(r.kind, r.area) for r in regions]
