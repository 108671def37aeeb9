"""Links between the pages lead somewhere: the file exists and so does the heading."""

from __future__ import annotations

import re
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
