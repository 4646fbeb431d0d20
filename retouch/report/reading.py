"""What a report says in plain words: what was found, how sure, what the methods cannot see here, what to do next.

Written from the report's own record (the headline result, the analyses behind it and the inputs' facts) so that
``report.html``, the terminal summary, the web page and the gallery say the same thing. It computes no finding.

Two rules hold for every sentence: a result with no region at the threshold is told as exactly that, never as a
photograph being untouched (a method that sees nothing may be blind to what was done); and every reading names
the next step, because one scan alone is weak evidence either way and another copy of the photograph is the
stronger test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

# what a region's kind means, in a phrase that completes "an area ..."; a kind not listed (a newer detector's) is
# told by its name, so a report never fails on a kind it does not know
KIND_WORDS = {
    "removed": "where something in the other copy is missing from this one",
    "added": "where something appears that the other copy does not show",
    "retouched": "where the surface was altered in place (paint, airbrush, local tone)",
    "damage": "with marks of damage (dust, scratches, specks), not of retouching",
    "suspect": "that one or more single-scan methods found unusual",
    "clone-target": "that repeats another part of the picture (copied material)",
    "clone-source": "that other material was copied from",
    "clone-pair": "that is one of two copies of each other (which one is the copy cannot be told)",
    "shared": "taken from the other copy and placed anew here (a composite of two pictures)",
    "inpainted": "that looks filled in (patches or a smooth fill)",
    "noise-low": "whose grain is far weaker than elsewhere at the same brightness",
    "noise-high": "whose grain is far stronger or different from elsewhere",
    "noise-residual": "whose fine noise pattern is unlike the rest of the picture (as from another camera or file)",
    "jpeg-ghost": "compressed at a different JPEG quality from the rest",
    "jpeg-grid": "whose JPEG block grid is shifted against the rest",
    "jpeg-single": "that looks compressed once where the rest of the picture was compressed twice",
    "error-level": "whose recompression error differs from similar areas",
}
# kinds that are reported but never made the headline of a comparison: an old print's dust is not a forgery
MINOR_KINDS = frozenset({"damage", "clone-source"})

NEXT_STEP_SINGLE = (
    "Find another copy of this photograph (an earlier print, a publication, another archive's scan) and run "
    "`retouch compare OTHER_COPY THIS_FILE`: a difference in content between two copies is far stronger "
    "evidence than any statistic of a single scan, in either direction."
)
NEXT_STEP_PAIR = (
    "Look at each marked area in both prints under magnification. A third copy, or the negative, can tell which "
    "of the two was altered: `retouch compare THIRD_COPY THIS_FILE`."
)
BLIND_SPOTS_SINGLE = (
    "A retoucher who matched the grain, or a copy re-photographed from a retouched print, leaves few traces a "
    "single scan can show.",
)
BLIND_SPOTS_PAIR = (
    "Anything changed before the earlier copy was made is in both copies, and cannot show as a difference.",
)


def certainty_words(score: float) -> str:
    if score >= 0.8:
        return "strong"
    if score >= 0.5:
        return "moderate"
    return "weak"


def kind_phrase(kind: str) -> str:
    return KIND_WORDS.get(kind, f"marked '{kind.replace('-', ' ')}'")


def _counted(kinds: Counter) -> str:
    parts = [f"{count} {'area' if count == 1 else 'areas'} {kind_phrase(kind)}" for kind, count in kinds.most_common()]
    return "; ".join(parts)


def place_words(bbox: Sequence[int], width: int, height: int) -> str:
    """Where a box lies in the picture, as a reader would say it ("upper left", "centre", ...)."""
    x, y, w, h = bbox
    cx, cy = (x + w / 2) / max(width, 1), (y + h / 2) / max(height, 1)
    row = "upper" if cy < 1 / 3 else "lower" if cy > 2 / 3 else "middle"
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"
    if row == "middle" and col == "centre":
        return "centre"
    if row == "middle":
        return f"middle {col}"
    return f"{row} {col}" if col != "centre" else f"{row} centre"


def _file_limits(inputs: Sequence[Mapping[str, Any]], *, pair: bool) -> list[str]:
    limits = []
    for item in inputs:
        name = item.get("name") or "the file"
        fmt = str(item.get("format") or "").upper()
        if pair:  # a comparison reads content, not compression or grain: only the size limits it
            width, height = item.get("width"), item.get("height")
            if isinstance(width, int) and isinstance(height, int) and min(width, height) < 512:
                limits.append(f"{name} is small ({width}×{height} px): a change of a few pixels in it may be "
                              "lost in the alignment of the two copies.")
            continue
        if fmt and fmt not in {"JPEG", "JPG", "MPO"}:
            limits.append(f"{name} is a {fmt} file, not a JPEG: compression traces (error levels, JPEG ghosts, the "
                          "block grid) have nothing to read in it.")
        width, height = item.get("width"), item.get("height")
        if isinstance(width, int) and isinstance(height, int) and min(width, height) < 512:
            limits.append(f"{name} is small ({width}×{height} px): grain statistics and copied-patch matching "
                          "have few pixels to work with, and small retouching may vanish at this size.")
    return limits


def reading(*, command: str, result: Mapping[str, Any], analyses: Sequence[Mapping[str, Any]] = (),
            inputs: Sequence[Mapping[str, Any]] = (), compared_fraction: float | None = None) -> dict[str, Any]:
    """The plain-words reading of a report: ``headline``, ``how_sure``, ``cannot_see`` (list) and ``next_step``.

    ``result`` is the headline result as the report records it (``regions`` with ``kind``, ``score``, ...);
    ``analyses`` are the analyses behind it (``method``, ``skipped``, ``regions``); ``inputs`` the input records
    (``name``, ``format``, ``width``, ``height``).
    """
    regions = list(result.get("regions") or [])
    pair = command == "compare"
    major = [region for region in regions if region.get("kind") not in MINOR_KINDS]
    minor = [region for region in regions if region.get("kind") in MINOR_KINDS]
    if major:
        best = max(float(region.get("score", 0.0)) for region in major)
        what = "between the two copies" if pair else "in this scan"
        headline = (f"{len(major)} {'area' if len(major) == 1 else 'areas'} {what} to examine: "
                    f"{_counted(Counter(region.get('kind', '?') for region in major))}.")
        # a comparison lists a reshaped part again inside the change it belongs to (evidence "within")
        nested = sum(1 for region in major if (region.get("evidence") or {}).get("within"))
        if nested:
            headline += (f" {'One of these lies' if nested == 1 else f'{nested} of these lie'} inside another: "
                         "content both copies show, reshaped or extended over what was taken out.")
        if minor:
            headline += f" Also {_counted(Counter(region.get('kind', '?') for region in minor))}."
        how_sure = (f"The strongest is {certainty_words(best)} evidence (score {best:.2f} of 1). A marked area is where "
                    "to look and why, not proof of forgery: damage, restoration or a different scanner can leave "
                    "similar traces.")
    else:
        if pair:
            headline = ("No difference in content between the two copies met the threshold"
                        + (f" (only {_counted(Counter(region.get('kind', '?') for region in minor))})." if minor
                           else "."))
        else:
            headline = "No area of this scan met the threshold of any method."
        how_sure = ("This is not evidence that the photograph is untouched: it means these methods found nothing "
                    "they can measure here, and a careful retouching can be invisible to all of them.")
    cannot_see: list[str] = []
    for analysis in analyses:
        if analysis.get("skipped"):
            cannot_see.append(f"{analysis.get('method', 'a method')} did not run: {analysis['skipped']}.")
    # a skipped analysis already says why (e.g. the file is not a JPEG); the file's own facts cover the rest
    cannot_see += [line for line in _file_limits(inputs, pair=pair) if not (cannot_see and "not a JPEG" in line)]
    if pair and compared_fraction is not None and compared_fraction < 0.98:
        cannot_see.append(f"Only {100 * compared_fraction:.0f} % of the questioned copy is shown by both copies; "
                          "the rest was not compared.")
    cannot_see += list(BLIND_SPOTS_PAIR if pair else BLIND_SPOTS_SINGLE)
    return {"headline": headline, "how_sure": how_sure, "cannot_see": cannot_see,
            "next_step": NEXT_STEP_PAIR if pair else NEXT_STEP_SINGLE}


def reading_lines(text: Mapping[str, Any]) -> list[str]:
    """The reading as plain lines (terminal, plain-text contexts), in the order a reader needs them."""
    lines = [text["headline"], text["how_sure"]]
    if text.get("cannot_see"):
        lines.append("What these methods cannot see here:")
        lines += [f"  - {line}" for line in text["cannot_see"]]
    lines.append(f"Next step: {text['next_step']}")
    return lines
