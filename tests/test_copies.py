"""Grouping the copies of one photograph in a box of scans, and ``retouch batch --group-copies`` /
``--pairs-from-groups`` on a folder the test writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from retouch.compare.copies import candidate_pairs, copy_print, group_copies, hash_distances
from retouch.hashing import perceptual_hash
from retouch.io import load_image_bytes
from retouch.samples import make_authentic
from retouch.samples.box import make_box


def test_a_turned_or_mirrored_copy_has_the_same_hash() -> None:
    picture = make_authentic(2, size=320, source="camera").image
    prints = [copy_print(view) for view in (picture, np.rot90(picture), picture[:, ::-1], np.rot90(picture, 2))]
    distances = hash_distances(prints)
    assert (distances[0, 1:] == 0).all()
    assert perceptual_hash(picture) == prints[0].hash_hex


def test_candidates_are_nearest_first_and_bounded() -> None:
    distances = np.array([[64, 3, 40], [3, 64, 20], [40, 20, 64]])
    assert candidate_pairs(distances, neighbours=1, sure_bits=5, max_bits=30) == [(0, 1, 3), (1, 2, 20)]


def test_grouping_joins_only_what_the_confirmation_accepts() -> None:
    box = make_box(3, photographs=3, copies=2, size=256)
    prints = [copy_print(load_image_bytes(scan.data, name=scan.name).pixels) for scan in box]
    truth = [scan.photograph for scan in box]
    # an oracle that knows the truth stands in for registration: the proposals must reach every copy
    found = group_copies(prints, confirm=lambda a, b: truth[prints.index(a)] == truth[prints.index(b)])
    assert sorted(sorted(truth[i] for i in group) for group in found.groups) == [[0, 0], [1, 1], [2, 2]]
    assert found.registrations == len(found.confirmed) + len(found.refused)


@pytest.mark.slow
def test_box_of_thirty_scans_of_ten_photographs_is_grouped_exactly() -> None:
    box = make_box(0, photographs=10, copies=3, size=768)
    prints = [copy_print(load_image_bytes(scan.data, name=scan.name).pixels) for scan in box]
    found = group_copies(prints)
    expected = sorted(sorted(i for i, scan in enumerate(box) if scan.photograph == photo) for photo in range(10))
    assert sorted(found.groups) == expected


@pytest.mark.slow
def test_batch_groups_copies_and_compares_each_group(tmp_path: Path, cli) -> None:
    folder = tmp_path / "box"
    folder.mkdir()
    box = make_box(4, photographs=2, copies=2, size=640)
    for scan in box:
        (folder / scan.name).write_bytes(scan.data)
    out = tmp_path / "out"
    done = cli("batch", folder, "-o", out, "--pairs-from-groups", "--detectors", "metadata", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert "2 group(s) of the same photograph" in done.stdout
    groups = json.loads((out / "groups.json").read_text())
    photograph = {scan.name: scan.photograph for scan in box}
    for group in groups["groups"]:
        assert len({photograph[member] for member in group["members"]}) == 1
        assert len(group["members"]) == 2
    assert len(groups["pairs"]) == 2
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    analysed = [row for row in rows if row["command"] == "analyze"]
    compared = [row for row in rows if row["command"] == "compare"]
    assert len(analysed) == 4 and len(compared) == 2 and all(row["status"] == "ok" for row in rows)
    labels = {row["id"]: row["copy_group"] for row in analysed}
    for group in groups["groups"]:
        assert {labels[member] for member in group["members"]} == {group["group"]}
    rerun = cli("batch", folder, "-o", out, "--pairs-from-groups", "--detectors", "metadata", "--workers", "1")
    assert rerun.returncode == 0 and "6 already done" in rerun.stdout, rerun.stdout


def test_group_copies_refuses_a_list_of_pairs(tmp_path: Path, cli) -> None:
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("a.png,b.png\n")
    done = cli("batch", pairs, "-o", tmp_path / "out", "--group-copies")
    assert done.returncode == 2 and "groups the scans of a folder" in done.stderr
