"""Where the copy-move detector spends its time: ``copy_move`` at several scan sizes, split by stage.

Each case is the scan ``benchmarks.speed`` times (a generated grace_hopper print, diffusion fill, grain, JPEG) at
``--sizes`` megapixels, a generated digital file with a clone stamp at 1 MP (``make_forgery(700, method="clone",
history="digital")``, a pair the detector decides), plus the astronaut photograph (scikit-image) at 1155 x 866
saved as JPEG 90. For each:
the wall time of ``copy_move`` (best of ``--repeats``), and one run under ``cProfile`` split into its stages by
the cumulative time of the functions that make them:

- ``patchmatch``: the nearest-neighbour field (the grid's search ``compiled_patchmatch`` and the full-resolution
  pass ``upsampled_field``, every call);
- ``zernike`` and ``pca``: the dense features (``zernike_features``, ``reduce_features``);
- ``sift``: keypoint detection and description (``sift_keypoints``, plain and mirrored);
- ``keypoint matching``: ``plain_and_mirrored_maps`` (descriptor matching, plain and mirrored, and RANSAC
  grouping);
- ``candidates``: ``candidate_pairs`` (coherent areas, keypoint maps checked at the pixels);
- ``significance``: ``significant_pairs`` (the a-contrario test, refinement, outlines and target calls);
- ``other``: the rest (grey conversion, bounding, the field's filtering, the result and its upscaling).

The profile counts CPU seconds of this process (``time.process_time``, every thread), which drift less with the
load of a shared machine than wall seconds; the shares are measured in one process moments apart, so they hold
under load, when seconds do not; the load average is printed with them. ``patchmatch`` is the share a faster
nearest-neighbour kernel would divide. The profiled run keeps clone in one thread (its keypoint stage otherwise
runs beside the dense features, and a profile sees only the calling thread); the timed runs are as shipped.

Decisions: ``--decisions FILE`` writes every case's decision (each region's box, kind and ``nfa``, a digest of the
mask, the candidates' ``nfa``); with ``--against FILE`` (written by another tree, say main) each case is compared
and the command exits 1 when a decision differs. Candidates that were not decided may differ in their ``nfa``
(float rounding moves the dense field's ties) and are listed, not failed.

    python -m benchmarks.clone_speed [--sizes 1,6,24] [--repeats 1] [--decisions FILE] [--against FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

class _InCallingThread:
    """A stand-in for clone's ``ThreadPoolExecutor`` that runs each task at once in the calling thread."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __enter__(self) -> _InCallingThread:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, /, *args, **kwargs):
        from concurrent.futures import Future

        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


STAGES = {  # stage -> (module file suffix, function names)
    "patchmatch": ("_patchmatch.py", ("patchmatch", "compiled_patchmatch", "upsampled_field")),
    "zernike": ("_patchmatch.py", ("zernike_features",)),
    "pca": ("_patchmatch.py", ("reduce_features",)),
    "sift": ("_clone_keypoints.py", ("sift_keypoints",)),
    "keypoint_maps": ("_clone_keypoints.py", ("plain_and_mirrored_maps",)),
    "candidates": ("clone.py", ("candidate_pairs",)),
    "significance": ("clone.py", ("significant_pairs",)),
    "total": ("clone.py", ("copy_move",)),
}


