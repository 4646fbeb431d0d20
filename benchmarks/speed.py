"""Speed, side by side in one run: ``retouch analyze`` end to end and each detector at several sizes, against
the floor (decoding the file and one JPEG encode of it with OpenCV), pyIFD's ELA and NOI1 on the same file, a
batch of small scans through ``retouch batch``, the overhead outside the detectors, and ``retouch compare`` on a
large pair.

The machine is shared, so seconds drift with the load; what is compared is measured in the same process, close
in time, and reported as ratios to the floor of the same file, with CPU seconds (which the load changes far less
than wall seconds) beside the wall ones:

- floor: ``cv2.imread`` of the JPEG plus ``cv2.imencode(".jpg")`` of the decoded pixels (best of three);
- each detector alone, in process (``registry.run`` on the loaded pixels, as the pipeline calls it), after one
  call on a 256 px crop: the first call in a fresh installation compiles the numba kernels (several seconds,
  then cached on disk), which every later process loads instead; that first call's time is recorded apart;
- ``retouch analyze`` as a user runs it: a fresh process from start to ``report.json`` written (interpreter
  start-up, imports, decoding, the detectors, fusion and the report folder), with its own ``report.json`` timings
  (load, analysis, write), its CPU seconds and its peak resident size; once with every default detector and once
  with the fast ones only (``--fast``, default ``ela,grain,jpeg,grid,metadata``), so that what lies outside the
  slow detectors shows whatever they cost;
- overhead outside the detectors: of a fresh process, its wall time less the span its detectors ran in; of a warm
  process (a batch or service worker after its first item), ``analyze_file`` less ``analyze_image`` on the same
  loaded scan, best of five, wall and CPU;
- pyIFD's ``ELA`` and ``NOI1`` on the same file in their own venv (see ``benchmarks/pyifd_compare.py``), end to
  end from the path, when that venv can be made (it pins NumPy 1 and OpenCV < 4.11); skipped with the reason
  otherwise;
- ``retouch batch`` over ``--batch`` generated 1 MP scans (half airbrushed, half untouched) with ``--workers``
  workers and the fast detectors, and over ``--batch-all`` of them with every default detector: scans a minute,
  CPU seconds a scan, and the time per scan as a ratio to the 1 MP floor;
- ``retouch compare`` on a generated pair of about ``--compare`` MP (0: none) in a fresh process: its stages
  (registration, change model, evidence, decision, write) from ``report.json`` and its peak resident size.

Also measured once, on the maps of the largest ``retouch analyze`` run: the PNG size and encoding time of each
zlib level and strategy (what ``retouch.io.write.PNG_OPTIONS`` was chosen from).

Each size runs in a fresh subprocess so that peak memory is that size's own. Sizes beyond the memory budget of
one analysis (``retouch.run.budget``) are skipped with the estimate. 48 MP is left out of the default sizes (an
hour on a loaded machine); add it with ``--sizes 1,6,24,48``.

    python -m benchmarks.speed [--sizes 1,6,24] [--batch 100] [--batch-all 100] [--workers 1] [--compare 24]
        [--fast ela,grain,jpeg,grid,metadata] [--what analyze,overhead,pyifd,batch,png,compare]
"""

from __future__ import annotations

import argparse
import json
import os
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
PNG_CHOICES = [("level 1", 1, "default", None), ("level 3", 3, "default", None), ("level 6", 6, "default", None),
               ("level 9", 9, "default", None), ("RLE", 1, "rle", None), ("Huffman only", 1, "huffman", None),
               ("RLE, 'up' filter (the maps and overlay now)", 1, "rle", "up"),
               ("RLE, no filter (the masks now)", 1, "rle", "none")]


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


