"""How a choice of detectors is read, the same for the CLI, batch runs and the API."""

from __future__ import annotations

import pytest

from retouch.detect.registry import detectors
from retouch.pipeline import DetectorChoiceError, resolve_detectors


def test_blank_choice_means_the_defaults_and_a_choice_naming_none_is_an_error() -> None:
    defaults = [name for name, spec in detectors().items() if spec.default]
    for blank in (None, "", "   ", [], ()):
        assert resolve_detectors(blank) == defaults
    for naming_none in (",", " , ,", [" ", ""]):
        with pytest.raises(DetectorChoiceError, match="names no detector"):
            resolve_detectors(naming_none)
    assert resolve_detectors(" ela, grain,ela ,") == ["ela", "grain"]
    assert resolve_detectors("all") == list(detectors())
    with pytest.raises(DetectorChoiceError, match="unknown detector nope; available: "):
        resolve_detectors("ela,nope")
