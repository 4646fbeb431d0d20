"""Pairs told by their names (retouch.run.manifest.pairs_by_name), as the page and POST /v1/batches read them."""

from __future__ import annotations

from retouch.run.manifest import pairs_by_name


def _names(entries) -> list[tuple[str, ...]]:
    return [entry.names for entry in entries]


def test_two_files_named_alike_but_for_their_role_are_a_pair_reference_first() -> None:
    entries, notes = pairs_by_name(["box1/lenin_1920_b.jpg", "box2/crowd.png", "box1/lenin_1920_a.tif",
                                    "box3/May Day-A.png", "box3/may day-b.PNG",
                                    "x.reference.jpg", "x questioned.jpg"])
    assert _names(entries) == [("box1/lenin_1920_a.tif", "box1/lenin_1920_b.jpg"), ("box2/crowd.png",),
                               ("box3/May Day-A.png", "box3/may day-b.PNG"),
                               ("x.reference.jpg", "x questioned.jpg")]
    assert notes == [] and [entry.command for entry in entries] == ["compare", "analyze", "compare", "compare"]


def test_names_that_only_look_alike_stay_scans_of_their_own() -> None:
    lone = ["a/lenin_a.jpg", "b/lenin_b.jpg",  # other folders
            "tuba.jpg", "tubb.jpg",  # no separator before the role
            "y_a.jpg", "y_questioned.jpg",  # two ways of naming roles
            "_a.jpg", "_b.jpg",  # nothing before the role
            "solo_b.jpg"]  # no partner
    entries, notes = pairs_by_name(lone)
    assert _names(entries) == [(name,) for name in lone] and notes == []


def test_a_role_taken_twice_pairs_nothing_and_says_why() -> None:
    entries, notes = pairs_by_name(["x_a.jpg", "x_a.png", "x_b.jpg", "z_a.jpg", "z_b.jpg"])
    assert _names(entries) == [("x_a.jpg",), ("x_a.png",), ("x_b.jpg",), ("z_a.jpg", "z_b.jpg")]
    assert len(notes) == 1 and "x_a.jpg, x_a.png, x_b.jpg" in notes[0] and "manifest" in notes[0]
