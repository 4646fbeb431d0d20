"""Clone's keypoint stage: the mirrored descriptors against OpenCV's own on the flipped image, the pairs of
near keypoints against a brute-force search, and the compiled self-matching against the brute-force matcher."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retouch.detect._clone_keypoints import (_pairs_within, mirrored_descriptors, self_matches,
                                            self_matches_plain_and_mirrored)
from retouch.imaging import nearest_neighbours


def test_mirrored_descriptors_are_what_sift_computes_on_the_flipped_image() -> None:
    from skimage import data

    image = data.camera()[64:448, 64:448]
    sift = cv2.SIFT_create(nfeatures=1500, contrastThreshold=0.01)
    keypoints, descriptors = sift.detectAndCompute(image, None)
    width = image.shape[1]
    # OpenCV's keypoint coordinates put pixel x of the flipped image at width - 0.5 - x; the angle turns to 180 - a
    mirrored = [cv2.KeyPoint(width - 0.5 - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response,
                             k.octave, k.class_id) for k in keypoints]
    kept, flipped = sift.compute(np.ascontiguousarray(image[:, ::-1]), mirrored)
    assert len(kept) == len(keypoints)
    exchanged = mirrored_descriptors(descriptors)
    relative = np.linalg.norm(exchanged - flipped, axis=1) / np.linalg.norm(flipped, axis=1)
    # equal for most keypoints (OpenCV's sampling grid is not quite mirror-symmetric); a wrong exchange of rows,
    # columns or bins leaves them about as far apart as unrelated descriptors (relative difference near 1)
    assert np.median(relative) < 0.02 and np.percentile(relative, 75) < 0.2, np.percentile(relative, [50, 75])
    unrelated = np.linalg.norm(descriptors - flipped, axis=1) / np.linalg.norm(flipped, axis=1)
    assert np.median(unrelated) > 0.3
    # a mirror of a mirror is the patch itself
    np.testing.assert_array_equal(mirrored_descriptors(exchanged), descriptors)


def test_pairs_within_a_radius_are_every_close_pair_and_no_other() -> None:
    rng = np.random.default_rng(3)
    for points in (np.float32(rng.uniform(0, 40, (600, 2))), np.float32(np.round(rng.uniform(0, 12, (300, 2)))),
                   np.zeros((0, 2), np.float32), np.float32([[5, 5]])):
        firsts, seconds = _pairs_within(points, 2.0)
        found = list(zip(firsts.tolist(), seconds.tolist()))
        difference = points[:, None, :] - points[None, :, :]
        close = (difference**2).sum(axis=2) < 4.0
        assert len(found) == len(set(found)) == int(close.sum())
        assert all(close[i, j] for i, j in found)


@pytest.mark.parametrize("mirrored", [False, True])
def test_self_matching_in_half_the_products_is_the_brute_force_matching(mirrored: bool) -> None:
    # whole-number descriptors as OpenCV's SIFT gives (products exact in float32), with exact duplicates (ties
    # at distance 0 and between equal candidates) and mirror-symmetric ones; bands of 64 rows, so the pass reads
    # blocks along their rows and their columns and folds many of them
    rng = np.random.default_rng(3)
    descriptors = np.round(rng.gamma(0.6, 20.0, (700, 128))).clip(0, 255).astype(np.float32)
    descriptors[500:540] = descriptors[100:140]
    descriptors[600:620] = mirrored_descriptors(descriptors[200:220])
    descriptors[650:660] = descriptors[650]
    points = rng.uniform(0, 60, (700, 2)).astype(np.float32)  # dense: many keypoints have a twin within 2 px
    if mirrored:
        rows, columns = _pairs_within(points, 2.0)
        others = mirrored_descriptors(descriptors)
    else:
        rows = columns = np.arange(len(points))
        others = descriptors
    order = np.argsort(rows, kind="stable")
    sorted_rows, sorted_columns = rows[order], columns[order]

    def excluded(part: slice) -> tuple[np.ndarray, np.ndarray]:
        first, last = np.searchsorted(sorted_rows, [part.start, part.stop])
        return sorted_rows[first:last] - part.start, sorted_columns[first:last]

    expected_indices, expected_distances = nearest_neighbours(descriptors, others, 2, excluded=excluded)
    indices, distances = self_matches(descriptors, mirrored=mirrored, excluded=(rows, columns), block=64)
    np.testing.assert_array_equal(distances, expected_distances)
    finite = np.isfinite(expected_distances)
    np.testing.assert_array_equal(indices[finite], expected_indices[finite])
    # the duplicates found each other (plain: 40 pairs both ways; mirrored: the 20 mirrored copies both ways)
    assert (distances[:, 0] == 0).sum() >= (40 if mirrored else 80)


@pytest.mark.parametrize("scale", [1.0, 12.0])
def test_plain_and_mirrored_matching_at_once_is_each_matching_to_the_bit(scale: float) -> None:
    # descriptors as OpenCV's SIFT gives them (whole numbers, norm about 512; scale 12: norms past 4,096, where
    # the shared products would no longer be exact and each matching is done on its own), with exact duplicates,
    # mirror images and keypoints within 2 px of each other; bands of 64 rows
    rng = np.random.default_rng(5)
    descriptors = np.round(rng.gamma(0.6, 20.0, (700, 128)) * scale).clip(0, 255 * scale).astype(np.float32)
    descriptors[500:540] = descriptors[100:140]
    descriptors[600:620] = mirrored_descriptors(descriptors[200:220])
    descriptors[650:660] = descriptors[650]
    points = rng.uniform(0, 60, (700, 2)).astype(np.float32)
    itself = np.arange(len(points))
    near = _pairs_within(points, 2.0)
    plain, mirrored = self_matches_plain_and_mirrored(descriptors, excluded=(itself, itself), excluded_mirrored=near,
                                                      block=64)
    for found, expected in ((plain, self_matches(descriptors, mirrored=False, excluded=(itself, itself), block=64)),
                            (mirrored, self_matches(descriptors, mirrored=True, excluded=near, block=64))):
        np.testing.assert_array_equal(found[1], expected[1])
        np.testing.assert_array_equal(found[0], expected[0])
