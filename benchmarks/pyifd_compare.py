"""Side by side with pyIFD (PyPI ``pyIFD``): accuracy (pixel AUC) and time per megapixel, one run.

pyIFD depends on the non-headless ``opencv-python`` and on ``jpegio``, which would clash with retouch's
``opencv-python-headless`` in one environment, so it is installed into its own venv under ``bench-out/`` and
run as a subprocess on the very same files; each side times only its own analysis calls (not interpreter
start-up or file generation).

Compared: our ``ela`` against pyIFD's ``ELA`` (Krawetz), and our ``grain`` against pyIFD's ``NOI1`` (Mahdian &
Saic 2009, wavelet noise variance) and ``NOI4`` (median-filter noise residue), on generated archive-style
forgeries whose edits change noise or compression (diffusion, airbrush, and digital re-saves).

Speed is reported twice: per megapixel on the small accuracy set (768 px, about 0.6 MP, where fixed
per-call overheads weigh), and on a few realistic scan-size images (``--scan-mp``, default 12 MP; speed only).

    python -m benchmarks.pyifd_compare [--per-method 8] [--size 768] [--scan-mp 12] [--scan-count 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "bench-out" / "pyifd-venv"
CASES = [("diffusion", "print"), ("airbrush", "print"), ("diffusion", "digital"), ("clone", "digital")]

PYIFD_RUNNER = r"""
import json, sys, time, numpy as np
from pyIFD.ELA import ELA
from pyIFD.NOI1 import GetNoiseMap as NOI1
from pyIFD.NOI4 import MedFiltForensics as NOI4
out = {}
wanted = sys.argv[2].split(",") if len(sys.argv) > 2 else ["ELA", "NOI1", "NOI4"]
for path in json.loads(sys.argv[1]):
    record = {}
    for name, fn in (("ELA", lambda p: ELA(p)), ("NOI1", lambda p: NOI1(p)), ("NOI4", lambda p: NOI4(p))):
        if name not in wanted:
            continue
        started = time.perf_counter()
        try:
            value = fn(path)
        except Exception as error:  # e.g. NOI4 accepts colour images only
            record[name + "_error"] = type(error).__name__ + ": " + str(error)[:100]
            continue
        record[name + "_s"] = time.perf_counter() - started
        np.save(path + "." + name + ".npy", np.asarray(value, dtype=np.float32))
    out[path] = record