def run_measured(command: list[str], *, timeout: float = 3600) -> dict:
    """``command`` in a fresh process: wall seconds, CPU seconds and peak resident MB of that process alone."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty process never blocks on it
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        errors.seek(0)
        stderr = errors.read().decode("utf-8", "replace")
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[2:])} failed ({process.returncode}): {stderr[-2000:]}")
    return {"seconds": round(seconds, 3), "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_mb": round(usage.ru_maxrss / 1024.0, 1)}


def analyze_process(path: Path, out: Path, detectors: str | None) -> dict:
    """``retouch analyze`` in a fresh process, with its ``report.json`` timings and the time outside the
    detectors (its wall time less the span in which the detectors ran: the analysis less fusion, since detectors
    run at once in threads and their own timings overlap)."""
    command = [sys.executable, "-m", "retouch", "analyze", str(path), "-o", str(out), "--json"]
    record = run_measured(command + (["-d", detectors] if detectors else []))
    timings = json.loads((out / "report.json").read_text(encoding="utf-8"))["timings_s"]
    detector_seconds = timings["analysis_total"] - timings.get("fusion", 0.0)
    record["timings"] = {key: timings.get(key) for key in ("load", "analysis_total", "write")}
    record["outside_detectors_s"] = round(record["seconds"] - detector_seconds, 3)
    record["folder_mb"] = {item.name: round(item.stat().st_size / 1e6, 2) for item in sorted(out.iterdir())}
    return record


def warm_overhead(path: Path, detectors: str, folder: Path, repeats: int = 5) -> dict:
    """In this (warm) process: ``analyze_file`` on ``path`` less ``analyze_image`` on its loaded pixels, best of
    ``repeats`` each, wall and CPU seconds: what a batch or service worker spends on an item outside the
    detectors (reading, fusion, the report folder)."""
    from retouch.io import load_image
    from retouch.run.pipeline import analyze_image, resolve_detectors
    from retouch.run.tasks import analyze_file

    names = resolve_detectors(detectors)
    loaded = load_image(path)

    def clocked(work) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        work()
        return time.perf_counter() - wall, time.process_time() - cpu

    whole, inner = [], []
    for index in range(repeats + 1):  # the first round warms the imports and caches, and is not counted
        whole.append(clocked(lambda: analyze_file(path, folder / f"warm{index % 2}", detectors=names)))
        inner.append(clocked(lambda: analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization,
                                                   detectors=names, orientation=loaded.exif_orientation,
                                                   file_data=loaded.data)))
    whole, inner = whole[1:], inner[1:]
    best = {"item_wall_s": min(w for w, _ in whole), "item_cpu_s": min(c for _, c in whole),
            "detectors_wall_s": min(w for w, _ in inner), "detectors_cpu_s": min(c for _, c in inner)}
    best["overhead_wall_s"] = best["item_wall_s"] - best["detectors_wall_s"]
    best["overhead_cpu_s"] = best["item_cpu_s"] - best["detectors_cpu_s"]
    return {key: round(value, 3) for key, value in best.items()}


def child_size(megapixels: float, folder: Path, do_png: bool, fast: str = "") -> dict:
    """Floor, each detector, and ``retouch analyze`` end to end, on one generated scan."""
    from retouch.io import load_image
    from retouch.registry import detectors

    path = write_scan(megapixels, folder)
    floor = floor_seconds(path)
    loaded = load_image(path, max_pixels=400_000_000)
    pixels = loaded.pixels
    record: dict = {"megapixels": round(pixels.shape[0] * pixels.shape[1] / 1e6, 2), "file": str(path),
                    "file_mb": round(path.stat().st_size / 1e6, 2), "floor_s": round(floor, 3), "detectors": {}}
    record["first_call_s"] = {}
    for name, spec in detectors().items():
        if not spec.default:
            continue
        # the first call compiles (or loads from the disk cache) the detector's numba kernels: timed apart
        started = time.perf_counter()
        spec.run(pixels[:256, :256].copy(), jpeg_quantization=loaded.jpeg_quantization)
        record["first_call_s"][name] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        spec.run(pixels, jpeg_quantization=loaded.jpeg_quantization, file_data=loaded.data)
        record["detectors"][name] = round(time.perf_counter() - started, 3)
    del pixels, loaded
    out = folder / f"report_{megapixels:g}"
    analyzed = analyze_process(path, out, None)
    record.update({"analyze_s": analyzed["seconds"], "analyze_cpu_s": analyzed["cpu_s"],
                   "analyze_peak_mb": analyzed["peak_mb"], "report_timings": analyzed["timings"],
                   "outside_detectors_s": analyzed["outside_detectors_s"], "folder_mb": analyzed["folder_mb"]})
    if fast:
        record["fast"] = analyze_process(path, folder / f"report_{megapixels:g}_fast", fast)
        record["fast"].pop("folder_mb")
    if do_png:
        record["png"] = png_levels(out)
    return record


def png_levels(folder: Path) -> dict:
    """Total size and encoding time of the report folder's PNG maps and overlay at each zlib choice."""
    import cv2

    strategies = {"default": cv2.IMWRITE_PNG_STRATEGY_DEFAULT, "rle": cv2.IMWRITE_PNG_STRATEGY_RLE,
                  "huffman": cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY}
    images = {item.name: cv2.imread(str(item), cv2.IMREAD_UNCHANGED) for item in sorted(folder.glob("*.png"))}
    filters = {"up": getattr(cv2, "IMWRITE_PNG_FILTER_UP", None),
               "none": getattr(cv2, "IMWRITE_PNG_FILTER_NONE", None)}
    table = {}
    for label, level, strategy, row_filter in PNG_CHOICES:
        options = [cv2.IMWRITE_PNG_COMPRESSION, level, cv2.IMWRITE_PNG_STRATEGY, strategies[strategy]]
        if row_filter is not None:
            if filters[row_filter] is None:  # OpenCV < 4.11
                continue
            options += [cv2.IMWRITE_PNG_FILTER, filters[row_filter]]
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


