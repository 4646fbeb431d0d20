"""Errors that retouch reports to users as one readable line (CLI exit 2, API 4xx)."""

from __future__ import annotations


class RetouchError(Exception):
    """Base class for errors a user can act on."""


class InputError(RetouchError):
    """The input is unusable: not an image, truncated, too large, unreadable or not what the command needs.

    ``str(error)`` is one line that names the file and says what to do.
    """

    def __init__(self, message: str, *, path: str | None = None, code: str = "bad_input") -> None:
        super().__init__(message)
        self.path = path
        self.code = code


class ImageTooLargeError(InputError):
    """The image exceeds the configured pixel limit (decompression-bomb guard)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message, path=path, code="too_large")


class NotSamePhotographError(InputError):
    """The two images of a comparison do not show the same photograph."""

    def __init__(self, message: str = "these images do not show the same photograph") -> None:
        super().__init__(message, code="not_same_photograph")
