"""Public-domain and CC0 photographs shipped inside installed packages, the raw material of every sample.

Nothing is downloaded: each source is read from the package that ships it. Origins and licences are as the
shipping packages document them (scikit-image's ``skimage.data`` docstrings, matplotlib's sample data).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Source:
    name: str
    origin: str
    licence: str
    load: Callable[[], np.ndarray]
    has_people: bool = False


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(getattr(skimage.data, name)())

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


SOURCES: dict[str, Source] = {
    source.name: source
    for source in [
        Source("astronaut", "NASA portrait of astronaut Eileen Collins (scikit-image data)", "public domain",
               _skimage("astronaut"), has_people=True),
        Source("camera", "'cameraman', a classic test photograph (scikit-image data)",
               "no known copyright restrictions", _skimage("camera"), has_people=True),
        Source("grace_hopper", "US Navy portrait of Rear Admiral Grace Hopper (matplotlib sample data)",
               "public domain", _grace_hopper, has_people=True),
        Source("coffee", "a cup of coffee, photograph by Rachel Michetti (scikit-image data)", "CC0",
               _skimage("coffee")),
        Source("chelsea", "Chelsea the cat, photograph by Stefan van der Walt (scikit-image data)", "CC0",
               _skimage("chelsea")),
        Source("rocket", "SpaceX Falcon 9 launch (scikit-image data)", "public domain (CC0 by SpaceX)",
               _skimage("rocket")),
        Source("coins", "Greek coins from Pompeii, Brooklyn Museum (scikit-image data)", "public domain",
               _skimage("coins")),
        Source("hubble", "Hubble eXtreme Deep Field, NASA (scikit-image data)", "public domain",
               _skimage("hubble_deep_field")),
        Source("gravel", "gravel, a texture photograph from CC0Textures (scikit-image data)", "CC0",
               _skimage("gravel")),
        Source("grass", "grass, a texture photograph by linolafett on DeviantArt (scikit-image data)", "CC0",
               _skimage("grass")),
        Source("immunohistochemistry", "stained colonic glands, CMMI (scikit-image data)",
               "no known copyright restrictions", _skimage("immunohistochemistry")),
    ]
}

# The photographs forgeries are made from. "rocket" (a night launch: mostly black sky) and "hubble" (a star
# field) are kept as sources for paste-ups only: under archival grain they hold too little texture for a fair
# test of registration or grain statistics.
PHOTO_SOURCES = ["astronaut", "camera", "grace_hopper", "coffee", "chelsea", "coins"]
# Ten different photographs for a generated box of prints (``retouch.samples.box``): the forgery sources, one
# paste-up donor and three more that are used nowhere else. The night launch (``rocket``) is left out: its copies
# under grain share too few features to be confirmed as copies (benchmarks/results/metadata.md).
BOX_SOURCES = [*PHOTO_SOURCES, "hubble", "immunohistochemistry", "gravel", "grass"]


def load_source(name: str) -> np.ndarray:
    """The named source as uint8 gray (H, W) or RGB (H, W, 3)."""
    if name not in SOURCES:
        raise KeyError(f"unknown sample source {name!r}; choose from {', '.join(SOURCES)}")
    image = SOURCES[name].load()
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image.astype(np.uint8))
