"""Write a generated sample set to disk: images as stored, ground-truth masks in every frame, ``cases.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from retouch.io import atomic_write_bytes, atomic_write_json, encode_png
from retouch.samples.forge import FORGERY_METHODS, make_authentic, make_forgery, make_pair
from retouch.samples.sources import SOURCES

PAIR_EDITS = ("diffusion", "clone", "airbrush", "exemplar", "added", "none")


def _ext(file_format: str) -> str:
    return ".jpg" if file_format == "JPEG" else ".png"


def build_samples(out_dir: str | os.PathLike[str], *, seed: int = 1, count: int = 12, size: int = 768
                  ) -> dict[str, Any]:
    """Generate ``count`` single-image cases (every forgery method plus untouched scans) and ``count`` pairs.

    Returns the manifest (also written as ``cases.json``): for each case its files, method, mask fraction and
    the generator's full description, so every number computed on the set can be traced to its inputs.
    """
    folder = Path(out_dir)
    (folder / "single").mkdir(parents=True, exist_ok=True)
    (folder / "pairs").mkdir(parents=True, exist_ok=True)
    methods = (*FORGERY_METHODS, "none")
    manifest: dict[str, Any] = {"seed": seed, "size": size, "single": [], "pairs": [],
                                "sources": {k: {"origin": v.origin, "licence": v.licence} for k, v in SOURCES.items()}}
    for index in range(count):
        case_seed = seed * 10_000 + index
        method = methods[index % len(methods)]
        case = make_authentic(case_seed, size=size) if method == "none" else make_forgery(case_seed, method=method,
                                                                                           size=size)
        name = f"single/{index:03d}-{method}"
        image_file = name + _ext(case.file_format)
        atomic_write_bytes(folder / image_file, case.file_bytes)
        atomic_write_bytes(folder / f"{name}-mask.png", encode_png(case.mask))
        manifest["single"].append({"id": f"{index:03d}-{method}", "image": image_file, "mask": f"{name}-mask.png",
                                   "method": method, "mask_fraction": round(float(case.mask.mean()), 6),
                                   "info": case.info})
    for index in range(count):
        case_seed = seed * 10_000 + 5_000 + index
        edit = PAIR_EDITS[index % len(PAIR_EDITS)]
        pair = make_pair(case_seed, size=size, edit=edit)
        name = f"pairs/{index:03d}-{edit}"
        reference_file = f"{name}-reference{_ext(pair.reference_format)}"
        questioned_file = f"{name}-questioned{_ext(pair.questioned_format)}"
        atomic_write_bytes(folder / reference_file, pair.reference_bytes)
        atomic_write_bytes(folder / questioned_file, pair.questioned_bytes)
        atomic_write_bytes(folder / f"{name}-mask-reference.png", encode_png(pair.mask_reference))
        atomic_write_bytes(folder / f"{name}-mask-questioned.png", encode_png(pair.mask_questioned))
        manifest["pairs"].append({
            "id": f"{index:03d}-{edit}", "reference": reference_file, "questioned": questioned_file,
            "mask_reference": f"{name}-mask-reference.png", "mask_questioned": f"{name}-mask-questioned.png",
            "edit": edit, "transform": np.asarray(pair.transform).round(8).tolist(), "info": pair.info,
        })
    atomic_write_json(folder / "cases.json", manifest)
    pairs_csv = "reference,questioned,id\n" + "".join(
        f"{p['reference']},{p['questioned']},{p['id']}\n" for p in manifest["pairs"])
    atomic_write_bytes(folder / "pairs.csv", pairs_csv.encode("utf-8"))
    return json.loads(json.dumps(manifest))