def batch_scans(count: int, folder: Path) -> Path:
    """``count`` generated 1 MP scans (half airbrushed, half untouched) in ``folder/batch_in``, made once."""
    source = folder / "batch_in"
    source.mkdir(exist_ok=True)
    for index in range(len(list(source.iterdir())), count):
        write_scan(1.0, source, seed=100 + index, method="airbrush" if index % 2 else "none")
    return source


def batch_run(count: int, workers: int, folder: Path, detectors: str | None) -> dict:
    """``retouch batch`` over the first ``count`` generated 1 MP scans, from start to the last item written."""
    every = batch_scans(count, folder)
    source = folder / f"batch_in_{count}"
    source.mkdir(exist_ok=True)
    for item in sorted(every.iterdir())[:count]:
        if not (source / item.name).exists():
            os.link(item, source / item.name)
    floor = floor_seconds(next(source.iterdir()))
    out = folder / f"batch_out_{detectors or 'default'}"
    command = [sys.executable, "-m", "retouch", "batch", str(source), "-o", str(out), "--workers", str(workers)]
    measured = run_measured(command + (["-d", detectors] if detectors else []), timeout=24 * 3600)
    seconds = measured["seconds"]
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    return {"scans": count, "workers": workers, "detectors": detectors or "every default detector",
            "seconds": round(seconds, 1), "cpu_s": measured["cpu_s"], "results": len(lines),
            "ok": sum(json.loads(line)["status"] == "ok" for line in lines),
            "scans_per_minute": round(60.0 * count / seconds, 1),
            "cpu_s_per_scan": round(measured["cpu_s"] / count, 3),
            "floor_s": round(floor, 4), "per_scan_over_floor": round(seconds / count / floor, 1)}


def compare_run(megapixels: float, folder: Path) -> dict:
    """``retouch compare`` on a generated pair (a diffusion fill, re-photographed) of about ``megapixels``, in a
    fresh process: its stages from ``report.json`` and its peak resident size."""
    from retouch.samples import make_pair

    pair = make_pair(5, size=side_for(megapixels), edit="diffusion", source="grace_hopper",
                     geometry={"scale_range": (1.0, 1.02), "max_crop": 0.02, "max_angle": 2.0})
    paths = []
    for role, data, kind in (("reference", pair.reference_bytes, pair.reference_format),
                             ("questioned", pair.questioned_bytes, pair.questioned_format)):
        paths.append(folder / f"pair_{role}.{'jpg' if kind == 'JPEG' else 'png'}")
        paths[-1].write_bytes(data)
    del pair
    out = folder / "compare_out"
    command = [sys.executable, "-m", "retouch", "compare", *map(str, paths), "-o", str(out), "--json"]
    measured = run_measured(command)
    timings = json.loads((out / "report.json").read_text(encoding="utf-8"))["timings_s"]
    shape = image_shape(paths[1])
    return {"megapixels": round(shape[0] * shape[1] / 1e6, 2), **measured, "timings": timings}


def image_shape(path: Path) -> tuple[int, int]:
    """(height, width) from the file's header."""
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width


