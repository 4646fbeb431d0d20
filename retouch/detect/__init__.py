"""Single-image detectors. Each module finds one kind of evidence and registers itself by name."""

from retouch.registry import DetectorSpec, default_detectors, detector_names, detectors, get_detector, register

__all__ = ["DetectorSpec", "default_detectors", "detector_names", "detectors", "get_detector", "register"]
