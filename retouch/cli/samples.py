"""``retouch samples build`` and ``retouch demo``: generated archive-style forgeries and the teaching gallery."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from retouch.cli.app import app, non_empty_path, stdout
from retouch.errors import InputError

samples_app = typer.Typer(help="Generate archive-style scans and forgeries with exact ground truth.",
                          no_args_is_help=True)
app.add_typer(samples_app, name="samples")


@samples_app.command("build")
def build(
    out: Path = typer.Option(Path("samples-out"), "-o", "--out", parser=non_empty_path,
                             help="Folder for the generated set (a set already there is replaced)."),
    seed: int = typer.Option(1, "--seed", min=0, help="Seed (0 or more): the same seed gives the same set."),
    count: int = typer.Option(12, "--count", min=1, max=2000, help="Single-image cases, and as many pairs."),
    size: int = typer.Option(768, "--size", min=128, max=8192, help="Longest side of the prints in pixels."),
) -> None:
    """Generate single-image forgeries, untouched scans and scan pairs with their ground-truth masks."""
    from retouch.samples.build import build_samples

    manifest = build_samples(out, seed=seed, count=count, size=size)
    stdout.print(f"{len(manifest['single'])} single-image cases and {len(manifest['pairs'])} pairs in {out}",
                 markup=False)
    stdout.print(f"Manifest: {out / 'cases.json'}", markup=False)


DEMO_SEEDS = (1917, 1937, 1953)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "-o", "--out", parser=non_empty_path,
                             help="Folder for the demo's reports and gallery."),
    size: int = typer.Option(768, "--size", min=256, max=4096, help="Longest side of the generated prints."),
    seeds: int = typer.Option(3, "--seeds", min=1, max=len(DEMO_SEEDS),
                              help="How many generated photographs each technique is shown on."),
    historical: Path | None = typer.Option(None, "--historical", parser=non_empty_path,
                                           help="A folder of real pairs with a manifest.json (cases with id, "
                                                "original, altered, what): compared and shown in the gallery."),
    commons: bool = typer.Option(False, "--commons", help="Download the public-domain Yezhov pair from Wikimedia "
                                                           "Commons once (cached) and show it in the gallery."),
) -> None:
    """Build the teaching gallery: each retouching technique on generated prints, what each method finds against
    the truth, and real pairs when given."""
    from retouch.gallery import PAIR_FOLDER, historical_section, render_gallery
    from retouch.io import atomic_write_json, atomic_write_text
    from retouch.io.folders import require_output_folder
    from retouch.io.historical import fetch_commons_pair, read_pairs
    from retouch.run.executor import default_workers
    from retouch.run.tasks import analyze_file, compare_files
    from retouch.samples.lesson import LESSON_MANIFEST, build_lesson

    started = time.perf_counter()
    gallery = require_output_folder(out, ["index.html"]) / "index.html"  # before minutes of work, not after
    real_sets = [read_pairs(historical)] if historical is not None else []  # a bad folder is refused up front
    if commons:
        try:
            real_sets.append(read_pairs(fetch_commons_pair()))
        except InputError as error:  # offline: the gallery is still built, and the message says what to do
            stdout.print(f"Note: {error}", markup=False)
    lessons = []
    for seed in DEMO_SEEDS[:seeds]:
        lesson = out / f"seed-{seed}"
        stdout.print(f"Building the lesson's prints for seed {seed} in {lesson} ...", markup=False)
        manifest = build_lesson(lesson, seed=seed, size=size)
        pair = manifest["pair"]
        try:
            compare_files(lesson / pair["reference"], lesson / pair["questioned"], lesson / PAIR_FOLDER)
        except InputError as error:  # compare could not align the two prints: the gallery shows it as a miss
            pair["refused"] = str(error)
            atomic_write_json(lesson / LESSON_MANIFEST, manifest)
        for case in manifest["cases"]:
            stdout.print(f"Analysing {case['key']} (seed {seed}) ...", markup=False)
            analyze_file(lesson / case["image"], lesson / f"analyze-{case['key']}", threads=default_workers())
        lessons.append(lesson)
    sections = []
    for description, cases in real_sets:
        shown = []
        for case in cases:
            stdout.print(f"Comparing the real pair {case.id} ...", markup=False)
            folder = out / "historical" / case.id
            try:
                compare_files(case.original, case.altered, folder)
                shown.append((case, folder, ""))
            except InputError as error:  # e.g. not the same photograph: the card says so
                shown.append((case, None, str(error)))
        sections.append(historical_section(shown, source=str(description.get("source", ""))))
    atomic_write_text(gallery, render_gallery(lessons, historical="".join(sections)))
    stdout.print(f"Done in {time.perf_counter() - started:.0f} s.")
    stdout.print(f"Gallery: {gallery.resolve()}", markup=False)
