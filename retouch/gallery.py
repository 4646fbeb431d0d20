"""The teaching gallery: "How a commissar vanishes", a lesson built from the demo's own reports and the truth.

For every technique of the lesson (:mod:`retouch.samples.lesson`) and every seed it shows the untouched scan, the
doctored one, the truth mask and what each method found, with a verdict per method (found, partly, missed, false
alarm, with the overlap in pixels) from the method's own decision mask against the truth. It renders what the
reports say and the masks they wrote; it runs no analysis of its own. A historical section shows what ``compare``
found in real pairs beside what historians record.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from retouch.detect import detectors
from retouch.io import load_image
from retouch.metrics import overlap_verdict
from retouch.report.html import asset, escape, photo_uri, reading_html, swipe_html
from retouch.report.reading import MINOR_KINDS, kind_phrase, place_words
from retouch.report.visual import heatmap_over_photo, turned_box, upright_turns
from retouch.samples.lesson import LESSON_MANIFEST, PAIR_STORY, RECROP_STORY, TECHNIQUES

PAIR_FOLDER = "compare-pair"
ALL_METHODS = "all methods"  # the fused decision of analyze (suspect_mask.png)
TRUTH_COLOUR = (40, 220, 120)
CARD_SIDE = 520

INTRO = (
    "In 1920 Lenin addressed troops in Moscow from a wooden platform; Trotsky and Kamenev stood on its steps. In "
    "later Soviet prints they are gone, painted over, the gap filled with steps and background. Retouchers of the "
    "1930s worked on prints, not files: they scraped, painted in gouache, sprayed soft airbrush, cut out figures "
    "and pasted in pieces of other prints, then re-photographed the result so the seams would disappear. This "
    "gallery imitates each of those techniques on public-domain photographs aged to look like old prints, so that "
    "the truth is known to the pixel, and shows for each what retouch's methods find, what they miss and where "
    "they raise a false alarm."
)
VERDICT_MEANING = {
    "found": "at least half of the doctored area flagged, and at least half of the flag on it",
    "partly": "some of the doctored area flagged, or a flag that is mostly beside it",
    "missed": "nothing flagged, though the scan was doctored",
    "false alarm": "flagged where nothing was changed",
    "quiet": "nothing flagged, and nothing was changed",
    "did not run": "the method does not apply to this file",
}
# why a method fails on a technique, where the reason is specific; otherwise the generic sentences below
WHY = {
    ("grain", "clone"): "the copied block carries the grain of its source, so the grain is consistent everywhere",
    ("clone", "airbrush"): "nothing was copied from elsewhere in the picture; paint is not a copy",
    ("clone", "brush"): "nothing was copied from elsewhere in the picture; a smooth fill is not a copy",
    ("clone", "pasteup"): "the pasted piece comes from another photograph, so nothing in this one matches it",
    ("inpaint", "pasteup"): "a pasted piece is a photograph with its own texture, not a fill",
    ("inpaint", "digital"): "a patch-based fill copies texture; this method looks for smooth, grainless fills",
    ("ela", "none"): "error levels vary with texture and with the scan's own compression",
}
WHY_MISSED = "what this technique left here stayed below its threshold"
WHY_FALSE_ALARM = "it flagged an area the generator did not touch: dust, a scratch or texture resembling its cue"


@dataclass(frozen=True)
class Verdict:
    """One method's decision on one case against the truth."""

    seed: int
    case: str
    method: str
    verdict: str
    overlap_px: int = 0
    truth_px: int = 0
    flagged_px: int = 0
    reason: str = ""

    def attributes(self) -> str:
        return (f'data-seed="{self.seed}" data-case="{escape(self.case)}" data-method="{escape(self.method)}" '
                f'data-verdict="{escape(self.verdict)}" data-overlap="{self.overlap_px}" '
                f'data-truth="{self.truth_px}" data-flagged="{self.flagged_px}"')

    def numbers(self) -> str:
        if self.verdict == "did not run":
            return self.reason
        if self.reason:
            return self.reason
        if self.truth_px:
            return (f"{self.overlap_px:,} of the {self.truth_px:,} doctored pixels flagged; "
                    f"{self.flagged_px:,} flagged in all")
        return f"{self.flagged_px:,} pixels flagged"


def _mask(path: Path) -> np.ndarray:
    return load_image(path).pixels > 0


