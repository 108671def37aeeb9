"""Links between the pages lead somewhere: the file exists and so does the heading."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs._markdown import DOCS

_LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """The anchor GitHub and MkDocs give a heading."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_every_link_leads_to_a_page_and_heading(page: str) -> None:
    source = DOCS / page
    for target in _LINK.findall(source.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        name, _, anchor = target.partition("#")
        path = (DOCS / name).resolve() if name else source
        assert path.is_file(), f"{page}: {target} leads to no file"
        if anchor:
            assert anchor in anchors(path), f"{page}: {target} leads to no heading"


def test_the_site_builds_without_a_warning(tmp_path: Path) -> None:
    """``mkdocs build --strict`` fails on what the check above cannot see: a page
    missing from the navigation, a link out of ``docs/``, a bad ``mkdocs.yml``."""
    root = DOCS.parent
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "degraded-mode" / "index.html").is_file()
