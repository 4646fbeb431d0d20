"""The false-alarm benchmark's re-saved real originals, on a folder made here (the suite never reads the real
material)."""

import io
import json

from PIL import Image
from skimage import data

from benchmarks import false_alarms


def _material(folder):
    """A folder laid out as the real material: one CASIA v1 case whose original is a decoded JPEG saved as PNG."""
    sets = folder / "casia1_samples"
    (sets / "original").mkdir(parents=True)
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, "JPEG", quality=80)
    Image.open(buffer).save(sets / "original" / "a_orig.png")
    manifest = {"cases": [{"id": "a", "forged": "forged/a.png", "mask": "mask/a.png",
                           "original": "original/a_orig.png", "kind": "splicing"}]}
    (sets / "manifest.json").write_text(json.dumps(manifest))
    (folder / "README.md").write_text("test material\n")


def test_every_original_is_saved_again_in_each_way(tmp_path):
    _material(tmp_path)
    tasks = false_alarms.resaved_tasks(tmp_path, ("dq",))
    assert [task[1] for task in tasks] == list(range(len(false_alarms.RESAVES)))
    assert all(task[0].endswith("a_orig.png") for task in tasks)


def test_a_photograph_saved_twice_is_judged_on_its_null(tmp_path):
    _material(tmp_path)
    twice = next(i for i, (_, qualities) in enumerate(false_alarms.RESAVES) if len(qualities) == 2)
    path = false_alarms.resaved_tasks(tmp_path, ("dq",))[0][0]
    rows = false_alarms._resaved_case((path, twice, ("dq",)))
    assert len(rows) == 1 and rows[0]["detector"] == "dq"
    assert rows[0]["marked"] == 0.0  # an untouched photograph
    assert rows[0]["tests"] > 0 and set(rows[0]["group_nfa"]) == {str(m) for m in (1.0, 1.2, 1.4, 1.6, 1.8, 2.0)}
    # the calibration table reads the row: one judged picture, none marked by the run's decision
    table = false_alarms.calibration_table(rows, "saved again")
    assert "(1 images)" in table and "| dq | 1.6 |" in table and table.rstrip().endswith("| 0 of 1 |")


def test_clone_is_checked_at_its_own_test():
    """clone has no block null: its row holds the smallest NFA of its candidates at every margin, and a stamped
    photograph reads as decided in the table."""
    import numpy as np

    from retouch.detect import detectors

    picture = np.ascontiguousarray(data.astronaut()[:384, :384])
    picture[250:310, 40:100] = picture[60:120, 260:320]  # a 60 px stamp from the sky onto the suit
    result = detectors()["clone"].run(picture)
    row = false_alarms._null_row("clone", result, "astronaut", "stamped")
    assert result.details["smallest_nfa"] <= 0.01 and row["marked"] > 0
    assert set(row["group_nfa"].values()) == {result.details["smallest_nfa"]}
    table = false_alarms.calibration_table([row], "stamped")
    assert "| clone | its own test | 100 % / 100 % / 100 % | - | - | 1 of 1 |" in table
