"""Benchmarks: speed, memory and detection quality, measured apart from the tests (see ``benchmarks/results``)."""

from __future__ import annotations

from pathlib import Path


def write_markdown(path: str | Path, lines: list[str]) -> Path:
    """Write a results page (``lines`` joined) to ``path``, creating its folder, and echo it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return out
