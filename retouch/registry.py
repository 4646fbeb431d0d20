"""The registry of single-image detectors, shared by the CLI, the API, batch runs and the benchmarks.

A detector is a pure function ``fn(image, *, jpeg_quantization=None, file_data=None, **options) ->
AnalysisResult`` where ``image`` is a uint8/uint16 gray (H, W) or RGB (H, W, 3) array in display orientation,
``jpeg_quantization`` is the file's JPEG quantization tables (natural row-major order, as Pillow gives them)
or ``None`` for a non-JPEG input, and ``file_data`` the file's bytes (for the detectors that read the file itself,
such as its metadata; ``None`` when only pixels were given). A detector receives each keyword only if it declares
that it uses it. Detectors register themselves with :func:`register` at import time.
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
    quantization tables; ``uses_file`` whether it reads the file's bytes.
    """

    name: str
    function: DetectorFunction
    title: str
    description: str
    default: bool = True
    uses_jpeg: bool = False
    uses_file: bool = False

    def run(self, image: np.ndarray, *, jpeg_quantization: dict[int, list[int]] | None = None,
            file_data: bytes | None = None, **options: Any) -> AnalysisResult:
        if self.uses_jpeg:
            options["jpeg_quantization"] = jpeg_quantization
        if self.uses_file:
            options["file_data"] = file_data
        return self.function(image, **options)


_REGISTRY: dict[str, DetectorSpec] = {}


def register(name: str, *, title: str, description: str, default: bool = True,
             uses_jpeg: bool = False, uses_file: bool = False) -> Callable[[DetectorFunction], DetectorFunction]:
    """Decorator that adds a detector function to the registry under ``name``."""

    def decorate(function: DetectorFunction) -> DetectorFunction:
        if name in _REGISTRY and _REGISTRY[name].function is not function:
            raise ValueError(f"detector {name!r} is registered twice")
        _REGISTRY[name] = DetectorSpec(name, function, title, description, default, uses_jpeg, uses_file)
        return function

    return decorate


def detectors() -> dict[str, DetectorSpec]:
    """All registered detectors by name: the built-in ones in the order of their modules' names, then any other
    in registration order."""
    _load_builtin()
    return _ordered()


def default_detectors() -> list[str]:
    """The names of the detectors ``retouch analyze`` runs when none are chosen, in :func:`detectors`' order."""
    return [name for name, spec in detectors().items() if spec.default]


# Built-in modules that register their detector under a shorter name than their own (the name users type)
REGISTERED_AS = {"double_jpeg": "dq", "noise_residual": "residual"}


def detector_names() -> list[str]:
    """The names of every detector, as :func:`detectors` orders them, without importing a detector that has not
    been imported yet: each built-in detector is the module of its name in ``retouch.detect`` (or of the name
    :data:`REGISTERED_AS` gives it)."""
    names = list(_builtin_names())
    return names + [name for name in _REGISTRY if name not in names]


def get_detector(name: str) -> DetectorSpec:
    """The detector ``name``, importing only its own module (and its dependencies) if it is not loaded yet: a
    run of the fast detectors does not pay for importing the slow ones' libraries."""
    modules = _builtin_names()
    if name not in _REGISTRY and name in modules:
        import importlib

        importlib.import_module(f"retouch.detect.{modules[name]}")
    if name not in _REGISTRY:  # a module that registers under another name than its own
        _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown detector {name!r}; choose from {', '.join(detector_names())}")
    return _REGISTRY[name]


def _ordered() -> dict[str, DetectorSpec]:
    builtin = [name for name in _builtin_names() if name in _REGISTRY]
    return {name: _REGISTRY[name] for name in [*builtin, *(name for name in _REGISTRY if name not in builtin)]}


def _builtin_modules() -> list[str]:
    """The public modules of ``retouch.detect`` (each one a detector registering itself on import), sorted."""
    import pkgutil

    import retouch.detect as package

    modules = pkgutil.iter_modules(package.__path__)
    return sorted(module.name for module in modules if not module.name.startswith("_"))


def _builtin_names() -> dict[str, str]:
    """The built-in detectors' names, each with its module, in the modules' order."""
    return {REGISTERED_AS.get(module, module): module for module in _builtin_modules()}


def _load_builtin() -> None:
    """Import every public module of ``retouch.detect``: each is a detector and registers itself on import."""
    import importlib

    for name in _builtin_modules():
        importlib.import_module(f"retouch.detect.{name}")
