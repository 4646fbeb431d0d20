"""The memory budget of one analysis: what ``retouch analyze`` or ``compare`` will need, told from the files'
headers before anything is decoded, and the refusal of work that would need more than the budget allows.

Method
------
The peak resident size of a whole task (load, analyse, write every artifact) grows with the pixels: the decoded
image, each detector's maps (kept until the report is written), the largest detector's working arrays, the
fusion and the report's pictures. ``benchmarks/memory.py`` measures it for each detector alone, for every
default detector and for a comparison, at two sizes; the slopes give the bytes per pixel here, rounded up. An
analysis with detectors ``D`` is estimated at ``BASE_BYTES + pixels * (SHARED + sum of D's own)``, where a
detector's own bytes per pixel are its measured slope less the part every run shares (see the benchmark's
results, ``benchmarks/results/memory.md``, for the measured peaks beside these estimates). A comparison is
estimated from the pixels of both scans.

Limits
------
The figures hold for the analyses as measured; a change to a detector that keeps more full-size arrays must be
measured again (the benchmark compares estimates with peaks). Images are not analysed in bands: one whose
estimate is over the budget is refused, naming the budget and what to do.

Example
-------
>>> round(estimated_bytes("analyze", 24_000_000, ["grain", "ela"]) / 1e9, 2)
1.39
>>> round(estimated_bytes("analyze", 196_000_000) / 1e9, 1)  # every default detector: over the 4 GB budget
15.0
"""

from __future__ import annotations

from collections.abc import Sequence

from retouch.errors import InputError
from retouch.io.load import positive_setting

MAX_MEMORY_VARIABLE = "RETOUCH_MAX_MEMORY"
DEFAULT_MAX_MEMORY = 4_000_000_000  # bytes: 4 GB for one analysis (the service runs one per worker)

BASE_BYTES = 450_000_000  # the interpreter, numpy, OpenCV and the detectors' modules, with their own buffers
SHARED_BYTES_PER_PIXEL = 30.0  # the decoded image, its gray copies, fusion, the report's pictures: every analysis
DETECTOR_BYTES_PER_PIXEL = {"clone": 4.0, "ela": 5.0, "grain": 4.0, "grid": 5.0, "inpaint": 4.0,  # maps kept
                            "jpeg": 5.0, "metadata": 5.0,  # measured at about 0 without a thumbnail; a full-size map with one
                            # dq: not yet measured by benchmarks.memory; its traced peak on a 24 MP picture (12 bytes
                            # a pixel, its result's maps included) was twice grain's (6), so twice grain's figure
                            "dq": 8.0,
                            # settling: not yet in benchmarks.memory; alone on a twice-saved scan its peak grew 2.4
                            # bytes a pixel more than grain's alone (6 and 24 MP), so grain's figure plus 3, and 5
                            # more for the picture given its history again (traced peak alone, 6 MP: 12.3 -> 17.3)
                            "settling": 12.0}
UNMEASURED_DETECTOR_BYTES_PER_PIXEL = 8.0  # a detector registered by a plug-in: twice the costliest measured
COMPARE_BYTES_PER_PIXEL = 18.0  # per pixel of both scans together
BUDGET_MEASURE = "a constant for the imports plus bytes per pixel: shared, and each detector's own"


class MemoryBudgetError(InputError):
    """An image (or pair) that would need more memory to analyse than the budget allows."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message, path=path, code="over_memory_budget")


def estimated_bytes(command: str, pixels: int, detectors: Sequence[str] | None = None) -> int:
    """The peak memory a ``command`` ("analyze" or "compare") on ``pixels`` pixels (both scans' for a
    comparison) is estimated to need; ``detectors`` are an analysis's (None: the default ones)."""
    if command == "compare":
        return int(BASE_BYTES + COMPARE_BYTES_PER_PIXEL * pixels)
    if detectors is None:
        from retouch.registry import detectors as registered

        detectors = [name for name, spec in registered().items() if spec.default]
    own = sum(DETECTOR_BYTES_PER_PIXEL.get(name, UNMEASURED_DETECTOR_BYTES_PER_PIXEL) for name in set(detectors))
    return int(BASE_BYTES + (SHARED_BYTES_PER_PIXEL + own) * pixels)


def max_memory_from_env() -> int:
    """The budget in force: ``RETOUCH_MAX_MEMORY`` (bytes, a whole number) if set, else 4 GB; anything else is
    refused rather than read as no limit."""
    return positive_setting(MAX_MEMORY_VARIABLE, DEFAULT_MAX_MEMORY, unit="bytes", example="8000000000 (8 GB)",
                            default_text="4 GB")


def _gigabytes(size: float) -> str:
    return f"{size / 1e9:.1f} GB"


def require_within_budget(command: str, pixels: int, *, detectors: Sequence[str] | None = None, name: str,
                          budget: int | None = None, budget_name: str = MAX_MEMORY_VARIABLE) -> None:
    """Refuse (:class:`MemoryBudgetError`, naming ``name``, the estimate, the budget and ``budget_name``) a task
    whose estimate (:func:`estimated_bytes`) is over ``budget`` (None: :func:`max_memory_from_env`)."""
    budget = max_memory_from_env() if budget is None else budget
    needed = estimated_bytes(command, pixels, detectors)
    if needed <= budget:
        return
    what = "compare these scans" if command == "compare" else "analyse it"
    fewer = "" if command == "compare" else ", or choose fewer detectors (grain, ela and jpeg need the least)"
    raise MemoryBudgetError(f"{name}: {pixels / 1e6:.0f} MP would need about {_gigabytes(needed)} of memory to "
                            f"{what}, over the budget of {_gigabytes(budget)} for one analysis; raise "
                            f"{budget_name} if this machine has the memory{fewer}", path=name)


def concurrent_detectors(threads: int, pixels: int, detectors: Sequence[str] | None = None, *,
                         budget: int | None = None) -> int:
    """How many detectors may run at once on ``pixels`` pixels within ``budget`` (None: the environment's):
    ``threads`` when the estimate plus one more detector's working arrays (taken as the shared bytes per pixel,
    which hold the largest detector's) still fits, else 1, one after another, as the estimate assumes."""
    if threads <= 1:
        return 1
    budget = max_memory_from_env() if budget is None else budget
    extra = SHARED_BYTES_PER_PIXEL * pixels * (threads - 1)
    return threads if estimated_bytes("analyze", pixels, detectors) + extra <= budget else 1
