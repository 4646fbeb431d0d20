"""The real-material benchmark's own logic (the material itself is never needed by the test suite)."""

import numpy as np

from benchmarks import real


def test_absent_data_folder_is_one_line_and_exit_2(tmp_path, capsys):
    assert real.main(["--data", str(tmp_path / "nowhere"), "--no-write"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0]


def test_tpr_at_fpr_counts_positives_above_the_negatives_5_percent_quantile():
    negatives = list(np.linspace(0.0, 0.99, 100))  # the 5 highest are 0.95 .. 0.99
    # at most 5 of 100 negatives may pass: the threshold is the 6th highest (0.94)
    assert real.tpr_at_fpr([0.96, 0.5, 0.999, 0.2], negatives) == 0.5
    assert real.tpr_at_fpr([], negatives) != real.tpr_at_fpr([], negatives)  # NaN without positives


def test_edited_pixels_keep_the_changed_part_of_a_copy_move_mask():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    forged = original.copy()
    forged[40:56, 40:56] = original[8:24, 8:24]  # the copy; its source is unchanged
    mask = np.zeros((64, 64), bool)
    mask[40:56, 40:56] = mask[8:24, 8:24] = True
    edited = real.edited_pixels(original, forged, mask)
    assert edited[42:54, 42:54].all() and not edited[8:24, 8:24].any()


def test_results_keep_the_section_not_run():
    previous = real.merged_results("", {"single": "A\n", "pairs": "B\n"})
    updated = real.merged_results(previous, {"pairs": "C\n"})
    assert "A\n" in updated and "C\n" in updated and "B\n" not in updated


def test_soviet_copies_carry_their_outlines_with_them(tmp_path, capsys):
    """A copy made by benchmarks.soviet_variants (scaled, turned, cropped) maps the drawn outlines onto the same
    content: a bright disc in the given file stays inside its mapped outline in every copy."""
    import cv2

    from benchmarks import soviet_variants

    given = np.full((400, 600, 3), 40, np.uint8)
    cv2.circle(given, (450, 120), 14, (250, 250, 250), -1)
    outline = {"disc": {"frame": "questioned", "polygon": [[430, 100], [470, 100], [470, 140], [430, 140]]}}
    for variant in soviet_variants.VARIANTS:
        copy, transform = soviet_variants.make_copy(given, variant)
        mapped = soviet_variants.mapped_outlines(outline, "questioned", transform)["disc"]["polygon"]
        inside = np.zeros(copy.shape[:2], np.uint8)
        cv2.fillPoly(inside, [np.round(np.float32(mapped)).astype(np.int32)], 1)
        bright = copy[..., 0] > 150
        assert bright.any() and (bright & (inside > 0)).sum() >= 0.95 * bright.sum(), variant.name
    assert soviet_variants.main(["--soviet", str(tmp_path / "nowhere"), "--no-write"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_a_pixel_counts_for_every_kind_whose_region_outlines_it():
    """A reshaped part listed inside a removed change is both removed and retouched; a pixel of the decision that no
    region of a kind outlines does not count for it, and a pixel outside the decision never counts."""
    from retouch.result import Region

    mask = np.zeros((40, 60), bool)
    mask[5:35, 5:45] = True
    whole = Region(bbox=(5, 5, 40, 30), area=1200, score=1.0, kind="removed",
                   evidence={"outline_questioned": [[5, 5], [44, 5], [44, 34], [5, 34]]})
    inside = Region(bbox=(25, 5, 20, 30), area=600, score=1.0, kind="retouched",
                    evidence={"outline_questioned": [[25, 5], [44, 5], [44, 34], [25, 34]], "within": [5, 5, 40, 30]})
    removed = real._kind_mask([whole, inside], mask, ("removed",))
    retouched = real._kind_mask([whole, inside], mask, ("retouched",))
    assert removed.sum() == mask.sum()
    assert retouched[5:35, 25:45].all() and not retouched[:, :24].any()
    assert not real._kind_mask([whole, inside], np.zeros_like(mask), ("removed", "retouched")).any()


def _forged_row(case_id: str, auc: float) -> dict:
    return {"dataset": "casia1", "case_id": case_id, "kind": "splicing", "path": f"{case_id}.png",
            "mask": f"{case_id}_gt.png", "score": 0.9, "marked": 0.01, "f1": 0.5, "mcc": 0.5,
            "auc": {"fused": auc, "colour": auc}, "best": {"fused": 0.4, "colour": 0.4}}


def test_single_table_shows_each_maps_content_control_and_gap():
    """A map at AUC 0.93 on the forgery that scores 0.54 at the same place on the untouched original has found
    a gap of 0.39; a row without an aligned original shows "-" for control and gap."""
    original = {"dataset": "casia1", "case_id": "original:a", "kind": "original", "path": "a.png", "score": 0.1,
                "marked": 0.0, "detector_marked": {}, "control": {"a": {"fused": 0.60, "colour": 0.54}}}
    unpaired = {**_forged_row("b", 0.80), "dataset": "casia2"}
    table = real.single_tables([_forged_row("a", 0.93), original, unpaired], None)
    casia1 = next(line for line in table.splitlines() if line.startswith("| casia1 | splicing"))
    casia2 = next(line for line in table.splitlines() if line.startswith("| casia2 | splicing"))
    assert "0.93 / 0.40 (0.54, +0.39)" in casia1 and "0.93 / 0.40 (0.60, +0.33)" in casia1
    assert casia1.split(" | ")[3] == "1" and casia2.split(" | ")[3] == "0"
    assert "0.80 / 0.40 (-, -)" in casia2
    peer = real.single_tables([_forged_row("a", 0.93), original], {"a.png": {"NOI1": {"auc": 0.79, "best": 0.35}}})
    assert "0.79 / 0.35 (NOI1)" in peer  # the pyIFD column stays beside the controls


def test_an_original_carries_the_forged_cases_made_from_it(tmp_path):
    """The content control reuses the original's own analysis: its case lists every masked forgery made from it."""
    import json

    folder = tmp_path / "noso_copymove"
    folder.mkdir()
    (tmp_path / "README.md").write_text("x")
    cases = [{"id": "01_a", "forged": "01_a.png", "mask": "01_a_gt.png", "original": "01.png", "kind": "copy-move"},
             {"id": "01_b", "forged": "01_b.png", "mask": "01_b_gt.png", "original": "01.png", "kind": "copy-move"},
             {"id": "02_a", "forged": "02_a.png", "mask": "02_a_gt.png", "original": None, "kind": "copy-move"}]
    (folder / "manifest.json").write_text(json.dumps({"cases": cases}))
    originals = [c for c in real.read_cases(tmp_path, ["noso"]) if c.kind == "original"]
    assert len(originals) == 1
    assert [case_id for case_id, _, _ in originals[0].controls] == ["01_a", "01_b"]
    assert originals[0].controls[1][2] == str(folder / "01_b_gt.png")


def test_content_reference_ranks_a_colourful_piece_without_any_trace_of_origin():
    """The reference map reads colour edges only: a striped red-green patch on a gray picture ranks first, the
    same picture in gray gives a flat map."""
    from retouch.metrics import pixel_auc

    picture = np.full((128, 128, 3), 120, np.uint8)
    picture[40:80, 40:80:4] = (220, 30, 30)
    picture[40:80, 42:80:4] = (30, 200, 30)
    truth = np.zeros((128, 128), bool)
    truth[40:80, 40:80] = True
    assert pixel_auc(real.content_reference_map(picture), truth) > 0.95
    assert np.ptp(real.content_reference_map(picture[..., 0])) == 0
