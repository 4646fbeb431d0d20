"""The teaching gallery's cases: each historical retouching technique applied to a generated print, with its truth.

One lesson is a folder per seed holding, for every technique, the untouched scan, the doctored scan as stored and
the exact truth mask, plus one pair (an untouched print and a doctored, re-photographed and re-cropped copy) and a
``lesson.json`` that lists them. The gallery renders what retouch finds in them beside the truth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retouch.io import atomic_write_bytes, atomic_write_json, encode_png
from retouch.samples.forge import make_authentic, make_forgery, make_pair

LESSON_MANIFEST = "lesson.json"


@dataclass(frozen=True)
class Technique:
    """One way a photograph was doctored: what was done then, what it leaves, and how the generator imitates it."""

    key: str
    title: str
    then: str
    trace: str
    method: str | None  # the generator's forgery method; None for an untouched scan
    history: str = "print"


TECHNIQUES: tuple[Technique, ...] = (
    Technique("airbrush", "Airbrush and gouache over the print",
              "The retoucher sprayed soft paint over the figure with an airbrush and touched the edges with gouache, "
              "then the print was re-photographed for publication.",
              "Paint has no film grain: the area is smoother than the rest of the print at the same brightness, "
              "with soft edges.", "airbrush"),
    Technique("brush", "A figure painted out with a brush",
              "The figure was painted over with tones carried in from around it, stroke by stroke, as careful "
              "brushwork (or today a smooth digital fill) does.",
              "The fill is smooth and grainless, and its tones are an average of the edge rather than a scene.",
              "diffusion"),
    Technique("pasteup", "Paste-up of a new background",
              "A piece of another print was cut out and glued over the figure, and the montage re-photographed.",
              "The piece carries another photograph's grain, tone and sharpness; the seam can show.", "pasteup"),
    Technique("clone", "A clone-stamped crowd",
              "Background from another part of the same picture was copied over the figure, as retouchers patched "
              "crowds and walls with pieces of the same print (today a clone stamp).",
              "Two areas of the picture match each other far better than chance allows; the grain is copied too.",
              "clone"),
    Technique("digital", "A modern digital erase of a scan",
              "Someone opened a JPEG scan, erased a figure with patch-based fill (as content-aware fill does) and "
              "saved it as a JPEG again.",
              "Copied patches, and two rounds of JPEG compression that disagree inside and outside the edit.",
              "exemplar", history="digital"),
    Technique("none", "An untouched scan",
              "Nothing was done: a scan of an aged print, with its dust, scratches and grain.",
              "None. What the methods flag here is a false alarm, and the gallery counts it as one.", None),
)
PAIR_STORY = (
    "An archive holds two prints of one photograph: one made before the purge, one after. In the later print a "
    "man was painted out and the picture re-cropped, as Nikolai Yezhov vanished from the photograph of Stalin at "
    "the Moscow-Volga canal and Trotsky from Lenin's platform. The prints were scanned years apart: different "
    "crop, size, angle, tone and grain. retouch aligns the first onto the second and shows what differs in content."
)
RECROP_STORY = (
    "Cutting the edge of a print away removes whoever stood there without a brush stroke. A single scan cannot "
    "show a crop: what is missing leaves no trace in what remains. Only another copy can: `compare` aligns the two "
    "and reports how much of the larger one the smaller one still shows."
)


def _write_png(path: Path, pixels: Any) -> str:
    atomic_write_bytes(path, encode_png(pixels))
    return path.name


def build_lesson(out_dir: str | os.PathLike[str], *, seed: int, size: int = 768) -> dict[str, Any]:
    """Write one seed's cases into ``out_dir`` (created); returns the manifest also written as ``lesson.json``.

    Files are named by technique: ``<key>.png|jpg`` (the doctored scan as stored), ``<key>-original.png`` (the
    same print scanned untouched) and ``<key>-truth.png`` (255 where the pixels were changed); the pair is
    ``pair-reference``, ``pair-questioned`` and ``pair-truth.png`` (in the questioned copy's frame).
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for index, technique in enumerate(TECHNIQUES):
        case_seed = seed * 1_000 + index
        if technique.method is None:
            case = make_authentic(case_seed, size=size)
        else:
            case = make_forgery(case_seed, method=technique.method, size=size, history=technique.history,
                                person=True)
        image = f"{technique.key}{'.jpg' if case.file_format == 'JPEG' else '.png'}"
        atomic_write_bytes(folder / image, case.file_bytes)
        cases.append({"key": technique.key, "image": image,
                      "original": _write_png(folder / f"{technique.key}-original.png", case.original),
                      "truth": _write_png(folder / f"{technique.key}-truth.png", case.mask),
                      "source": case.info.get("source"), "file_format": case.file_format})
    # the pair: a removal still in frame after the re-crop (at small sizes a crop can cut the figure away)
    for attempt in range(20):
        pair = make_pair(seed * 1_000 + 500 + attempt, size=size, edit="airbrush", person=True)
        if pair.info["mask_fraction_questioned"] >= 0.01:
            break
    reference = f"pair-reference{'.jpg' if pair.reference_format == 'JPEG' else '.png'}"
    questioned = f"pair-questioned{'.jpg' if pair.questioned_format == 'JPEG' else '.png'}"
    atomic_write_bytes(folder / reference, pair.reference_bytes)
    atomic_write_bytes(folder / questioned, pair.questioned_bytes)
    manifest = {
        "seed": seed, "size": size, "cases": cases,
        "pair": {"reference": reference, "questioned": questioned,
                 "truth": _write_png(folder / "pair-truth.png", pair.mask_questioned),
                 "source": pair.info["source"], "crop_px": pair.info["view"]["crop_px"],
                 "mask_fraction_questioned": pair.info["mask_fraction_questioned"]},
    }
    atomic_write_json(folder / LESSON_MANIFEST, manifest)
    return manifest
