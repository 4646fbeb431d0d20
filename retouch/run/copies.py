"""The copies of one photograph among a batch's scans (``retouch batch --group-copies``), and the comparisons
between them (``--pairs-from-groups``): how an archivist finds the doctored copy in a box of prints.

Workers load each scan and reduce it to a :class:`retouch.compare.copies.CopyPrint` (hashes and a small gray
picture, a few hundred kilobytes); the coordinating process groups them
(:func:`retouch.compare.copies.group_copies`: hashes propose, registration confirms) and writes
``OUT/groups.json``. Each group's members are then compared pairwise as ``compare`` items, the earlier file (by
path) as the reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retouch.errors import InputError
from retouch.io import MAX_PIXELS_VARIABLE, atomic_write_json, load_image
from retouch.run.item import ANALYZE, COMPARE, Item
from retouch.run.manifest import item_id

GROUPS = "groups.json"


def fingerprint(path: str, max_pixels: int | None = None, max_pixels_name: str = MAX_PIXELS_VARIABLE) -> Any:
    """A worker's part: the scan at ``path`` as a :class:`~retouch.compare.copies.CopyPrint`, or the loader's
    message (a str) when the file cannot be read."""
    from retouch.compare.copies import copy_print

    try:
        return copy_print(load_image(path, max_pixels=max_pixels, max_pixels_name=max_pixels_name).pixels)
    except InputError as error:
        return str(error)


@dataclass
class CopyGrouping:
    """Groups of item ids (two or more scans each), each item's group label, the scans that could not be read,
    and what grouping cost."""

    groups: list[list[str]]
    labels: dict[str, str]
    unreadable: dict[str, str] = field(default_factory=dict)
    registrations: int = 0
    hashes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"groups": [{"group": self.labels[members[0]], "members": members} for members in self.groups],
                "singles": sorted(i for i in self.hashes if i not in self.labels),
                "unreadable": self.unreadable, "registrations": self.registrations, "phash": self.hashes,
                "method": "pHash (8 orientations) proposes, a feature registration (keypoints agreeing on one "
                          "turn, scale and shift) confirms; see retouch.compare.copies"}


def group_items(items: Sequence[Item], submit: Callable[..., Any], *, max_pixels: int | None = None
                ) -> CopyGrouping:
    """Group the ``analyze`` items of a batch by the photograph they show; ``submit(fn, *args)`` runs
    :func:`fingerprint` on a worker and returns a future."""
    from retouch.compare.copies import group_copies

    scans = sorted((item for item in items if item.command == ANALYZE), key=lambda item: item.inputs[0])
    futures = [submit(fingerprint, item.inputs[0], max_pixels) for item in scans]
    prints, ids, unreadable = [], [], {}
    for item, future in zip(scans, futures):
        found = future.result()
        if isinstance(found, str):
            unreadable[item.id] = found
        else:
            prints.append(found)
            ids.append(item.id)
    outcome = group_copies(prints)
    groups = [[ids[i] for i in members] for members in outcome.groups if len(members) > 1]
    labels = {member: f"copies-{number:03d}" for number, members in enumerate(groups, start=1)
              for member in members}
    return CopyGrouping(groups=groups, labels=labels, unreadable=unreadable, registrations=outcome.registrations,
                        hashes={i: p.hash_hex for i, p in zip(ids, prints)})


def pair_items(grouping: CopyGrouping, items: Sequence[Item]) -> list[Item]:
    """A ``compare`` item for every two members of every group (the earlier path the reference); ids
    ``<reference id>_vs_<questioned id>``, made unique against ``items``."""
    by_id = {item.id: item for item in items}
    taken = {item.id.casefold() for item in items}
    pairs = []
    for members in grouping.groups:
        ordered = sorted(members, key=lambda member: by_id[member].inputs[0])
        for first, second in itertools.combinations(ordered, 2):
            base = item_id(f"{first}_vs_{second}", "pair")
            name, number = base, 2
            while name.casefold() in taken:
                name, number = f"{base}-{number}", number + 1
            taken.add(name.casefold())
            pairs.append(Item(name, COMPARE, (by_id[first].inputs[0], by_id[second].inputs[0])))
    return pairs


def write_groups(out: Path, grouping: CopyGrouping, pairs: Sequence[Item]) -> Path:
    record = grouping.to_json()
    record["pairs"] = [{"id": pair.id, "reference": pair.inputs[0], "questioned": pair.inputs[1]} for pair in pairs]
    return atomic_write_json(out / GROUPS, record)
