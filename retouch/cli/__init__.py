"""The ``retouch`` command line. Every module in this package that defines commands registers them on import."""

from __future__ import annotations

import importlib
import pkgutil

from retouch.cli.app import app, run

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"app"} and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


def main() -> None:
    run()


__all__ = ["app", "main"]
