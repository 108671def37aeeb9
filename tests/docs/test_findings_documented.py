"""docs/operations.md against ``health/_findings.py``: every finding code, with its severities.

The codes and the severities each can have are read from the source: every
call whose first argument is a code (``add("H001", Severity.CRITICAL if ...
else Severity.WARNING, ...)``, ``Finding("H017", severity, ...)``), following a
severity held in a variable to its assignments.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from django_redis_resilience.health import _findings
from tests.docs._markdown import DOCS, doc, marked_tables

SOURCE = Path(_findings.__file__)
CODE = re.compile(r"^H\d{3}$")
WORDS = ("info", "warning", "critical")


def _severities_in(node: ast.AST) -> set[str]:
    return {
        n.attr.lower()
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id == "Severity"
    }


def emitted() -> dict[str, set[str]]:
    """Finding code -> the severities the source can give it."""
    tree = ast.parse(SOURCE.read_text(encoding="utf-8"))
    found: dict[str, set[str]] = {}
    for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        assigned: dict[str, set[str]] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, set()).update(_severities_in(node.value))
        for node in ast.walk(function):
            if not (isinstance(node, ast.Call) and len(node.args) >= 2):
                continue
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and CODE.match(str(first.value))):
                continue
            severity = node.args[1]
            levels = (
                assigned.get(severity.id, set())
                if isinstance(severity, ast.Name)
                else _severities_in(severity)
            )
            assert levels, f"{first.value}: no severity found in the source"
            found.setdefault(str(first.value), set()).update(levels)
    return found


EMITTED = emitted()
TEXT = doc("operations.md")
ROWS = {row[0]: row for row in marked_tables(TEXT, "findings")[""]}


def test_the_source_emits_findings() -> None:
    assert len(EMITTED) >= 15  # the scan itself works


@pytest.mark.parametrize("code", sorted(EMITTED))
def test_each_code_is_in_the_table_with_its_severities(code: str) -> None:
    assert code in ROWS, f"{code} is not in the findings table of docs/operations.md"
    documented = set(re.findall(r"\b(" + "|".join(WORDS) + r")\b", ROWS[code][1]))
    assert documented == EMITTED[code], f"{code}: documented {documented}, code {EMITTED[code]}"


@pytest.mark.parametrize("code", sorted(EMITTED))
def test_each_code_has_a_section_saying_what_to_do(code: str) -> None:
    section = re.search(rf"^### {code}: .+?$(.+?)(?=^### |\Z)", TEXT, re.M | re.S)
    assert section is not None, f"no '### {code}: ...' section"
    assert "What to do" in section.group(1), f"{code}: the section says nothing to do"


def test_no_page_names_a_code_the_source_does_not_emit() -> None:
    for page in sorted(DOCS.glob("*.md")):
        for code in set(re.findall(r"\bH\d{3}\b", page.read_text(encoding="utf-8"))):
            assert code in EMITTED, f"{page.name} names {code}, which no finding has"
    assert set(ROWS) == set(EMITTED)
