"""Typed detector options: each detector takes one frozen dataclass of documented defaults, and keyword changes to
it (as ``--options`` and the API pass them), which are checked against the dataclass's fields."""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass, replace
from typing import Any, TypeVar

Options = TypeVar("Options")


def resolve_options(defaults: Options, options: Options | None, changes: dict[str, Any]) -> Options:
    """``options`` (or ``defaults``) with ``changes`` applied; an unknown name is a TypeError naming the known
    ones.

    A sequence given for a tuple field becomes a tuple, so the options stay hashable and serialise alike.
    """
    chosen = defaults if options is None else options
    if not is_dataclass(chosen) or isinstance(chosen, type):
        raise TypeError(f"options must be a {type(defaults).__name__}, got {type(chosen).__name__}")
    known = {field.name: field for field in fields(chosen)}
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise TypeError(f"unknown option {', '.join(unknown)} for {type(defaults).__name__}; known: "
                        f"{', '.join(known)}")
    converted = {name: tuple(value) if isinstance(getattr(chosen, name), tuple) else value
                 for name, value in changes.items()}
    return replace(chosen, **converted) if converted else chosen


def options_params(options: object) -> dict[str, Any]:
    """The options as JSON-serialisable params for ``report.json`` (tuples as lists)."""
    return {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(options).items()}
