"""The self-contained ``report.html``: images embedded, opens offline, readable by a non-programmer.

It renders the report document and the result's own pictures; it computes no finding of its own.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import numpy as np

from retouch.report.reading import certainty_words, kind_phrase, place_words, reading
from retouch.report.visual import colorize_heatmap, gray8, jpeg_bytes, map_preview, palette_png, png_bytes, \
    preview_over_photo, shrink, turned_box, upright_turns

DISPLAY_SIDE = 1600
CARD_SIDE = 640

KIND_MEANING = {  # the table's short gloss; the words above the table use retouch.report.reading.KIND_WORDS
    "damage": "dust, scratches or specks on the print or scan, not retouching",
    "removed": "present in the reference, missing from the questioned image",
    "added": "present in the questioned image, absent from the reference",
    "retouched": "same place, altered surface (paint, airbrush, local tone)",
    "damage": "a speck, dust or a scratch on one copy only: damage to a print or scan, not an edit",
    "shared": "a piece taken from the reference and placed anew (a composite); its source is outlined there",
    "suspect": "flagged by one or more single-image detectors",
    "clone-target": "filled with material copied from elsewhere in the picture",
    "clone-source": "where copied material came from",
    "clone-pair": "one of two areas that are copies of each other; which one is the copy could not be told",
    "inpainted": "smoothed along isophotes without grain (diffusion fill, airbrush)",
    "noise-low": "grain far weaker than elsewhere at this brightness",
    "noise-high": "grain far stronger or different from elsewhere",
    "noise-residual": "fine noise pattern unlike the rest of the picture (another camera or file)",
    "jpeg-ghost": "compressed at a different JPEG quality than the rest",
    "jpeg-grid": "JPEG block grid shifted against the rest of the image",
    "jpeg-single": "compressed once where the rest of the image was compressed twice",
    "error-level": "recompression error unlike similar areas",
}

SCORE_NOTE = (
    "Scores run from 0 (no evidence) to 1 (strong evidence). They rank how anomalous a finding is under the "
    "method's model; they are not probabilities that the photograph is forged."
)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def photo_uri(image: np.ndarray, side: int = DISPLAY_SIDE) -> str:
    return _data_uri(jpeg_bytes(shrink(image, side)), "image/jpeg")


def png_uri(image: np.ndarray, side: int = DISPLAY_SIDE) -> str:
    return _data_uri(png_bytes(shrink(image, side)), "image/png")


def map_uri(levels: np.ndarray, side: int = DISPLAY_SIDE, *, see_through: bool = False) -> str:
    """A map preview (uint8 levels, see :func:`retouch.report.visual.map_preview`) as an inferno palette PNG,
    shrunk to ``side``; ``see_through`` for a layer over the photograph."""
    return _data_uri(palette_png(shrink(levels, side), see_through=see_through), "image/png")


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.3f}" if whole else "0"


def asset(name: str) -> str:
    return resources.files("retouch.report").joinpath(name).read_text(encoding="utf-8")


def _region_boxes(regions: Sequence[Mapping[str, Any]], width: int, height: int) -> str:
    boxes = []
    for index, region in enumerate(regions, start=1):
        x, y, w, h = region["bbox"]
        style = (f"left:{_pct(x, width)}%;top:{_pct(y, height)}%;"
                 f"width:{_pct(w, width)}%;height:{_pct(h, height)}%")
        boxes.append(f'<div class="box {escape(region["kind"])}" data-region="{index}" style="{style}">'
                     f"<span>{index}</span></div>")
    return "".join(boxes)


def _evidence_text(region: Mapping[str, Any]) -> str:
    evidence = region.get("evidence") or {}
    parts = []
    if "detectors" in evidence:
        parts.append("detectors: " + ", ".join(evidence["detectors"]))
    if "bbox_reference" in evidence:
        bx, by, bw, bh = evidence["bbox_reference"]
        parts.append(f"in reference at x={bx}, y={by}, {bw}×{bh}")
    for key, value in evidence.items():
        if key in {"detectors", "bbox_reference", "support", "outline_questioned", "outline_reference"}:
            continue  # the outlines are drawn, and listed in report.json
        if key == "nfa" and isinstance(value, (int, float)):
            value = f"{value:.2g}"  # numbers of false alarms span many decades: rounding would show 1e-5 as 0
        elif isinstance(value, float):
            value = f"{value:.2g}" if 0 < abs(value) < 1e-3 else round(value, 3)  # an NFA of 4e-15 is not 0
        if isinstance(value, (dict, list)):
            value = json.dumps(value)[:120]
        parts.append(f"{key}: {value}")
    return "; ".join(parts)


def _region_table(regions: Sequence[Mapping[str, Any]], width: int, height: int) -> str:
    if not regions:
        return '<p class="note">No region was flagged at the method\'s threshold.</p>'
    rows = []
    total = float(width * height)
    for index, region in enumerate(regions, start=1):
        x, y, w, h = region["bbox"]
        rows.append(
            f'<tr data-region="{index}"><td class="num" data-label="#">{index}</td><td data-label="Kind">'
            f'{escape(region["kind"])}<div class="note">{escape(KIND_MEANING.get(region["kind"], ""))}</div></td>'
            f'<td class="mono" data-label="Where">x={x}, y={y}, {w}×{h}</td>'
            f'<td class="num" data-label="Area">{region["area"]:,} px<br>{100.0 * region["area"] / total:.2f} %</td>'
            f'<td class="num" data-label="Score">{region["score"]:.2f}</td>'
            f'<td data-label="Evidence">{escape(_evidence_text(region))}</td></tr>'
        )
    return ("<table><thead><tr><th>#</th><th>Kind</th><th>Where (pixels)</th><th>Area</th><th>Score</th>"
            "<th>Evidence</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _figure(photo: np.ndarray, previews: Mapping[str, np.ndarray], regions: Sequence[Mapping[str, Any]],
            default_layer: str | None) -> str:
    height, width = photo.shape[:2]
    layer_imgs, toggles = [], ['<label><input type="radio" name="layer" data-layer=""'
                               + ("" if default_layer else " checked") + "> photograph only</label>"]
    for name, levels in previews.items():
        on = name == default_layer
        layer_imgs.append(f'<img class="layer{" on" if on else ""}" data-name="{escape(name)}" alt="{escape(name)} map" '
                          f'src="{map_uri(levels, see_through=True)}">')
        toggles.append(f'<label><input type="radio" name="layer" data-layer="{escape(name)}"'
                       f'{" checked" if on else ""}> {escape(name)}</label>')
    controls = ('<div class="controls">Show over the photograph: ' + " ".join(toggles)
                + ' <label>opacity <input type="range" min="10" max="100" value="75" data-opacity="1"></label>'
                "</div>")
    return (controls + '<div class="figure">'
            f'<img alt="analysed photograph" src="{photo_uri(photo)}">' + "".join(layer_imgs)
            + _region_boxes(regions, width, height) + "</div>")


def _donor_boxes(regions: Sequence[Mapping[str, Any]], width: int, height: int) -> str:
    """Each shared piece's box on the reference (where the piece comes from), numbered as in the table."""
    boxes = []
    for index, region in enumerate(regions, start=1):
        box = (region.get("evidence") or {}).get("bbox_reference")
        if region["kind"] != "shared" or not box:
            continue
        x, y, w, h = box
        style = (f"left:{_pct(x, width)}%;top:{_pct(y, height)}%;"
                 f"width:{_pct(w, width)}%;height:{_pct(h, height)}%")
        boxes.append(f'<div class="box shared" data-region="{index}" style="{style}"><span>{index}</span></div>')
    return "".join(boxes)


