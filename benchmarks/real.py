"""Detection quality on real, independently made material: public forgeries, their originals, Soviet pairs.

The generated benchmark (``benchmarks.quality``) measures retouch on forgeries its own generator makes; this one
measures it on material it did not make (``../shared/realdata``: NoSo and CoMoFoD copy-moves, CASIA v1 and v2
splices, PS-Battles photoshops with their source photos; ``../shared/soviet``: three Soviet photographs with their
altered versions). Nothing of that material is copied into the repository: it is read from the paths given.

    python -m benchmarks.real --data ../shared/realdata [--soviet ../shared/soviet] [--section single,pairs]
                              [--sets noso,comofod,casia1,casia2,psbattles] [--pyifd] [--workers 2]
                              [--reports N] [--out bench-out/real] [--no-write]

Sections:

- ``single``: every forged image with a mask, and every unedited original, through the same pipeline as
  ``retouch analyze`` (``retouch.io.load_image`` then ``retouch.run.pipeline.analyze_image`` with the default
  detectors). Per data set and manipulation kind: F1 and MCC of the fused decision (the tool's own threshold),
  pixel AUC and best-threshold F1 of each detector's map; on originals: the share of images with anything marked
  and the mean marked area; image level: AUC of the fused score, forged against originals, and the true-positive
  rate at 5 % false positives. With ``--pyifd`` the same forged files are scored with pyIFD's maps (installed in
  its own venv, as ``benchmarks.pyifd_compare`` does) in the convention the literature uses for maps without a
  polarity: for each image the better of the map and its inverse (AUC and best F1).
  Content control: a map can score a high pixel AUC because the pasted or copied object differs in content
  (colour, texture, edges) from its surroundings, not because the map read the edit. Where a forged image has a
  pixel-aligned untouched original (CASIA v1 and NoSo: all; CoMoFoD: one), the original's own analysis (run anyway
  for the false-alarm rows, nothing is analysed twice) is scored against the forged image's mask in the same fixed
  polarity, bright = suspect. Each map's cell shows the row's median AUC and best F1 and, in brackets, the median
  of that control and the median gap (AUC on the forged image minus AUC on its original, per image): a map that
  reads the edit scores near 0.5 on the original and the gap is large; a map that reads the place's own content
  scores about as high on both and the gap is near 0. CASIA v2 and PS-Battles have no aligned original ("-"). pyIFD's maps have no
  control (their polarity is chosen per image, which would favour the control as well).
  The control sees only content that was at the place before the edit: a pasted piece brings its own content,
  which the original does not have there. So every row also scores a map with no forensic meaning
  (``content-reference``, :func:`content_reference_map`: local colour-edge density) with the same control; a
  map's AUC and gap say something about the edit only where they exceed that map's.
- ``pairs``: ``retouch compare ORIGINAL FORGED`` on the pixel-aligned pairs (CASIA v1, NoSo), scored against the
  edited pixels (the ground-truth mask where the two files visibly differ: copy-move masks mark the source too,
  which a comparison rightly leaves alone), beside a naive baseline (the thirty lines a user would write with
  OpenCV and scikit-image; see :func:`naive_difference`); PS-Battles pairs: registered, composite or refused and
  the area marked; the Soviet pairs: outcome and regions by kind, scored against rough outlines of the figures
  drawn by hand (``benchmarks/soviet_annotations.json``: polygon coordinates only) as the share of each figure
  marked with its expected kind, the share of everything marked that lies on the figures and, for a composite, the
  share of the shared figure covered by located pieces in each image. ``--reports N`` writes full ``compare``
  reports for N PS-Battles pairs and every Soviet pair under ``--out`` so a person can look.

Conventions: pixel metrics are per image and summarised by the median over images; "own" means the method's own
binary decision, "best" the best F1 over thresholds of its heatmap on that image (an oracle); "anything marked"
counts an image when its fused decision marks any pixel. Results go to ``benchmarks/results/real.md`` (and the raw
rows to ``--out``). When the data folder is absent the script says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "real.md"
SOVIET_OUTLINES = ROOT / "benchmarks" / "soviet_annotations.json"
SETS = {"noso": "noso_copymove", "comofod": "comofod_mini", "casia1": "casia1_samples",
        "casia2": "casia2_samples", "psbattles": "mantranet_psbattles"}
PYIFD_METHODS = ["ELA", "NOI1", "NOI4", "BLK", "CAGI", "DCT", "ADQ1"]


@dataclass(frozen=True)
class Case:
    """One file to analyse: a forged image with its mask, or an unedited original (``mask`` None)."""

    dataset: str
    case_id: str
    kind: str  # "copy-move", "splicing", "photoshop" or "original"
    path: str
    mask: str | None = None
    original: str | None = None
    # for an original: (case id, forged file, mask) of each forged case made from it, for the content control
    controls: tuple[tuple[str, str, str], ...] = ()


def _kind(text: str) -> str:
    text = text.lower()
    if "copy" in text:
        return "copy-move"
    if "splic" in text:
        return "splicing"
    return "photoshop"


def read_cases(data: Path, sets: list[str]) -> list[Case]:
    """Forged images with masks and every distinct original of the chosen sets, from their manifests."""
    cases: list[Case] = []
    for key in sets:
        folder = data / SETS[key]
        manifest = json.loads((folder / "manifest.json").read_text())
        originals: dict[str, str] = {}
        controls: dict[str, list[tuple[str, str, str]]] = {}
        for entry in manifest["cases"]:
            original = str(folder / entry["original"]) if entry.get("original") else None
            if original:
                originals.setdefault(original, Path(entry["original"]).stem)
            if original and entry.get("mask"):
                controls.setdefault(original, []).append((entry["id"], str(folder / entry["forged"]),
                                                          str(folder / entry["mask"])))
            if entry.get("mask"):
                cases.append(Case(key, entry["id"], _kind(entry.get("kind", "")), str(folder / entry["forged"]),
                                  str(folder / entry["mask"]), original))
            else:
                cases.append(Case(key, entry["id"], "photoshop", str(folder / entry["forged"]), None, original))
        cases.extend(Case(key, f"original:{name}", "original", path, controls=tuple(controls.get(path, ())))
                     for path, name in originals.items())
    return cases


def read_mask(path: str, shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth mask as bool at ``shape`` (any non-zero channel is manipulated; nearest-neighbour resize)."""
    import cv2
    from PIL import Image

    values = np.asarray(Image.open(path))
    if values.ndim == 3:
        values = values[..., :3].max(axis=2)
    mask = values > 127
    if mask.shape != shape:
        mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    return mask


