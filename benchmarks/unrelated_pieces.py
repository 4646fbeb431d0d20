"""Shared pieces between photographs that share nothing: how often does ``compare`` find a donor by chance?

A composite's pieces (``retouch.compare.composite``) are accepted a contrario, but the keypoint count's
independence fails on real pictures (one texture gives several keypoints), so a piece needs ``MIN_MATCHES``
distinct places on its own, and a piece with fewer is kept only when a second test agrees (the fine edges over
its own outline pointing the same way under its similarity, beyond chance and beyond the same outline under 999
wrong placements of the reference, in each half of the outline too: ``composite.confirmed_piece``). This
script measures both on pairs of unrelated photographs: the PS-Battles source photos of ``../shared/realdata``
sorted by case, each against the next one, and each against the photoshop made from the source seven cases on (a
different photograph, as edited and saved by someone else).

    python -m benchmarks.unrelated_pieces [--data ../shared/realdata] [--workers 1] [--limit N] [--no-write]

Per pair: the pieces the places alone carry (``MIN_MATCHES`` or more distinct places, NFA at most 0.01), the
pieces under that floor (``CONFIRMED_MATCHES`` or more places, NFA at most 0.01) that the search found, and how
many of those the structure test confirmed. Every piece reported between unrelated photographs is a false alarm.
For each piece under the floor the binomial tail (log10) of the structure agreement over its outline is given
beside the lowest tail of the same outline under the wrong placements, to show how far from passing it was, then
the tails over the outline's two halves (each must agree on its own; when one alone does, the piece is cut to
the places in it and tested again: the figures are the cut outline's for a piece confirmed so, else the outline's
as found). Results
go to ``benchmarks/results/unrelated_pieces.md`` (a full run only; ``--limit`` prints). When the folder is absent
the script says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.real import _run

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "unrelated_pieces.md"
PSBATTLES = "mantranet_psbattles"
OTHER_CASE = 7  # the photoshop of the source this many cases on


def unrelated_pairs(data: Path) -> list[tuple[str, str, str]]:
    """(name, reference path, questioned path) for every unrelated pair of the PS-Battles folder."""
    folder = data / PSBATTLES
    cases = sorted((c for c in json.loads((folder / "manifest.json").read_text())["cases"] if c.get("original")),
                   key=lambda c: c["id"])
    pairs = []
    for i, case in enumerate(cases[:-1]):
        following = cases[i + 1]
        pairs.append((f"{case['id']} / {following['id']} source", str(folder / case["original"]),
                      str(folder / following["original"])))
    for i, case in enumerate(cases):
        other = cases[(i + OTHER_CASE) % len(cases)]
        pairs.append((f"{case['id']} / {other['id']} photoshop", str(folder / case["original"]),
                      str(folder / other["forged"])))
    return pairs


def _pair(task: tuple[str, str, str]) -> dict:
    from retouch.compare.composite import MIN_MATCHES, candidate_pieces, confirmed_piece, kept_pieces
    from retouch.io import load_image

    name, reference_path, questioned_path = task
    reference = load_image(reference_path, max_pixels=400_000_000).pixels
    questioned = load_image(questioned_path, max_pixels=400_000_000).pixels
    started = time.process_time()  # the search and the confirmations, as `shared_pieces(grow=False)` runs them
    candidates = candidate_pieces(reference, questioned)
    reported = kept_pieces(reference, questioned, candidates)
    seconds = time.process_time() - started
    strong = [piece for piece, sub_floor in candidates if not sub_floor]
    below = []
    for piece, sub_floor in candidates:
        if sub_floor:  # tested again here, also where `kept_pieces` skipped it as lying on a stronger piece
            tested = confirmed_piece(reference, questioned, piece)
            below.append({"places": piece.matches, "nfa": float(f"{piece.nfa:.2g}"),
                          "tail": tested.structure_log10_tail, "null_tail": tested.structure_null_log10_tail,
                          "halves": list(tested.structure_half_log10_tails), "left_out": tested.places_left_out,
                          "confirmed": tested.confirmed})
    return {"pair": name, "cpu_s": round(seconds, 1), "floor": MIN_MATCHES,
            "strong": [{"places": p.matches, "nfa": float(f"{p.nfa:.2g}")} for p in strong],
            "below_floor": below,
            "reported": [{"places": p.matches, "nfa": float(f"{p.nfa:.2g}"), "confirmed": p.confirmed,
                          "tail": p.structure_log10_tail} for p in reported]}


def table(rows: list[dict]) -> str:
    strong = sum(len(r["strong"]) for r in rows)
    below = [b for r in rows for b in r["below_floor"]]
    confirmed = [p for r in rows for p in r["reported"] if p["confirmed"]]
    reported_pairs = sum(bool(r["reported"]) for r in rows)
    lines = ["| pairs | pieces on places alone (>= floor) | pieces under the floor found | of those confirmed "
             "| pairs with a piece reported | CPU s per pair (median) |", "|---|---|---|---|---|---|",
             f"| {len(rows)} | {strong} in {sum(bool(r['strong']) for r in rows)} pairs | {len(below)} in "
             f"{sum(bool(r['below_floor']) for r in rows)} pairs | {len(confirmed)} | {reported_pairs} | "
             f"{float(np.median([r['cpu_s'] for r in rows])):.1f} |", ""]
    if below:
        by_places = {k: sum(b["places"] == k for b in below) for k in sorted({b["places"] for b in below})}
        margins = [b["tail"] - b["null_tail"] for b in below]
        lines += [f"Pieces under the floor by distinct places: "
                  + ", ".join(f"{k}: {v}" for k, v in by_places.items())
                  + f"; NFA {min(b['nfa'] for b in below):.2g} to {max(b['nfa'] for b in below):.2g}. "
                  f"The piece's tail minus the lowest under the wrong placements (log10; it passes only below 0): "
                  f"median {float(np.median(margins)):.1f}, lowest {min(margins):.1f}.", ""]
    lines += ["| pair | places-alone pieces | under the floor (places, NFA, tail / lowest wrong tail, the halves' "
              "tails[, places cut away]) | reported |",
              "|---|---|---|---|"]
    for r in rows:
        below_text = "; ".join(
            f"{b['places']}, {b['nfa']:.2g}, {b['tail']:g} / {b['null_tail']:g}"
            + (f", {' '.join(f'{t:g}' for t in b['halves'])}" if b.get("halves") else "")
            + (f", {b['left_out']} cut" if b.get("left_out") else "") for b in r["below_floor"]) or "-"
        reported_text = "; ".join(f"{p['places']} places" + (", confirmed" if p["confirmed"] else "")
                                  for p in r["reported"]) or "-"
        lines.append(f"| {r['pair']} | {len(r['strong'])} | {below_text} | {reported_text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "realdata")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None,
                        help="run the first N pairs only (printed, not written)")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not write the results file")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "unrelated_pieces.jsonl")
    args = parser.parse_args(argv)
    if not (args.data / PSBATTLES / "manifest.json").exists():
        print(f"benchmarks.unrelated_pieces: no PS-Battles pairs at {args.data / PSBATTLES} (give --data PATH)",
              file=sys.stderr)
        return 2
    pairs = unrelated_pairs(args.data)
    if args.limit is not None:
        pairs, args.no_write = pairs[:args.limit], True
    started = time.perf_counter()
    rows = _run(_pair, pairs, args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = ("# Shared pieces between unrelated photographs\n\n"
            "Written by `python -m benchmarks.unrelated_pieces` (its docstring states the pairs and the "
            "columns). Every piece reported here is a false alarm.\n\n" + table(rows)
            + f"\n\nRun time {time.perf_counter() - started:.0f} s on this machine (2 cores).\n")
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
