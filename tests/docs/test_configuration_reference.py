"""docs/configuration.md against the code: every setting documented, defaults and check IDs right.

The settings the code knows are read from ``conf.py``'s own tables (and the
middleware's ``RULE_KEYS``); their defaults from the objects that apply them
(the connection dataclasses, ``HEALTH_DEFAULTS``, ``StampedeConfig``) or, where
the code reads a setting with ``.get("NAME", default)``, from that call in the
source. Check IDs are checked by giving each setting a bad value and asking
the system checks, without any network I/O.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

import django_redis_resilience
from django_redis_resilience import conf as conf_module
from django_redis_resilience.cache import _state
from django_redis_resilience.cache._stampede import StampedeConfig
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import BreakerConfig, ClusterRefreshConfig, RetryPolicy
from django_redis_resilience.connection._location import _QUERY_PARAMS
from django_redis_resilience.connection._tls import TLS_DEFAULTS, is_tls_option
from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting._middleware import RULE_KEYS, load_rules
from tests.docs._markdown import DOCS, doc, first_name, marked_tables, spans

PACKAGE = Path(django_redis_resilience.__file__).parent
BACKEND = conf_module.BACKEND
TEXT = doc("configuration.md")
TABLES = marked_tables(TEXT, "settings")

CONNECTION = tuple(conf_module.CONNECTION_SETTINGS)
CACHE_ONLY = tuple(k for k in conf_module.OPTION_NAMES if k not in CONNECTION)
#: Dict settings whose sub-keys have their own table.
NESTED = {
    "BREAKER": tuple(conf_module.BREAKER_KEYS),
    "RETRY": tuple(conf_module.RETRY_KEYS),
    "CLUSTER": tuple(conf_module.CLUSTER_KEYS),
    "HEALTH": tuple(conf_module.HEALTH_KEYS),
    "RATELIMIT": tuple(conf_module.RATELIMIT_KEYS),
    "RULES": tuple(RULE_KEYS),
    "STAMPEDE": tuple(conf_module._STAMPEDE_KEYS),
}
#: Every documented table and the keys the code knows for it.
KNOWN: dict[str, tuple[str, ...]] = {
    "connection": CONNECTION,
    "global": tuple(conf_module.GLOBAL_SETTINGS),
    "options": CACHE_ONLY,
    **NESTED,
    "ignored": tuple(conf_module.IGNORED_OPTIONS),
}
#: Where a setting of each table lives, for the bracketed paths written in prose.
CONTAINERS: dict[str, set[str]] = {
    "REDIS_RESILIENCE": {*CONNECTION, *conf_module.GLOBAL_SETTINGS},
    "OPTIONS": {*CONNECTION, *CACHE_ONLY, *conf_module.IGNORED_OPTIONS},
    **{name: set(keys) for name, keys in NESTED.items()},
}
#: Internal sentinels the docs describe in words instead of a literal.
DESCRIBED = {_state.PRIVATE: "in-process", "pickle.DEFAULT_PROTOCOL": "pickle.DEFAULT_PROTOCOL"}


def _rows(table: str) -> dict[str, list[str]]:
    rows = {first_name(row[0]): row for row in TABLES[table]}
    assert len(rows) == len(TABLES[table]), f"a setting is documented twice in {table}"
    return rows


# --- the code's defaults ---------------------------------------------------------------------


def _dataclass_defaults(cls: type, names: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of a config dataclass, by setting name (``names``: setting -> field)."""
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    return {key: fields[field] for key, field in names.items()}


def _rendered(node: ast.expr, module: Any) -> Any:
    """A default written in the source: a literal, a module constant, or an f-string
    (``f"rule{index}"`` is documented as ``"rule<index>"``)."""
    if isinstance(node, ast.Name):
        return getattr(module, node.id)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            str(v.value) if isinstance(v, ast.Constant) else f"<{ast.unparse(v.value)}>"
            for v in node.values
            if isinstance(v, ast.Constant | ast.FormattedValue)
        )
    return ast.literal_eval(node)


def _get_calls(files: list[str], keys: tuple[str, ...]) -> dict[str, list[Any]]:
    """Every default the source gives ``keys`` in ``.get("KEY"[, default])`` calls;
    ``.get("KEY") or {}`` counts as ``{}``."""
    found: dict[str, list[Any]] = {}
    for name in files:
        path = PACKAGE / name
        module = importlib.import_module(
            "django_redis_resilience." + name.removesuffix(".py").replace("/", ".")
        )
        tree = ast.parse(path.read_text(encoding="utf-8"))
        replaced: dict[int, ast.expr] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
                replaced[id(node.values[0])] = node.values[1]
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value in keys
            ):
                continue
            key = node.args[0].value
            if len(node.args) > 1:
                default = _rendered(node.args[1], module)
            elif id(node) in replaced:
                default = _rendered(replaced[id(node)], module)
            else:
                default = None
            found.setdefault(key, []).append(default)
    return found


