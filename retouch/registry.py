"""The registry of single-image detectors, shared by the CLI, the API, batch runs and the benchmarks.

A detector is a pure function ``fn(image, *, jpeg_quantization=None, **options) -> AnalysisResult`` where
``image`` is a uint8/uint16 gray (H, W) or RGB (H, W, 3) array in display orientation and
``jpeg_quantization`` is the file's JPEG quantization tables (natural row-major order, as Pillow gives them)
or ``None`` for a non-JPEG input. Detectors register themselves with :func:`register` at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from retouch.result import AnalysisResult

DetectorFunction = Callable[..., AnalysisResult]


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector.

    ``name`` is what users type (``--detectors ela,grain``) and names the heatmap file (``ela.png``);
    ``title`` and ``description`` are shown in reports and ``retouch analyze --help``; ``default`` says
    whether ``retouch analyze`` runs it when no list is given; ``uses_jpeg`` whether it reads the
    quantization tables.
    """

    name: str
    function: DetectorFunction
    title: str
    description: str
    default: bool = True
    uses_jpeg: bool = False

    def run(self, image: np.ndarray, *, jpeg_quantization: dict[int, list[int]] | None = None,
            **options: Any) -> AnalysisResult:
        if self.uses_jpeg:
            return self.function(image, jpeg_quantization=jpeg_quantization, **options)
        return self.function(image, **options)


_REGISTRY: dict[str, DetectorSpec] = {}


def register(name: str, *, title: str, description: str, default: bool = True,
             uses_jpeg: bool = False) -> Callable[[DetectorFunction], DetectorFunction]:
    """Decorator that adds a detector function to the registry under ``name``."""

    def decorate(function: DetectorFunction) -> DetectorFunction:
        if name in _REGISTRY and _REGISTRY[name].function is not function:
            raise ValueError(f"detector {name!r} is registered twice")
        _REGISTRY[name] = DetectorSpec(name, function, title, description, default, uses_jpeg)
        return function

    return decorate


def detectors() -> dict[str, DetectorSpec]:
    """All registered detectors by name, in registration order."""
    _load_builtin()
    return dict(_REGISTRY)


def get_detector(name: str) -> DetectorSpec:
    available = detectors()
    if name not in available:
        raise KeyError(f"unknown detector {name!r}; choose from {', '.join(available)}")
    return available[name]


def _load_builtin() -> None:
    """Import every public module of ``retouch.detect``: each is a detector and registers itself on import."""
    import importlib
    import pkgutil

    import retouch.detect as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"retouch.detect.{module.name}")
