"""PatchMatch: clone's coarse-to-fine search against the compiled search at full resolution, in one process.

Both run on the same features (Zernike disc moments reduced to 8 dimensions) of a generated print with a clone
stamp (moved, not turned) of about ``--megapixels``, with clone's settings (2 iterations, 3 global samples,
minimum offset 4 % of the longer side, no keypoint proposals): ``compiled_patchmatch`` on every pixel, and
``coarse_to_fine_patchmatch`` (the search on every second pixel of every second row, then at full resolution).
Reported: wall and CPU seconds of this process for each (best of ``--repeats``, after one warm-up call, so numba's
compilation or cache load is not counted; it is reported apart) and their ratios (CPU seconds drift less with the
load of a shared machine), and how good the two fields are: the mean squared feature distance of the match found,
the share of pixels where the coarse-to-fine match is at least as close, and the share of the stamp's inner
pixels (a disc radius inside its outline) matched to their true source, to a pixel.

    python -m benchmarks.patchmatch_speed [--megapixels 1] [--repeats 2] [--out benchmarks/results/patchmatch.md]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks import write_markdown

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------- measurement

def _stamped(megapixels: float) -> tuple[np.ndarray, np.ndarray]:
    """A generated print with a clone stamp moved (not turned) of about ``megapixels``, gray in [0, 1] at the
    size clone analyses, and for each pixel of the stamp's inner part its true displacement (dy, dx); the
    displacement is (0, 0) elsewhere, with the inner part as a mask."""
    from retouch.detect.clone import CopyMoveOptions
    from retouch.imaging import bounded, to_gray_float
    from retouch.samples import make_forgery

    side = int(round(np.sqrt(megapixels * 1e6 * 600 / 512)))
    case = make_forgery(5, method="clone", size=side, source="grace_hopper", stamp=(0, 1.0))
    gray, scale = bounded(to_gray_float(case.image), CopyMoveOptions().analysis_pixels)
    mask = cv2.resize(case.mask.astype(np.uint8), gray.shape[::-1], interpolation=cv2.INTER_NEAREST)
    inner = cv2.erode(mask, np.ones((13, 13), np.uint8)).astype(bool)
    dx, dy = case.info["offset"]
    return gray, np.stack([inner * int(round(dy * scale)), inner * int(round(dx * scale)), inner], axis=2)


def _settings(megapixels: float) -> dict[str, tuple[np.ndarray, dict, np.ndarray | None]]:
    from retouch.detect._patchmatch import reduce_features, zernike_features

    small, truth = _stamped(megapixels)
    clone = reduce_features(zernike_features(cv2.GaussianBlur(small, (0, 0), 0.7), 6), 8)
    return {"clone": (clone, dict(min_offset=max(13, int(0.04 * max(small.shape))), iterations=2), truth)}


def _best_seconds(run, repeats: int) -> tuple[float, float]:
    """Best wall seconds and best CPU seconds of this process over ``repeats`` runs."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return wall, cpu


def measure(megapixels: float, repeats: int) -> list[dict]:
    from retouch.detect._patchmatch import coarse_to_fine_patchmatch, compiled_patchmatch

    rows = []
    for name, (features, options, truth) in _settings(megapixels).items():
        started = time.perf_counter()
        coarse_to_fine_patchmatch(features[:32, :32], **options)  # compiles, or loads numba's cache
        first_call = time.perf_counter() - started
        old = compiled_patchmatch(features, **options)
        new = coarse_to_fine_patchmatch(features, **options)
        old_s, old_cpu = _best_seconds(lambda: compiled_patchmatch(features, **options), repeats)
        new_s, new_cpu = _best_seconds(lambda: coarse_to_fine_patchmatch(features, **options), repeats)
        row = {"setting": name, "shape": f"{features.shape[1]} x {features.shape[0]}", "full_s": old_s,
               "coarse_s": new_s, "ratio": old_s / new_s,
               "full_cpu_s": old_cpu, "coarse_cpu_s": new_cpu, "cpu_ratio": old_cpu / new_cpu,
               "first_call_s": first_call,
               "full_mean_d": float(np.mean(old[2])), "coarse_mean_d": float(np.mean(new[2])),
               "coarse_as_close": float(np.mean(new[2] <= old[2]))}
        inner = truth[:, :, 2].astype(bool)
        for label, (oy, ox, _) in (("full", old), ("coarse", new)):
            true_twin = (np.abs(oy - truth[:, :, 0]) <= 1) & (np.abs(ox - truth[:, :, 1]) <= 1)
            row[f"{label}_twins"] = float(true_twin[inner].mean())
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "patchmatch.md"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = measure(args.megapixels, args.repeats)
    load_after = os.getloadavg()
    lines = ["# PatchMatch: coarse-to-fine against the full-resolution search", "",
             f"`python -m benchmarks.patchmatch_speed --megapixels {args.megapixels:g} --repeats {args.repeats}`; "
             f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores, shared). Seconds "
             "drift with the load; the ratio of the two, measured in the same process, is the figure.", "",
             "| setting | field | full s | coarse-to-fine s | ratio | full CPU s | coarse-to-fine CPU s | "
             "CPU ratio | first call s | mean d full | mean d coarse-to-fine | coarse-to-fine as close | "
             "stamp twins full | stamp twins coarse-to-fine |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['setting']} | {row['shape']} | {row['full_s']:.2f} | {row['coarse_s']:.2f} | "
                     f"{row['ratio']:.1f} | {row['full_cpu_s']:.2f} | {row['coarse_cpu_s']:.2f} | "
                     f"{row['cpu_ratio']:.1f} | {row['first_call_s']:.2f} | {row['full_mean_d']:.4f} | "
                     f"{row['coarse_mean_d']:.4f} | {100 * row['coarse_as_close']:.1f} % | "
                     f"{100 * row['full_twins']:.2f} % | {100 * row['coarse_twins']:.2f} % |")
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
