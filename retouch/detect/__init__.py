"""Single-image detectors. Each module finds one kind of evidence and registers itself by name."""

from retouch.registry import DetectorSpec, detectors, get_detector, register

__all__ = ["DetectorSpec", "detectors", "get_detector", "register"]
