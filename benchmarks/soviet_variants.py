"""The Soviet pairs as other copies would show them: does ``retouch compare`` hold when the scans change?

``benchmarks.real`` scores ``retouch compare`` on the three Soviet pairs of ``../shared/soviet`` as given. An
archive holds other copies of the same photographs: a print scanned at another resolution, a little turned, cropped
differently, darker or lighter, grainier, or a web copy compressed harder. A decision that holds only on the files
as given would be a threshold fitted to three cases; this script makes such copies in code, from the given files,
and scores each comparison against the same hand-drawn outlines (``benchmarks/soviet_annotations.json``, mapped
through the transform that made the copy).

    python -m benchmarks.soviet_variants [--soviet ../shared/soviet] [--workers 2] [--no-write]

Every variant changes one file of the pair and keeps the other as given; geometric changes crop the turned
corners away, as a scan of a print would not show the scanner bed. The scores are the ones ``benchmarks.real``
reports: the share of each figure marked with its expected kind (``removed`` for the figure painted out,
``retouched`` for the figure repainted), the share of everything marked that lies on the figures, and, for the
composite, the share of the shared figure located in the questioned image. Results go to
``benchmarks/results/soviet_variants.md``. When the folder is absent the script says so in one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.real import SOVIET_OUTLINES, _run, soviet_scores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "soviet_variants.md"


@dataclass(frozen=True)
class Variant:
    """One way another copy differs from the file as given; ``side`` is the file it changes."""

    name: str
    side: str = "questioned"  # or "reference"
    scale: float = 1.0
    degrees: float = 0.0
    crop: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # left, top, right, bottom shares
    gamma: float = 1.0
    contrast: float = 1.0
    blur: float = 0.0
    noise: float = 0.0
    jpeg: int | None = None


VARIANTS = [
    Variant("as given"),
    Variant("rescanned 0.7x, turned 1.5 degrees, JPEG 80", scale=0.7, degrees=1.5, jpeg=80),
    Variant("cropped: 10 % left, 6 % top, 5 % right", crop=(0.10, 0.06, 0.05, 0.0)),
    Variant("darker, flatter print (gamma 1.4, contrast 0.85), JPEG 85", gamma=1.4, contrast=0.85, jpeg=85),
    Variant("grainier, softer copy (blur 1 px, noise 5 levels)", blur=1.0, noise=5.0),
    Variant("half-size web copy, JPEG 70", scale=0.5, jpeg=70),
    Variant("reference rescanned 0.8x, turned -1 degree", side="reference", scale=0.8, degrees=-1.0),
]


def make_copy(pixels: np.ndarray, variant: Variant, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The copy ``variant`` describes, and the 3x3 transform from the given file's pixel coordinates to the
    copy's."""
    import cv2

    height, width = pixels.shape[:2]
    transform = np.eye(3)
    image = pixels
    if variant.scale != 1.0 or variant.degrees:
        rotation = cv2.getRotationMatrix2D((width / 2, height / 2), variant.degrees, variant.scale)
        out_w, out_h = round(width * variant.scale), round(height * variant.scale)
        rotation[:, 2] += [(out_w - width) / 2, (out_h - height) / 2]
        interpolation = cv2.INTER_AREA if variant.scale < 1 else cv2.INTER_LINEAR
        image = cv2.warpAffine(image, rotation, (out_w, out_h), flags=interpolation, borderMode=cv2.BORDER_REFLECT)
        transform = np.vstack([rotation, [0, 0, 1]]) @ transform
        # crop the turned corners away: a scan shows the print, not reflected borders
        margin = int(np.ceil(np.sin(np.radians(abs(variant.degrees))) * max(out_w, out_h))) + 2
        if variant.degrees:
            image = image[margin:out_h - margin, margin:out_w - margin]
            transform = np.array([[1, 0, -margin], [0, 1, -margin], [0, 0, 1]]) @ transform
    if any(variant.crop):
        h, w = image.shape[:2]
        left, top, right, bottom = variant.crop
        x0, y0 = round(w * left), round(h * top)
        image = image[y0:h - round(h * bottom), x0:w - round(w * right)]
        transform = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]]) @ transform
    values = image.astype(np.float32) / 255
    if variant.gamma != 1.0 or variant.contrast != 1.0:
        values = 0.5 + (values ** variant.gamma - 0.5) * variant.contrast
    if variant.blur:
        values = cv2.GaussianBlur(values, (0, 0), variant.blur)
    if variant.noise:
        values = values + np.random.default_rng(seed).normal(0, variant.noise / 255, values.shape).astype(np.float32)
    image = np.clip(np.round(values * 255), 0, 255).astype(np.uint8)
    if variant.jpeg:
        bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, variant.jpeg])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
        image = decoded if decoded.ndim == 2 else cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return image, transform


