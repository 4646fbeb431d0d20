"""Speed, side by side in one run: ``retouch analyze`` end to end and each detector at several sizes, against
the floor (decoding the file and one JPEG encode of it with OpenCV), pyIFD's ELA and NOI1 on the same file, and
a batch of small scans through ``retouch batch``.

The machine is shared, so seconds drift with the load; what is compared is measured in the same process, close
in time, and reported as ratios to the floor of the same file:

- floor: ``cv2.imread`` of the JPEG plus ``cv2.imencode(".jpg")`` of the decoded pixels (best of three);
- each detector alone, in process (``registry.run`` on the loaded pixels, as the pipeline calls it);
- ``retouch analyze`` as a user runs it: a fresh process from start to ``report.json`` written (interpreter
  start-up, decoding, every default detector, fusion and the report folder), with its own ``report.json``
  timings (load, analysis, write) and its peak resident size;
- pyIFD's ``ELA`` and ``NOI1`` on the same file in their own venv (see ``benchmarks/pyifd_compare.py``), end to
  end from the path, when that venv can be made (it pins NumPy 1 and OpenCV < 4.11); skipped with the reason
  otherwise;
- ``retouch batch`` over ``--batch`` generated 1 MP scans (half airbrushed, half untouched) with
  ``--workers`` workers: scans a minute, and the time per scan as a ratio to the 1 MP floor.

Also measured once, on the maps of the largest ``retouch analyze`` run: the PNG size and encoding time of each
zlib level and strategy (what ``retouch.io.write.PNG_OPTIONS`` was chosen from).

Each size runs in a fresh subprocess so that peak memory is that size's own. Sizes beyond the memory budget of
one analysis (``retouch.run.budget``) are skipped with the estimate.

    python -m benchmarks.speed [--sizes 1,6,24,48] [--batch 100] [--workers 1] [--what analyze,batch,png]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import write_markdown

ROOT = Path(__file__).resolve().parents[1]
SEED = 11
FLOOR_JPEG_QUALITY = 90
PNG_CHOICES = [("level 1", 1, "default"), ("level 3", 3, "default"), ("level 6", 6, "default"),
               ("level 9", 9, "default"), ("RLE", 1, "rle"), ("Huffman only", 1, "huffman")]


def side_for(megapixels: float) -> int:
    """grace_hopper is 600 x 512: the print's longest side for about ``megapixels``."""
    return int(round(np.sqrt(megapixels * 1e6 * 600 / 512)))


def write_scan(megapixels: float, folder: Path, seed: int = SEED, method: str = "diffusion") -> Path:
    """A generated archive-style JPEG scan (diffusion fill, grain, scanning) of about ``megapixels``."""
    from retouch.samples import make_authentic, make_forgery

    if method == "none":
        case = make_authentic(seed, size=side_for(megapixels), source="grace_hopper")
    else:
        case = make_forgery(seed, method=method, size=side_for(megapixels), source="grace_hopper")
    path = folder / f"scan{seed:03d}_{megapixels:g}mp{'.jpg' if case.file_format == 'JPEG' else '.png'}"
    path.write_bytes(case.file_bytes)
    return path


def best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def floor_seconds(path: Path, repeats: int = 3) -> float:
    import cv2

    def decode_and_encode() -> None:
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, FLOOR_JPEG_QUALITY])

    return best_of(decode_and_encode, repeats)


