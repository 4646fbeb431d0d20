"""Clone's keypoint stage: the mirrored descriptors against OpenCV's own on the flipped image, and the pairs of
near keypoints against a brute-force search."""

from __future__ import annotations

import cv2
import numpy as np

from retouch.detect._clone_keypoints import _pairs_within, mirrored_descriptors


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
