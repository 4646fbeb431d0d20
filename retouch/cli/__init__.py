"""The ``retouch`` command line. Every module in this package that defines commands registers them on import."""

from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import sys
import threading
from types import FrameType

from retouch.run.executor import BLAS_THREAD_VARIABLES


def _one_blas_thread_for_analyze(argv: list[str]) -> None:
    """``retouch analyze`` runs its detectors in parallel threads, one a core, and clone's keypoint matching
    beside its own search: a BLAS thread pool on top only spins against them (as against the other workers of
    a batch, ``retouch.run.executor``), so the command asks the libraries for one thread each, unless the user
    set their own. It must be asked before numpy loads (measured in ``benchmarks/results/speed.md``)."""
    if len(argv) > 1 and argv[1] == "analyze":
        for name in BLAS_THREAD_VARIABLES:
            os.environ.setdefault(name, "1")


_one_blas_thread_for_analyze(sys.argv)


def _interrupted_while_loading(signum: int, frame: FrameType | None) -> None:
    # Ctrl-C while numpy, OpenCV and the commands load: nothing has been written yet, so leave at once with the
    # same one line and code as an interrupted command (Python's own handler printed an import traceback)
    os.write(2, b"retouch: error: interrupted\n")
    os._exit(130)


# only for the loading of this package: a program that imports it keeps its own Ctrl-C once the import is done
_previous_handler = (signal.signal(signal.SIGINT, _interrupted_while_loading)
                     if threading.current_thread() is threading.main_thread() else None)
try:
    from retouch.cli.app import app, run

    for _module in pkgutil.iter_modules(__path__):
        if _module.name not in {"app"} and not _module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{_module.name}")
finally:
    if _previous_handler is not None:
        signal.signal(signal.SIGINT, _previous_handler)


def main() -> None:
    run()


__all__ = ["app", "main"]
