"""The perceptual hash (pHash) of a scan's picture: copies of one photograph, in other files and at other sizes,
have hashes a few bits apart.

The picture inside its uniform margins, in gray, reduced to at most :data:`REGISTER_SIDE` pixels a side, hashed
by ``imagehash.phash`` (the signs of the low frequencies of its 32 x 32 DCT against their median; Zauner 2010).
Grouping copies (``retouch.compare.copies``) hashes every orientation of a scan; the metadata detector records
the hash of the picture as given. It lives apart from ``retouch.compare`` so that recording a hash in every
analysis does not load the pair comparison (its registration, models and the scipy modules they import).

References
----------
C. Zauner, "Implementation and benchmarking of perceptual image hash functions", Master's thesis, Upper Austria
University of Applied Sciences, 2010.
"""

from __future__ import annotations

import cv2
import numpy as np

from retouch.imaging import checked_image, content_box, to_uint8

REGISTER_SIDE = 640  # px: longest side of the picture hashed and searched for features (larger scans reduced)


def gray_picture(image: np.ndarray) -> np.ndarray:
    """uint8 gray picture inside its uniform margins."""
    gray = to_uint8(checked_image(image))
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray[:, :, :3], cv2.COLOR_RGB2GRAY)
    top, bottom, left, right = content_box(gray)
    if min(bottom - top, right - left) >= 16:
        gray = gray[top:bottom, left:right]
    return np.ascontiguousarray(gray)


def reduced(gray: np.ndarray) -> np.ndarray:
    """``gray`` reduced (area interpolation) to at most :data:`REGISTER_SIDE` pixels a side."""
    scale = min(1.0, REGISTER_SIDE / max(gray.shape))
    if scale >= 1.0:
        return gray
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def phash_bits(gray: np.ndarray) -> int:
    """The 64-bit pHash of a uint8 gray picture as one integer (its first bit the most significant)."""
    import imagehash
    from PIL import Image

    bits = imagehash.phash(Image.fromarray(gray), hash_size=8).hash.flatten()
    return int(np.packbits(bits).view(">u8")[0])


def perceptual_hash(image: np.ndarray) -> str:
    """The pHash of ``image`` (uint8/uint16 gray or RGB) inside its uniform margins, as 16 hexadecimal digits."""
    return f"{phash_bits(reduced(gray_picture(image))):016x}"