def _report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def case_verdicts(lesson: Path, key: str) -> list[Verdict]:
    """Each method's verdict on one single-scan case of a lesson folder, and the fused decision's."""
    manifest = json.loads((lesson / LESSON_MANIFEST).read_text(encoding="utf-8"))
    case = next(case for case in manifest["cases"] if case["key"] == key)
    truth = _mask(lesson / case["truth"])
    folder = lesson / f"analyze-{key}"
    verdicts = []
    for analysis in _report(folder)["analyses"]:
        method = analysis["method"]
        if analysis.get("skipped"):
            verdicts.append(Verdict(manifest["seed"], key, method, "did not run", reason=analysis["skipped"]))
            continue
        verdicts.append(Verdict(manifest["seed"], key, method,
                                **overlap_verdict(_mask(folder / f"{method}_mask.png"), truth)))
    verdicts.append(Verdict(manifest["seed"], key, ALL_METHODS,
                            **overlap_verdict(_mask(folder / "suspect_mask.png"), truth)))
    return verdicts


def pair_verdict(lesson: Path) -> Verdict:
    manifest = json.loads((lesson / LESSON_MANIFEST).read_text(encoding="utf-8"))
    truth = _mask(lesson / manifest["pair"]["truth"])
    refused = manifest["pair"].get("refused")
    # a pair compare could not align has no map: nothing was flagged, and the refusal says why
    found = np.zeros_like(truth) if refused else _mask(lesson / PAIR_FOLDER / "changes_mask.png")
    return Verdict(manifest["seed"], "pair", "compare", **overlap_verdict(found, truth),
                   reason=f"compare refused the pair: {refused}" if refused else "")


def _why(verdict: Verdict) -> str:
    if verdict.verdict in {"found", "quiet", "did not run"}:
        return ""
    specific = WHY.get((verdict.method, verdict.case))
    if verdict.verdict == "false alarm" and verdict.truth_px == 0:
        return specific or WHY_FALSE_ALARM
    if verdict.verdict == "missed":
        return specific or WHY_MISSED
    if verdict.verdict == "partly":
        covered = verdict.overlap_px / max(verdict.truth_px, 1)
        if verdict.overlap_px >= verdict.flagged_px / 2:
            return specific or f"what it flagged is on the doctored area, but covers only {100 * covered:.0f} % of it"
        return specific or "most of what it flagged lies beside the doctored area"
    return specific or WHY_FALSE_ALARM + ", and it missed the doctored area"


def _badge(verdict: Verdict) -> str:
    css = verdict.verdict.replace(" ", "-")
    why = _why(verdict)
    return (f'<p class="verdict-line"><strong class="verdict-word verdict-{css}" {verdict.attributes()}>'
            f"{escape(verdict.verdict)}</strong> <span class=\"note\">{escape(verdict.numbers())}"
            f"{'. Why: ' + escape(why) if why else ''}</span></p>")


