"""Metadata and provenance: which reader, how the thumbnail comparison does, how copies are grouped.

Sections (``--section``, default all):

- ``coverage``: what Pillow (retouch's reader), exifread and pyexiv2 read from the same files: generated files
  in every accepted format carrying EXIF, XMP, IPTC, an ICC profile and an EXIF thumbnail where the format allows,
  and the real files under ``--data`` (../shared/realdata, read only, never copied); and how each behaves on
  hostile EXIF (a MakerNote claiming four billion entries, looping directories, ...), each file read in a
  subprocess with a time limit so a hang or a crash is counted, not suffered. exifread and pyexiv2 are optional
  (``pip install exifread pyexiv2``); a missing one is reported as such.
- ``thumbnails``: generated scans saved as JPEG with an EXIF thumbnail of the untouched picture; half of them
  are then forged (the main picture only, as an editor that does not update the thumbnail leaves it). Reported:
  regions marked per untouched file (the false alarms that calibrate the detector's ``nfa``), and on forged files
  pixel F1 of the analysis' own decision and how many forgeries were found at all.
- ``groups``: boxes of generated copies (:func:`retouch.samples.box.make_box`: ten photographs, three scans of
  each, re-photographed, cropped, recompressed) grouped by :func:`retouch.compare.copies.group_copies`: exact
  groupings out of ``--boxes``; and the time to group ``--scale`` scans (hashing and registration).

    python -m benchmarks.metadata [--section coverage|thumbnails|groups] [--data ../shared/realdata]
        [--files 100] [--boxes 5] [--scale 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "metadata.md"
FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP")

READER = r"""
import io, json, signal, sys, time, warnings, logging
warnings.simplefilter("ignore"); logging.disable(logging.CRITICAL)
which, paths, limit = sys.argv[1], sys.argv[2:-1], float(sys.argv[-1])


def read(data):
  found = {"exif": 0, "xmp": False, "iptc": 0, "icc": False, "thumbnail": False}
  if which == "pillow":
      from retouch.io.metadata import read_metadata
      m = read_metadata(data, credentials=False)
      found.update(exif=len(m.exif), xmp=bool(m.xmp or m.xmp_history), iptc=len(m.iptc), icc=bool(m.icc_profile),
                   thumbnail="EXIF thumbnail" in m.thumbnails)
  elif which == "exifread":
      import exifread
      from PIL import Image
      tags = exifread.process_file(io.BytesIO(data), details=True)
      found.update(exif=len([k for k in tags if k not in ("JPEGThumbnail", "TIFFThumbnail")]),
                   thumbnail="JPEGThumbnail" in tags)
      image = Image.open(io.BytesIO(data))  # exifread reads no XMP packet, IPTC or ICC: Pillow's, as retouch would
      found.update(xmp=bool(image.info.get("xmp") or getattr(image, "tag_v2", {}).get(700)),
                   icc=bool(image.info.get("icc_profile")))
  elif which == "pyexiv2":
      import pyexiv2
      pyexiv2.set_log_level(4)
      m = pyexiv2.ImageData(data)
      found.update(exif=len([k for k in m.read_exif() if not k.startswith("Exif.Thumbnail.JPEGInterchange")]),
                   xmp=bool(m.read_xmp()), iptc=len(m.read_iptc()), icc=bool(m.read_icc()),
                   thumbnail=bool(m.read_thumbnail()))
  return found


def expired(signum, frame):
    raise TimeoutError


