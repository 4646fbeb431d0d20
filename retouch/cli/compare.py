"""``retouch compare REFERENCE QUESTIONED``: align two scans of one photograph and map what changed."""

from __future__ import annotations

from pathlib import Path

import typer

from retouch.cli.app import app, max_pixels_name, non_empty_path
from retouch.cli.render import print_outcome


@app.command()
def compare(
    reference: Path = typer.Argument(..., parser=non_empty_path,
                                     help="The scan believed closest to the original print."),
    questioned: Path = typer.Argument(..., parser=non_empty_path, help="The scan suspected of being altered."),
    out: Path | None = typer.Option(None, "-o", "--out", parser=non_empty_path,
                                    help="Folder for the report and maps [default: ./retouch-compare-<questioned "
                                    "name>]."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help="Refuse images with more pixels than "
                                          "this [default: 200 MP or $RETOUCH_MAX_PIXELS]."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON instead of a table."),
) -> None:
    """Find what was removed, added or retouched between two scans that differ in crop, scale, rotation,
    perspective, tone, grain and compression."""
    from retouch.run.tasks import compare_files

    folder = out or Path(f"retouch-compare-{questioned.stem}")
    outcome = compare_files(reference, questioned, folder, max_pixels=max_pixels,
                            max_pixels_name=max_pixels_name(max_pixels))
    print_outcome(outcome, as_json=as_json)
