"""Generated archive-style scans and forgeries with exact ground truth, built from package-shipped photographs."""

from retouch.samples.archive import PrintStyle, ScanStyle
from retouch.samples.forge import (
    FORGERY_METHODS,
    REMOVAL_METHODS,
    ForgeryCase,
    PairCase,
    make_authentic,
    make_forgery,
    make_pair,
    stamp_source,
)
from retouch.samples.sources import SOURCES, load_source

__all__ = [
    "FORGERY_METHODS",
    "REMOVAL_METHODS",
    "SOURCES",
    "ForgeryCase",
    "PairCase",
    "PrintStyle",
    "ScanStyle",
    "load_source",
    "make_authentic",
    "make_forgery",
    "make_pair",
    "stamp_source",
]
