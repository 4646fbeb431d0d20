"""PatchMatch: the compiled searches against the whole-array numpy version they replaced, in one process.

Both run on the same features of the same picture, with the settings the detectors use: ``inpaint`` (raw 5 x 5
neighbourhoods reduced to 8 dimensions, 2 iterations, 1 global and 8 local samples within 48 px, minimum offset 6;
``compiled_patchmatch``) and ``clone`` (Zernike disc moments reduced to 8 dimensions, 2 iterations, 3 global
samples, minimum offset 4 % of the longer side, no keypoint proposals; ``coarse_to_fine_patchmatch``, the search on
every second pixel of every second row and then at full resolution), on a generated print with a clone stamp
(moved, not turned) of about ``--megapixels``. Reported per setting: wall and CPU seconds of this process for each
(best of ``--repeats``, after one warm-up call, so numba's compilation or cache load is not counted; it is
reported apart) and their ratios (CPU seconds drift less with the load of a shared machine), and how good the
two fields are: the mean squared feature distance of the match found, the share of pixels where the
compiled search's match is at least as close as the numpy version's, for ``inpaint`` the share of pixels with a
near-exact twin (relative distance under 0.15, what the exemplar cue counts), and for ``clone`` the share of the
stamp's inner pixels (a disc radius inside its outline) matched to their true source, to a pixel.

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
    from retouch.detect._patchmatch import projected_patch_features, reduce_features, zernike_features

    inpaint = projected_patch_features(_picture(megapixels), 5, 8)
    small, truth = _stamped(megapixels)
    clone = reduce_features(zernike_features(cv2.GaussianBlur(small, (0, 0), 0.7), 6), 8)
    return {
        "inpaint": (inpaint, dict(min_offset=6, iterations=2, seed=3, global_samples=1, local_samples=8,
                                  local_radius=48), None),
        "clone": (clone, dict(min_offset=max(13, int(0.04 * max(small.shape))), iterations=2), truth),
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
    from retouch.detect._patchmatch import coarse_to_fine_patchmatch, compiled_patchmatch, patchmatch

    rows = []
    for name, (features, options, truth) in _settings(megapixels).items():
        compiled = compiled_patchmatch if name == "inpaint" else coarse_to_fine_patchmatch
        started = time.perf_counter()
        compiled(features[:32, :32], **options)  # compiles, or loads numba's cache
        first_call = time.perf_counter() - started
        old = patchmatch(features, **options)
        new = compiled(features, **options)
        old_s, old_cpu = _best_seconds(lambda: patchmatch(features, **options), repeats)
        new_s, new_cpu = _best_seconds(lambda: compiled(features, **options), repeats)
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
        if truth is not None:
            inner = truth[:, :, 2].astype(bool)
            for label, (oy, ox, _) in (("numpy", old), ("kernel", new)):
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
    lines = ["# PatchMatch: compiled searches against the numpy version", "",
             f"`python -m benchmarks.patchmatch_speed --megapixels {args.megapixels:g} --repeats {args.repeats}`; "
             f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores, shared). Seconds "
             "drift with the load; the ratio of the two, measured in the same process, is the figure.", "",
             "| setting | field | numpy s | compiled s | ratio | numpy CPU s | compiled CPU s | CPU ratio | "
             "first call s | mean d numpy | mean d compiled | compiled as close | twins numpy | twins compiled |",
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