# ---------------------------------------------------------------------------------------------------- single

CONTENT_REFERENCE = "content-reference"


def content_reference_map(pixels: np.ndarray) -> np.ndarray:
    """A map with no forensic meaning, scored beside the detectors as the figure content alone reaches: the local
    density of colour edges (chroma Cb and Cr after a 3 px box, Sobel gradient magnitude summed over the two,
    mean over a 32 px box), scaled to [0, 1]. Gray pictures give a flat map (AUC 0.5).

    Pasted objects are often more colourful than their host (CASIA v1's flowers, figures, people): this map
    ranks them without any trace of another origin (``detector_notes.md``, NOI2 on CASIA)."""
    import cv2

    if pixels.ndim != 3:
        return np.zeros(pixels.shape[:2], np.float32)
    rgb = pixels[..., :3].astype(np.float32) / (257.0 if pixels.dtype == np.uint16 else 1.0)
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    density = np.zeros(rgb.shape[:2], np.float32)
    for chroma in (-0.1687 * red - 0.3313 * green + 0.5 * blue, 0.5 * red - 0.4187 * green - 0.0813 * blue):
        chroma = cv2.blur(chroma, (3, 3))
        density += np.hypot(cv2.Sobel(chroma, cv2.CV_32F, 1, 0), cv2.Sobel(chroma, cv2.CV_32F, 0, 1))
    return _normalised(cv2.blur(density, (32, 32)))


def _single(case: Case, detectors: str | None = None) -> dict:
    from retouch.io import load_image
    from retouch.metrics import best_f1, f1_score, mcc, pixel_auc
    from retouch.run.pipeline import analyze_image

    started = time.perf_counter()
    loaded = load_image(case.path, max_pixels=400_000_000)
    run = analyze_image(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization,
                        orientation=loaded.exif_orientation, detectors=detectors)
    seconds = time.perf_counter() - started
    fused = run.fused
    row = {**asdict(case), "seconds": round(seconds, 3), "megapixels": fused.mask.size / 1e6,
           "score": fused.score, "marked": float(fused.mask.mean()), "regions": len(fused.regions),
           "detector_marked": {r.method: float(r.mask.mean()) for r in run.results if r.skipped is None},
           "detector_score": {r.method: r.score for r in run.results if r.skipped is None},
           "detector_null": {r.method: r.details.get("null") for r in run.results if r.skipped is None},
           "detector_margin": {r.method: r.params.get("tail_margin") for r in run.results if r.skipped is None},
           "region_nfa": [r.evidence.get("nfa") for r in fused.regions]}
    maps = {r.method: r.heatmap for r in [*run.results, fused] if r.skipped is None}
    content = content_reference_map(loaded.pixels)
    if content.shape == fused.mask.shape:
        maps[CONTENT_REFERENCE] = content
    if case.mask:
        truth = read_mask(case.mask, fused.mask.shape)
        row.update(f1=f1_score(fused.mask, truth), mcc=mcc(fused.mask, truth),
                   auc={method: pixel_auc(heatmap, truth) for method, heatmap in maps.items()},
                   best={method: best_f1(heatmap, truth) for method, heatmap in maps.items()})
    # the content control: this original's maps scored at the place of each forged case made from it (only where
    # the two files are pixel-aligned); a map that reads the edit, not the content, scores near 0.5 there
    control = {}
    for case_id, forged, mask in case.controls:
        if _image_shape(forged) != _image_shape(case.path):
            continue
        truth = read_mask(mask, fused.mask.shape)
        control[case_id] = {method: pixel_auc(heatmap, truth) for method, heatmap in maps.items()}
    if control:
        row["control"] = control
    return row


