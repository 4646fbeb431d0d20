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

from retouch.report.visual import colorize_heatmap, heatmap_rgba, jpeg_bytes, png_bytes, shrink

DISPLAY_SIDE = 1600
CARD_SIDE = 640

KIND_MEANING = {
    "removed": "present in the reference, missing from the questioned image",
    "added": "present in the questioned image, absent from the reference",
    "retouched": "same place, altered surface (paint, airbrush, local tone)",
    "suspect": "flagged by one or more single-image detectors",
    "clone-target": "filled with material copied from elsewhere in the picture",
    "clone-source": "where copied material came from",
    "clone-pair": "one of two areas that are copies of each other; which one is the copy could not be told",
    "inpainted": "filled by inpainting (exemplar patches or smooth diffusion)",
    "noise-low": "grain far weaker than elsewhere at this brightness",
    "noise-high": "grain far stronger or different from elsewhere",
    "jpeg-ghost": "compressed at a different JPEG quality than the rest",
    "jpeg-grid": "JPEG block grid shifted against the rest of the image",
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
        if key in {"detectors", "bbox_reference", "support"}:
            continue
        if isinstance(value, float):
            value = round(value, 3)
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
            f'<tr data-region="{index}"><td class="num">{index}</td><td>{escape(region["kind"])}'
            f'<div class="note">{escape(KIND_MEANING.get(region["kind"], ""))}</div></td>'
            f"<td class=\"mono\">x={x}, y={y}, {w}×{h}</td>"
            f'<td class="num">{region["area"]:,} px<br>{100.0 * region["area"] / total:.2f} %</td>'
            f'<td class="num">{region["score"]:.2f}</td><td>{escape(_evidence_text(region))}</td></tr>'
        )
    return ("<table><thead><tr><th>#</th><th>Kind</th><th>Where (pixels)</th><th>Area</th><th>Score</th>"
            "<th>Evidence</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _figure(photo: np.ndarray, layers: Mapping[str, np.ndarray], regions: Sequence[Mapping[str, Any]],
            default_layer: str | None) -> str:
    height, width = photo.shape[:2]
    layer_imgs, toggles = [], ['<label><input type="radio" name="layer" data-layer=""'
                               + ("" if default_layer else " checked") + "> photograph only</label>"]
    for name, heatmap in layers.items():
        on = name == default_layer
        layer_imgs.append(f'<img class="layer{" on" if on else ""}" data-name="{escape(name)}" alt="{escape(name)} map" '
                          f'src="{png_uri(heatmap_rgba(heatmap, max_side=DISPLAY_SIDE))}">')
        toggles.append(f'<label><input type="radio" name="layer" data-layer="{escape(name)}"'
                       f'{" checked" if on else ""}> {escape(name)}</label>')
    controls = ('<div class="controls">Show over the photograph: ' + " ".join(toggles)
                + ' <label>opacity <input type="range" min="10" max="100" value="75" data-opacity="1"></label>'
                "</div>")
    return (controls + '<div class="figure">'
            f'<img alt="analysed photograph" src="{photo_uri(photo)}">' + "".join(layer_imgs)
            + _region_boxes(regions, width, height) + "</div>")


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


def _analysis_cards(analyses: Sequence[Mapping[str, Any]], layers: Mapping[str, np.ndarray]) -> str:
    cards = []
    for analysis in analyses:
        name = analysis["method"]
        picture = ""
        if name in layers and not analysis.get("skipped"):
            picture = f'<img alt="{escape(name)} heatmap" src="{png_uri(colorize_heatmap(layers[name]), CARD_SIDE)}">'
        status = "not applicable" if analysis.get("skipped") else f"score {analysis['score']:.2f}"
        cards.append(
            f'<div class="card{" skipped" if analysis.get("skipped") else ""}"><h3>{escape(name)}</h3>'
            f'<div class="meta">{escape(status)} · {len(analysis["regions"])} region(s) · '
            f'{100.0 * analysis.get("flagged_fraction", 0.0):.2f} % flagged</div>{picture}'
            f"<p>{escape(analysis.get('summary', ''))}</p>"
            f"<details><summary>What this map shows and where it fails</summary>"
            f"<p>{escape(analysis.get('explanation', ''))}</p></details>"
            f"<details><summary>Parameters</summary><pre>{escape(json.dumps(analysis.get('params', {}), indent=1))}"
            "</pre></details></div>"
        )
    return '<div class="cards">' + "".join(cards) + "</div>"


def _input_notes(item: Mapping[str, Any]) -> str:
    return "".join(f"<br><strong>The file {escape(note)}</strong>" for note in item.get("notes", []))


def _inputs_table(inputs: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for item in inputs:
        rows.append(
            f"<tr><td>{escape(item.get('role', 'image'))}</td><td>{escape(item.get('name', ''))}</td>"
            f"<td>{escape(item.get('format', ''))}, {item.get('width')}×{item.get('height')}, "
            f"{escape(item.get('mode', ''))} {item.get('bit_depth', '')}-bit{_input_notes(item)}</td>"
            f"<td class=\"mono\">{escape(item.get('sha256', ''))}</td></tr>"
        )
    return ("<table><thead><tr><th>Role</th><th>File</th><th>Format</th><th>SHA-256</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>"
            '<p class="note">To confirm this report refers to your file, compute its SHA-256 '
            "(for example <code>sha256sum FILE</code>) and compare it with the value above.</p>")


def render_html(
    report: Mapping[str, Any],
    *,
    photo: np.ndarray,
    layers: Mapping[str, np.ndarray],
    pair: tuple[np.ndarray, np.ndarray] | None = None,
    default_layer: str | None = None,
    intro: str = "",
) -> str:
    """Render ``report`` (see :func:`retouch.report.build_report`) as one self-contained HTML page.

    ``photo`` is the image the regions refer to (the questioned image for a comparison); ``layers`` maps names
    to [0, 1] heatmaps at ``photo``'s size, offered as toggles over it; ``pair`` is (aligned reference,
    questioned) for the swipe and flicker view.
    """
    result = report["result"]
    regions = result["regions"]
    height, width = photo.shape[:2]
    subject = report["inputs"][-1].get("name", "image") if report["inputs"] else "image"
    title = f"retouch {report['command']} report: {subject}"
    clean = not regions
    sections = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">retouch {escape(report["tool"]["version"])} · {escape(report["created_utc"])} · '
        f'schema {escape(report["schema"])}</p>',
        f'<div class="verdict{" clean" if clean else ""}"><div class="score">{result["score"]:.2f}</div>'
        f"<p><strong>{escape(result['summary'])}</strong></p><p class=\"note\">{escape(SCORE_NOTE)}</p></div>",
    ]
    if intro:
        sections.append(f"<p>{escape(intro)}</p>")
    if pair is not None:
        sections += ["<h2>The two versions, aligned</h2>", swipe_html(*pair)]
    sections += [
        "<h2>Where</h2>",
        _figure(photo, layers, regions, default_layer),
        f"<h2>Regions ({len(regions)})</h2>",
        _region_table(regions, width, height),
        f"<p>{escape(result.get('explanation', ''))}</p>",
    ]
    if report.get("registration"):
        sections += ["<h2>How the two scans were aligned</h2>",
                     f"<pre>{escape(json.dumps(report['registration'], indent=1))}</pre>"]
    analyses = report.get("analyses", [])
    if analyses:
        sections += ["<h2>Each analysis</h2>", _analysis_cards(analyses, layers)]
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