def run_child(args: list[str], fast: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--fast", fast, "--child", *args],
                          capture_output=True,
                          text=True, cwd=ROOT, timeout=4 * 3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


FAST = "ela,grain,jpeg,grid,metadata"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,6,24", help="scan sizes in megapixels (48 too: --sizes 1,6,24,48)")
    parser.add_argument("--batch", type=int, default=100, help="1 MP scans through retouch batch with the fast "
                        "detectors (0: none)")
    parser.add_argument("--batch-all", type=int, default=100, help="1 MP scans through retouch batch with every "
                        "default detector (0: none)")
    parser.add_argument("--workers", type=int, default=1, help="batch workers")
    parser.add_argument("--fast", default=FAST, help="the fast detectors of the floor columns, the overhead and "
                        "--batch ('': none of those)")
    parser.add_argument("--compare", type=float, default=24.0, help="megapixels of the compare pair (0: none)")
    parser.add_argument("--what", default="analyze,overhead,pyifd,batch,png,compare")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed.md"))
    parser.add_argument("--child", nargs="*")
    parser.add_argument("--warm", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        megapixels, folder, do_png = float(args.child[0]), Path(args.child[1]), args.child[2] == "1"
        print(json.dumps(child_size(megapixels, folder, do_png, args.fast)))
        return
    if args.warm:
        path, folder, fast = Path(args.warm[0]), Path(args.warm[1]), args.warm[2]
        print(json.dumps(warm_overhead(path, fast, folder)))
        return
    from retouch.registry import detectors
    from retouch.run.budget import estimated_bytes, max_memory_from_env

    what = set(args.what.split(","))
    sizes = [float(s) for s in args.sizes.split(",")]
    budget = max_memory_from_env()
    load_start = _load_text()
    rows, skipped, batches, overhead, compare = [], [], [], None, None
    with tempfile.TemporaryDirectory(prefix="retouch-speed-") as scratch:
        folder = Path(scratch)
        if "overhead" in what and args.fast:  # measured with the fast detectors only
            overhead = run_overhead(folder, args.fast)
            print(json.dumps(overhead), flush=True)
        if "analyze" in what:
            for megapixels in sizes:
                need = estimated_bytes("analyze", int(megapixels * 1e6))
                if need > budget:
                    skipped.append(f"{megapixels:g} MP: estimated {need / 1e9:.1f} GB over the {budget / 1e9:.1f} "
                                   "GB budget of one analysis")
                    continue
                do_png = "png" in what and megapixels == max(sizes)
                record = run_child([str(megapixels), str(folder), "1" if do_png else "0"], args.fast)
                if "pyifd" in what:
                    record["pyifd"] = pyifd_seconds(Path(record["file"]))
                rows.append(record)
                print(json.dumps(record), flush=True)
                for item in folder.glob(f"*{megapixels:g}mp*"):
                    item.unlink()
        if "batch" in what:
            for count, chosen in ((args.batch if args.fast else 0, args.fast), (args.batch_all, None)):
                if count:
                    batches.append(batch_run(count, args.workers, folder, chosen or None))
                    print(json.dumps(batches[-1]), flush=True)
        if "compare" in what and args.compare:
            compare = compare_run(args.compare, folder)
            print(json.dumps(compare), flush=True)
    write(args, rows, skipped, batches, overhead, compare,
          [name for name, spec in detectors().items() if spec.default], load_start)


def run_overhead(folder: Path, fast: str) -> dict:
    """The overhead outside the detectors at 1 MP: of a fresh ``retouch analyze`` process with the fast
    detectors (median of three), and of a warm worker (:func:`warm_overhead`, in a child process of its own)."""
    path = write_scan(1.0, folder, seed=SEED + 1)
    fresh = [analyze_process(path, folder / f"overhead_fresh{index}", fast) for index in range(3)]
    fresh.sort(key=lambda record: record["outside_detectors_s"])
    middle = fresh[1]
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed", "--warm", str(path), str(folder), fast],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return {"file": path.name, "detectors": fast, "fresh_wall_s": middle["seconds"], "fresh_cpu_s": middle["cpu_s"],
            "fresh_outside_detectors_s": middle["outside_detectors_s"], "fresh_timings": middle["timings"],
            "warm": json.loads(done.stdout.strip().splitlines()[-1])}


def write(args: argparse.Namespace, rows: list[dict], skipped: list[str], batches: list[dict],
          overhead: dict | None, compare: dict | None, names: list[str], load_start: str) -> None:
    lines = ["# Speed", "",
             f"Command: `python -m benchmarks.speed --sizes {args.sizes} --batch {args.batch} --batch-all "
             f"{args.batch_all} --workers {args.workers} --compare {args.compare:g} --what {args.what}`", "",
             f"Machine: 2 cores shared with other work; load average (1 / 5 / 15 min) {load_start} at the start and "
             f"{_load_text()} at the end of the run. Seconds drift with the load; the ratios to the floor, measured in "
             "the same process on the same file moments apart, and CPU seconds are the figures to compare.", "",
             "Floor: decode the JPEG and encode it once again as JPEG with OpenCV (best of three). `analyze`: a fresh "
             "`retouch analyze` process from start to `report.json` written; load, analysis and write are its own "
             f"`report.json` timings. Fast detectors: `-d {args.fast}` (the floor columns: what lies outside clone "
             "and inpaint).", ""]
    if overhead:
        warm = overhead["warm"]
        lines += ["## Overhead outside the detectors (1 MP)", "",
                  f"On {overhead['file']} with `-d {overhead['detectors']}`. Fresh process: a new `retouch analyze` "
                  "from start to `report.json` (median of three), less its detectors' own timings: interpreter, "
                  "imports, reading, fusion, the report folder. Warm worker: `analyze_file` less `analyze_image` on "
                  "the same scan in one process after a first round (best of five): what a batch or service worker "
                  "spends on an item outside the detectors.", "",
                  "| | wall s | CPU s | load | write |", "|---|---|---|---|---|",
                  f"| fresh process, whole | {overhead['fresh_wall_s']:.2f} | {overhead['fresh_cpu_s']:.2f} | "
                  f"{overhead['fresh_timings']['load']:.3f} | {overhead['fresh_timings']['write']:.3f} |",
                  f"| fresh process, outside the detectors | {overhead['fresh_outside_detectors_s']:.2f} | | | |",
                  f"| warm worker, whole item | {warm['item_wall_s']:.3f} | {warm['item_cpu_s']:.3f} | | |",
                  f"| warm worker, detectors | {warm['detectors_wall_s']:.3f} | {warm['detectors_cpu_s']:.3f} | | |",
                  f"| **warm worker, outside the detectors** | **{warm['overhead_wall_s']:.3f}** | "
                  f"**{warm['overhead_cpu_s']:.3f}** | | |", ""]
    if rows:
        lines += ["## retouch analyze end to end", "",
                  "| MP | floor s | detectors | analyze s (x floor) | CPU s | load | analysis | write (share) | "
                  "outside detectors s | peak MB | s per MP |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            runs = [("every default", {"seconds": row["analyze_s"], "cpu_s": row["analyze_cpu_s"],
                                       "timings": row["report_timings"], "peak_mb": row["analyze_peak_mb"],
                                       "outside_detectors_s": row["outside_detectors_s"]})]
            if "fast" in row:
                runs.append(("fast", row["fast"]))
            for label, run in runs:
                timings = run["timings"]
                share = timings["write"] / run["seconds"] if run["seconds"] else 0.0
                lines.append(f"| {row['megapixels']} | {row['floor_s']} | {label} | {run['seconds']:.1f} "
                             f"({run['seconds'] / row['floor_s']:.0f}x) | {run['cpu_s']:.1f} | "
                             f"{timings['load']:.2f} | "
                             f"{timings['analysis_total']:.1f} | {timings['write']:.2f} ({100 * share:.0f} %) | "
                             f"{run['outside_detectors_s']:.2f} | {run['peak_mb']:.0f} | "
                             f"{run['seconds'] / row['megapixels']:.2f} |")
        lines += ["", "## Each detector alone (seconds, and x floor)", "",
                  "| MP | floor s | " + " | ".join(names) + " | pyIFD ELA | pyIFD NOI1 |",
                  "|" + "---|" * (len(names) + 4)]
        reasons = set()
        for row in rows:
            cells = [f"{row['detectors'][name]:.2f} ({row['detectors'][name] / row['floor_s']:.0f}x)"
                     if name in row["detectors"] else "-" for name in names]
            for theirs in ("ELA", "NOI1"):
                pyifd = row.get("pyifd", {})
                if f"{theirs}_s" in pyifd:
                    cells.append(f"{pyifd[theirs + '_s']:.2f} ({pyifd[theirs + '_s'] / row['floor_s']:.0f}x)")
                else:
                    cells.append("-")
                    reasons.add(pyifd.get("skipped") or pyifd.get(f"{theirs}_error") or "not run (--what)")
            lines.append(f"| {row['megapixels']} | {row['floor_s']} | " + " | ".join(cells) + " |")
        lines += ["", "Each detector is timed after a first call on a 256 px crop of the same scan. That first call, "
                  "in seconds (it compiles the numba kernels when their disk cache is empty, as in a fresh clone, "
                  "and loads them otherwise):", ""]
        lines += [f"- {row['megapixels']} MP: " + ", ".join(f"{k} {v:.2f}" for k, v in row["first_call_s"].items())
                  for row in rows if row.get("first_call_s")]
        lines += ["", "pyIFD is timed end to end from the path (its own decoding included), one run each."]
        lines += [f"pyIFD not measured: {reason}" for reason in sorted(reasons)]
        lines += ["", "Report folder sizes (MB) at each size (every default detector):", ""]
        for row in rows:
            lines.append(f"- {row['megapixels']} MP: " + ", ".join(f"{k} {v}" for k, v in row["folder_mb"].items()))
        png = next((row["png"] for row in rows if "png" in row), None)
        if png:
            largest = max(rows, key=lambda row: row["megapixels"])
            lines += ["", f"## PNG levels on the report's {png['maps']} maps and overlay at {largest['megapixels']} MP",
                      "", "OpenCV's PNG encoder (zlib) on the report folder's own maps, one encoding each; libpng "
                      "tries every row filter on each row unless one is named.", "",
                      "| choice | maps s | maps MB | overlay s | overlay MB |", "|---|---|---|---|---|"]
            for label, cell in png["choices"].items():
                lines.append(f"| {label} | {cell['maps_s']} | {cell['maps_mb']} | {cell['overlay_s']} | "
                             f"{cell['overlay_mb']} |")
    if skipped:
        lines += ["", "Sizes not run: " + "; ".join(skipped) + "."]
    if batches:
        lines += ["", "## retouch batch", "",
                  "Generated 1 MP scans (half airbrushed, half untouched), `retouch batch --workers "
                  f"{args.workers}`, start-up of the process and its workers included; CPU is the whole process "
                  "tree's.", "",
                  "| detectors | scans | seconds | scans a minute | CPU s a scan | x 1 MP floor a scan | ok |",
                  "|---|---|---|---|---|---|---|"]
        for batch in batches:
            lines.append(f"| {batch['detectors']} | {batch['scans']} | {batch['seconds']} | "
                         f"**{batch['scans_per_minute']}** | {batch['cpu_s_per_scan']} | "
                         f"{batch['per_scan_over_floor']} | "
                         f"{batch['ok']} of {batch['results']} |")
    if compare:
        timings = compare["timings"]
        stages = [("load", "load"), ("registration", "register"), ("change model", "model"),
                  ("evidence", "evidence"), ("decision", "decision"), ("map back", "map_back"),
                  ("compare total", "compare_total"), ("write", "write")]
        lines += ["", f"## retouch compare on a {compare['megapixels']} MP pair", "",
                  "A generated pair (`make_pair(5, edit='diffusion')`, grace_hopper, re-photographed), a fresh "
                  "`retouch compare` process; stages from its `report.json` (seconds). The pairs issue asks for "
                  "< 20 s and < 4 GB at 24 MP.", "",
                  "| wall s | CPU s | " + " | ".join(label for label, _ in stages) + " | peak MB |",
                  "|" + "---|" * (len(stages) + 3),
                  f"| {compare['seconds']:.1f} | {compare['cpu_s']:.1f} | "
                  + " | ".join(f"{timings[key]:.2f}" if key in timings else "-" for _, key in stages)
                  + f" | {compare['peak_mb']:.0f} |"]
    write_markdown(args.out, lines)


if __name__ == "__main__":
    main()
