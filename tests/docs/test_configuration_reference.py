"""docs/configuration.md against the settings schema: every setting documented, cells right.

The settings the code knows, their defaults, types, meanings and check columns are
read from the schema (``django_redis_resilience._schema``), whose sections the
features declare; each documented table must be its section, row for row. The
objects that apply the settings (the connection dataclasses, ``StampedeConfig``,
the middleware's rule keys) must agree with the schema, and no code may read a
documented setting with an inline default of its own. Check IDs are checked by
giving each setting a bad value and asking the system checks, without any network I/O.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

import django_redis_resilience
from django_redis_resilience import _schema, checks  # checks: every section is registered
from django_redis_resilience.cache._stampede import StampedeConfig
from django_redis_resilience.conf import BACKEND, conf
from django_redis_resilience.connection import (
    BreakerConfig,
    ClusterRefreshConfig,
    ConnectionOptions,
    RetryPolicy,
)
from django_redis_resilience.connection._location import _QUERY_PARAMS
from django_redis_resilience.connection._tls import TLS_DEFAULTS, is_tls_option
from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting._middleware import RULE_KEYS, load_rules
from tests.docs._markdown import DOCS, doc, first_name, marked_tables, spans

assert checks  # imported for the sections it registers
PACKAGE = Path(django_redis_resilience.__file__).parent
TEXT = doc("configuration.md")
TABLES = marked_tables(TEXT, "settings")
SECTIONS = _schema.sections()

#: Every documented table is the schema's section of the same name.
KNOWN: dict[str, tuple[str, ...]] = {
    table: SECTIONS[table].names for table in TABLES if table != "tls"
}
CONNECTION = KNOWN["connection"]
#: Dict settings whose sub-keys have their own table.
NESTED = ("BREAKER", "RETRY", "CLUSTER", "HEALTH", "RATELIMIT", "RULES", "STAMPEDE")
#: Where a setting of each table lives, for the bracketed paths written in prose.
CONTAINERS: dict[str, set[str]] = {
    "REDIS_RESILIENCE": {*CONNECTION, *KNOWN["global"]},
    "OPTIONS": {*CONNECTION, *KNOWN["options"], *KNOWN["ignored"]},
    **{name: set(KNOWN[name]) for name in NESTED},
}


def _rows(table: str) -> dict[str, list[str]]:
    rows = {first_name(row[0]): row for row in TABLES[table]}
    assert len(rows) == len(TABLES[table]), f"a setting is documented twice in {table}"
    return rows


def _setting(table: str, key: str) -> _schema.Setting:
    return SECTIONS[table][key]


def _documented(cell: str) -> Any:
    names = spans(cell)
    if not names:
        return cell
    return ast.literal_eval(names[0])


def _matches(code: Any, cell: str) -> bool:
    shown = _documented(cell)
    return bool(type(shown) is type(code) or {type(shown), type(code)} <= {int, float}) and (
        shown == code
    )


# --- tests -------------------------------------------------------------------------------------


def test_every_documented_table_is_a_registered_section() -> None:
    assert set(TABLES) - {"tls"} <= set(SECTIONS)
    assert set(SECTIONS) <= set(TABLES), "a settings section without its table in the docs"


@pytest.mark.parametrize("table", sorted(KNOWN))
def test_each_table_documents_exactly_the_settings_the_code_knows(table: str) -> None:
    documented = set(_rows(table))
    known = set(KNOWN[table])
    assert not known - documented, f"undocumented in {table}: {sorted(known - documented)}"
    assert not documented - known, f"unknown to the code, in {table}: {documented - known}"
    assert tuple(_rows(table)) == KNOWN[table], f"{table}: the docs' order is the schema's"


def _row_cases() -> Iterator[tuple[str, str]]:
    for table in sorted(KNOWN):
        for key in KNOWN[table]:
            yield table, key


@pytest.mark.parametrize(("table", "key"), list(_row_cases()))
def test_the_documented_type_meaning_and_checks_are_the_schemas(table: str, key: str) -> None:
    row = _rows(table)[key]
    setting = _setting(table, key)
    assert (row[1], row[3], row[-1]) == (setting.kind, setting.doc, setting.ids)


def _default_cases() -> Iterator[tuple[str, str]]:
    for table in sorted(KNOWN):
        if table != "ignored":
            for key in KNOWN[table]:
                yield table, key


@pytest.mark.parametrize(("table", "key"), list(_default_cases()))
def test_the_documented_default_is_the_codes(table: str, key: str) -> None:
    setting = _setting(table, key)
    cell = _rows(table)[key][2]
    if setting.default is _schema.REQUIRED:
        assert cell == "required", f"{table} {key}: the code requires it"
        rule = {"PATH": r"^/", "KEY": "ip", "RATE": "1/s"}
        del rule[key]
        with pytest.raises(InvalidRateLimit, match=key):
            load_rules({"RULES": [rule]})
        return
    if setting.shown is not None:
        assert cell == setting.shown, f"{table} {key}: documented {cell!r}"
        return
    code = setting.default
    assert _matches(code, cell), f"{table} {key}: documented {cell!r}, code {code!r}"


def test_ignored_options_have_no_default() -> None:
    assert {row[2] for row in _rows("ignored").values()} == {"—"}


def test_the_settings_object_gives_the_schemas_defaults() -> None:
    with override_settings(REDIS_RESILIENCE={}):
        for table in ("connection", "global"):
            for setting in SECTIONS[table]:
                if setting.name != "HEALTH":
                    assert getattr(conf, setting.name) == setting.default, setting.name
        assert SECTIONS["HEALTH"].defaults() == conf.HEALTH  # every key, merged


def _dataclass_defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


@pytest.mark.parametrize(
    ("table", "cls"),
    [("BREAKER", BreakerConfig), ("RETRY", RetryPolicy), ("CLUSTER", ClusterRefreshConfig)],
)
def test_the_connection_objects_default_to_the_schema(table: str, cls: type) -> None:
    fields = _dataclass_defaults(cls)
    for setting in SECTIONS[table]:
        assert setting.field is not None, setting.name
        assert fields[setting.field] == setting.default, setting.name


def test_the_connection_options_default_to_the_schema() -> None:
    fields = _dataclass_defaults(ConnectionOptions)
    for setting in SECTIONS["connection"]:
        if setting.keys is None:
            assert fields[setting.name.lower()] == setting.default, setting.name


def test_the_stampede_config_defaults_to_the_schema() -> None:
    fields = _dataclass_defaults(StampedeConfig)
    assert {k.lower(): v for k, v in SECTIONS["STAMPEDE"].defaults().items()} == fields
    assert StampedeConfig.from_options(None) == StampedeConfig()


def test_the_rule_keys_are_the_middlewares() -> None:
    assert SECTIONS["RULES"].names == RULE_KEYS


def _inline_defaults() -> Iterator[str]:
    """``.get("NAME", default)`` calls in the package for a setting the schema documents."""
    names = {name for section in SECTIONS.values() for name in section.names}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and len(node.args) > 1
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in names
            ):
                yield f"{path.relative_to(PACKAGE)}:{node.lineno} {node.args[0].value}"


def test_no_code_reads_a_documented_setting_with_a_default_of_its_own() -> None:
    assert list(_inline_defaults()) == []


# --- check IDs ---------------------------------------------------------------------------

BAD = object()
LOCATION = "redis://127.0.0.1:1/0"


def _ids(redis_resilience: Mapping[str, Any] | None = None, **options: Any) -> set[str]:
    """The check IDs reported for these settings, on an otherwise valid configuration."""
    caches = {"default": {"BACKEND": BACKEND, "LOCATION": LOCATION, "OPTIONS": options}}
    with override_settings(CACHES=caches, REDIS_RESILIENCE=dict(redis_resilience or {})):
        return {p.id.rpartition(".")[2] for p in conf.problems()}


def observed_ids(table: str, key: str, cell: str) -> set[str]:
    """Give ``key`` a bad value wherever it may be set; every check ID that answers."""
    found: set[str] = set()
    if table == "connection":
        found |= _ids({key: BAD}) | _ids(**{key: BAD})
        if "W002" in cell:
            found |= _ids({key: None}) | _ids(**{key: None})
    elif table == "global":
        found |= _ids({key: BAD})
    elif table == "options":
        found |= _ids(**{key: BAD})
        if "E005" in cell:
            found |= _ids(**{key: {"retry": None}})
    elif table in ("BREAKER", "RETRY", "CLUSTER"):
        found |= _ids({table: {key: BAD}}) | _ids(**{table: {key: BAD}})
    elif table in ("HEALTH", "RATELIMIT"):
        found |= _ids({table: {key: BAD}})
    elif table == "RULES":
        rule = {"PATH": r"^/", "KEY": "ip", "RATE": "1/s", key: BAD}
        found |= _ids({"RATELIMIT": {"RULES": [rule]}})
    elif table in ("STAMPEDE", "NEAR_CACHE"):
        found |= _ids(**{table: {key: BAD}})
    elif table == "ignored":
        found |= _ids(**{key: "anything"})
    return found


def test_the_base_configuration_of_the_check_probes_is_valid() -> None:
    assert _ids() == set()


def _check_cases() -> Iterator[tuple[str, str]]:
    for table in sorted(KNOWN):
        for key in KNOWN[table]:
            yield table, key


@pytest.mark.parametrize(("table", "key"), list(_check_cases()))
def test_the_documented_check_id_is_the_one_reported(table: str, key: str) -> None:
    cell = _rows(table)[key][-1]
    documented = set(re.findall(r"\b[EW]\d{3}\b", cell))
    assert documented or cell == "—", f"{table} {key}: no check ID documented"
    assert observed_ids(table, key, cell) == documented, f"{table} {key}"


# --- the rest of the page ------------------------------------------------------------------

_PATH = re.compile(r"\b([A-Z][A-Z_]+)\[\"([A-Za-z_]+)\"\]")


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_settings_written_as_paths_are_known(page: str) -> None:
    """``REDIS_RESILIENCE["X"]``, ``OPTIONS["Y"]``, ``HEALTH["Z"]`` ... anywhere in the docs."""
    for container, key in _PATH.findall(doc(page)):
        if container in CONTAINERS:
            assert key in CONTAINERS[container], f"{page}: {container}[{key!r}] is not a setting"


def test_the_tls_table_names_the_tls_options_the_code_handles() -> None:
    documented = {n for row in TABLES["tls"] for n in spans(row[0])}
    handled = {n for n in _QUERY_PARAMS if is_tls_option(n)} | set(TLS_DEFAULTS)
    assert handled <= documented
    assert all(is_tls_option(name) for name in documented)


def test_every_url_query_parameter_is_documented() -> None:
    section = TEXT.split("## `LOCATION`", 1)[1].split("\n## ", 1)[0]
    for name in _QUERY_PARAMS:
        assert f"`{name}`" in section, name


def test_the_system_check_table_lists_every_id_the_code_reports() -> None:
    sources = [PACKAGE / "conf.py", *sorted(PACKAGE.glob("*/_settings.py"))]
    emitted: set[str] = set()
    for path in sources:
        source = path.read_text(encoding="utf-8")
        emitted |= set(re.findall(r'Problem\.of\(\s*"([EW]\d{3})"', source))
        emitted |= set(re.findall(r'code="([EW]\d{3})"', source))
    section = TEXT.split("## System checks", 1)[1]
    documented = set(re.findall(r"`django_redis_resilience\.([EW]\d{3})`", section))
    assert documented == emitted
