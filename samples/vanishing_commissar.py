"""How a commissar vanishes, in a dozen lines: paint a figure out of a print, re-photograph it, find the change.

    python samples/vanishing_commissar.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from retouch.samples import make_pair
from retouch.run.tasks import compare_files


def main(out_dir: str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the figure is airbrushed out of the print; the doctored print is then re-photographed at another
    # scale and angle, as the Soviet retouchers did to hide their work
    pair = make_pair(1924, size=768, edit="airbrush", source="grace_hopper")
    reference = out / ("before.jpg" if pair.reference_format == "JPEG" else "before.png")
    questioned = out / ("after.jpg" if pair.questioned_format == "JPEG" else "after.png")
    reference.write_bytes(pair.reference_bytes)
    questioned.write_bytes(pair.questioned_bytes)
    outcome = compare_files(reference, questioned, out / "report")
    print(outcome.summary)
    print(f"Report: {Path(outcome.out_dir) / 'report.html'}")
    return Path(outcome.out_dir)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "commissar-out")
