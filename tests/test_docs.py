"""The README and docs/ a newcomer reads: every link leads somewhere, and the README stays a page."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_names_a_file_of_the_repository():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_is_a_page_with_the_markers_the_benchmarks_write_between():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.split()) < 1200
    for marker in ("<!-- quality-table:start -->", "<!-- quality-table:end -->", "<!-- real-table -->",
                   "<!-- /real-table -->"):
        assert text.count(marker) == 1, marker
    assert text.index("<!-- quality-table:start -->") < text.index("<!-- quality-table:end -->")
    assert text.index("<!-- real-table -->") < text.index("<!-- /real-table -->")


def test_the_examples_in_the_docstrings_of_the_run_modules_run_as_written():
    import doctest

    from retouch.run import budget, manifest, pipeline

    for module in (budget, manifest, pipeline):
        failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert attempted and not failed, module.__name__
