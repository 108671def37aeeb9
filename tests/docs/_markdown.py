"""Reading the docs as data: marked tables, code spans, and ```python blocks with directives.

A table is found by the HTML comment before it (``<!-- settings: BREAKER -->``,
``<!-- findings -->``); a code block's directives are the HTML comment before
it (``<!-- example`` then ``setup:``, ``after:`` and ``needs:`` lines, then
``-->``). Comments do not show on a rendered page.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_MARKER = re.compile(r"^<!--\s*([a-z][\w-]*)(?::\s*(\S+))?\s*-->\s*$")
_SPAN = re.compile(r"`([^`]+)`")


def doc(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def split_row(line: str) -> list[str]:
    """The cells of a table row; a ``|`` inside a code span does not split."""
    cells, current, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    cells.append(current.strip())
    return cells


def marked_tables(text: str, kind: str) -> dict[str, list[list[str]]]:
    """``{name: rows}`` of the tables after ``<!-- kind: name -->`` (header and rule left out)."""
    lines = text.splitlines()
    found: dict[str, list[list[str]]] = {}
    for index, line in enumerate(lines):
        match = _MARKER.match(line.strip())
        if not match or match.group(1) != kind:
            continue
        name = match.group(2) or ""
        if name in found:
            raise AssertionError(f"two tables are marked {kind}: {name}")
        rows: list[list[str]] = []
        for row in lines[index + 1 :]:
            if not row.startswith("|"):
                if rows or row.strip():
                    break
                continue
            rows.append(split_row(row))
        if len(rows) < 2:
            raise AssertionError(f"the {kind}: {name} marker is not followed by a table")
        found[name] = rows[2:]
    return found


def spans(cell: str) -> list[str]:
    """The code spans of a cell, in order."""
    return _SPAN.findall(cell)


def first_name(cell: str) -> str:
    """The name a table row documents: its first code span."""
    names = spans(cell)
    if not names:
        raise AssertionError(f"a documented name must be a code span: {cell!r}")
    return names[0]


@dataclass
class Block:
    """One ```python block and what its directive comment asks for."""

    path: Path
    line: int
    code: str
    setup: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    needs: set[str] = field(default_factory=set)

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def is_fragment(self) -> bool:
        """Dict entries (``"LOCATION": ...,``) rather than statements."""
        try:
            ast.parse(self.code)
        except SyntaxError:
            ast.parse("{\n" + self.code + "\n}")  # raises when it is not a fragment either
            return True
        return False


def python_blocks(path: Path) -> list[Block]:
    """Every ```python block of a Markdown file, with the directives of the comment before it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        if lines[index].strip() != "```python":
            index += 1
            continue
        start = index + 1
        end = start
        while lines[end].strip() != "```":
            end += 1
        block = Block(path, start + 1, "\n".join(lines[start:end]) + "\n")
        _read_directive(lines, index, block)
        blocks.append(block)
        index = end + 1
    return blocks


def _read_directive(lines: list[str], fence: int, block: Block) -> None:
    above = fence - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    if above < 0 or lines[above].strip() != "-->":
        return
    opening = above
    while opening >= 0 and not lines[opening].startswith("<!--"):
        opening -= 1
    if lines[opening].strip() != "<!-- example":
        return
    for raw in lines[opening + 1 : above]:
        key, colon, value = raw.partition(":")
        if not colon or key.strip() not in ("setup", "after", "needs"):
            raise AssertionError(f"{block.path.name}:{opening + 1}: bad directive line {raw!r}")
        value = value.strip()
        if key.strip() == "needs":
            block.needs.update(v.strip() for v in value.split(","))
        else:
            getattr(block, key.strip()).append(value)
