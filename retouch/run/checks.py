"""What retouch requires of a request before any work starts, checked the same way by the CLI and the API.

Each check raises :class:`retouch.errors.InputError` with one line that says what is wrong and what to do.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from retouch.errors import InputError
from retouch.run.pipeline import DetectorChoiceError, MIN_SIDE, resolve_detectors

if TYPE_CHECKING:
    from retouch.io import LoadedImage


def detector_selection(value: str | None, *, field: str = "--detectors") -> list[str] | None:
    """The detectors a comma-separated ``value`` names, or ``None`` (the defaults) when it is empty or blank.

    The rule is :func:`retouch.run.pipeline.resolve_detectors`'s: a value that is not blank but names nothing once
    split on commas (``","``) is refused rather than read as "no detector", which would run nothing and report a
    clean result; ``"all"`` names every detector. ``field`` names the option or form field in the messages.
    """
    if value is None or not value.strip():
        return None
    try:
        return resolve_detectors(value)
    except DetectorChoiceError as error:
        raise InputError(f"{field}: {error}", code="bad_detectors") from None


def require_analysable(image: LoadedImage) -> None:
    """Refuse an image too small for retouch to analyse or compare, naming the file and its size.

    The detectors skip any image under ``MIN_SIDE`` pixels on a side (their blocks and windows do not fit), and
    registration finds no usable features in one either: reported as clean, such an image would look examined.
    """
    require_analysable_size(image.width, image.height, name=image.path or image.name, path=image.path)


def require_analysable_size(width: int, height: int, *, name: str, path: str | None = None) -> None:
    """:func:`require_analysable` for an image known by its size alone (e.g. from its header, before decoding);
    ``name`` labels it in the message. Which side is the width does not matter, so a header's size, before the
    EXIF orientation is applied, gives the same answer as the decoded image."""
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{name}: the image is {width}x{height} pixels; retouch needs at least {MIN_SIDE} x "
                         f"{MIN_SIDE} pixels to analyse (its detectors and the comparison work on blocks and "
                         "neighbourhoods of pixels); give a larger scan", path=path, code="too_small")


def require_output_folder(out_dir: str | os.PathLike[str], file_names: Iterable[str] = (), *,
                          option: str = "-o/--out", create: bool = True) -> Path:
    """Create (if needed) and return the output folder ``out_dir``, refusing one retouch cannot write into.

    Refused: a path that exists and is not a folder, a folder that cannot be created or written to, and a folder
    where one of ``file_names`` (the files the command writes) exists as something other than a file, which no
    atomic write can replace. ``option`` is what the messages tell the user to change. With ``create=False``
    nothing is created: the checks an existing path allows are made, so that a command can refuse a bad output
    folder before slow preparations (connecting to a cluster) and create it only once they have succeeded.
    """
    folder = Path(out_dir)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: the output path exists and is not a folder; choose another {option}",
                         path=str(folder), code="bad_output")
    if folder.is_symlink() and not folder.exists():  # mkdir would say only "File exists", which it does not
        raise InputError(f"{folder}: the output path is a symbolic link to {os.readlink(folder)}, which does not "
                         f"exist; create that folder, or choose another {option}", path=str(folder),
                         code="bad_output")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"{folder}: cannot create the output folder ({error.strerror}); choose another "
                             f"{option}", path=str(folder), code="bad_output") from None
    if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{folder}: the output folder is not writable; choose another {option}",
                         path=str(folder), code="bad_output")
    for name in file_names:
        target = folder / name
        if target.exists() and not target.is_file():
            raise InputError(f"{target}: retouch writes a file here but a folder (or other non-file) is in the "
                             f"way; remove it or choose another {option}", path=str(target), code="bad_output")
    return folder