def donor_html(reference: np.ndarray, regions: Sequence[Mapping[str, Any]]) -> str:
    """The reference with the source of every shared piece outlined."""
    height, width = reference.shape[:2]
    return ('<div class="figure"><img alt="reference photograph" '
            f'src="{photo_uri(reference)}">' + _donor_boxes(regions, width, height) + "</div>")


def swipe_html(reference: np.ndarray, questioned: np.ndarray) -> str:
    return (
        '<div class="pair-labels"><span>◀ aligned reference</span><span>questioned ▶</span></div>'
        '<div class="swipe" id="pair">'
        f'<img alt="aligned reference" src="{photo_uri(reference)}">'
        f'<img class="top" alt="questioned" src="{photo_uri(questioned)}"><div class="bar"></div></div>'
        '<input class="swipe-range" type="range" min="0" max="100" value="50" data-target="pair" '
        'aria-label="swipe between the aligned reference and the questioned image">'
        '<div class="controls"><button type="button" data-flicker="pair">Flicker</button>'
        "<span class=\"note\">Drag the slider to wipe between the two versions, or flicker them: what changed "
        "jumps out while the rest stays still.</span></div>"
    )


def _card_pictures(pictures: Mapping[str, np.ndarray]) -> str:
    """An analysis' own pictures (e.g. an embedded thumbnail beside the picture it was compared with), captioned."""
    if not pictures:
        return ""
    figures = "".join(f'<figure><img alt="{escape(caption)}" src="{png_uri(picture, CARD_SIDE)}">'
                      f"<figcaption>{escape(caption)}</figcaption></figure>" for caption, picture in pictures.items())
    return f'<div class="pictures">{figures}</div>'


