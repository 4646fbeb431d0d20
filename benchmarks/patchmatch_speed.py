"""PatchMatch: the compiled kernel against the whole-array numpy version it replaced, in one process.

Both run on the same features of the same picture, with the settings the detectors use: ``inpaint`` (raw 5 x 5
neighbourhoods reduced to 8 dimensions, 2 iterations, 1 global and 8 local samples within 48 px, minimum offset 6)
and ``clone`` (Zernike disc moments reduced to 8 dimensions, 5 iterations, 3 global samples, minimum offset a
tenth of the side; no keypoint proposals). Reported per setting: wall and CPU seconds of this process for each
(best of ``--repeats``, after one warm-up call, so numba's compilation or cache load is not counted; it is
reported apart) and their ratios (CPU seconds drift less with the load of a shared machine), and how good the
two fields are: the mean squared feature distance of the match found, the share of pixels where the
kernel's match is at least as close as the numpy version's, and for ``inpaint`` the share of pixels with a
near-exact twin (relative distance under 0.15, what the exemplar cue counts).

The numpy version is ``retouch.detect._patchmatch.patchmatch``, which clone still uses.

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

def _picture(megapixels: float) -> np.ndarray:
    """A generated archive-style print (grain, scanning) of about ``megapixels``, gray in [0, 1]."""
    from retouch.imaging import to_gray_float
    from retouch.samples import make_forgery

    side = int(round(np.sqrt(megapixels * 1e6 * 600 / 512)))
    return to_gray_float(make_forgery(11, method="exemplar", size=side, source="grace_hopper").image)


def _settings(gray: np.ndarray) -> dict[str, tuple[np.ndarray, dict]]:
    from retouch.detect._patchmatch import projected_patch_features, reduce_features, zernike_features

    inpaint = projected_patch_features(gray, 5, 8)
    clone_scale = min(1.0, np.sqrt(700_000 / gray.size))
    small = cv2.resize(gray, None, fx=clone_scale, fy=clone_scale, interpolation=cv2.INTER_AREA)
    clone = reduce_features(zernike_features(cv2.GaussianBlur(small, (0, 0), 0.7), 6), 8)
    return {
        "inpaint": (inpaint, dict(min_offset=6, iterations=2, seed=3, global_samples=1, local_samples=8,
                                  local_radius=48)),
        "clone": (clone, dict(min_offset=max(13, int(0.1 * max(small.shape))), iterations=5)),
    }


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
    from retouch.detect._patchmatch import compiled_patchmatch, patchmatch

    gray = _picture(megapixels)
    rows = []
    for name, (features, options) in _settings(gray).items():
        started = time.perf_counter()
        compiled_patchmatch(features[:32, :32], **options)  # compiles, or loads numba's cache
        first_call = time.perf_counter() - started
        old = patchmatch(features, **options)
        new = compiled_patchmatch(features, **options)
        old_s, old_cpu = _best_seconds(lambda: patchmatch(features, **options), repeats)
        new_s, new_cpu = _best_seconds(lambda: compiled_patchmatch(features, **options), repeats)
        energy = np.einsum("ijk,ijk->ij", features, features)
        row = {"setting": name, "shape": f"{features.shape[1]} x {features.shape[0]}", "numpy_s": old_s,
               "kernel_s": new_s, "ratio": old_s / new_s,
               "numpy_cpu_s": old_cpu, "kernel_cpu_s": new_cpu, "cpu_ratio": old_cpu / new_cpu,
               "first_call_s": first_call,
               "numpy_mean_d": float(np.mean(old[2])), "kernel_mean_d": float(np.mean(new[2])),
               "kernel_as_close": float(np.mean(new[2] <= old[2]))}
        if name == "inpaint":
            for label, (oy, ox, distance) in (("numpy", old), ("kernel", new)):
                height, width = distance.shape
                ys, xs = np.mgrid[0:height, 0:width]
                partner = energy[np.clip(ys + oy, 0, height - 1), np.clip(xs + ox, 0, width - 1)]
                row[f"{label}_twins"] = float(np.mean(distance / (energy + partner + 1e-3) < 0.15))
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
    lines = ["# PatchMatch: compiled kernel against the numpy version", "",
             f"`python -m benchmarks.patchmatch_speed --megapixels {args.megapixels:g} --repeats {args.repeats}`; "
             f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores, shared). Seconds "
             "drift with the load; the ratio of the two, measured in the same process, is the figure.", "",
             "| setting | field | numpy s | kernel s | ratio | numpy CPU s | kernel CPU s | CPU ratio | "
             "first call s | mean d numpy | mean d kernel | kernel as close | twins numpy | twins kernel |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['setting']} | {row['shape']} | {row['numpy_s']:.2f} | {row['kernel_s']:.2f} | "
                     f"{row['ratio']:.1f} | {row['numpy_cpu_s']:.2f} | {row['kernel_cpu_s']:.2f} | "
                     f"{row['cpu_ratio']:.1f} | {row['first_call_s']:.2f} | {row['numpy_mean_d']:.4f} | "
                     f"{row['kernel_mean_d']:.4f} | {100 * row['kernel_as_close']:.1f} % | "
                     + (f"{100 * row['numpy_twins']:.2f} % | {100 * row['kernel_twins']:.2f} % |"
                        if "numpy_twins" in row else "- | - |"))
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