signal.signal(signal.SIGALRM, expired)
for path in paths:  # one file a line; a file that takes longer than the limit is stopped and counted as hung
    started = time.perf_counter()
    signal.alarm(max(1, int(limit)))
    try:
        row = {"outcome": "read", **read(open(path, "rb").read())}
    except TimeoutError:
        row = {"outcome": f"hung (> {limit:.0f} s)"}
    except Exception as error:
        row = {"outcome": f"raised: {type(error).__name__}: {str(error)[:60]}"}
    finally:
        signal.alarm(0)
    row["seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(row), flush=True)
"""


def _generated_files(folder: Path) -> list[Path]:
    """One file per format with every kind of metadata the format (and Pillow as a writer) can carry."""
    from PIL import Image, ImageCms, PngImagePlugin

    from retouch.samples import make_authentic
    from retouch.samples.metadata import exif_block, iptc_segment, jpeg_bytes, with_exif, with_segment, xmp_packet

    pixels = make_authentic(3, size=320).image
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)
    xmp = xmp_packet({"xmp:CreatorTool": "GIMP 2.10"}, history=[{"action": "saved", "softwareAgent": "GIMP 2.10"}])
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif.update({0x0131: "GIMP 2.10", 0x010F: "EPSON", 0x0110: "Perfection V700", 0x0132: "2001:02:03 04:05:06"})
    thumbnail = jpeg_bytes(np.ascontiguousarray(rgb[::4, ::4]), quality=75)
    paths = []
    block = exif_block(thumbnail=thumbnail, software="GIMP 2.10", make="EPSON", model="Perfection V700",
                       modified="2001:02:03 04:05:06", taken="2001:02:03 04:05:06")
    jpeg = with_segment(with_exif(jpeg_bytes(rgb, xmp=xmp, icc_profile=icc), block), 0xED,
                        iptc_segment({80: "A. Photographer", 110: "An archive"}))
    paths.append(folder / "generated.jpg")
    paths[-1].write_bytes(jpeg)
    image = Image.fromarray(rgb)
    png_info = PngImagePlugin.PngInfo()
    png_info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"))
    for suffix, fmt, extra in ((".png", "PNG", {"pnginfo": png_info}),
                               (".tif", "TIFF", {"tiffinfo": {700: xmp, 33723: iptc_segment({80: "A"})[26:]}}),
                               (".webp", "WEBP", {"xmp": xmp}), (".bmp", "BMP", {})):
        path = folder / f"generated{suffix}"
        options = {"exif": exif.tobytes(), "icc_profile": icc, **extra} if fmt != "BMP" else {}
        image.save(path, fmt, **options)
        paths.append(path)
    return paths


def _hostile_files(folder: Path) -> list[Path]:
    """Small JPEGs whose EXIF is built to break readers (see tests/test_metadata.py for the same cases)."""
    import struct

    from retouch.samples.metadata import jpeg_bytes, with_exif

    header = b"Exif\x00\x00II*\x00" + struct.pack("<I", 8)
    ifd = lambda entries, nxt=0: struct.pack("<H", len(entries)) + b"".join(  # noqa: E731
        struct.pack("<HHII", *entry) for entry in entries) + struct.pack("<I", nxt)
    cases = {
        "makernote_four_billion": header + ifd([(0x8769, 4, 1, 26)]) + ifd([(0x927C, 7, 0xFFFFFFF0, 100)]),
        "short_array_four_billion": header + ifd([(0x0111, 3, 0xFFFFFFF0, 8)]),
        "subdirectory_loop": header + ifd([(0x8769, 4, 1, 26)]) + ifd([(0x8825, 4, 1, 8), (0xA005, 4, 1, 26)]),
        "directory_chain_loop": header + ifd([(0x010F, 2, 4, 0x00414141)], nxt=8),
        "entries_65535": header + struct.pack("<H", 65535),
        "offset_past_end": header + ifd([(0x0131, 2, 4000, 0x7FFFFFFF)]),
    }
    pixels = np.full((32, 32, 3), 128, np.uint8)
    paths = []
    for name, block in cases.items():
        path = folder / f"{name}.jpg"
        path.write_bytes(with_exif(jpeg_bytes(pixels), block))
        paths.append(path)
    return paths


def _read(which: str, path: Path, timeout: float) -> dict:
    """One reader on one file, in its own process: a crash (a reader's C++ code) is counted, not suffered."""
    return _read_many(which, [path], timeout)[0]


def _read_many(which: str, paths: list[Path], timeout: float) -> list[dict]:
    """One reader on many files in one process (``timeout`` seconds a file, by an alarm in that process); if the
    process itself dies, the files it had not reported are counted as crashed."""
    try:
        done = subprocess.run([sys.executable, "-c", READER, which, *map(str, paths), str(timeout)],
                              capture_output=True, text=True, timeout=timeout * len(paths) + 60, cwd=ROOT)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:  # stuck where the alarm cannot reach (compiled code)
        stdout = expired.stdout.decode() if isinstance(expired.stdout, bytes) else (expired.stdout or "")
        stderr, code = f"hung (> {timeout:.0f} s, process stopped)", None
    rows = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    rows = [{"outcome": "not installed"} if "ModuleNotFoundError" in row["outcome"] else row for row in rows]
    last = (stderr.strip().splitlines() or [f"exit {code}"])[-1]
    kind = "" if code is None else "crashed: " if code < 0 else "raised: "
    return rows + [{"outcome": f"{kind}{last[:80]}"} for _ in paths[len(rows):]]


def coverage(data: Path | None, timeout: float) -> list[str]:
    readers = ("pillow", "exifread", "pyexiv2")
    lines = ["## Reader coverage", ""]
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        generated = _generated_files(folder)
        lines += ["Generated files (one per format, every kind of metadata the format and Pillow as a writer carry: "
                  "EXIF with a JPEG thumbnail in the JPEG, XMP, IPTC in JPEG and TIFF, an ICC profile; a BMP "
                  "carries none). Cells: EXIF tags / XMP / IPTC datasets / ICC / EXIF thumbnail.", "",
                  "| file | " + " | ".join(readers) + " |", "|---|" + "---|" * len(readers)]
        for path in generated:
            cells = []
            for which in readers:
                found = _read(which, path, timeout)
                cells.append(_cell(found))
            lines.append(f"| {path.suffix} | " + " | ".join(cells) + " |")
        lines += ["", "Hostile EXIF (each a 32x32 JPEG), read in a subprocess with a "
                  f"{timeout:.0f} s limit:", "", "| case | " + " | ".join(readers) + " |",
                  "|---|" + "---|" * len(readers)]
        for path in _hostile_files(folder):
            cells = [_read(which, path, timeout)["outcome"] for which in readers]
            lines.append(f"| {path.stem} | " + " | ".join(cells) + " |")
    if data is not None and data.is_dir():
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".tif",
                                                                          ".tiff", ".webp", ".bmp"})
        totals = {which: {"files": 0, "exif": 0, "xmp": 0, "iptc": 0, "icc": 0, "thumbnail": 0, "failed": 0}
                  for which in readers}
        for which in readers:
            for path, found in zip(files, _read_many(which, files, timeout)):
                total = totals[which]
                total["files"] += 1
                if found["outcome"] != "read":
                    total["failed"] += 1
                    continue
                total["exif"] += found["exif"] > 0
                total["xmp"] += bool(found["xmp"])
                total["iptc"] += found["iptc"] > 0
                total["icc"] += bool(found["icc"])
                total["thumbnail"] += bool(found["thumbnail"])
        lines += ["", f"Real files under `{data.name}` ({len(files)} files): how many files each reader found "
                  "each kind of metadata in.", "", "| reader | EXIF | XMP | IPTC | ICC | EXIF thumbnail | failed |",
                  "|---|---|---|---|---|---|---|"]
        for which, total in totals.items():
            lines.append(f"| {which} | {total['exif']} | {total['xmp']} | {total['iptc']} | {total['icc']} | "
                         f"{total['thumbnail']} | {total['failed']} |")
    return lines


