"""The ``report.json`` document: a versioned, self-describing record of one analysis or comparison."""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Mapping, Sequence
from typing import Any

from retouch import __version__
from retouch.report.html import SCORE_NOTE
from retouch.result import AnalysisResult

SCHEMA = "retouch-report/1"


def tool_versions() -> dict[str, str]:
    import cv2
    import numpy
    import PIL
    import skimage

    return {
        "retouch": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "scikit-image": skimage.__version__,
        "pillow": PIL.__version__,
    }


def build_report(
    *,
    command: str,
    inputs: Sequence[Mapping[str, Any]],
    result: AnalysisResult,
    analyses: Sequence[AnalysisResult],
    parameters: Mapping[str, Any],
    timings: Mapping[str, float],
    artifacts: Mapping[str, str],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the report dictionary.

    ``result`` is the headline finding (the fused decision for ``analyze``, the change map for ``compare``);
    ``analyses`` are the individual analyses behind it; ``artifacts`` maps each written file name to what it is.
    """
    analysis_entries = []
    for analysis in analyses:
        entry = analysis.to_dict()
        entry["explanation"] = analysis.explanation
        heatmap_name = f"{analysis.method}.png"
        if heatmap_name in artifacts:
            entry["heatmap_file"] = heatmap_name
        analysis_entries.append(entry)
    headline = result.to_dict()
    headline["explanation"] = result.explanation
    return {
        "schema": SCHEMA,
        "tool": {"name": "retouch", "version": __version__, "versions": tool_versions()},
        "command": command,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "inputs": [dict(item) for item in inputs],
        "parameters": dict(parameters),
        "timings_s": {key: round(float(value), 4) for key, value in timings.items()},
        "result": headline,
        "score_note": SCORE_NOTE,  # the caption every rendering shows beside a score
        "analyses": analysis_entries,
        "artifacts": dict(artifacts),
        **dict(extra or {}),
    }
