"""``retouch batch INPUT -o OUT``: analyse a folder of scans or compare a CSV of pairs, resumably, in parallel."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from retouch.cli.app import app, console, non_empty_path, stdout

NAMED = 5  # files named in the note on what a folder batch left out


@app.command()
def batch(
    input_path: Path = typer.Argument(..., metavar="INPUT", parser=non_empty_path,
                                      help="A folder of scans (searched recursively) or a CSV of pairs: "
                                      "reference,questioned[,id] (paths relative to the CSV), or of scans under "
                                      "a column named image."),
    out: Path = typer.Option(..., "-o", "--out", parser=non_empty_path,
                             help="Folder for results.jsonl, summary.csv and each item's reports (items/<id>/)."),
    detectors: str = typer.Option("", "--detectors", "-d", help="Detectors for analyze items (default: all "
                                  "default detectors)."),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="Worker processes [default: one "
                                       "per core]."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="'local' starts a Dask LocalCluster; "
                                         "tcp://HOST:PORT uses a running Dask scheduler."),
) -> None:
    """Run analyze or compare over many items. Rerunning skips items done successfully with the same inputs and
    parameters and runs failed ones again; an unreadable file is reported in summary.csv, never fatal."""
    from retouch.run.batch import run_batch
    from retouch.run.checks import detector_selection

    names = detector_selection(detectors)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    bar = Progress(*columns, console=console, transient=False)
    task = bar.add_task("batch", total=None, rate="")

    def progress(done: int, total: int, record: dict | None) -> None:
        # shown from the first report on: run_batch checks the input and the output folder first, and a refusal
        # must stay the one line on stderr
        if not bar.live.is_started:
            bar.start()
        elapsed = bar.tasks[0].elapsed or 0.0
        rate = f"{60 * done / elapsed:.1f} items/min" if done and elapsed else ""
        bar.update(task, completed=done, total=total, rate=rate)
        if record and record["status"] != "ok":
            # the id and the error hold file names: escaped, or '[draft]' in a path is read as a style and '[/x]'
            # as a closing tag that crashes the run; not wrapped, so the path can be copied
            console.print(f"[yellow]failed[/yellow] {escape(record['id'])}: {escape(record['error'])}",
                          markup=True, soft_wrap=True)

    try:
        report = run_batch(input_path, out, detectors=names, workers=workers, scheduler=scheduler,
                           progress=progress)
    finally:
        if bar.live.is_started:
            bar.stop()
    stdout.print(f"{report.total} items: {report.ok} done, {report.failed} failed, {report.skipped} already done "
                 f"({report.executor}).")
    if report.not_images:
        # a folder is read by content, so a .gif or a readme is left out: said once, so no scan goes missing unseen
        count, shown = len(report.not_images), report.not_images[:NAMED]
        more = f" and {count - len(shown)} more" if count > len(shown) else ""
        stdout.print(f"Skipped {count} {'file' if count == 1 else 'files'} not read as images (JPEG, PNG, TIFF, "
                     f"WebP or BMP, by content): {', '.join(shown)}{more}.", markup=False)
    stdout.print(f"Summary: {out / 'summary.csv'}", markup=False)