def _cell(found: dict) -> str:
    if found["outcome"] != "read":
        return found["outcome"]
    return (f"{found['exif']} / {'yes' if found['xmp'] else 'no'} / {found['iptc']} / "
            f"{'yes' if found['icc'] else 'no'} / {'yes' if found['thumbnail'] else 'no'}")


def _thumbnail_case(task: tuple[int, bool]) -> dict:
    import cv2

    from retouch.detect.metadata import metadata_evidence
    from retouch.io import load_image_bytes
    from retouch.samples import REMOVAL_METHODS, make_forgery
    from retouch.samples.metadata import exif_block, jpeg_bytes, with_exif

    seed, forged = task
    rng = np.random.default_rng(seed)
    method = REMOVAL_METHODS[seed % len(REMOVAL_METHODS)]
    case = make_forgery(seed, method=method, size=int(rng.integers(480, 1025)),
                        area_fraction=float(rng.uniform(0.02, 0.06)))
    original = case.original
    side = int(rng.choice([120, 160, 256]))
    height, width = original.shape[:2]
    size = (side, max(1, round(side * height / width))) if width >= height else (max(1, round(side * width / height)),
                                                                                side)
    thumbnail = jpeg_bytes(cv2.resize(original, size, interpolation=cv2.INTER_AREA), quality=int(rng.integers(70, 91)))
    pixels = case.image if forged else original
    data = with_exif(jpeg_bytes(pixels, quality=int(rng.integers(85, 96))), exif_block(thumbnail=thumbnail))
    loaded = load_image_bytes(data, name=f"{seed}.jpg")
    started = time.perf_counter()
    result = metadata_evidence(loaded.pixels, jpeg_quantization=loaded.jpeg_quantization, file_data=data)
    seconds = time.perf_counter() - started
    row = {"seed": seed, "forged": forged, "method": method, "thumbnail_side": side, "regions": len(result.regions),
           "marked": float(result.mask.mean()), "seconds": seconds,
           "compared": any(f.kind == "thumbnail" and "aligned with" in f.text or "differs" in f.text
                           for f in result.findings)}
    if forged:
        truth = case.mask
        hits = int(np.count_nonzero(result.mask & truth))
        marked, actual = int(result.mask.sum()), int(truth.sum())
        row["f1"] = 2 * hits / (marked + actual) if marked + actual else 0.0
        row["found"] = hits > 0
    return row


