"""Speed and memory: compare and every detector at about 1, 6 and 24 megapixels.

Each measurement runs in a fresh subprocess, so peak memory (``ru_maxrss``) is that run's own; input generation
is excluded from both time and the reported memory growth. Ratios against a naive baseline are computed in
the same subprocess: for ``compare``, SIFT registration on the full-resolution images (what bounded-resolution
matching avoids); for the detectors, the time per megapixel at 1 MP, to show how each one grows with size.

    python -m benchmarks.speed [--sizes 1,6,24] [--what compare,analyze]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _scan(megapixels: float, seed: int) -> tuple[np.ndarray, bytes]:
    """A forged archive-style scan of about ``megapixels`` (grain is generated at full size)."""
    from retouch.io import load_image_bytes
    from retouch.samples import make_forgery

    side = int(round(np.sqrt(megapixels * 1e6 * 600 / 512)))
    case = make_forgery(seed, method="diffusion", size=side, source="grace_hopper")
    loaded = load_image_bytes(case.file_bytes, name="scan", max_pixels=400_000_000)
    return loaded.pixels, case.file_bytes


def child_compare(megapixels: float, baseline: bool) -> dict:
    import cv2

    from retouch.compare import compare_pair
    from retouch.samples import make_pair

    # grace_hopper is 600 x 512: the longest side for the requested area; little crop and scale so that the
    # questioned image really has about ``megapixels``
    side = int(round(np.sqrt(megapixels * 1e6 * 600 / 512)))
    pair = make_pair(5, size=side, edit="diffusion", source="grace_hopper",
                     geometry={"scale_range": (1.0, 1.02), "max_crop": 0.02, "max_angle": 2.0})
    rss_before = _rss_mb()
    started = time.perf_counter()
    comparison = compare_pair(pair.reference, pair.questioned)
    seconds = time.perf_counter() - started
    out = {"what": "compare", "megapixels": round(pair.questioned.shape[0] * pair.questioned.shape[1] / 1e6, 2),
           "seconds": round(seconds, 3), "stages": comparison.result.details["timings_s"],
           "peak_rss_mb": round(_rss_mb(), 1), "rss_before_mb": round(rss_before, 1)}
    if baseline:
        from retouch.compare.register import normalise_for_matching

        started = time.perf_counter()
        sift = cv2.SIFT_create(nfeatures=5000, contrastThreshold=0.02)
        a, b = normalise_for_matching(pair.reference), normalise_for_matching(pair.questioned)
        keys_a, desc_a = sift.detectAndCompute(a, None)
        keys_b, desc_b = sift.detectAndCompute(b, None)
        matches = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64}).knnMatch(desc_a, desc_b, k=2)
        good = [m for m, n in matches if m.distance < 0.8 * n.distance]
        src = np.float32([keys_a[m.queryIdx].pt for m in good])
        dst = np.float32([keys_b[m.trainIdx].pt for m in good])
        cv2.findHomography(src, dst, cv2.USAC_MAGSAC, 3.0)
        out["baseline_full_resolution_registration_s"] = round(time.perf_counter() - started, 3)
        register_s = comparison.result.details["timings_s"]["register"]
        out["registration_speedup_vs_full_resolution"] = round(out["baseline_full_resolution_registration_s"]
                                                               / max(register_s, 1e-6), 2)
    return out


def child_analyze(megapixels: float, detectors: list[str]) -> dict:
    from retouch.detect import get_detector
    from retouch.io import load_image_bytes

    pixels, data = _scan(megapixels, 11)
    tables = load_image_bytes(data, name="scan", max_pixels=400_000_000).jpeg_quantization
    rss_before = _rss_mb()
    times = {}
    for name in detectors:
        started = time.perf_counter()
        get_detector(name).run(pixels, jpeg_quantization=tables)
        times[name] = round(time.perf_counter() - started, 3)
    return {"what": "analyze", "megapixels": round(pixels.shape[0] * pixels.shape[1] / 1e6, 2),
            "seconds": times, "peak_rss_mb": round(_rss_mb(), 1), "rss_before_mb": round(rss_before, 1)}


def run_child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--child", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,6,24")
    parser.add_argument("--what", default="compare,analyze")
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child:
        kind, megapixels = args.child[0], float(args.child[1])
        if kind == "compare":
            print(json.dumps(child_compare(megapixels, baseline=megapixels <= 6)))
        else:
            print(json.dumps(child_analyze(megapixels, args.child[2].split(","))))
        return
    sizes = [float(s) for s in args.sizes.split(",")]
    lines = ["# Speed and memory", "", f"Command: `python -m benchmarks.speed --sizes {args.sizes} --what {args.what}`",
             "", "Machine: 2 cores, one subprocess per measurement; peak memory is the subprocess's maximum resident "
             "size, including the generated inputs.", ""]
    if "compare" in args.what:
        lines += ["## compare", "", "| MP | total s | register | warp | pair model | evidence | decision | "
                  "map back | peak MB | full-res registration s (speed-up) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for size in sizes:
            r = run_child(["compare", str(size)])
            st = r["stages"]
            baseline = (f"{r['baseline_full_resolution_registration_s']} ({r['registration_speedup_vs_full_resolution']}x)"
                        if "baseline_full_resolution_registration_s" in r else "-")
            lines.append(f"| {r['megapixels']} | {r['seconds']} | {st.get('register', 0):.2f} | "
                         f"{st.get('warp_analysis', 0):.2f} | {st.get('model', 0):.2f} | "
                         f"{st.get('evidence', 0):.2f} | {st.get('decision', 0):.2f} | "
                         f"{st.get('map_back', 0):.2f} | {r['peak_rss_mb']} | {baseline} |")
            print(lines[-1], flush=True)
    if "analyze" in args.what:
        from retouch.detect import detectors

        names = list(detectors())
        lines += ["", "## analyze (each detector alone)", "",
                  "| MP | " + " | ".join(names) + " | all | peak MB | s per MP (all) |",
                  "|" + "---|" * (len(names) + 4)]
        for size in sizes:
            r = run_child(["analyze", str(size), ",".join(names)])
            total = sum(r["seconds"].values())
            lines.append(f"| {r['megapixels']} | " + " | ".join(str(r["seconds"][n]) for n in names)
                         + f" | {total:.2f} | {r['peak_rss_mb']} | {total / r['megapixels']:.2f} |")
            print(lines[-1], flush=True)
    out = ROOT / "benchmarks" / "results" / "speed.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
