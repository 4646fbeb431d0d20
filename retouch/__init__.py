"""retouch: find where archival photographs were doctored."""

from __future__ import annotations

__version__ = "0.1.0"

from retouch.errors import ImageTooLargeError, InputError, NotSamePhotographError, RetouchError
from retouch.result import AnalysisResult, Region

__all__ = [
    "AnalysisResult",
    "ImageTooLargeError",
    "InputError",
    "NotSamePhotographError",
    "Region",
    "RetouchError",
    "__version__",
]