def _mapped(points: list, transform: np.ndarray) -> list:
    import cv2

    mapped = cv2.perspectiveTransform(np.float64(points).reshape(-1, 1, 2), transform)
    return mapped.reshape(-1, 2).round(1).tolist()


def mapped_outlines(outlines: dict, side: str, transform: np.ndarray) -> dict:
    """The case's outlines with every polygon drawn in the changed file's frame mapped into the copy's."""
    result = {}
    for name, outline in outlines.items():
        outline = dict(outline)
        if outline["frame"] == "both":
            outline[side] = _mapped(outline[side], transform)
        elif outline["frame"] == side:
            outline["polygon"] = _mapped(outline["polygon"], transform)
        result[name] = outline
    return result


def _compare(task: tuple) -> dict:
    from retouch.errors import NotSamePhotographError
    from retouch.io import load_image
    from retouch.run.pipeline import compare_images

    case_id, reference_path, questioned_path, variant = task
    reference = load_image(reference_path).pixels
    questioned = load_image(questioned_path).pixels
    if variant.side == "reference":
        reference, transform = make_copy(reference, variant)
    else:
        questioned, transform = make_copy(questioned, variant)
    outlines = json.loads(SOVIET_OUTLINES.read_text())["cases"].get(case_id, {})
    row = {"case": case_id, "variant": variant.name}
    started = time.perf_counter()
    try:
        comparison = compare_images(reference, questioned)
    except NotSamePhotographError as error:
        row.update(outcome="refused", reason=str(error)[:160], seconds=round(time.perf_counter() - started, 1))
        return row
    result = comparison.result
    row.update(seconds=round(time.perf_counter() - started, 1),
               outcome="composite" if (result.details or {}).get("pieces") else "registered",
               marked=round(float(result.mask.mean()), 4),
               kinds=sorted({r.kind for r in result.regions}),
               scores=soviet_scores(case_id, comparison, reference.shape[:2],
                                    outlines=mapped_outlines(outlines, variant.side, transform)))
    return row


def table(rows: list[dict]) -> str:
    lines = []
    for case in dict.fromkeys(r["case"] for r in rows):
        chosen = [r for r in rows if r["case"] == case]
        names = list(dict.fromkeys(k for r in chosen for k in r.get("scores", {})))
        lines += [f"### {case}", "", "| copy | outcome | marked | " + " | ".join(names) + " | s |",
                  "|---|---|---|" + "---|" * len(names) + "---|"]
        for r in chosen:
            scores = r.get("scores", {})
            cells = [f"{scores[n]:.2f}" if n in scores else "-" for n in names]
            marked = f"{100 * r['marked']:.1f} %" if "marked" in r else "-"
            lines.append(f"| {r['variant']} | {r['outcome']} | {marked} | " + " | ".join(cells)
                         + f" | {r['seconds']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soviet", type=Path, default=ROOT.parent / "shared" / "soviet")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print the table, do not write the results file")
    parser.add_argument("--cases", default=None,
                        help="comma-separated case ids to run (a subset is printed, never written)")
    args = parser.parse_args(argv)
    manifest_path = args.soviet / "manifest.json"
    if not manifest_path.exists():
        print(f"benchmarks.soviet_variants: no Soviet pairs at {args.soviet} (give --soviet PATH)", file=sys.stderr)
        return 2
    cases = json.loads(manifest_path.read_text())["cases"]
    if args.cases:
        wanted = set(args.cases.split(","))
        cases = [c for c in cases if c["id"] in wanted]
        args.no_write = True
    tasks = [(c["id"], str(args.soviet / c["original"]), str(args.soviet / c["altered"]), v)
             for c in cases for v in VARIANTS]
    started = time.perf_counter()
    rows = _run(_compare, tasks, args.workers)
    text = ("# The Soviet pairs as other copies would show them\n\n"
            "Written by `python -m benchmarks.soviet_variants` (its docstring states the conventions). Each copy "
            "is made in code from the files in `../shared/soviet` and changes one file of the pair; shares are of "
            "pixels inside the hand-drawn outlines (`benchmarks/soviet_annotations.json`) mapped into the copy.\n\n"
            + table(rows) + f"\nRun time {time.perf_counter() - started:.0f} s on this machine (2 cores).\n")
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