def _findings_section(analyses: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every analysis' findings (facts read from the file, never painted), those to look at first on top."""
    entries = [(analysis["method"], finding) for analysis in analyses for finding in analysis.get("findings") or []]
    if not entries:
        return []
    entries.sort(key=lambda entry: not entry[1].get("notable"))
    items = []
    for method, finding in entries:
        fields = json.dumps(finding.get("fields") or {}, indent=1, ensure_ascii=False)
        items.append(f'<li class="finding{" notable" if finding.get("notable") else ""}">'
                     f'<span class="kind">{escape(finding.get("kind", ""))}</span> {escape(finding.get("text", ""))}'
                     f'<details><summary>Fields ({escape(method)})</summary><pre>{escape(fields)}</pre></details></li>')
    return [f"<h2>What the file says about itself ({len(entries)})</h2>",
            '<p class="note">Facts read from the file rather than found in its pixels: listed, not painted. Software, '
            "dates and histories can be removed, copied or written by hand; marked items are the ones to look at "
            "first, and none of them shows on its own that the picture was changed.</p>",
            '<ul class="findings">' + "".join(items) + "</ul>"]


def _analysis_cards(analyses: Sequence[Mapping[str, Any]], previews: Mapping[str, np.ndarray], photo: np.ndarray,
                    pictures: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> str:
    card_photo = gray8(shrink(photo, CARD_SIDE))  # once for every card
    cards = []
    for analysis in analyses:
        name = analysis["method"]
        picture = ""
        if name in previews and not analysis.get("skipped"):
            picture = (f'<img alt="{escape(name)} map over the photograph" '
                       f'src="{photo_uri(preview_over_photo(card_photo, previews[name]), CARD_SIDE)}">')
        picture += _card_pictures((pictures or {}).get(name, {}))
        count = len(analysis["regions"])
        status = ("did not run" if analysis.get("skipped") else
                  f"{count} area{'' if count == 1 else 's'} marked" if count else "nothing met its threshold")
        cards.append(
            f'<div class="card{" skipped" if analysis.get("skipped") else ""}"><h3>{escape(name)}</h3>'
            f'<div class="meta">{escape(status)}</div>{picture}'
            + (f"<p>{escape(analysis['skipped'])}</p>" if analysis.get("skipped") else "")
            + "<details><summary>What this map shows and where it fails</summary>"
            f"<p>{escape(analysis.get('explanation', ''))}</p></details>"
            + f"<details><summary>The numbers</summary><p>score {analysis['score']:.2f}, "
            f"{100.0 * analysis.get('flagged_fraction', 0.0):.2f} % of the picture flagged. "
            f"{escape(analysis.get('summary', ''))}</p><pre>{escape(json.dumps(analysis.get('params', {}), indent=1))}"
            "</pre></details></div>"
        )
    return '<div class="cards">' + "".join(cards) + "</div>"


def _input_notes(item: Mapping[str, Any]) -> str:
    return "".join(f"<br><strong>The file {escape(note)}</strong>" for note in item.get("notes", []))


def _inputs_table(inputs: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for item in inputs:
        rows.append(
            f"<tr><td data-label=\"Role\">{escape(item.get('role', 'image'))}</td>"
            f"<td data-label=\"File\">{escape(item.get('name', ''))}</td>"
            f"<td data-label=\"Format\">{escape(item.get('format', ''))}, {item.get('width')}×{item.get('height')}, "
            f"{escape(item.get('mode', ''))} {item.get('bit_depth', '')}-bit{_input_notes(item)}</td>"
            f"<td class=\"mono\" data-label=\"SHA-256\">{escape(item.get('sha256', ''))}</td></tr>"
        )
    return ("<table><thead><tr><th>Role</th><th>File</th><th>Format</th><th>SHA-256</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>"
            '<p class="note">To confirm this report refers to your file, compute its SHA-256 '
            "(for example <code>sha256sum FILE</code>) and compare it with the value above.</p>")


def colour_scale_html() -> str:
    """The heatmaps' colour scale as a bar with words at its ends (the same inferno map the pictures use)."""
    stops = ", ".join(f"rgb{tuple(int(v) for v in colorize_heatmap(np.full((1, 1), value, np.float32))[0, 0])}"
                      for value in np.linspace(0.0, 1.0, 6))
    return ('<div class="scale" role="img" aria-label="colour scale: dark is unremarkable, bright yellow is the '
            f'most unusual"><div class="scale-bar" style="background:linear-gradient(to right, {stops})"></div>'
            '<div class="scale-words"><span>0 · nothing unusual (transparent over the photograph)</span>'
            "<span>1 · most unusual</span></div></div>")


def reading_html(words: Mapping[str, Any], *, nothing_found: bool) -> str:
    """The report's plain-words reading (see :mod:`retouch.report.reading`): the first thing a reader sees."""
    limits = "".join(f"<li>{escape(line)}</li>" for line in words.get("cannot_see", []))
    return (f'<div class="verdict{" nothing" if nothing_found else ""}">'
            f"<p class=\"headline\"><strong>{escape(words['headline'])}</strong></p>"
            f"<p>{escape(words['how_sure'])}</p>"
            + (f"<p class=\"label\">What these methods cannot see in this file</p><ul>{limits}</ul>" if limits else "")
            + f"<p class=\"label\">Next step</p><p>{_code_spans(words['next_step'])}</p></div>")


def _code_spans(text: str) -> str:
    """Escaped text with `backticked` commands set as code."""
    parts = escape(text).split("`")
    return "".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts))


def _regions_in_words(regions: Sequence[Mapping[str, Any]], width: int, height: int) -> str:
    """The marked areas in words, each numbered as on the map; marks of damage folded under the edits, so that a
    page with many specks still opens on what was changed."""
    if not regions:
        return '<p class="note">No region met the threshold.</p>'
    edits: list[str] = []
    damage: list[str] = []
    total = float(max(width * height, 1))
    for index, region in enumerate(regions[:30], start=1):
        kind = str(region.get("kind", "region"))
        share = 100.0 * float(region.get("area", 0)) / total
        detectors = (region.get("evidence") or {}).get("detectors")
        by = f"; found by {', '.join(map(str, detectors))}" if isinstance(detectors, list) and detectors else ""
        (damage if kind == "damage" else edits).append(
            f'<li value="{index}" data-region="{index}"><strong>{escape(kind)}</strong>: an area '
            f"{escape(kind_phrase(kind))}, {escape(place_words(region['bbox'], width, height))}, "
            f"{share:.1f} % of the picture, {escape(certainty_words(float(region.get('score', 0.0))))} "
            f"evidence{escape(by)}.</li>")
    more = f'<p class="note">… and {len(regions) - 30} more in the numbers below.</p>' if len(regions) > 30 else ""
    listed = "<ol>" + "".join(edits) + "</ol>" if edits else ""
    if damage:
        listed += (f"<details><summary>{len(damage)} mark{'s' if len(damage) > 1 else ''} of damage (dust, "
                   f"scratches, specks), not retouching</summary><ol>{''.join(damage)}</ol></details>")
    return listed + more


def render_html(
    report: Mapping[str, Any],
    *,
    photo: np.ndarray,
    layers: Mapping[str, np.ndarray],
    pair: tuple[np.ndarray, np.ndarray] | None = None,
    default_layer: str | None = None,
    intro: str = "",
    reference: np.ndarray | None = None,
    pictures: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> str:
    """Render ``report`` (see :func:`retouch.report.build_report`) as one self-contained HTML page.

    ``photo`` is the image the regions refer to (the questioned image for a comparison); ``layers`` maps names
    to [0, 1] heatmaps at ``photo``'s size, offered as toggles over it; ``pair`` is (aligned reference,
    questioned) for the swipe and flicker view; ``reference``, for a composite, is shown with the source of each
    shared piece outlined; ``pictures`` maps an analysis' name to its own captioned pictures (its result's
    ``images``), shown on its card. The analyses' findings are listed in a section of their own. Words come first
    (the report's ``reading``), numbers behind folds. Every picture is a compact preview: photographs as JPEG and
    maps as palette PNG, at most ``DISPLAY_SIDE`` pixels on a side, each map shrunk once for all its pictures.
    """
    result = report["result"]
    regions = result["regions"]
    height, width = photo.shape[:2]
    # a questioned copy scanned on its side or upside down is shown as the reference stands (the pictures and the
    # boxes drawn on them turned alike); the table of numbers keeps the file's own pixels
    transform = (report.get("registration") or {}).get("transform")
    turns = upright_turns(transform) if pair is not None and transform is not None else 0
    shown_regions = regions
    if turns:
        photo = np.rot90(photo, turns)
        layers = {name: np.rot90(heatmap, turns) for name, heatmap in layers.items()}
        pair = (np.rot90(pair[0], turns), np.rot90(pair[1], turns))
        shown_regions = [{**region, "bbox": list(turned_box(region["bbox"], turns, width, height))}
                         for region in regions]
    shown_height, shown_width = photo.shape[:2]
    previews = {name: map_preview(heatmap, DISPLAY_SIDE) for name, heatmap in layers.items()}
    subject = report["inputs"][-1].get("name", "image") if report["inputs"] else "image"
    title = f"retouch {report['command']} report: {subject}"
    words = report.get("reading") or reading(command=report["command"], result=result,
                                             analyses=report.get("analyses", []), inputs=report["inputs"])
    sections = [
        f"<h1>{escape(title)}</h1>",
        reading_html(words, nothing_found=not regions),
        f'<p class="sub">retouch {escape(report["tool"]["version"])} · {escape(report["created_utc"])} · '
        f'schema {escape(report["schema"])}</p>',
    ]
    if intro:
        sections.append(f"<p>{escape(intro)}</p>")
    if pair is not None:
        sections += ["<h2>The two versions, aligned</h2>"]
        if turns:
            sections.append(f'<p class="note">The questioned scan is turned by {90 * turns} degrees '
                            "clockwise against the reference; its pictures here are turned back to stand as the "
                            "reference does. The boxes' pixels in the table of numbers are the file's own.</p>")
        sections.append(swipe_html(*pair))
    sections += [
        "<h2>Where</h2>",
        _figure(photo, previews, shown_regions, default_layer),
        colour_scale_html(),
    ]
    if reference is not None and any(r["kind"] == "shared" for r in regions):
        sections += ["<h2>Where the shared pieces come from (the reference)</h2>", donor_html(reference, regions)]
    sections += [
        f"<h2>What was marked ({len(regions)})</h2>",
        _regions_in_words(shown_regions, shown_width, shown_height),
        f"<p>{escape(result.get('explanation', ''))}</p>",
        "<details class=\"numbers\"><summary>The numbers: scores, boxes, areas, evidence</summary>"
        f"<p>Image score <strong>{result['score']:.2f}</strong>. {escape(SCORE_NOTE)}</p>"
        f"<p>{escape(result.get('summary', ''))}</p>"
        + _region_table(regions, width, height) + "</details>",
    ]
    if report.get("registration"):
        sections += ["<details><summary>How the two scans were aligned</summary>"
                     f"<pre>{escape(json.dumps(report['registration'], indent=1))}</pre></details>"]
    analyses = report.get("analyses", [])
    sections += _findings_section(analyses)
    if analyses:
        sections += ["<h2>Each method</h2>", _analysis_cards(analyses, previews, photo, pictures)]
    sections += [
        "<h2>Inputs</h2>",
        _inputs_table(report["inputs"]),
        "<h2>Method record</h2>",
        f"<details><summary>Parameters</summary><pre>{escape(json.dumps(report['parameters'], indent=1))}</pre>"
        "</details>",
        f"<details><summary>Timings (seconds)</summary><pre>{escape(json.dumps(report['timings_s'], indent=1))}"
        "</pre></details>",
        f"<details><summary>Software versions</summary><pre>{escape(json.dumps(report['tool'], indent=1))}</pre>"
        "</details>",
        f"<details><summary>Files written</summary><pre>{escape(json.dumps(report['artifacts'], indent=1))}</pre>"
        "</details>",
    ]
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{asset('report.css')}</style></head><body><main>"
        + "\n".join(sections)
        + f"</main><script>{asset('report.js')}</script></body></html>\n"
    )