def child_size(megapixels: float, folder: Path, do_png: bool) -> dict:
    """Floor, each detector, and ``retouch analyze`` end to end, on one generated scan."""
    from retouch.io import load_image
    from retouch.registry import detectors

    path = write_scan(megapixels, folder)
    floor = floor_seconds(path)
    loaded = load_image(path, max_pixels=400_000_000)
    pixels = loaded.pixels
    record: dict = {"megapixels": round(pixels.shape[0] * pixels.shape[1] / 1e6, 2), "file": str(path),
                    "file_mb": round(path.stat().st_size / 1e6, 2), "floor_s": round(floor, 3), "detectors": {}}
    for name, spec in detectors().items():
        if not spec.default:
            continue
        started = time.perf_counter()
        spec.run(pixels, jpeg_quantization=loaded.jpeg_quantization)
        record["detectors"][name] = round(time.perf_counter() - started, 3)
    del pixels, loaded
    out = folder / f"report_{megapixels:g}"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "retouch", "analyze", str(path), "-o", str(out), "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    record["analyze_s"] = round(time.perf_counter() - started, 3)
    if done.returncode != 0:
        raise RuntimeError(f"retouch analyze failed on {path}: {done.stderr[-2000:]}")
    record["analyze_peak_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0, 1)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    record["report_timings"] = {key: report["timings_s"].get(key) for key in ("load", "analysis_total", "write")}
    record["folder_mb"] = {item.name: round(item.stat().st_size / 1e6, 2) for item in sorted(out.iterdir())}
    if do_png:
        record["png"] = png_levels(out)
    return record


def png_levels(folder: Path) -> dict:
    """Total size and encoding time of the report folder's PNG maps and overlay at each zlib choice."""
    import cv2

    strategies = {"default": cv2.IMWRITE_PNG_STRATEGY_DEFAULT, "rle": cv2.IMWRITE_PNG_STRATEGY_RLE,
                  "huffman": cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY}
    images = {item.name: cv2.imread(str(item), cv2.IMREAD_UNCHANGED) for item in sorted(folder.glob("*.png"))}
    table = {}
    for label, level, strategy in PNG_CHOICES:
        options = [cv2.IMWRITE_PNG_COMPRESSION, level, cv2.IMWRITE_PNG_STRATEGY, strategies[strategy]]
        maps_s = maps_mb = overlay_s = overlay_mb = 0.0
        for name, image in images.items():
            seconds = best_of(lambda: cv2.imencode(".png", image, options), 1)
            size = len(cv2.imencode(".png", image, options)[1]) / 1e6
            if name == "overlay.png":
                overlay_s, overlay_mb = seconds, size
            else:
                maps_s, maps_mb = maps_s + seconds, maps_mb + size
        table[label] = {"maps_s": round(maps_s, 2), "maps_mb": round(maps_mb, 2), "overlay_s": round(overlay_s, 2),
                        "overlay_mb": round(overlay_mb, 2)}
    return {"maps": len(images) - ("overlay.png" in images), "choices": table}


def pyifd_seconds(path: Path) -> dict:
    """pyIFD's ELA and NOI1 end to end on ``path`` (their own decoding included), or why they were skipped."""
    from benchmarks.pyifd_compare import PYIFD_RUNNER, ensure_pyifd

    try:
        python = ensure_pyifd()
    except (subprocess.CalledProcessError, OSError) as error:
        return {"skipped": f"pyIFD's venv could not be made ({type(error).__name__}: {str(error)[:200]})"}
    done = subprocess.run([str(python), "-c", PYIFD_RUNNER, json.dumps([str(path)]), "ELA,NOI1", "1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if done.returncode != 0:
        return {"skipped": f"pyIFD failed: {done.stderr.strip().splitlines()[-1][:200] if done.stderr else '?'}"}
    record = json.loads(done.stdout.strip().splitlines()[-1])[str(path)]
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in record.items()}


def batch_run(count: int, workers: int, folder: Path) -> dict:
    """``retouch batch`` over ``count`` generated 1 MP scans, from start to the last item written."""
    source = folder / "batch_in"
    source.mkdir()
    for index in range(count):
        write_scan(1.0, source, seed=100 + index, method="airbrush" if index % 2 else "none")
    floor = floor_seconds(next(source.iterdir()))
    out = folder / "batch_out"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "retouch", "batch", str(source), "-o", str(out), "--workers",
                           str(workers)], capture_output=True, text=True, cwd=ROOT, timeout=24 * 3600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"retouch batch failed: {done.stderr[-2000:]}")
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return {"scans": count, "workers": workers, "seconds": round(seconds, 1), "results": len(lines),
            "scans_per_minute": round(60.0 * count / seconds, 1), "floor_s": round(floor, 4),
            "per_scan_over_floor": round(seconds / count / floor, 1)}


def run_child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--child", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=4 * 3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,6,24,48", help="scan sizes in megapixels")
    parser.add_argument("--batch", type=int, default=100, help="1 MP scans through retouch batch (0: none)")
    parser.add_argument("--workers", type=int, default=1, help="batch workers")
    parser.add_argument("--what", default="analyze,pyifd,batch,png")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed.md"))
    parser.add_argument("--child", nargs="*")
    args = parser.parse_args()
    if args.child:
        megapixels, folder, do_png = float(args.child[0]), Path(args.child[1]), args.child[2] == "1"
        print(json.dumps(child_size(megapixels, folder, do_png)))
        return
    from retouch.registry import detectors
    from retouch.run.budget import estimated_bytes, max_memory_from_env

    what = set(args.what.split(","))
    sizes = [float(s) for s in args.sizes.split(",")]
    budget = max_memory_from_env()
    load_start = _load_text()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="retouch-speed-") as scratch:
        folder = Path(scratch)
        if "analyze" in what:
            for megapixels in sizes:
                need = estimated_bytes("analyze", int(megapixels * 1e6))
                if need > budget:
                    skipped.append(f"{megapixels:g} MP: estimated {need / 1e9:.1f} GB over the {budget / 1e9:.1f} "
                                   "GB budget of one analysis")
                    continue
                do_png = "png" in what and megapixels == max(sizes)
                record = run_child([str(megapixels), str(folder), "1" if do_png else "0"])
                if "pyifd" in what:
                    record["pyifd"] = pyifd_seconds(Path(record["file"]))
                rows.append(record)
                print(json.dumps(record), flush=True)
                for item in folder.glob(f"*{megapixels:g}mp*"):
                    item.unlink()
        batch = batch_run(args.batch, args.workers, folder) if "batch" in what and args.batch else None
        if batch:
            print(json.dumps(batch), flush=True)
    write(args, rows, skipped, batch, [name for name, spec in detectors().items() if spec.default], load_start)