def _outlined(image: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``image`` in RGB with the truth's outline drawn on it (the green line of every gallery picture)."""
    rgb = image if image.ndim == 3 else np.repeat(image[:, :, None], 3, axis=2)
    rgb = np.array(rgb[:, :, :3], dtype=np.uint8, order="C")  # a copy: drawn on, and loaded pixels are read-only
    contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(rgb, contours, -1, TRUTH_COLOUR, max(2, round(max(rgb.shape[:2]) / 300)))
    return rgb


def _picture(image: np.ndarray, alt: str) -> str:
    return f'<img alt="{escape(alt)}" src="{photo_uri(image, CARD_SIDE)}">'


def _method_title(method: str) -> str:
    spec = detectors().get(method)
    return spec.title if spec else ("All methods together" if method == ALL_METHODS else method)


def _single_cards(lesson: Path, case: Mapping[str, Any], verdicts: Sequence[Verdict]) -> str:
    folder = lesson / f"analyze-{case['key']}"
    image = load_image(lesson / case["image"]).pixels
    truth = _mask(lesson / case["truth"])
    cards = [f'<div class="card"><h3>Before</h3>{_picture(load_image(lesson / case["original"]).pixels, "before")}'
             "<p class=\"note\">The same print, scanned untouched.</p></div>",
             f'<div class="card"><h3>After</h3>{_picture(image, "doctored scan")}'
             f"<p class=\"note\">The doctored scan as stored ({escape(case['file_format'])}).</p></div>",
             f'<div class="card"><h3>The truth</h3>{_picture(_outlined(image, truth), "truth outlined")}'
             f"<p class=\"note\">{'Green line: every pixel the forger changed.' if truth.any() else 'Nothing changed.'}"
             "</p></div>"]
    for verdict in verdicts:
        if verdict.verdict == "did not run":
            picture = ""
        else:
            name = "suspect_heatmap.png" if verdict.method == ALL_METHODS else f"{verdict.method}.png"
            heat = load_image(folder / name).pixels.astype(np.float32) / 255.0
            picture = _picture(_outlined(heatmap_over_photo(image, heat), truth), f"{verdict.method} map")
        cards.append(f'<div class="card"><h3>{escape(_method_title(verdict.method))}</h3>{picture}'
                     f"{_badge(verdict)}</div>")
    return '<div class="cards">' + "".join(cards) + "</div>"


def _other_seeds(rows: Sequence[Sequence[Verdict]]) -> str:
    """The same case at the other seeds: one line of verdicts per seed."""
    if not rows:
        return ""
    items = []
    for verdicts in rows:
        cells = "; ".join(f"{escape(_method_title(v.method))}: <strong class=\"verdict-word "
                          f"verdict-{v.verdict.replace(' ', '-')}\" {v.attributes()}>{escape(v.verdict)}</strong>"
                          + (f" ({v.overlap_px:,}/{v.truth_px:,} px)" if v.truth_px and v.flagged_px else "")
                          for v in verdicts)
        items.append(f"<li>Seed {verdicts[0].seed}: {cells}</li>")
    return "<p>The same technique on other photographs (other seeds):</p><ul class=\"seeds\">" + "".join(items) + "</ul>"


def _tally(lessons: Sequence[Path], verdicts: Mapping[tuple[int, str], Sequence[Verdict]],
           pairs: Sequence[Verdict]) -> str:
    """How often each method found each technique, over the seeds: the gallery's header table."""
    methods: list[str] = []
    for rows in verdicts.values():
        for verdict in rows:
            if verdict.method not in methods:
                methods.append(verdict.method)
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for (_, key), rows in verdicts.items():
        for verdict in rows:
            counts[key, verdict.method][verdict.verdict] += 1
    seeds = len(lessons)
    head = "".join(f"<th>{escape(_method_title(m))}</th>" for m in methods)
    body = []
    pair_count = Counter(v.verdict for v in pairs)
    body.append(f"<tr><td data-label=\"Technique\">Two prints compared (compare)</td>"
                f"<td data-label=\"compare\" colspan=\"{len(methods)}\">{_count_words(pair_count, seeds)}</td></tr>")
    for technique in TECHNIQUES:
        cells = "".join(f'<td data-label="{escape(_method_title(m))}">{_count_words(counts[technique.key, m], seeds)}'
                        "</td>" for m in methods)
        body.append(f'<tr><td data-label="Technique">{escape(technique.title)}</td>{cells}</tr>')
    return (f"<table class=\"tally\"><thead><tr><th>Technique ({seeds} seeds)</th>{head}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _count_words(count: Counter, seeds: int) -> str:
    if not count:
        return "—"
    order = ["found", "partly", "quiet", "missed", "false alarm", "did not run"]
    return ", ".join(f"{word} {count[word]}/{seeds}" for word in order if count[word])


def _refused_pair_section(lesson: Path, manifest: Mapping[str, Any], verdict: Verdict) -> str:
    reference = load_image(lesson / manifest["pair"]["reference"]).pixels
    questioned = load_image(lesson / manifest["pair"]["questioned"]).pixels
    truth = _mask(lesson / manifest["pair"]["truth"])
    return ('<div class="cards">'
            f'<div class="card"><h3>The earlier print</h3>{_picture(reference, "earlier print")}</div>'
            f'<div class="card"><h3>The later print, and the truth</h3>{_picture(_outlined(questioned, truth), "truth")}'
            f"{_badge(verdict)}</div></div>")


def _pair_section(lesson: Path, manifest: Mapping[str, Any], verdict: Verdict, others: Sequence[Verdict]) -> str:
    other_lines = "".join(f"<li>Seed {v.seed}: <strong class=\"verdict-word verdict-{v.verdict.replace(' ', '-')}\" "
                          f"{v.attributes()}>{escape(v.verdict)}</strong> ({escape(v.numbers())})</li>"
                          for v in others)
    others_html = f"<p>Other seeds:</p><ul class=\"seeds\">{other_lines}</ul>" if other_lines else ""
    head = f"<h2 id=\"two-prints\">1. Two prints of one photograph</h2><p>{escape(PAIR_STORY)}</p>"
    recrop = f"<h2 id=\"recrop\">2. Re-cropping</h2><p>{escape(RECROP_STORY)}</p>"
    if manifest["pair"].get("refused"):
        return head + _refused_pair_section(lesson, manifest, verdict) + others_html + recrop
    folder = lesson / PAIR_FOLDER
    report = _report(folder)
    # A copy scanned upside down or on its side is shown turned back to the earlier print's orientation, so that
    # a class sees people standing; the pictures and the places named below are turned alike.
    turns = upright_turns(report["transform"]["matrix"]) if "transform" in report else 0
    questioned = load_image(lesson / manifest["pair"]["questioned"]).pixels
    file_height, file_width = questioned.shape[:2]
    questioned, aligned, truth, heat = (np.rot90(picture, turns) for picture in (
        questioned, load_image(folder / "aligned_reference.png").pixels, _mask(lesson / manifest["pair"]["truth"]),
        load_image(folder / "changes_heatmap.png").pixels.astype(np.float32) / 255.0))
    height, width = truth.shape
    regions = report["result"]["regions"]
    listed = "".join(f"<li><strong>{escape(r['kind'])}</strong>: an area {escape(kind_phrase(r['kind']))}, "
                     f"{escape(place_words(turned_box(r['bbox'], turns, file_width, file_height), width, height))}"
                     "</li>" for r in regions[:8])
    turned_note = (f'<p class="note">The later print was scanned turned by {90 * turns} degrees; compare found '
                   "the turn itself, and both prints are shown here as the earlier one stands.</p>" if turns else "")
    return (
        head
        + turned_note
        + swipe_html(aligned, questioned)
        + reading_html(report["reading"], nothing_found=not regions)
        + '<div class="cards">'
        f'<div class="card"><h3>The truth</h3>{_picture(_outlined(questioned, truth), "truth")}'
        "<p class=\"note\">Green line: where the figure was painted out.</p></div>"
        f'<div class="card"><h3>What compare found</h3>'
        f"{_picture(_outlined(heatmap_over_photo(questioned, heat), truth), 'changes')}"
        f"{_badge(verdict)}<ol>{listed}</ol></div></div>"
        + others_html
        + f'<p><a href="{escape(lesson.name)}/{PAIR_FOLDER}/report.html">The full report for this pair</a></p>'
        + recrop
        + (f"<p>In the pair above, the later print shows {100 * _shown_fraction(report):.0f} % of the earlier "
           "print's area; what the crop removed is simply absent, and no single-scan method below can see it.</p>"
           if "transform" in report else "")
    )


def historical_section(cases: Sequence[tuple[Any, Path | None, str]], *, source: str = "") -> str:
    """The real cases: for each (case with ``id``, ``original``, ``altered``, ``what``; its compare report folder,
    or None; why there is none) the two versions, what ``compare`` found and what historians record."""
    cards = []
    for case, folder, failure in cases:
        original = load_image(case.original).pixels
        altered = load_image(case.altered).pixels
        if folder is not None:
            report = _report(folder)
            regions = report["result"]["regions"]
            heat = load_image(folder / "changes_heatmap.png").pixels.astype(np.float32) / 255.0
            height, width = heat.shape
            listed = "".join(f"<li><strong>{escape(r['kind'])}</strong>: an area {escape(kind_phrase(r['kind']))}, "
                             f"{escape(place_words(r['bbox'], width, height))}</li>" for r in regions[:8])
            missed = "" if any(r["kind"] not in MINOR_KINDS for r in regions) else (
                '<p><strong class="verdict-word verdict-missed">missed</strong> <span class="note">compare marked '
                "no change in content, though the historians' record says this print was altered: a miss of these "
                "methods, not evidence that the print is untouched.</span></p>")
            found = (f"{_picture(heatmap_over_photo(altered, heat), 'what compare found')}"
                     f"<p><strong>{escape(report['reading']['headline'])}</strong></p><ol>{listed}</ol>{missed}"
                     f'<p><a href="{escape(folder.parent.name)}/{escape(folder.name)}/report.html">The full '
                     "report</a></p>")
        else:
            found = f"<p><strong>compare gave no map:</strong> {escape(failure)}</p>"
        cards.append(
            f'<div class="historical" data-case="{escape(case.id)}"><h3>{escape(case.id.replace("_", " "))}</h3>'
            f'<p class="what"><strong>What historians record:</strong> {escape(case.what)}</p><div class="cards">'
            f'<div class="card"><h3>The earlier print</h3>{_picture(original, "earlier print")}</div>'
            f'<div class="card"><h3>The altered print</h3>{_picture(altered, "altered print")}</div>'
            f'<div class="card"><h3>What compare found</h3>{found}</div>'
            "</div></div>")
    note = f'<p class="note">Source: {escape(source)}</p>' if source else ""
    return ("<h2 id=\"historical\">The real cases</h2><p>These are real Soviet photographs and their altered "
            "versions, compared by retouch when this gallery was built. There is no pixel mask for history: set "
            "what compare found beside what historians record, and judge.</p>" + note + "".join(cards))


def _shown_fraction(report: Mapping[str, Any]) -> float:
    """How much of the reference's area the questioned copy shows, from the comparison's recorded transform."""
    reference, questioned = report["inputs"][0], report["inputs"][1]
    matrix = np.asarray(report["transform"]["matrix"], np.float64)
    qw, qh = float(questioned["width"]), float(questioned["height"])
    corners = np.array([[[0.0, 0.0]], [[qw, 0.0]], [[qw, qh]], [[0.0, qh]]])
    back = cv2.perspectiveTransform(corners, np.linalg.inv(matrix)).astype(np.float32)
    rw, rh = float(reference["width"]), float(reference["height"])
    frame = np.array([[[0.0, 0.0]], [[rw, 0.0]], [[rw, rh]], [[0.0, rh]]], np.float32)
    shared, _ = cv2.intersectConvexConvex(cv2.convexHull(back), frame)
    return float(shared) / (rw * rh)


def render_gallery(lessons: Sequence[Path], *, historical: str = "") -> str:
    """The gallery page (self-contained HTML) from lesson folders (one per seed, each with its reports written by
    ``retouch demo``); ``historical`` is the rendered historical section, if any."""
    manifests = [json.loads((lesson / LESSON_MANIFEST).read_text(encoding="utf-8")) for lesson in lessons]
    verdicts = {(manifest["seed"], case["key"]): case_verdicts(lesson, case["key"])
                for lesson, manifest in zip(lessons, manifests) for case in manifest["cases"]}
    pairs = [pair_verdict(lesson) for lesson in lessons]
    first, first_manifest = lessons[0], manifests[0]
    sections = [
        "<h1>How a commissar vanishes</h1>",
        '<p class="sub">A retouch teaching gallery: the retouchers\' techniques, imitated on generated prints whose '
        "truth is known, and what each method finds</p>",
        f"<p>{escape(INTRO)}</p>",
        "<h2>How often each method found each technique</h2>",
        _tally(lessons, verdicts, pairs),
        "<details><summary>What the verdicts mean</summary><ul>"
        + "".join(f"<li><strong>{escape(word)}</strong>: {escape(meaning)}</li>"
                  for word, meaning in VERDICT_MEANING.items())
        + "</ul><p class=\"note\">Verdicts compare each method's own decision (its mask at its own threshold) with "
          "the generator's mask of changed pixels. A method's heatmap can be brighter on the truth than its "
          "decision shows.</p></details>",
        _pair_section(first, first_manifest, pairs[0], pairs[1:]),
    ]
    for number, technique in enumerate(TECHNIQUES, start=3):
        case = next(case for case in first_manifest["cases"] if case["key"] == technique.key)
        sections.append(
            f'<h2 id="{escape(technique.key)}">{number}. {escape(technique.title)}</h2>'
            f"<p>{escape(technique.then)} <em>Trace:</em> {escape(technique.trace)}</p>"
            + _single_cards(first, case, verdicts[first_manifest["seed"], technique.key])
            + _other_seeds([verdicts[manifest["seed"], technique.key] for manifest in manifests[1:]])
            + f'<p><a href="{escape(first.name)}/analyze-{escape(technique.key)}/report.html">The full report for '
              "this scan</a></p>")
    if historical:
        sections.append(historical)
    sections.append(
        "<h2>What none of this can do</h2><p>Every map here marks a statistical anomaly, not a verdict. Damage, "
        "restoration, dust, a different paper or a different scanner can all leave traces; a skilled retoucher "
        "who re-adds grain, or who makes a new negative of the whole print, removes many of them. A method that "
        "flags nothing has not shown a photograph to be untouched. Where another copy exists, `retouch compare` "
        "is the stronger test. The maps tell an archivist where to look and why; the judgement, with the "
        "photograph's history, is theirs.</p>")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>How a commissar vanishes: retouch gallery</title><style>{asset('report.css')}</style></head>"
            "<body><main>" + "\n".join(sections) + f"</main><script>{asset('report.js')}</script></body></html>\n")
