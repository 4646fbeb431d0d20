"""One item of a batch or of a web-service job, as a worker runs it: its files loaded, analysed or compared, its
report folder written under a staging name and published whole; the outcome described, never raised.

``retouch batch`` and the web service's workers both call :func:`run_item`, so an item fails the same way, with
the same message, whichever front end ran it. Workers may be other processes or a Dask cluster sharing the
folders: an item, its options and its fence travel to them pickled, and workers read their own inputs.

Example
-------
>>> outcome = run_item(Item("scan", "analyze", ("box1/scan.tif",)), "out/items/scan",
...                    ItemOptions(detectors=("grain", "ela")))  # doctest: +SKIP
>>> outcome.status, outcome.score, outcome.folder  # doctest: +SKIP
('ok', 0.31, 'out/items/scan')
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from retouch.errors import InputError
from retouch.io import MAX_PIXELS_VARIABLE
from retouch.io.folders import FULL_DISK, begin_staging, discard, publish

ANALYZE, COMPARE = "analyze", "compare"
INPUTS = {ANALYZE: 1, COMPARE: 2}  # files an item of each command reads


@dataclass(frozen=True)
class Item:
    """An item: an id (its folder's name, see :func:`retouch.run.manifest.item_id`), the command, its files."""

    id: str
    command: str  # "analyze" or "compare"
    inputs: tuple[str, ...]

    def __post_init__(self) -> None:
        if INPUTS.get(self.command) != len(self.inputs):
            raise ValueError(f"item {self.id}: {self.command!r} with {len(self.inputs)} inputs; analyze reads one "
                             "file, compare two")


@dataclass(frozen=True)
class ItemOptions:
    """The settings a job carries to the workers that run its items (stored with a web-service job as JSON).

    Attributes
    ----------
    detectors : tuple of str, optional
        The detectors of an ``analyze`` item, checked by :func:`retouch.run.checks.detector_selection`;
        ``None`` runs the default ones.
    max_pixels : int, optional
        The decompression-bomb guard the worker decodes with; ``None`` reads ``RETOUCH_MAX_PIXELS`` (200 MP by
        default) in the worker.
    max_pixels_name : str
        The setting a refusal tells the user to raise (``RETOUCH_MAX_PIXELS``, ``--max-pixels``).
    max_memory : int, optional
        The memory budget of the item's analysis in bytes (:mod:`retouch.run.budget`); ``None`` reads
        ``RETOUCH_MAX_MEMORY`` (4 GB by default) in the worker.
    """

    detectors: tuple[str, ...] | None = None
    max_pixels: int | None = None
    max_pixels_name: str = MAX_PIXELS_VARIABLE
    max_memory: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"detectors": None if self.detectors is None else list(self.detectors),
                "max_pixels": self.max_pixels, "max_pixels_name": self.max_pixels_name,
                "max_memory": self.max_memory}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ItemOptions:
        """Options as :meth:`to_json` stored them; keys a job stored before an option existed take its default
        (jobs recorded by an earlier version run on after an upgrade)."""
        data = data or {}
        detectors = data.get("detectors")
        return cls(detectors=tuple(detectors) if detectors else None, max_pixels=data.get("max_pixels"),
                   max_pixels_name=data.get("max_pixels_name") or MAX_PIXELS_VARIABLE,
                   max_memory=data.get("max_memory"))


class Fence(Protocol):
    """Whether the attempt running an item still owns it (a fencing token): asked before the item starts, and
    held steady while its folder is published, so an attempt that no longer owns the item (its job was deleted,
    another attempt took the item over after a restart) throws its output away instead of putting it in place.
    It travels to the worker with the item, so it must pickle."""

    reason: str  # the outcome's error when the fence no longer holds

    def holds(self) -> bool:
        """Whether the attempt owns the item now (a cheap early look; it may change at once)."""
        ...

    def publishing(self) -> AbstractContextManager[bool]:
        """Whether the attempt owns the item, kept true for the ``with`` block (no other attempt can take the
        item over meanwhile), in which the folder is published. May raise when ownership cannot be checked (the
        store cannot be read): the output is then thrown away, as when the fence does not hold."""
        ...


