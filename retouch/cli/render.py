"""Terminal rendering shared by commands: a region table and the closing lines that say where the report is."""

from __future__ import annotations

import json
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from retouch.cli.app import stdout
from retouch.run.tasks import REPORT_HTML, REPORT_JSON, TaskOutcome


def print_outcome(outcome: TaskOutcome, *, as_json: bool = False) -> None:
    """Print what a task found, from its report.json (the single source of the numbers)."""
    folder = Path(outcome.out_dir)
    if as_json:
        print(json.dumps(outcome.to_dict(), indent=2))
        return
    report = json.loads((folder / REPORT_JSON).read_text(encoding="utf-8"))
    result = report["result"]
    stdout.print(f"[bold]{escape(result['summary'])}[/bold]")
    if result["regions"]:
        table = Table(show_header=True, header_style="bold")
        for column in ("#", "kind", "x", "y", "w", "h", "area px", "score", "evidence"):
            table.add_column(column, justify="right" if column not in {"kind", "evidence"} else "left")
        for index, region in enumerate(result["regions"][:20], start=1):
            x, y, w, h = region["bbox"]
            evidence = region.get("evidence") or {}
            note = ", ".join(evidence.get("detectors", [])) if "detectors" in evidence else ""
            table.add_row(str(index), region["kind"], str(x), str(y), str(w), str(h), f"{region['area']:,}",
                          f"{region['score']:.2f}", note)
        stdout.print(table)
        if len(result["regions"]) > 20:
            stdout.print(f"... and {len(result['regions']) - 20} more regions in the report")
    for item in report["inputs"]:
        for note in item.get("notes", []):
            stdout.print(f"Note: {item['name']} {note}", markup=False)
    # paths are the user's, printed as they are: as markup, '[draft]' in a folder name would vanish
    stdout.print(f"Report: {folder / REPORT_HTML}", markup=False)
    stdout.print(f"Data:   {folder / REPORT_JSON}", markup=False)
