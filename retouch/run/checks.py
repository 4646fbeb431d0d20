"""What retouch requires of a request before any work starts, checked the same way by the CLI and the API.

Each check raises :class:`retouch.errors.InputError` with one line that says what is wrong and what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retouch.errors import InputError
from retouch.run.pipeline import MIN_SIDE, DetectorChoiceError, resolve_detectors

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
