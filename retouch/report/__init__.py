"""Reports: the versioned ``report.json`` document, the self-contained ``report.html`` and their pictures."""

from retouch.report.document import SCHEMA, build_report, tool_versions
from retouch.report.html import render_html
from retouch.report.visual import colorize_heatmap, flicker_gif, heatmap_rgba, overlay, shrink

__all__ = [
    "SCHEMA",
    "build_report",
    "colorize_heatmap",
    "flicker_gif",
    "heatmap_rgba",
    "overlay",
    "render_html",
    "shrink",
    "tool_versions",
]
