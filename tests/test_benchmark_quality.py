"""The generated-set benchmark's README lines, from rows of known figures (the benchmark itself runs for long)."""

from benchmarks import quality


def _pair(edit: str, f1: float, flagged: float = 0.0, truth: float = 0.05, refused: bool = False) -> dict:
    return {"edit": edit, "f1_fixed": f1, "flagged": flagged, "truth_fraction": truth, "refused": refused}


def _scan(manipulation: str, f1: float = float("nan"), flagged: float = 0.0, detector: str = "fused") -> dict:
    return {"detector": detector, "manipulation": manipulation, "f1_fixed": f1, "flagged": flagged}


def test_headline_lines_give_ranges_by_kind_and_the_untouched_area_marked():
    pairs = [_pair(edit, f1) for edit, f1 in (("diffusion", 0.9), ("clone", 0.7), ("exemplar", 0.8),
                                              ("airbrush", 0.6), ("added", 0.5))]
    pairs += [_pair("diffusion", 0.1, truth=0.005), _pair("diffusion", 0.0, refused=True)]  # neither counts
    pairs += [_pair("none", float("nan"), flagged=0.001), _pair("none", float("nan"), flagged=0.003)]
    scans = [_scan("diffusion/print", 0.8), _scan("diffusion/print", 0.6), _scan("clone/print", 0.2),
             _scan("clone/print", 0.4), _scan("clone/print", 0.9, detector="clone")]  # not fused: not counted
    scans += [_scan("none", flagged=0.0), _scan("none", flagged=0.002), _scan("none", flagged=0.004)]
    lines = quality.headline_table(scans, pairs).splitlines()
    assert lines[2] == ("| `compare`, 5 kinds of edit, 3 pairs each | 0.500 to 0.900 by kind | 0.200 % over 2 "
                        "pairs without an edit |")
    assert lines[3] == ("| `analyze` (fused), 2 manipulations, 2 scans each | 0.500 over all; 0.300 to 0.700 by "
                        "manipulation | 0.20 % over 3 scans; something marked on 2 |")
