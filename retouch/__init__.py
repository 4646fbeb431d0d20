"""retouch: find where archival photographs were doctored."""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from retouch.errors import ImageTooLargeError, InputError, NotSamePhotographError, RetouchError

if TYPE_CHECKING:
    from retouch.result import AnalysisResult, Region


def __getattr__(name: str) -> Any:
    # the result types pull in numpy and OpenCV; loaded on first use, so that importing the package (as the
    # command line does first thing) stays light until the command line can take Ctrl-C cleanly
    if name in {"AnalysisResult", "Region"}:
        from retouch import result

        return getattr(result, name)
    raise AttributeError(f"module 'retouch' has no attribute {name!r}")

__all__ = [
    "AnalysisResult",
    "ImageTooLargeError",
    "InputError",
    "NotSamePhotographError",
    "Region",
    "RetouchError",
    "__version__",
]
