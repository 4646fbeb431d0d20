"""``retouch analyze IMAGE``: single-image evidence from every detector, fused into one suspect mask."""

from __future__ import annotations

from pathlib import Path

import typer

from retouch.cli.app import app, max_pixels_name, non_empty_path
from retouch.cli.render import print_outcome
from retouch.detect import detectors as registered_detectors


def _default_out(image: Path) -> Path:
    return Path(f"retouch-analyze-{image.stem}")


@app.command()
def analyze(
    image: Path = typer.Argument(..., parser=non_empty_path,
                                 help="The scan to examine (JPEG, PNG, TIFF, WebP or BMP)."),
    out: Path | None = typer.Option(None, "-o", "--out", parser=non_empty_path,
                                    help="Folder for the report and maps [default: ./retouch-analyze-<name>]."),
    detectors: str = typer.Option("", "--detectors", "-d", help="Comma-separated detectors to run, or 'all' "
                                  "[default: every default detector]. See 'retouch detectors'."),
    max_pixels: int | None = typer.Option(None, "--max-pixels", min=1, help="Refuse images with more pixels than "
                                          "this (decompression-bomb guard) [default: 200 MP or "
                                          "$RETOUCH_MAX_PIXELS]."),
    as_json: bool = typer.Option(False, "--json", help="Print the outcome as JSON instead of a table."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="Detectors run at once [default: this "
                                       "machine's cores, while the memory budget allows; the results are the "
                                       "same]."),
) -> None:
    """Look for retouching in one scan: error levels, JPEG traces, grain, clones and inpainting."""
    from retouch.run.checks import detector_selection
    from retouch.run.executor import default_workers
    from retouch.run.tasks import analyze_file

    names = detector_selection(detectors)
    outcome = analyze_file(image, out or _default_out(image), detectors=names, max_pixels=max_pixels,
                           max_pixels_name=max_pixels_name(max_pixels), threads=threads or default_workers())
    print_outcome(outcome, as_json=as_json)


@app.command("detectors")
def list_detectors() -> None:
    """List the single-image detectors and what each one finds."""
    for name, spec in registered_detectors().items():
        default = "" if spec.default else " (not run by default)"
        print(f"{name:10s} {spec.title}{default}\n{'':10s} {spec.description}")