def thumbnails(files: int, workers: int) -> list[str]:
    tasks = [(90000 + i, forged) for i in range(files) for forged in (False, True)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(_thumbnail_case, tasks))
    untouched = [r for r in rows if not r["forged"]]
    forged = [r for r in rows if r["forged"]]
    false_regions = sum(r["regions"] for r in untouched)
    marked_files = sum(r["regions"] > 0 for r in untouched)
    lines = ["## Embedded thumbnail against the picture", "",
             f"{len(untouched)} untouched and {len(forged)} forged generated scans (480-1024 px, JPEG 85-95) with an "
             "EXIF thumbnail of the untouched picture (120, 160 or 256 px, JPEG 70-90); forgeries by diffusion, "
             "exemplar, clone and airbrush fills of 2-6 % of the picture. Convention: the analysis' own decision.", "",
             "| files | regions marked | files with any region | mean area marked | pixel F1 (median) | found |",
             "|---|---|---|---|---|---|",
             f"| untouched | {false_regions} | {marked_files} of {len(untouched)} | "
             f"{100 * np.mean([r['marked'] for r in untouched]):.3f} % | | |",
             f"| forged | {sum(r['regions'] for r in forged)} | {sum(r['regions'] > 0 for r in forged)} of "
             f"{len(forged)} | {100 * np.mean([r['marked'] for r in forged]):.3f} % | "
             f"{np.median([r['f1'] for r in forged]):.2f} | {sum(r['found'] for r in forged)} of {len(forged)} |"]
    by_side = {}
    for row in forged:
        by_side.setdefault(row["thumbnail_side"], []).append(row)
    lines += ["", "| thumbnail side | forged found | F1 (median) | untouched with a region |", "|---|---|---|---|"]
    for side in sorted(by_side):
        clean = [r for r in untouched if r["thumbnail_side"] == side]
        lines.append(f"| {side} px | {sum(r['found'] for r in by_side[side])} of {len(by_side[side])} | "
                     f"{np.median([r['f1'] for r in by_side[side]]):.2f} | {sum(r['regions'] > 0 for r in clean)} "
                     f"of {len(clean)} |")
    lines += ["", f"Seconds per file (metadata analysis, thumbnail comparison included): median "
              f"{np.median([r['seconds'] for r in rows]):.2f}, max {max(r['seconds'] for r in rows):.2f}.",
              "", f"Calibration for the detector: {false_regions} false regions in {len(untouched)} untouched files."]
    return lines


def _box_prints(task: tuple[int, int, int, int]) -> tuple[list[int], list, float]:
    from retouch.compare.copies import copy_print
    from retouch.io import load_image_bytes
    from retouch.samples.box import make_box

    seed, photographs, copies, size = task
    box = make_box(seed, photographs=photographs, copies=copies, size=size)
    started = time.perf_counter()
    prints = [copy_print(load_image_bytes(scan.data, name=scan.name).pixels) for scan in box]
    return [scan.photograph for scan in box], prints, time.perf_counter() - started


