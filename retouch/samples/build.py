"""Write a generated sample set to disk: images as stored, ground-truth masks in every frame, ``cases.json``.

A set is generated into a hidden folder beside its destination and moved into place once complete, replacing the
files of the set there before (as its ``cases.json`` lists them): a folder holds exactly one set, and a build
interrupted while generating leaves the previous set as it was. Files the builder did not write are never removed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from retouch.io import atomic_write_bytes, atomic_write_json, encode_png
from retouch.io.folders import require_output_folder
from retouch.samples.forge import FORGERY_METHODS, make_authentic, make_forgery, make_pair
from retouch.samples.sources import SOURCES

PAIR_EDITS = ("diffusion", "clone", "airbrush", "exemplar", "added", "none")
MANIFEST = "cases.json"
PAIRS_CSV = "pairs.csv"
SUBFOLDERS = ("single", "pairs")
# the manifest's entries that name files the builder wrote, per case
FILE_KEYS = {"single": ("image", "mask"),
             "pairs": ("reference", "questioned", "mask_reference", "mask_questioned")}


def _ext(file_format: str) -> str:
    return ".jpg" if file_format == "JPEG" else ".png"


def build_samples(out_dir: str | os.PathLike[str], *, seed: int = 1, count: int = 12, size: int = 768
                  ) -> dict[str, Any]:
    """Generate ``count`` single-image cases (every forgery method plus untouched scans) and ``count`` pairs.

    Returns the manifest (also written as ``cases.json``): for each case its files, method, mask fraction and
    the generator's full description, so every number computed on the set can be traced to its inputs.
    """
    folder = require_output_folder(out_dir, [MANIFEST, PAIRS_CSV])
    for name in SUBFOLDERS:
        require_output_folder(folder / name)
    # same file system as the destination, so the finished files are moved into place by renaming
    staging = folder / f".samples-build-{secrets.token_hex(6)}"
    try:
        manifest = _generate(staging, seed=seed, count=count, size=size)
        _replace_set(folder, staging, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return json.loads(json.dumps(manifest))


def _generate(folder: Path, *, seed: int, count: int, size: int) -> dict[str, Any]:
    """Write a whole set into ``folder`` (empty or new); returns its manifest."""
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
    atomic_write_json(folder / MANIFEST, manifest)
    pairs_csv = "reference,questioned,id\n" + "".join(
        f"{p['reference']},{p['questioned']},{p['id']}\n" for p in manifest["pairs"])
    atomic_write_bytes(folder / PAIRS_CSV, pairs_csv.encode("utf-8"))
    return manifest


def _listed_files(manifest: Mapping[str, Any]) -> set[str]:
    """The case files a manifest lists, as paths relative to its folder; entries that are not a plain file name
    in single/ or pairs/ (a hand-edited or foreign manifest) are ignored, so nothing outside them is touched."""
    files = set()
    for section, keys in FILE_KEYS.items():
        for case in manifest.get(section) or []:
            for key in keys:
                name = case.get(key) if isinstance(case, dict) else None
                parts = PurePosixPath(name).parts if isinstance(name, str) else ()
                if len(parts) == 2 and parts[0] in SUBFOLDERS and parts[1] not in {".", ".."}:
                    files.add(name)
    return files


def _previous_files(folder: Path) -> set[str]:
    """The files of the set already in ``folder``, from its manifest (none when there is no readable one)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return _listed_files(manifest) if isinstance(manifest, dict) else set()


def _replace_set(folder: Path, staging: Path, manifest: Mapping[str, Any]) -> None:
    """Replace the set in ``folder`` by the one complete in ``staging``.

    The old set's files go first, then the new manifest, then the new files: at every moment each case file in
    the folder is listed by the manifest there, so a build interrupted even here leaves nothing that the next
    build would not know to remove.
    """
    for name in sorted(_previous_files(folder)):
        old = folder / name
        if old.is_file() or old.is_symlink():
            old.unlink()
    os.replace(staging / MANIFEST, folder / MANIFEST)
    for name in sorted(_listed_files(manifest)):
        os.replace(staging / name, folder / name)
    os.replace(staging / PAIRS_CSV, folder / PAIRS_CSV)
