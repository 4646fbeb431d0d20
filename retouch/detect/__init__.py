"""Single-image detectors. Each module finds one kind of evidence and registers itself by name."""

from retouch.registry import DetectorSpec, detector_names, detectors, get_detector, register

__all__ = ["DetectorSpec", "detector_names", "detectors", "get_detector", "register"]