@dataclass
class ItemOutcome:
    """What running an item gave. ``status`` is ``"ok"``, ``"error"`` (``error`` says why, naming the file and
    what to do; ``internal`` when the fault is retouch's, not the input's) or ``"fenced"`` (the output was thrown
    away, see :class:`Fence`)."""

    id: str
    command: str
    inputs: list[str]
    sha256: list[str | None]  # of each input file, None where it is not a readable regular file
    folder: str  # where the item's reports are once published
    status: str = "error"
    score: float | None = None
    regions: int | None = None
    summary: str = ""
    artifacts: list[str] = field(default_factory=list)
    seconds: float | None = None
    note: str = ""  # how the files were read, for whoever reads a summary (pages left out, bits shifted)
    error: str = ""
    internal: bool = False
    error_type: str = ""  # the exception's class, for an internal error
    code: str = ""  # the error's code (retouch.errors.InputError's: "too_large", "no_space"...), "" if none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_sha256(path: str) -> str | None:
    """The file's SHA-256, or None when it is not a readable regular file (the item then fails with the loader's
    message; a device such as /dev/zero, or a pipe, would otherwise be read forever)."""
    if not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def run_item(item: Item, folder: str | os.PathLike[str], options: ItemOptions | None = None, *,
             fence: Fence | None = None) -> ItemOutcome:
    """Run ``item`` into ``folder`` and describe the outcome; an item's own failure is never raised.

    The reports are written under a staging name beside ``folder`` and put in its place only once complete
    (:mod:`retouch.io.folders`), so ``folder`` holds a whole earlier report or the whole new one. An input
    problem (unreadable, too large, not the same photograph) is an ``"error"`` naming the file; a full disk an
    ``"error"`` with the code ``no_space`` (the disk's, not the input's: a coordinator may run the item again);
    any other exception an internal ``"error"``. An interrupt (SIGTERM, Ctrl-C) removes the staging folder and is
    raised. With a ``fence``, the folder is published inside :meth:`Fence.publishing` only if the fence holds
    there; otherwise the output is thrown away and the outcome is ``"fenced"``.
    """
    options = options or ItemOptions()
    final = Path(folder)
    outcome = ItemOutcome(id=item.id, command=item.command, inputs=list(item.inputs),
                          sha256=[file_sha256(path) for path in item.inputs], folder=str(final))
    if fence is not None and not fence.holds():  # e.g. its job was deleted while it waited for a worker
        return _fenced(outcome, fence.reason)
    staged: Path | None = None
    try:
        staged = begin_staging(final)
        with warnings.catch_warnings():
            # as on the command line (retouch.cli.app): library warnings on degenerate images are handled by the
            # analyses, and workers share the terminal's stderr
            warnings.simplefilter("ignore")
            task = _run_task(item, staged, options)
        lost = _publish(staged, final, fence)
        if lost:  # it lost the item while it ran: its results must not appear
            discard(staged)
            return _fenced(outcome, lost)
    except InputError as error:
        _discard(staged)
        outcome.error, outcome.code = _named_as_published(str(error), staged, final), error.code
        return outcome
    except OSError as error:
        _discard(staged)
        if error.errno not in FULL_DISK:
            return _internal(outcome, error, staged, final)
        outcome.error = f"{final}: no space left on device writing the item's reports (nothing was kept)"
        outcome.code = "no_space"
        return outcome
    except Exception as error:  # noqa: BLE001 - one bad item must not end a batch or kill a worker
        _discard(staged)
        return _internal(outcome, error, staged, final)
    except BaseException:
        _discard(staged)
        raise
    outcome.status, outcome.score, outcome.regions = "ok", round(task.score, 4), task.region_count
    outcome.summary, outcome.artifacts, outcome.seconds = task.summary, task.artifacts, task.seconds
    outcome.note = input_notes(task.inputs)
    return outcome


def _publish(staged: Path, final: Path, fence: Fence | None) -> str:
    """Publish ``staged`` at ``final`` if ``fence`` holds; why it was not ("" when it was)."""
    if fence is None:
        publish(staged, final)
        return ""
    with ExitStack() as held:
        try:
            holds = held.enter_context(fence.publishing())
        except Exception as error:  # noqa: BLE001 - ownership unknown: not published, the coordinator decides
            return f"ownership of the item could not be checked ({type(error).__name__}: {str(error)[:120]})"
        if holds:
            publish(staged, final)  # (its own failures are the item's, as any other write's)
            return ""
    return fence.reason


def _internal(outcome: ItemOutcome, error: Exception, staged: Path | None, final: Path) -> ItemOutcome:
    outcome.error = _named_as_published(f"internal error: {type(error).__name__}: {str(error)[:200]}", staged,
                                        final)
    outcome.internal, outcome.error_type = True, type(error).__name__
    return outcome


def _run_task(item: Item, staged: Path, options: ItemOptions) -> Any:
    from retouch.run.tasks import analyze_file, compare_files

    limits = {"max_pixels": options.max_pixels, "max_pixels_name": options.max_pixels_name,
              "max_memory": options.max_memory}
    if item.command == ANALYZE:
        return analyze_file(item.inputs[0], staged, detectors=list(options.detectors or []) or None, **limits)
    return compare_files(item.inputs[0], item.inputs[1], staged, **limits)


def _fenced(outcome: ItemOutcome, reason: str) -> ItemOutcome:
    outcome.status, outcome.error = "fenced", reason
    return outcome


def _discard(staged: Path | None) -> None:
    if staged is not None:
        discard(staged)


def _named_as_published(message: str, staged: Path | None, final: Path) -> str:
    """An error message naming the item's folder where it will be, not the staging folder it was written in."""
    return message if staged is None else message.replace(str(staged), str(final))


def input_notes(records: Sequence[Mapping[str, Any]]) -> str:
    """What a reader of a summary must know about how an item's files were read (pages left out, say)."""
    return " ".join(f"{record['name']} {note}" for record in records for note in record.get("notes", []))
