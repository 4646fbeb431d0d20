"""Memory per pixel: the peak resident size of ``retouch analyze`` (each detector alone, and all defaults) and of
``retouch compare``, whole tasks as a worker runs them (load, analyse, write every artifact), at two sizes.

Each run is a fresh subprocess; its peak is the kernel's high-water mark of its resident size (``VmHWM``: unlike
``ru_maxrss``, it does not carry over the parent's peak through fork and exec). The bytes per pixel are the slope between the two
sizes (the imports and the libraries' own buffers make the intercept); :mod:`retouch.run.budget` holds the
figures the memory budget (``RETOUCH_MAX_MEMORY``) is enforced with, and this benchmark checks them: the
estimate it gives for each run must be at least the measured peak.

    python -m benchmarks.memory [--sizes 6,24] [--configs each,all,compare]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _scan(megapixels: float, path: Path, *, edited: bool = False) -> None:
    """A scan-like JPEG of about ``megapixels``: a photograph enlarged, with film grain (seeded), saved at 75 and
    then, decoded, at 90: a copy saved twice, the history on which every detector does its whole work (``dq``
    and ``settling`` judge only pictures saved more than once)."""
    import cv2
    from skimage import data

    side = int(round(np.sqrt(megapixels * 1e6)))
    picture = cv2.resize(data.astronaut(), (side, side), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    picture += np.random.default_rng(0).normal(0, 4, picture.shape).astype(np.int16)
    if edited:  # a patch painted over, as a retoucher would
        picture[side // 3: side // 2, side // 3: side // 2] = picture[side // 3: side // 2, :side // 6].mean()
    picture = cv2.cvtColor(np.clip(picture, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    _, first_save = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 75])
    cv2.imwrite(str(path), cv2.imdecode(first_save, cv2.IMREAD_COLOR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def peak_resident_bytes() -> int:
    """This process's peak resident size so far (Linux ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux)")


def child(kind: str, paths: list[str], detectors: str) -> dict:
    import retouch.detect  # noqa: F401 - the detectors' modules, as a worker imports them for its first item
    from retouch.run.tasks import analyze_file, compare_files

    before = peak_resident_bytes()
    with tempfile.TemporaryDirectory() as out:
        if kind == "analyze":
            analyze_file(paths[0], out, detectors=detectors.split(",") if detectors else None,
                         max_pixels=10**9)
        else:
            compare_files(paths[0], paths[1], out, max_pixels=10**9)
    return {"rss_before": before, "peak": peak_resident_bytes()}


def run_child(kind: str, paths: list[Path], detectors: str = "") -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", kind, detectors,
                           *map(str, paths)], capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="6,24")
    parser.add_argument("--configs", default="each,all,compare")
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child:
        kind, detectors, *paths = args.child
        print(json.dumps(child(kind, paths, detectors)))
        return
    from retouch.detect import detectors as registered
    from retouch.run.budget import BUDGET_MEASURE, estimated_bytes

    sizes = [float(size) for size in args.sizes.split(",")]
    configs: list[tuple[str, str, str]] = []  # (label, kind, detectors)
    if "each" in args.configs:
        configs += [(name, "analyze", name) for name in registered()]
    if "all" in args.configs:
        configs.append(("all default detectors", "analyze", ""))
    if "compare" in args.configs:
        configs.append(("compare (pixels of both scans)", "compare", ""))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        inputs = {}
        for size in sizes:
            first, second = Path(scratch) / f"a{size}.jpg", Path(scratch) / f"b{size}.jpg"
            _scan(size, first)
            _scan(size, second, edited=True)
            inputs[size] = (first, second)
        for label, kind, detectors in configs:
            measured = []
            for size in sizes:
                paths = list(inputs[size][:1 if kind == "analyze" else 2])
                from PIL import Image

                pixels = sum(Image.open(path).size[0] * Image.open(path).size[1] for path in paths)
                result = run_child(kind, paths, detectors)
                chosen = detectors.split(",") if detectors else None
                estimate = estimated_bytes(kind, pixels, chosen)
                measured.append((pixels, result["peak"], estimate))
                print(label, size, result, estimate, flush=True)
            (p0, m0, _), (p1, m1, _) = measured[0], measured[-1]
            slope = (m1 - m0) / (p1 - p0)
            rows.append((label, measured, slope, m0 - slope * p0))
    lines = ["# Memory per pixel", "", f"Command: `python -m benchmarks.memory --sizes {args.sizes} --configs "
             f"{args.configs}`", "",
             "Peak resident size of a whole task (load, analyse, write every artifact) in a fresh process, at "
             f"{' and '.join(f'{s:g}' for s in sizes)} MP (scan-like JPEGs: an enlarged photograph with grain, saved at 75 and again at 90). "
             "Bytes per pixel: the slope between the sizes; intercept: the imports and libraries. Estimate: what "
             f"`retouch.run.budget` reserves for the run ({BUDGET_MEASURE}); it must not be below the peak.", "",
             "| run | " + " | ".join(f"peak at {s:g} MP (MB)" for s in sizes) + " | bytes per pixel | intercept "
             "(MB) | " + " | ".join(f"estimate at {s:g} MP (MB)" for s in sizes) + " | peak / estimate (worst) |",
             "|---|" + "---|" * (2 * len(sizes) + 3)]
    for label, measured, slope, intercept in rows:
        worst = max(peak / estimate for _, peak, estimate in measured)
        lines.append(f"| {label} | " + " | ".join(f"{peak / 1e6:.0f}" for _, peak, _ in measured)
                     + f" | {slope:.1f} | {intercept / 1e6:.0f} | "
                     + " | ".join(f"{estimate / 1e6:.0f}" for _, _, estimate in measured) + f" | {worst:.2f} |")
    out = ROOT / "benchmarks" / "results" / "memory.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