def _pyifd_scores(cases: list[Case], out: Path) -> dict[str, dict[str, dict[str, float]]]:
    """pyIFD's maps on the forged files, scored polarity-free per image; {case path: {method: {auc, best}}}."""
    from benchmarks.pyifd_compare import ensure_pyifd
    from retouch.metrics import best_f1, pixel_auc

    python = ensure_pyifd()
    folder = out / "pyifd"
    folder.mkdir(parents=True, exist_ok=True)
    runner = folder / "runner.py"
    runner.write_text(PYIFD_RUNNER)
    todo = [c for c in cases if c.mask]
    maps: dict[str, dict[str, float]] = {}
    for case in todo:
        stem = folder / (case.dataset + "-" + case.case_id.replace("/", "_"))
        missing = [m for m in PYIFD_METHODS if not Path(f"{stem}.{m}.npy").exists()
                   and not Path(f"{stem}.{m}.err").exists()]
        if missing:
            subprocess.run([str(python), str(runner), case.path, str(stem), ",".join(missing)], check=False,
                           timeout=1800, capture_output=True)
        scores: dict[str, dict[str, float]] = {}
        for method in PYIFD_METHODS:
            path = Path(f"{stem}.{method}.npy")
            if not path.exists():
                continue
            values = _normalised(np.load(path))
            truth = read_mask(case.mask, _image_shape(case.path))
            values = _resized(values, truth.shape)
            scores[method] = {"auc": max(pixel_auc(values, truth), pixel_auc(1 - values, truth)),
                              "best": max(best_f1(values, truth), best_f1(1 - values, truth))}
        maps[case.path] = scores
    return maps


PYIFD_RUNNER = r"""
import sys, numpy as np, importlib
path, stem, methods = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
calls = {"ELA": ("pyIFD.ELA", "ELA"), "NOI1": ("pyIFD.NOI1", "GetNoiseMap"), "NOI4": ("pyIFD.NOI4", "MedFiltForensics"),
         "BLK": ("pyIFD.BLK", "GetBlockGrid"), "CAGI": ("pyIFD.CAGI", "CAGI"), "DCT": ("pyIFD.DCT", "DCT"),
         "ADQ1": ("pyIFD.ADQ1", "detectDQ")}
for method in methods:
    module, name = calls[method]
    try:
        value = getattr(importlib.import_module(module), name)(path)
        if method in ("BLK", "CAGI"):  # these return the map first, then intermediate arrays
            value = value[0]
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 3:
            value = value.mean(axis=2)
        np.save(f"{stem}.{method}.npy", value)
    except Exception as error:
        open(f"{stem}.{method}.err", "w").write(type(error).__name__ + ": " + str(error)[:300])
"""