def write(args: argparse.Namespace, rows: list[dict], skipped: list[str], batch: dict | None, names: list[str],
          load_start: str) -> None:
    lines = ["# Speed", "",
             f"Command: `python -m benchmarks.speed --sizes {args.sizes} --batch {args.batch} --workers "
             f"{args.workers} --what {args.what}`", "",
             f"Machine: 2 cores shared with other work; load average (1 / 5 / 15 min) {load_start} at the start and "
             f"{_load_text()} at the end of the run. Seconds drift with the load; the ratios to the floor, measured in "
             "the same process on the same file moments apart, are the figures to compare.", "",
             "Floor: decode the JPEG and encode it once again as JPEG with OpenCV (best of three). `analyze`: a fresh "
             "`retouch analyze` process from start to `report.json` written (every default detector, fusion and the "
             "report folder); load, analysis and write are its own `report.json` timings.", ""]
    if rows:
        lines += ["## retouch analyze end to end", "",
                  "| MP | floor s | analyze s (x floor) | load | analysis | write (share) | peak MB | s per MP |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in rows:
            timings = row["report_timings"]
            share = timings["write"] / row["analyze_s"] if row["analyze_s"] else 0.0
            lines.append(f"| {row['megapixels']} | {row['floor_s']} | {row['analyze_s']:.1f} "
                         f"({row['analyze_s'] / row['floor_s']:.0f}x) | {timings['load']:.2f} | "
                         f"{timings['analysis_total']:.1f} | {timings['write']:.2f} ({100 * share:.0f} %) | "
                         f"{row['analyze_peak_mb']:.0f} | {row['analyze_s'] / row['megapixels']:.2f} |")
        lines += ["", "## Each detector alone (seconds, and x floor)", "",
                  "| MP | floor s | " + " | ".join(names) + " | pyIFD ELA | pyIFD NOI1 |",
                  "|" + "---|" * (len(names) + 4)]
        reasons = set()
        for row in rows:
            cells = [f"{row['detectors'][name]:.2f} ({row['detectors'][name] / row['floor_s']:.0f}x)"
                     for name in names]
            for theirs in ("ELA", "NOI1"):
                pyifd = row.get("pyifd", {})
                if f"{theirs}_s" in pyifd:
                    cells.append(f"{pyifd[theirs + '_s']:.2f} ({pyifd[theirs + '_s'] / row['floor_s']:.0f}x)")
                else:
                    cells.append("-")
                    reasons.add(pyifd.get("skipped") or pyifd.get(f"{theirs}_error") or "not run (--what)")
            lines.append(f"| {row['megapixels']} | {row['floor_s']} | " + " | ".join(cells) + " |")
        lines += ["", "pyIFD is timed end to end from the path (its own decoding included), one run each."]
        lines += [f"pyIFD not measured: {reason}" for reason in sorted(reasons)]
        lines += ["", "Report folder sizes (MB) at each size:", ""]
        for row in rows:
            lines.append(f"- {row['megapixels']} MP: " + ", ".join(f"{k} {v}" for k, v in row["folder_mb"].items()))
        png = next((row["png"] for row in rows if "png" in row), None)
        if png:
            largest = max(rows, key=lambda row: row["megapixels"])
            lines += ["", f"## PNG levels on the report's {png['maps']} maps and overlay at {largest['megapixels']} MP",
                      "", "OpenCV's PNG encoder (zlib) on the report folder's own maps, one encoding each.", "",
                      "| choice | maps s | maps MB | overlay s | overlay MB |", "|---|---|---|---|---|"]
            for label, cell in png["choices"].items():
                lines.append(f"| {label} | {cell['maps_s']} | {cell['maps_mb']} | {cell['overlay_s']} | "
                             f"{cell['overlay_mb']} |")
    if skipped:
        lines += ["", "Sizes not run: " + "; ".join(skipped) + "."]
    if batch:
        lines += ["", "## retouch batch", "",
                  f"{batch['scans']} generated 1 MP JPEG scans (half airbrushed, half untouched), `retouch batch "
                  f"--workers {batch['workers']}`, start-up included: {batch['seconds']} s, "
                  f"**{batch['scans_per_minute']} scans a minute**; {batch['per_scan_over_floor']}x the 1 MP floor "
                  f"({batch['floor_s']} s) per scan; {batch['results']} results written."]
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
