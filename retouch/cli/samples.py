"""``retouch samples build`` and ``retouch demo``: generated archive-style forgeries and the teaching gallery."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from retouch.cli.app import app, non_empty_path, stdout

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


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), "-o", "--out", parser=non_empty_path,
                             help="Folder for the demo's reports and gallery."),
    size: int = typer.Option(768, "--size", min=256, max=4096, help="Longest side of the generated prints."),
) -> None:
    """Build the bundled samples, compare a doctored pair, analyse forged and honest scans, write the gallery."""
    from retouch.gallery import render_gallery
    from retouch.io import atomic_write_text
    from retouch.io.folders import require_output_folder
    from retouch.run.tasks import analyze_file, compare_files
    from retouch.samples.build import build_samples

    started = time.perf_counter()
    gallery = require_output_folder(out, ["index.html"]) / "index.html"  # before a minute of work, not after
    samples = out / "samples"
    stdout.print(f"Building samples in {samples} ...", markup=False)
    manifest = build_samples(samples, seed=1917, count=6, size=size)
    pair = _pair_to_show(manifest["pairs"])
    pair_folder = out / f"compare-{pair['id']}"
    stdout.print(f"Comparing the pair {pair['id']} ...")
    compare_files(samples / pair["reference"], samples / pair["questioned"], pair_folder)
    singles = []
    for case in manifest["single"]:
        folder = out / f"analyze-{case['id']}"
        stdout.print(f"Analysing {case['id']} ...")
        analyze_file(samples / case["image"], folder)
        singles.append((folder, case["method"]))
    truth = (f"The generator removed a figure ({pair['edit']} fill) covering "
             f"{100 * pair['info']['mask_fraction_questioned']:.1f} % of the questioned print.")
    atomic_write_text(gallery, render_gallery(pair_folder, singles, pair_truth_note=truth))
    stdout.print(f"Done in {time.perf_counter() - started:.0f} s.")
    stdout.print(f"Gallery: {gallery.resolve()}", markup=False)


REMOVALS = ("diffusion", "airbrush", "clone", "exemplar")  # the demo's pair shows a figure painted out


def _pair_to_show(pairs: list[dict]) -> dict:
    """The removal pair the demo compares: the diffusion fill, unless the questioned print's crop left less than
    1 % of its image changed (at some seeds and sizes the crop cuts the figure away: at --size 256, 0.3 %, and
    the demo's main example then reported no change); then the removal with the most of its edit in frame."""
    removals = [pair for pair in pairs if pair["edit"] in REMOVALS]
    return max(removals, key=lambda pair: (pair["info"]["mask_fraction_questioned"] >= 0.01,
                                           pair["edit"] == "diffusion", pair["info"]["mask_fraction_questioned"]))