def _image_shape(path: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width


def _normalised(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
    return np.clip((values - low) / max(high - low, 1e-9), 0.0, 1.0)


def _resized(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    if values.shape == shape:
        return values
    return cv2.resize(values, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return float(np.median(values)) if values else float("nan")


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def tpr_at_fpr(positive: list[float], negative: list[float], fpr: float = 0.05) -> float:
    """True-positive rate at the threshold that lets at most ``fpr`` of the negatives through (scores above it)."""
    if not positive or not negative:
        return float("nan")
    negatives = np.sort(np.asarray(negative))[::-1]
    allowed = int(np.floor(fpr * len(negatives)))
    threshold = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float(np.mean(np.asarray(positive) > threshold))


def content_controls(rows: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
    """{(data set, forged case id): {method: pixel AUC of the original's map at that case's mask}} from the
    originals' rows (see :func:`_single`)."""
    return {(r["dataset"], case_id): aucs for r in rows if r["kind"] == "original"
            for case_id, aucs in r.get("control", {}).items()}


def _map_cell(chosen: list[dict], controls: dict[tuple[str, str], dict[str, float]], method: str) -> str:
    """``AUC / best (control, gap)``: medians over the row; control and gap over its cases with an aligned
    original ("-" when none has one), the gap as the median of each case's AUC minus its control."""
    nan = float("nan")
    cell = (f"{_fmt(_median([r['auc'].get(method, nan) for r in chosen]))} / "
            f"{_fmt(_median([r['best'].get(method, nan) for r in chosen]))}")
    paired = [(r["auc"].get(method, nan), controls[(r["dataset"], r["case_id"])].get(method, nan))
              for r in chosen if (r["dataset"], r["case_id"]) in controls]
    if not paired:
        return cell + " (-, -)"
    gap = _median([forged - control for forged, control in paired])
    return (cell + f" ({_fmt(_median([control for _, control in paired]))}, "
            + ("n/a" if gap != gap else f"{gap:+.2f}") + ")")


def single_tables(rows: list[dict], pyifd: dict | None) -> str:
    from retouch.metrics import roc_auc

    detectors = sorted({d for r in rows if "auc" in r for d in r["auc"] if d not in ("fused", CONTENT_REFERENCE)})
    reference = [CONTENT_REFERENCE] if any(CONTENT_REFERENCE in r.get("auc", {}) for r in rows) else []
    controls = content_controls(rows)
    lines = ["### Forged images (fused decision and each detector's map)", "",
             "F1 own / MCC: the fused decision at the tool's own threshold; `>0.5`: images with F1 above 0.5; "
             "AUC / best: median pixel AUC and best-threshold F1 of each map (bright = suspect, one fixed "
             "polarity). Image AUC: fused score of these forged images against every original of the run; "
             "TPR@5%: true positives at 5 % false positives on those originals. Content control, in brackets "
             "(control, gap): where a forged image has a pixel-aligned untouched original (`aligned`: how many "
             "of the row's), the same map computed on that original and scored against the forged image's mask, "
             "same polarity; the gap is the median over those images of AUC on the forged image minus AUC on "
             "its original. A map that reads the edit scores near 0.5 on the original; one that reads the place's "
             "own content (texture, colour, position) scores there about as high as on the forgery, so the gap, "
             "not the AUC, is what the map found beyond that. `-`: no aligned original in the row. `content-reference`: a map with "
             "no forensic meaning (local colour-edge density, `content_reference_map`), the figure content alone "
             "reaches: the control cannot see content that arrived with a pasted piece (the original has other "
             "content there), so a map's AUC and gap mean something only where they exceed this one's.", ""]
    header = ["set", "kind", "n", "aligned", "F1 own", "F1>0.5", "MCC", "marked", "image AUC", "TPR@5%",
              "fused AUC/best (control, gap)", *[f"{d} AUC/best (control, gap)" for d in detectors + reference]]
    if pyifd:
        header.append("pyIFD best map AUC/best (which)")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    negatives = [r["score"] for r in rows if r["kind"] == "original"]
    groups = sorted({(r["dataset"], r["kind"]) for r in rows if r.get("mask")})
    for dataset, kind in groups:
        chosen = [r for r in rows if r["dataset"] == dataset and r["kind"] == kind and r.get("mask")]
        scores = [r["score"] for r in chosen]
        image_auc = roc_auc(np.array(scores + negatives), np.array([1] * len(scores) + [0] * len(negatives)))
        aligned = sum((r["dataset"], r["case_id"]) in controls for r in chosen)
        cells = [dataset, kind, str(len(chosen)), str(aligned), _fmt(_median([r["f1"] for r in chosen])),
                 f"{sum(r['f1'] > 0.5 for r in chosen)} of {len(chosen)}", _fmt(_median([r["mcc"] for r in chosen])),
                 f"{100 * np.mean([r['marked'] for r in chosen]):.1f} %", _fmt(image_auc),
                 _fmt(tpr_at_fpr(scores, negatives)), _map_cell(chosen, controls, "fused")]
        cells += [_map_cell(chosen, controls, detector) for detector in detectors + reference]
        if pyifd:
            best_method, best_auc = None, -1.0
            for method in PYIFD_METHODS:
                value = _median([pyifd.get(r["path"], {}).get(method, {}).get("auc", float("nan")) for r in chosen])
                if value == value and value > best_auc:
                    best_method, best_auc = method, value
            best = _median([pyifd.get(r["path"], {}).get(best_method, {}).get("best", float("nan"))
                            for r in chosen]) if best_method else float("nan")
            cells.append(f"{_fmt(best_auc)} / {_fmt(best)} ({best_method})" if best_method else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "### Unedited originals (every pixel marked is a false alarm)", "",
              "| set | n | anything marked | mean marked area | worst image | detectors that marked |",
              "|---|---|---|---|---|---|"]
    for dataset in sorted({r["dataset"] for r in rows if r["kind"] == "original"}):
        chosen = [r for r in rows if r["dataset"] == dataset and r["kind"] == "original"]
        worst = max(chosen, key=lambda r: r["marked"])
        culprits: dict[str, int] = {}
        for r in chosen:
            for name, value in r["detector_marked"].items():
                culprits[name] = culprits.get(name, 0) + int(value > 0)
        lines.append(f"| {dataset} | {len(chosen)} | {sum(r['marked'] > 0 for r in chosen)} of {len(chosen)} | "
                     f"{100 * np.mean([r['marked'] for r in chosen]):.2f} % | "
                     f"{worst['case_id']} ({100 * worst['marked']:.1f} %) | "
                     + ", ".join(f"{k} {v}" for k, v in sorted(culprits.items()) if v) + " |")
    if pyifd:
        lines += ["", "pyIFD maps, median over each row's images, polarity-free (per image the better of the "
                  "map and its inverse, as the literature scores such maps):", "",
                  "| set | kind | " + " | ".join(f"{m} AUC/best" for m in PYIFD_METHODS) + " |",
                  "|---|---|" + "---|" * len(PYIFD_METHODS)]
        for dataset, kind in groups:
            chosen = [r for r in rows if r["dataset"] == dataset and r["kind"] == kind and r.get("mask")]
            cells = []
            for method in PYIFD_METHODS:
                aucs = [pyifd.get(r["path"], {}).get(method, {}).get("auc", float("nan")) for r in chosen]
                bests = [pyifd.get(r["path"], {}).get(method, {}).get("best", float("nan")) for r in chosen]
                cells.append(f"{_fmt(_median(aucs))} / {_fmt(_median(bests))}")
            lines.append(f"| {dataset} | {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- pairs

def edited_pixels(original: np.ndarray, forged: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The pixels an edit changed: inside the ground-truth mask (dilated by 3 px) where the two files visibly
    differ (the largest channel difference, smoothed at 1 px, above 8 grey levels), closed and hole-filled.

    A copy-move mask marks the copy's source as well, which is identical in both files; a comparison is scored
    against what changed."""
    import cv2
    from scipy import ndimage

    difference = np.abs(original.astype(np.float32) - forged.astype(np.float32))
    if difference.ndim == 3:
        difference = difference.max(axis=2)
    difference = cv2.GaussianBlur(difference, (0, 0), 1.0)
    near = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    edited = (difference > 8) & near
    edited = cv2.morphologyEx(edited.astype(np.uint8), cv2.MORPH_CLOSE,
                              cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))) > 0
    return ndimage.binary_fill_holes(edited) & near


def naive_difference(reference: np.ndarray, questioned: np.ndarray) -> np.ndarray | None:
    """What a user writes in thirty lines: SIFT and a RANSAC homography, histogram matching, a Gaussian blur,
    the absolute difference, a median + 6 MAD threshold, blobs under 0.1 % of the image dropped. Returns the
    change mask in the questioned frame, or None when no homography is found."""
    import cv2
    from skimage.exposure import match_histograms

    def gray(image: np.ndarray) -> np.ndarray:
        image = image if image.dtype == np.uint8 else (image / 257).astype(np.uint8)
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image

    ref, que = gray(reference), gray(questioned)
    sift = cv2.SIFT_create()
    kr, dr = sift.detectAndCompute(ref, None)
    kq, dq = sift.detectAndCompute(que, None)
    if dr is None or dq is None or len(kr) < 4 or len(kq) < 4:
        return None
    pairs = cv2.BFMatcher().knnMatch(dr, dq, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < 0.75 * n.distance]
    if len(good) < 8:
        return None
    src = np.float32([kr[m.queryIdx].pt for m in good])
    dst = np.float32([kq[m.trainIdx].pt for m in good])
    homography, _ = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    if homography is None:
        return None
    warped = cv2.warpPerspective(ref, homography, (que.shape[1], que.shape[0]))
    inside = cv2.warpPerspective(np.ones_like(ref), homography, (que.shape[1], que.shape[0])) > 0
    warped = match_histograms(warped, que).astype(np.float32)
    difference = np.abs(cv2.GaussianBlur(warped, (5, 5), 0) - cv2.GaussianBlur(que.astype(np.float32), (5, 5), 0))
    values = difference[inside]
    median = np.median(values)
    mad = np.median(np.abs(values - median)) * 1.4826
    changed = (difference > median + 6 * max(mad, 1e-6)) & inside
    count, labels, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= 0.001 * changed.size
    return keep[labels]


def _pair(task: tuple[str, str, str, str | None, str | None]) -> dict:
    from retouch.errors import NotSamePhotographError
    from retouch.io import load_image
    from retouch.metrics import f1_score
    from retouch.run.pipeline import compare_images

    dataset, case_id, original_path, forged_path, mask_path = task
    reference = load_image(original_path, max_pixels=400_000_000)
    questioned = load_image(forged_path, max_pixels=400_000_000)
    row: dict = {"dataset": dataset, "case_id": case_id, "original": original_path, "forged": forged_path}
    started = time.perf_counter()
    try:
        comparison = compare_images(reference.pixels, questioned.pixels)
    except NotSamePhotographError as error:
        row.update(outcome="refused", reason=str(error)[:200], seconds=round(time.perf_counter() - started, 2))
        return row
    row["seconds"] = round(time.perf_counter() - started, 2)
    result = comparison.result
    details = result.details or {}
    row["outcome"] = "composite" if details.get("composite") or details.get("pieces") else "registered"
    row["marked"] = float(result.mask.mean())
    row["compared"] = float(comparison.valid_mask.mean())
    row["regions"] = [{"kind": r.kind, "area": r.area, "score": round(r.score, 3), "bbox": list(r.bbox)}
                      for r in result.regions]
    if dataset == "soviet":
        row["outlines"] = soviet_scores(case_id, comparison, reference.pixels.shape[:2])
    if mask_path and reference.pixels.shape == questioned.pixels.shape:
        truth_mask = read_mask(mask_path, questioned.pixels.shape[:2])
        edited = edited_pixels(reference.pixels, questioned.pixels, truth_mask)
        row["edited"] = float(edited.mean())
        row["f1"] = f1_score(result.mask, edited)
        naive = naive_difference(reference.pixels, questioned.pixels)
        row["naive_f1"] = f1_score(naive, edited) if naive is not None else 0.0
        row["naive_marked"] = float(naive.mean()) if naive is not None else 0.0
    return row


def _polygon(points: list, shape: tuple[int, int], transform: np.ndarray | None = None) -> np.ndarray:
    import cv2

    corners = np.float32(points).reshape(-1, 1, 2)
    if transform is not None:
        corners = cv2.perspectiveTransform(corners, np.asarray(transform, np.float64))
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    return mask.astype(bool)


def _kind_mask(regions: list, mask: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    """The decision's pixels that belong to a region of ``kinds``: a region's outline where it has one, else its
    box. A pixel may belong to several regions: a reshaped part listed inside a removed change is both (the
    reference's content there was taken out, and content both scans show was extended over it)."""
    import cv2

    chosen = np.zeros(mask.shape, np.uint8)
    for region in regions:
        if region.kind not in kinds:
            continue
        if "outline_questioned" in region.evidence and region.kind != "shared":
            cv2.fillPoly(chosen, [np.int32(region.evidence["outline_questioned"]).reshape(-1, 1, 2)], 1)
        else:
            x, y, w, h = region.bbox
            chosen[y:y + h, x:x + w] = 1
    return chosen.astype(bool) & mask


def _share(part: np.ndarray, whole: np.ndarray) -> float:
    return round(float((part & whole).sum()) / max(float(whole.sum()), 1.0), 3)


def soviet_scores(case_id: str, comparison, reference_shape: tuple[int, int], *,
                  outlines: dict | None = None) -> dict:
    """How a comparison of a Soviet pair matches the hand-drawn outlines of its figures (see the module
    docstring); {} for a case without outlines. ``outlines`` replaces the case's outlines from
    ``soviet_annotations.json`` (e.g. mapped into a copy made from the given files)."""
    if outlines is None:
        outlines = json.loads(SOVIET_OUTLINES.read_text())["cases"].get(case_id, {})
    result = comparison.result
    shape = result.mask.shape
    scores: dict = {}
    edits = _kind_mask(result.regions, result.mask, ("removed", "added", "retouched"))
    on_figures = np.zeros(shape, bool)
    for name, outline in outlines.items():
        if outline["frame"] == "both":  # a figure shared by a composite: located in each image
            shared = [r for r in result.regions if r.kind == "shared"]
            pieces = _kind_mask(shared, result.mask, ("shared",))
            figure = _polygon(outline["questioned"], shape)
            scores[f"{name}: located in questioned"] = _share(pieces, figure)
            scores[f"{name}: pieces on it"] = _share(figure, pieces)
            donor = np.zeros(reference_shape, bool)
            for region in shared:
                x, y, w, h = region.evidence["bbox_reference"]
                donor[y:y + h, x:x + w] = True
            scores[f"{name}: donor boxes on it (reference)"] = _share(_polygon(outline["reference"],
                                                                               reference_shape), donor)
            continue
        transform = comparison.transform if outline["frame"] == "reference" else None
        figure = _polygon(outline["polygon"], shape, transform) & comparison.valid_mask
        on_figures |= figure
        wanted = "removed" if name.startswith("removed") else "retouched"
        scores[f"{name}: marked {wanted}"] = _share(_kind_mask(result.regions, result.mask, (wanted,)), figure)
        scores[f"{name}: marked as any edit"] = _share(edits, figure)
    if on_figures.any():
        scores["marked edits lying on the figures"] = _share(on_figures, edits)
    return scores


def pair_tasks(data: Path, sets: list[str]) -> list[tuple]:
    tasks = []
    for key in sets:
        if key not in ("casia1", "noso", "psbattles"):
            continue
        folder = data / SETS[key]
        for entry in json.loads((folder / "manifest.json").read_text())["cases"]:
            if entry.get("original"):
                tasks.append((key, entry["id"], str(folder / entry["original"]), str(folder / entry["forged"]),
                              str(folder / entry["mask"]) if entry.get("mask") else None))
    return tasks


def soviet_tasks(soviet: Path) -> list[tuple]:
    manifest = json.loads((soviet / "manifest.json").read_text())
    return [("soviet", c["id"], str(soviet / c["original"]), str(soviet / c["altered"]), None)
            for c in manifest["cases"]]


def pair_tables(rows: list[dict]) -> str:
    lines = ["### Aligned pairs (original against forged file; F1 against the edited pixels)", "",
             "| set | pairs | median F1 | F1 above 0.5 | marked / edited area (median ratio) | naive baseline: "
             "median F1 | naive F1 above 0.5 | naive marked / edited |", "|---|---|---|---|---|---|---|---|"]
    for dataset in ("casia1", "noso"):
        chosen = [r for r in rows if r["dataset"] == dataset and "edited" in r]
        if not chosen:
            continue
        refused = [r for r in rows if r["dataset"] == dataset and r["outcome"] == "refused"]
        for r in refused:
            r.setdefault("f1", 0.0)
        chosen = chosen + [r for r in refused if "edited" not in r]
        ratio = [r["marked"] / r["edited"] for r in chosen if r.get("edited") and "marked" in r]
        naive_ratio = [r["naive_marked"] / r["edited"] for r in chosen if r.get("edited") and "naive_marked" in r]
        lines.append(f"| {dataset} | {len(chosen)} | {_fmt(_median([r['f1'] for r in chosen]))} | "
                     f"{sum(r['f1'] > 0.5 for r in chosen)} of {len(chosen)} | {_fmt(_median(ratio))}x | "
                     f"{_fmt(_median([r.get('naive_f1', 0.0) for r in chosen]))} | "
                     f"{sum(r.get('naive_f1', 0.0) > 0.5 for r in chosen)} of {len(chosen)} | "
                     f"{_fmt(_median(naive_ratio))}x |")
    photoshops = [r for r in rows if r["dataset"] == "psbattles"]
    if photoshops:
        counts = {outcome: sum(r["outcome"] == outcome for r in photoshops)
                  for outcome in ("registered", "composite", "refused")}
        marked = [r["marked"] for r in photoshops if r["outcome"] == "registered"]
        lines += ["", "### PS-Battles pairs (source photo against the photoshop; no masks)", "",
                  "| pairs | registered as one photograph | composite, shared pieces located | refused | "
                  "median area marked (registered) |", "|---|---|---|---|---|",
                  f"| {len(photoshops)} | {counts['registered']} | {counts['composite']} | {counts['refused']} | "
                  f"{100 * _median(marked):.1f} % |"]
    soviet = [r for r in rows if r["dataset"] == "soviet"]
    if soviet:
        lines += ["", "### Soviet pairs (original against altered)", "",
                  "| case | outcome | compared | marked | regions by kind (largest first: kind, area px) |",
                  "|---|---|---|---|---|"]
        for r in soviet:
            regions = sorted(r.get("regions", []), key=lambda g: -g["area"])[:6]
            listed = ", ".join(f"{g['kind']} {g['area']}" for g in regions) or "none"
            compared = f"{100 * r['compared']:.0f} %" if "compared" in r else "-"
            marked = f"{100 * r['marked']:.1f} %" if "marked" in r else "-"
            lines.append(f"| {r['case_id']} | {r['outcome']} | {compared} | {marked} | {listed} |")
        lines += ["", "Against the hand-drawn outlines (`benchmarks/soviet_annotations.json`; shares of pixels):",
                  ""]
        for r in soviet:
            scored = "; ".join(f"{name} {100 * value:.0f} %" for name, value in r.get("outlines", {}).items())
            lines.append(f"- {r['case_id']}: {scored or r['outcome']}")
    return "\n".join(lines)


def write_reports(tasks: list[tuple], out: Path) -> list[str]:
    """Full ``compare`` reports (the CLI's own writer) for a person to look at; returns the folders written."""
    from retouch.errors import NotSamePhotographError
    from retouch.run.tasks import compare_files

    written = []
    for dataset, case_id, original, forged, _ in tasks:
        folder = out / "reports" / f"{dataset}-{case_id}"
        try:
            compare_files(original, forged, folder)
            written.append(os.path.relpath(folder, ROOT))
        except NotSamePhotographError:
            written.append(f"{os.path.relpath(folder, ROOT)} (refused: not the same photograph)")
    return written


# ------------------------------------------------------------------------------------------------------ main

HEADER = ("# retouch on real material\n\nWritten by `python -m benchmarks.real` (its docstring states the conventions); "
          "the data are read from `../shared`, and nothing of them is in this repository. Each section is "
          "replaced only when that section is run.\n")


def readme_table(rows: list[dict], pyifd: dict | None) -> str:
    """The short real-material table for the README: per set and kind, the fused decision and the best maps."""
    from retouch.metrics import roc_auc

    negatives = [r["score"] for r in rows if r["kind"] == "original"]
    lines = ["Real material (`python -m benchmarks.real --section single --pyifd`; public forgeries and their "
             "originals, not in this repository; details in `benchmarks/results/real.md`):", "",
             "| set | kind | n | F1 own (median) | image AUC | pixel AUC fused | pyIFD best map AUC |",
             "|---|---|---|---|---|---|---|"]
    for dataset, kind in sorted({(r["dataset"], r["kind"]) for r in rows if r.get("mask")}):
        chosen = [r for r in rows if r["dataset"] == dataset and r["kind"] == kind and r.get("mask")]
        scores = [r["score"] for r in chosen]
        image_auc = roc_auc(np.array(scores + negatives), np.array([1] * len(scores) + [0] * len(negatives)))
        peer = "n/a"
        if pyifd:
            values = {m: _median([pyifd.get(r["path"], {}).get(m, {}).get("auc", float("nan")) for r in chosen])
                      for m in PYIFD_METHODS}
            values = {m: v for m, v in values.items() if v == v}
            if values:
                best = max(values, key=values.get)
                peer = f"{values[best]:.2f} ({best})"
        lines.append(f"| {dataset} | {kind} | {len(chosen)} | {_fmt(_median([r['f1'] for r in chosen]))} | "
                     f"{_fmt(image_auc)} | {_fmt(_median([r['auc'].get('fused', float('nan')) for r in chosen]))} "
                     f"| {peer} |")
    originals = [r for r in rows if r["kind"] == "original"]
    if originals:
        lines += ["", f"Unedited originals: anything marked on {sum(r['marked'] > 0 for r in originals)} of "
                  f"{len(originals)}, mean marked area {100 * np.mean([r['marked'] for r in originals]):.2f} %."]
    return "\n".join(lines)


def write_readme_table(table: str) -> None:
    """Put ``table`` between the README's real-table markers (added below the generated table when missing)."""
    import re

    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    block = f"<!-- real-table -->\n{table}\n<!-- /real-table -->"
    if "<!-- real-table -->" in text:
        text = re.sub(r"<!-- real-table -->.*?<!-- /real-table -->", lambda _: block, text, flags=re.S)
    else:
        text = text.replace("<!-- quality-table:end -->", "<!-- quality-table:end -->\n\n" + block, 1)
    readme.write_text(text, encoding="utf-8")


def merged_results(previous: str, sections: dict[str, str]) -> str:
    """The results file with the sections just run replaced and the others kept as they were."""
    import re

    kept = {name: body for name, body in
            re.findall(r"<!-- section:(\w+) -->\n(.*?)<!-- /section:\1 -->", previous, flags=re.S)}
    kept.update(sections)
    return HEADER + "".join(f"\n<!-- section:{name} -->\n{kept[name]}<!-- /section:{name} -->\n"
                            for name in ("single", "pairs") if name in kept)


def _run(function, tasks: list, workers: int) -> list[dict]:
    if workers <= 1:
        return [function(task) for task in tasks]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(function, tasks, chunksize=1))


def chosen_sets(data: Path, sets: str, program: str) -> list[str] | None:
    """The sets named in ``sets`` (comma-separated), or None once the problem is printed: no real data at
    ``data``, or a set not in :data:`SETS`."""
    if not (data / "README.md").exists():
        print(f"{program}: no real data at {data} (give --data PATH to the realdata folder)", file=sys.stderr)
        return None
    chosen = [name for name in sets.split(",") if name]
    unknown = [name for name in chosen if name not in SETS]
    if unknown:
        print(f"{program}: unknown set {', '.join(unknown)}; choose from {', '.join(SETS)}", file=sys.stderr)
        return None
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "realdata")
    parser.add_argument("--soviet", type=Path, default=ROOT.parent / "shared" / "soviet")
    parser.add_argument("--section", default="single,pairs")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--pyifd", action="store_true", help="score pyIFD's maps on the same forged files")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--detectors", default=None,
                        help="comma-separated detectors for the single section (default: the default set, as "
                             "`retouch analyze` runs them); e.g. the defaults plus one that is off by default")
    parser.add_argument("--reports", type=int, default=6, help="compare reports written for this many PS-Battles pairs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "real")
    parser.add_argument("--no-write", action="store_true", help="print the tables, do not write results/real.md")
    parser.add_argument("--reuse", action="store_true",
                        help="render the single-image tables from the rows of the last run (--out/single.jsonl)")
    args = parser.parse_args(argv)
    sets = chosen_sets(args.data, args.sets, "benchmarks.real")
    if sets is None:
        return 2
    sections = set(args.section.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    soviet_given = "pairs" in args.section.split(",") and (args.soviet / "manifest.json").exists()
    command = (f"python -m benchmarks.real --data {os.path.relpath(args.data, ROOT)}"
               + (f" --soviet {os.path.relpath(args.soviet, ROOT)}" if soviet_given else "")
               + f" --section {args.section} --sets {args.sets}" + (" --pyifd" if args.pyifd else "")
               + (f" --detectors {args.detectors}" if args.detectors else ""))
    sections_text: dict[str, str] = {}
    if "single" in sections:
        saved = args.out / "single.jsonl"
        if args.reuse and saved.exists():
            rows = [row for row in map(json.loads, saved.read_text().splitlines()) if row["dataset"] in sets]
        else:
            cases = [c for c in read_cases(args.data, sets) if c.mask or c.kind == "original"]
            rows = _run(functools.partial(_single, detectors=args.detectors), cases, args.workers)
            saved.write_text("".join(json.dumps(r) + "\n" for r in rows))
        pyifd = _pyifd_scores([Case(**{k: r[k] for k in Case.__dataclass_fields__ if k != "controls"})
                               for r in rows], args.out) \
            if args.pyifd else None
        sections_text["single"] = (f"## Single image (`retouch analyze`)\n\nCommand: `{command}`\n\n"
                                   + single_tables(rows, pyifd) + "\n")
        if not args.no_write:
            write_readme_table(readme_table(rows, pyifd))
    if "pairs" in sections:
        tasks = pair_tasks(args.data, sets)
        if (args.soviet / "manifest.json").exists():
            tasks += soviet_tasks(args.soviet)
        rows = _run(_pair, tasks, args.workers)
        (args.out / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        text = f"## Pairs (`retouch compare ORIGINAL FORGED`)\n\nCommand: `{command}`\n\n" + pair_tables(rows) + "\n"
        if args.reports:
            chosen = [t for t in tasks if t[0] == "psbattles"][:args.reports] + [t for t in tasks if t[0] == "soviet"]
            written = write_reports(chosen, args.out)
            text += "\nReports written for a person to look at: " + ", ".join(f"`{w}`" for w in written) + "\n"
        sections_text["pairs"] = text
    if not args.reuse:
        for name in sections_text:
            sections_text[name] += f"\nRun time {time.perf_counter() - started:.0f} s on this machine (2 cores).\n"
    print("\n".join(sections_text.values()))
    if not args.no_write:
        RESULTS.write_text(merged_results(RESULTS.read_text() if RESULTS.exists() else "", sections_text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