print(json.dumps(out))
"""


def ensure_pyifd() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "pyIFD"], check=True)
    return python


def _resize(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    values = np.nan_to_num(np.asarray(values, np.float32))
    if values.ndim == 3:
        values = values.mean(axis=2)
    return cv2.resize(values, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-method", type=int, default=8)
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--scan-mp", type=float, default=12.0, help="megapixels of the speed-only scan-size images")
    parser.add_argument("--scan-count", type=int, default=2, help="how many scan-size images (0: none)")
    args = parser.parse_args()
    from retouch.detect import get_detector
    from retouch.io import encode_png, load_image_bytes
    from retouch.metrics import pixel_auc
    from retouch.samples import make_forgery

    folder = ROOT / "bench-out" / "pyifd"
    folder.mkdir(parents=True, exist_ok=True)
    python = ensure_pyifd()
    cases = []
    for method, history in CASES:
        for index in range(args.per_method):
            case = make_forgery(9000 + index, method=method, size=args.size, history=history)
            # pyIFD reads files through OpenCV; give it the scan exactly as stored (JPEG) or as PNG
            suffix = ".jpg" if case.file_format == "JPEG" else ".png"
            path = folder / f"{method}-{history}-{index}{suffix}"
            path.write_bytes(case.file_bytes)
            (folder / f"{path.name}.mask.png").write_bytes(encode_png(case.mask))
            cases.append((f"{method}/{history}", path, case))
    def timed_from_file(name: str, path: Path):
        """Our detector on the stored file, timed from reading it (as pyIFD's functions are timed)."""
        started = time.perf_counter()
        loaded = load_image_bytes(path.read_bytes(), name=path.name, max_pixels=400_000_000)
        result = get_detector(name).run(loaded.pixels)
        return result, time.perf_counter() - started

    ours: dict[str, dict] = {}
    for label, path, case in cases:
        record = {}
        for name in ("ela", "grain"):
            result, record[name + "_s"] = timed_from_file(name, path)
            record[name + "_auc"] = pixel_auc(result.heatmap, case.mask)
        ours[str(path)] = record
    done = subprocess.run([str(python), "-c", PYIFD_RUNNER, json.dumps([str(p) for _, p, _ in cases])],
                          capture_output=True, text=True, cwd=folder, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"pyIFD failed: {done.stderr[-1500:]}")
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    large: list[tuple[float, dict, dict]] = []  # (megapixels, our seconds, their seconds)
    if args.scan_count > 0:
        side = int(round(np.sqrt(args.scan_mp * 1e6 * 600 / 512)))
        large_paths = []
        for index in range(args.scan_count):
            method, history = [("diffusion", "digital"), ("diffusion", "print")][index % 2]
            case = make_forgery(9500 + index, method=method, size=side, source="grace_hopper", history=history)
            suffix = ".jpg" if case.file_format == "JPEG" else ".png"
            path = folder / f"scan-{index}{suffix}"
            path.write_bytes(case.file_bytes)
            record = {f"{name}_s": timed_from_file(name, path)[1] for name in ("ela", "grain")}
            large_paths.append((path, case.mask.size / 1e6, record))
            del case
        done = subprocess.run([str(python), "-c", PYIFD_RUNNER, json.dumps([str(p) for p, _, _ in large_paths]),
                               "ELA,NOI1"], capture_output=True, text=True, cwd=folder, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"pyIFD failed on the scan-size images: {done.stderr[-1500:]}")
        big = json.loads(done.stdout.strip().splitlines()[-1])
        large = [(mp, ours_record, big[str(p)]) for p, mp, ours_record in large_paths]
    rows = []
    for label, path, case in cases:
        record = theirs[str(path)]
        for name in ("ELA", "NOI1", "NOI4"):
            if name + "_error" in record:
                record[name + "_auc"] = float("nan")
                continue
            values = _resize(np.load(f"{path}.{name}.npy"), case.mask.shape)
            # a map's orientation is not part of the method's claim: score both signs, keep the better
            record[name + "_auc"] = max(pixel_auc(values, case.mask), pixel_auc(-values, case.mask))
        rows.append((label, case.mask.size / 1e6, ours[str(path)], record))
    lines = ["# retouch vs pyIFD", "", f"Command: `python -m benchmarks.pyifd_compare --per-method {args.per_method} "
             f"--size {args.size} --scan-mp {args.scan_mp:g} --scan-count {args.scan_count}`", "",
             "Median pixel AUC per manipulation (pyIFD maps scored in whichever orientation is better for them), "
             "and median seconds per megapixel over all images.", "",
             "| manipulation | n | retouch ela | pyIFD ELA | retouch grain | pyIFD NOI1 | pyIFD NOI4 |",
             "|---|---|---|---|---|---|---|"]
    for label in dict.fromkeys(r[0] for r in rows):
        chosen = [r for r in rows if r[0] == label]

        def med(side: int, key: str) -> float:
            values = [r[side][key] for r in chosen if r[side].get(key) == r[side].get(key)]
            return float(np.median(values)) if values else float("nan")

        lines.append(f"| {label} | {len(chosen)} | {med(2, 'ela_auc'):.3f} | {med(3, 'ELA_auc'):.3f} | "
                     f"{med(2, 'grain_auc'):.3f} | {med(3, 'NOI1_auc'):.3f} | {med(3, 'NOI4_auc'):.3f} |")

    def per_mp(side: int, key: str) -> float:
        values = [r[side][key] / r[1] for r in rows if key in r[side]]
        return float(np.median(values)) if values else float("nan")

    def large_per_mp(side: int, key: str) -> float:
        values = [r[side][key] / r[0] for r in large if key in r[side]]
        return float(np.median(values)) if values else float("nan")

    ela_ratio = per_mp(3, "ELA_s") / per_mp(2, "ela_s")
    noise_ratio = per_mp(3, "NOI1_s") / per_mp(2, "grain_s")
    lines += ["", "| seconds per MP | retouch ela | pyIFD ELA | retouch grain | pyIFD NOI1 | pyIFD NOI4 |",
              "|---|---|---|---|---|---|",
              f"| median, {args.size} px set ({np.median([r[1] for r in rows]):.2f} MP) | {per_mp(2, 'ela_s'):.4f} | "
              f"{per_mp(3, 'ELA_s'):.4f} | {per_mp(2, 'grain_s'):.4f} | "
              f"{per_mp(3, 'NOI1_s'):.4f} | {per_mp(3, 'NOI4_s'):.4f} |"]
    if large:
        lines.append(f"| median, {len(large)} scan-size images ({np.median([r[0] for r in large]):.1f} MP) | "
                     f"{large_per_mp(1, 'ela_s'):.4f} | {large_per_mp(2, 'ELA_s'):.4f} | "
                     f"{large_per_mp(1, 'grain_s'):.4f} | {large_per_mp(2, 'NOI1_s'):.4f} | - |")
    lines += ["", f"Speed ratio (pyIFD time / retouch time per MP) at {args.size} px: ELA {ela_ratio:.1f}x, noise "
              f"(NOI1 vs grain) {noise_ratio:.1f}x."]
    if large:
        lines.append(f"At scan size: ELA {large_per_mp(2, 'ELA_s') / large_per_mp(1, 'ela_s'):.1f}x, noise "
                     f"{large_per_mp(2, 'NOI1_s') / large_per_mp(1, 'grain_s'):.1f}x.")
    lines += ["Times are wall-clock on a shared 2-core machine (both sides in turn, same files); both sides are timed "
              "from reading the file (pyIFD reads it itself; ours through retouch.io).",
              f"pyIFD NOI4 failed on {sum('NOI4_error' in r[3] for r in rows)} of {len(rows)} images (gray scans: "
              "it accepts colour images only); its columns cover the rest."]
    out = ROOT / "benchmarks" / "results" / "pyifd.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