def groups(boxes: int, scale: int, workers: int) -> list[str]:
    from retouch.compare.copies import NEIGHBOURS, SURE_BITS, group_copies

    from retouch.compare.copies import MIN_INLIERS, feature_inliers, hash_distances

    lines = ["## Grouping copies", ""]
    exact = 0
    details = []
    registrations = []
    bits = {True: [], False: []}  # pHash distance of every pair of scans: copies (True) or not
    inliers = {True: [], False: []}
    for seed in range(boxes):
        truth, prints, _ = _box_prints((seed, 10, 3, 768))
        distances = hash_distances(prints)
        for i in range(len(prints)):
            for j in range(i + 1, len(prints)):
                bits[truth[i] == truth[j]].append(int(distances[i, j]))
                inliers[truth[i] == truth[j]].append(feature_inliers(prints[i], prints[j]))
        started = time.perf_counter()
        found = group_copies(prints)
        seconds = time.perf_counter() - started
        expected = sorted(sorted(i for i, p in enumerate(truth) if p == photo) for photo in set(truth))
        ok = sorted(found.groups) == expected
        exact += ok
        registrations.append(found.registrations)
        details.append(f"box {seed}: {'exact' if ok else 'WRONG'}, {len(found.groups)} groups, "
                       f"{found.registrations} registrations ({len(found.refused)} refused), {seconds:.1f} s")
    lines += [f"Boxes of 30 scans (10 photographs x 3 copies, 768 px prints): {exact} of {boxes} grouped exactly.",
              "", *[f"- {line}" for line in details], "",
              "Every pair of scans in these boxes (not only the candidates), copies against different photographs:", "",
              "| pairs | n | pHash bits min / median / max | matching keypoints min / median / max | "
              f"below {MIN_INLIERS} keypoints |", "|---|---|---|---|---|"]
    for same, name in ((True, "copies"), (False, "different photographs")):
        if bits[same]:
            b, k = np.array(bits[same]), np.array(inliers[same])
            lines.append(f"| {name} | {len(b)} | {b.min()} / {np.median(b):.0f} / {b.max()} | {k.min()} / "
                         f"{np.median(k):.0f} / {k.max()} | {int((k < MIN_INLIERS).sum())} |")
    lines.append("")
    if scale:
        # A thousand scans from boxes of 30 (10 photographs x 3 copies, 768 px prints as above). The ten sources
        # are the same in every box, so every scan of one source is a copy of that photograph, whichever box it
        # came from: the truth is ten groups of about a hundred.
        tasks = [(1000 + k, 10, 3, 768) for k in range(-(-scale // 30))]
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_box_prints, tasks))
        generating = time.perf_counter() - started
        hashing = sum(seconds for _, _, seconds in parts)
        prints = [p for _, part, _ in parts for p in part]
        truth = [photo for labels, _, _ in parts for photo in labels]
        started = time.perf_counter()
        found = group_copies(prints)
        grouping = time.perf_counter() - started
        exact_groups = sorted(sorted(i for i, t in enumerate(truth) if t == label) for label in set(truth))
        mixed = sum(len({truth[i] for i in group}) > 1 for group in found.groups)
        per_pair = grouping / max(found.registrations, 1)
        lines += [f"{len(prints)} scans ({len(tasks)} boxes of 10 photographs x 3 copies, 768 px prints; the same "
                  "ten photographs in every box, so the truth is 10 groups): generating and reading "
                  f"{generating:.0f} s on {workers} worker(s), of which reading features and hashes {hashing:.0f} s "
                  f"({1000 * hashing / len(prints):.0f} ms a scan); grouping {grouping:.0f} s in one process "
                  f"({found.registrations} feature registrations, {len(found.refused)} refused, "
                  f"{1000 * per_pair:.0f} ms each). {len(found.groups)} groups found, "
                  f"{len({tuple(g) for g in found.groups} & {tuple(g) for g in exact_groups})} of "
                  f"{len(exact_groups)} exactly; {mixed} group(s) mixing two photographs.",
                  "", "A box of a thousand different photographs would refuse most candidates instead of skipping "
                  f"pairs already joined: each scan's {NEIGHBOURS} nearest (and any within {SURE_BITS} bits) are "
                  f"tried, about {NEIGHBOURS * len(prints)} registrations, about "
                  f"{NEIGHBOURS * len(prints) * per_pair:.0f} s at the cost measured here."]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", choices=["coverage", "thumbnails", "groups"], action="append")
    parser.add_argument("--data", type=Path, default=None, help="real files to read (../shared/realdata)")
    parser.add_argument("--files", type=int, default=100, help="untouched (and as many forged) thumbnail files")
    parser.add_argument("--boxes", type=int, default=5)
    parser.add_argument("--scale", type=int, default=1000, help="scans for the grouping time (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a reader may take on one file")
    parser.add_argument("--out", type=Path, default=None, help="write the tables here (default: print only)")
    args = parser.parse_args(argv)
    sections = args.section or ["coverage", "thumbnails", "groups"]
    command = "python -m benchmarks.metadata " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    lines = [f"Command: `{command}`", ""]
    runs = {"coverage": lambda: coverage(args.data, args.timeout),
            "thumbnails": lambda: thumbnails(args.files, args.workers),
            "groups": lambda: groups(args.boxes, args.scale, args.workers)}
    for section in ("coverage", "thumbnails", "groups"):
        if section in sections:
            part = runs[section]() + [""]
            print("\n".join(part), flush=True)
            lines += part
            _write(args.out, lines)  # each section kept as soon as it is measured
    lines.append(f"({time.perf_counter() - started:.0f} s on this machine)")
    _write(args.out, lines)


def _write(out: Path | None, lines: list[str]) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