def _cases(sizes: list[float], folder: Path):
    import cv2
    from skimage import data

    from benchmarks.speed import write_scan
    from retouch.io import load_image

    astronaut = cv2.resize(data.astronaut(), (1155, 866), interpolation=cv2.INTER_AREA)
    path = folder / "astronaut.jpg"
    cv2.imwrite(str(path), astronaut[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    yield "astronaut 1155x866 JPEG 90", load_image(path).pixels
    for megapixels in sizes:
        path = write_scan(megapixels, folder)
        yield f"scan {megapixels:g} MP", load_image(path, max_pixels=400_000_000).pixels
        path.unlink()
    from benchmarks.speed import side_for
    from retouch.io import load_image_bytes
    from retouch.samples import make_forgery

    stamped = make_forgery(700, method="clone", size=side_for(1.0), history="digital")
    yield "clone-stamped file 1 MP", load_image_bytes(stamped.file_bytes, name="stamped.jpg").pixels


def _decision(result) -> dict:
    import numpy as np

    return {"mask": hashlib.sha1(np.packbits(result.mask)).hexdigest()[:16], "marked": float(result.mask.mean()),
            "regions": [[list(region.bbox), region.kind, region.evidence.get("nfa")] for region in result.regions],
            "candidate_nfa": result.details["candidate_nfa"]}


def _compare(decisions: dict, reference: dict) -> bool:
    """Print how each case's decision compares with the reference's; True when every decision is the same."""
    same = True
    for label, decision in decisions.items():
        if label not in reference:
            print(f"{label}: not in the reference")
            continue
        other = reference[label]
        decided = (decision["mask"], decision["regions"]) == (other["mask"], other["regions"])
        same &= decided
        note = "" if decision["candidate_nfa"] == other["candidate_nfa"] else (
            f"; candidates' nfa {other['candidate_nfa']} -> {decision['candidate_nfa']}")
        print(f"{label}: decision {'the same' if decided else 'DIFFERS'} "
              f"({len(other['regions'])} -> {len(decision['regions'])} regions){note}")
    return same


def _split(profile: cProfile.Profile) -> dict[str, float]:
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (calls, primitive, tottime, cumtime, callers)
    seconds = dict.fromkeys(STAGES, 0.0)
    for (file, _, name), (_, _, _, cumulative, _) in stats.items():
        for stage, (suffix, functions) in STAGES.items():
            if name in functions and file.endswith(suffix):
                seconds[stage] += cumulative
    # keypoint_maps calls sift_keypoints for the mirrored image: its share is counted under sift only
    mirrored_sift = sum(timing[3] for (file, _, name), (_, _, _, _, callers) in stats.items()
                        if name == "sift_keypoints" and file.endswith("_clone_keypoints.py")
                        for caller, timing in callers.items() if caller[2] == "keypoint_maps")
    seconds["keypoint_maps"] -= mirrored_sift
    seconds["other"] = seconds["total"] - sum(value for key, value in seconds.items() if key != "total")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,6,24", help="scan sizes in megapixels")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--decisions", type=Path, help="write every case's decision to this JSON file")
    parser.add_argument("--against", type=Path,
                        help="compare the decisions with this file's (exit 1 if any differs)")
    args = parser.parse_args(argv)
    import numpy as np

    from retouch.detect import clone
    from retouch.detect.clone import copy_move

    copy_move(np.zeros((64, 64), np.uint8))  # imports and first-call set-up out of the timings
    start_load = os.getloadavg()
    columns = [*(key for key in STAGES if key != "total"), "other"]
    lines = ["| case | pixels | clone s (best, wall) | " + " | ".join(f"{c} (CPU)" for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    decisions = {}
    with tempfile.TemporaryDirectory(prefix="retouch-clone-speed-") as scratch:
        for label, pixels in _cases([float(s) for s in args.sizes.split(",")], Path(scratch)):
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                decisions[label] = _decision(copy_move(pixels))
                best = min(best, time.perf_counter() - started)
            profile = cProfile.Profile(time.process_time)
            threaded = getattr(clone, "ThreadPoolExecutor", None)
            if threaded is not None:
                clone.ThreadPoolExecutor = _InCallingThread
            try:
                profile.runcall(copy_move, pixels)
            finally:
                if threaded is not None:
                    clone.ThreadPoolExecutor = threaded
            seconds = _split(profile)
            shares = " | ".join(f"{seconds[key]:.2f} s ({100 * seconds[key] / seconds['total']:.0f} %)"
                                for key in columns)
            lines.append(f"| {label} | {pixels.shape[1]}x{pixels.shape[0]} | {best:.2f} | {shares} |")
            print(lines[-1], flush=True)
    end_load = os.getloadavg()
    print(f"\nCommand: `python -m benchmarks.clone_speed --sizes {args.sizes} --repeats {args.repeats}`; load "
          f"average (1 min) {start_load[0]:.1f} at the start, {end_load[0]:.1f} at the end, on {os.cpu_count()} "
          "cores.\n")
    print("\n".join(lines))
    if args.decisions:
        args.decisions.write_text(json.dumps(decisions, indent=1))
    if args.against:
        print(f"\nDecisions against {args.against}:")
        return 0 if _compare(decisions, json.loads(args.against.read_text())) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
