"""Shared fixtures, and the test tiers.

Tiers: ``make test-fast`` runs ``-m "not slow"`` (unit tests, and the command line and the web service run in this
process); ``make test`` runs everything. A test is slow when it is marked ``slow`` (processes killed or
interrupted, clusters, long runs), ``server`` (a real ``retouch serve`` on 127.0.0.1) or ``browser`` (Chromium),
or when it is in one of :data:`SLOW_MODULES`, which measure what the analyses find on generated scans and
photographs, a few seconds of computation each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CliRun, CliRunner

SLOW_KINDS = ("server", "browser")
SLOW_MODULES = {"test_clone_inpaint.py", "test_compare.py", "test_margins.py", "test_demo.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_MODULES or any(item.get_closest_marker(kind) for kind in SLOW_KINDS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run ``retouch ARGS`` in this process, as the console script does (``retouch.cli.app.main``), with
    ``cwd`` as the current folder; returns the exit code and what it printed. Output is captured at the file
    descriptors, so what a native library prints (libpng, libtiff) counts as printed too."""
    from retouch.cli.app import main

    def run(*args: str | Path, cwd: Path | None = None) -> CliRun:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capfd.readouterr()
        code = main([str(arg) for arg in args])
        printed = capfd.readouterr()
        return CliRun(code, printed.out, printed.err)

    return run


@pytest.fixture
def extra_detector(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Register a detector for one test: ``extra_detector(name, function, title=..., description=...)``; the
    registry is as it was once the test ends."""
    from retouch.detect import detectors, register
    from retouch.registry import _REGISTRY

    detectors()  # the built-in detectors first, as the registry loads them when first asked

    def add(name: str, function: Callable[..., Any], **spec: Any) -> None:
        register(name, **spec)(function)
        monkeypatch.setitem(_REGISTRY, name, _REGISTRY.pop(name))  # so that monkeypatch removes it afterwards

    return add