def _one(found: dict[str, list[Any]], key: str) -> Any:
    values = found.get(key)
    assert values, f"no default for {key} found in the source"
    distinct = [v for i, v in enumerate(values) if v not in values[:i]]
    assert len(distinct) == 1 or all(v in (None, {}) for v in distinct), (
        f"the code reads {key} with different defaults: {distinct}"
    )
    return distinct[0]


REQUIRED = object()


def code_defaults(table: str) -> dict[str, Any]:
    """What the code uses when the setting is not given."""
    if table == "connection":
        with override_settings(REDIS_RESILIENCE={}):
            return {key: getattr(conf, key) for key in CONNECTION}
    if table == "global":
        with override_settings(REDIS_RESILIENCE={}):
            return {key: getattr(conf, key) for key in conf_module.GLOBAL_SETTINGS}
    if table in ("BREAKER", "RETRY", "CLUSTER"):
        cls = {"BREAKER": BreakerConfig, "RETRY": RetryPolicy, "CLUSTER": ClusterRefreshConfig}
        spec = {"BREAKER": conf_module.BREAKER_KEYS, "RETRY": conf_module.RETRY_KEYS,
                "CLUSTER": conf_module.CLUSTER_KEYS}[table]  # fmt: skip
        return _dataclass_defaults(cls[table], {k: v[0] for k, v in spec.items()})
    if table == "HEALTH":
        return dict(conf_module.HEALTH_DEFAULTS)
    if table == "STAMPEDE":
        return _dataclass_defaults(StampedeConfig, {k: k.lower() for k in NESTED["STAMPEDE"]})
    if table == "RATELIMIT":
        files = [f"ratelimiting/{p.name}" for p in sorted((PACKAGE / "ratelimiting").glob("*.py"))]
        found = _get_calls(files, NESTED["RATELIMIT"])
        return {key: _one(found, key) for key in NESTED["RATELIMIT"]}
    if table == "RULES":
        found = _get_calls(["ratelimiting/_middleware.py"], NESTED["RULES"])
        return {key: _one(found, key) if key in found else REQUIRED for key in NESTED["RULES"]}
    if table == "options":
        found = _get_calls(["cache/_backend.py", "conf.py"], CACHE_ONLY)
        # Read by django-redis's PickleSerializer, which the backend builds with the OPTIONS.
        found.setdefault("PICKLE_VERSION", ["pickle.DEFAULT_PROTOCOL"])
        return {key: _one(found, key) for key in CACHE_ONLY}
    raise AssertionError(table)


def _documented(cell: str) -> Any:
    names = spans(cell)
    if cell.strip() == "required":
        return REQUIRED
    if not names:
        return cell
    return ast.literal_eval(names[0])


def _matches(table: str, key: str, code: Any, cell: str) -> bool:
    if isinstance(code, str) and code in DESCRIBED:
        return DESCRIBED[code] in cell
    shown = _documented(cell)
    if shown == {}:
        sub = {"HEALTH": conf_module.HEALTH_DEFAULTS}.get(key)
        return code in (None, {}) or (sub is not None and code == sub)
    return bool(type(shown) is type(code) or {type(shown), type(code)} <= {int, float}) and (
        shown == code
    )


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(KNOWN))
def test_each_table_documents_exactly_the_settings_the_code_knows(table: str) -> None:
    documented = set(_rows(table))
    known = set(KNOWN[table])
    assert not known - documented, f"undocumented in {table}: {sorted(known - documented)}"
    assert not documented - known, f"unknown to the code, in {table}: {documented - known}"


def _default_cases() -> Iterator[tuple[str, str]]:
    for table in sorted(KNOWN):
        if table != "ignored":
            for key in KNOWN[table]:
                yield table, key


@pytest.mark.parametrize(("table", "key"), list(_default_cases()))
def test_the_documented_default_is_the_codes(table: str, key: str) -> None:
    code = code_defaults(table)[key]
    cell = _rows(table)[key][2]
    if code is REQUIRED:
        assert cell == "required", f"{table} {key}: the code requires it"
        rule = {"PATH": r"^/", "KEY": "ip", "RATE": "1/s"}
        del rule[key]
        with pytest.raises(InvalidRateLimit, match=key):
            load_rules({"RULES": [rule]})
        return
    assert _matches(table, key, code, cell), f"{table} {key}: documented {cell!r}, code {code!r}"


def test_ignored_options_have_no_default() -> None:
    assert {row[2] for row in _rows("ignored").values()} == {"—"}


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
    elif table == "STAMPEDE":
        found |= _ids(STAMPEDE={key: BAD})
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
    source = (PACKAGE / "conf.py").read_text(encoding="utf-8")
    emitted = set(re.findall(r'PREFIX \+ "([EW]\d{3})"', source))
    emitted |= set(re.findall(r'E="([EW]\d{3})"', source))
    section = TEXT.split("## System checks", 1)[1]
    documented = set(re.findall(r"`django_redis_resilience\.([EW]\d{3})`", section))
    assert documented == emitted
