"""docs/migrating.md against the installed libraries and this app.

Each table's first column must name exactly what the other library reads or
offers, found in its source (django-redis's options and settings, Django's
``RedisCacheClient`` arguments, django-ratelimit's decorator and settings,
python-redis-lock's ``Lock``), and the "at startup" column must be what this
app's system checks say about the option.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import django_ratelimit
import django_ratelimit.decorators
import django_redis
import pytest
import redis_lock
import redis_lock.django_cache
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCacheClient
from django.test import override_settings

from django_redis_resilience import ratelimit
from django_redis_resilience.conf import BACKEND, conf
from django_redis_resilience.testing import RedisServer
from tests.docs._markdown import doc, marked_tables, spans

TABLES = marked_tables(doc("migrating.md"), "migrating")
_UPPER = re.compile(r"^[A-Z][A-Z0-9_]+$")


_ASIDE = re.compile(r"\s\([^()`]*`[^`]*`[^()]*\)")


def _names(table: str) -> set[str]:
    """The identifiers a table's first column names (``acquire(...)`` is ``acquire``); an
    aside in parentheses (`` (`redis_lock.django_cache.RedisCache`)``) names none."""
    found: set[str] = set()
    for row in TABLES[table]:
        if row[0].startswith("any other"):
            continue
        for span in spans(_ASIDE.sub("", row[0])):
            match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", span)
            if match:
                found.add(match.group())
    return found


def _package_files(module: Any) -> list[Path]:
    return [p for p in Path(module.__file__).parent.rglob("*.py") if p.name != "tests.py"]


def _django_redis_names() -> tuple[set[str], set[str]]:
    """(options read from ``OPTIONS``, names read from ``CACHES`` entries or settings)."""
    options: set[str] = set()
    elsewhere: set[str] = set()
    for path in _package_files(django_redis):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = _constant_of(node)
            if text is None or not _UPPER.match(text) or text == "OPTIONS":
                continue
            receiver = _receiver(node)
            if receiver == "settings" or receiver == "params":
                elsewhere.add(text)
            else:
                options.add(text)
    return options, elsewhere


def _constant_of(node: ast.AST) -> str | None:
    """``X`` of ``o.get("X"...)``, ``"X" in o``, ``o["X"]``, ``getattr(settings, "X"...)``,
    ``settings.X``."""
    if isinstance(node, ast.Call):
        func, args = node.func, node.args
        if isinstance(func, ast.Attribute) and func.attr == "get" and args:
            first = args[0]
            return str(first.value) if isinstance(first, ast.Constant) else None
        if isinstance(func, ast.Name) and func.id == "getattr" and len(args) >= 2:
            second = args[1]
            return str(second.value) if isinstance(second, ast.Constant) else None
        return None
    if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In):
        left = node.left
        return (
            left.value if isinstance(left, ast.Constant) and isinstance(left.value, str) else None
        )
    if isinstance(node, ast.Attribute) and ast.unparse(node.value) == "settings":
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        value = node.slice.value
        return value if isinstance(value, str) else None
    return None


def _receiver(node: ast.AST) -> str:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return ast.unparse(node.func.value).rpartition(".")[2]
    if isinstance(node, ast.Call):  # getattr(settings, ...)
        return ast.unparse(node.args[0])
    if isinstance(node, ast.Attribute):  # settings.NAME
        return ast.unparse(node.value)
    return ""


DJANGO_REDIS_OPTIONS, DJANGO_REDIS_ELSEWHERE = _django_redis_names()


# --- django-redis ---------------------------------------------------------------------------


def test_the_scan_of_django_redis_finds_its_options() -> None:
    assert {"CLIENT_CLASS", "SERIALIZER", "SENTINELS"} <= DJANGO_REDIS_OPTIONS
    assert "DJANGO_REDIS_IGNORE_EXCEPTIONS" in DJANGO_REDIS_ELSEWHERE


def test_the_django_redis_option_table_names_every_option_it_reads() -> None:
    assert _names("django-redis-options") == DJANGO_REDIS_OPTIONS


def test_the_django_redis_settings_table_names_every_other_setting_it_reads() -> None:
    assert _names("django-redis-settings") == DJANGO_REDIS_ELSEWHERE


#: Valid values for the options this app accepts (any value does for the others).
SAMPLES: dict[str, Any] = {
    "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
    "COMPRESSOR": "django_redis.compressors.identity.IdentityCompressor",
    "IGNORE_EXCEPTIONS": True,
    "PASSWORD": "secret",
    "USERNAME": "app",
    "SOCKET_TIMEOUT": 0.5,
    "SOCKET_CONNECT_TIMEOUT": 0.5,
    "CONNECTION_POOL_KWARGS": {},
    "SENTINELS": [("127.0.0.1", 26379)],
    "SENTINEL_KWARGS": {},
    "PICKLE_VERSION": 4,
    "serializer": "django.core.cache.backends.redis.RedisSerializer",
}


def _at_startup(name: str, value: Any) -> str:
    location = "redis://mymaster/0" if name == "SENTINELS" else "redis://127.0.0.1:1/0"
    cache = {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": {name: value}}
    with override_settings(CACHES={"default": cache}):
        ids = sorted({p.id.rpartition(".")[2] for p in conf.problems()})
    return ", ".join(ids) or "accepted"


@pytest.mark.parametrize("table", ["django-redis-options", "django-rediscache-options"])
def test_the_at_startup_column_is_what_the_checks_say(table: str) -> None:
    for row in TABLES[table]:
        names = [n for n in spans(row[0]) if re.fullmatch(r"[A-Za-z_]+", n)]
        if row[0].startswith("any other"):
            names = ["db", "client_name"]
        for name in names:
            assert _at_startup(name, SAMPLES.get(name, "anything")) == row[-1], name


# --- Django's RedisCache ------------------------------------------------------------------------


def test_the_redis_cache_table_names_every_argument_of_djangos_client() -> None:
    parameters = inspect.signature(RedisCacheClient.__init__).parameters
    named = {
        n for n, p in parameters.items() if n not in ("self", "servers") and p.kind != p.VAR_KEYWORD
    }
    assert _names("django-rediscache-options") == named
    assert any(row[0].startswith("any other") for row in TABLES["django-rediscache-options"])


# --- django-ratelimit --------------------------------------------------------------------------


def test_the_ratelimit_argument_table_names_every_decorator_argument() -> None:
    expected = set(inspect.signature(django_ratelimit.decorators.ratelimit).parameters)
    assert _names("django-ratelimit-arguments") == expected
    ours = set(inspect.signature(ratelimit).parameters)
    for row in TABLES["django-ratelimit-arguments"]:
        for span in spans(row[1]):
            if span.endswith("="):
                assert span[:-1] in ours, f"ratelimit() has no {span}"


def test_the_ratelimit_settings_table_names_every_setting_it_reads() -> None:
    read: set[str] = set()
    for path in _package_files(django_ratelimit):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = _constant_of(node)
            if text and text.startswith("RATELIMIT_") and _receiver(node) == "settings":
                read.add(text)
    assert "RATELIMIT_USE_CACHE" in read  # the scan works
    assert _names("django-ratelimit-settings") == read


# --- python-redis-lock ----------------------------------------------------------------------------


def test_the_redis_lock_tables_name_its_arguments_methods_and_errors() -> None:
    arguments = set(inspect.signature(redis_lock.Lock.__init__).parameters) - {"self"}
    assert _names("python-redis-lock-arguments") == arguments
    methods = {
        n
        for n, v in vars(redis_lock.Lock).items()
        if not n.startswith("_") and (callable(v) or isinstance(v, property | classmethod))
    }
    functions = {
        n
        for n, v in vars(redis_lock).items()
        if inspect.isfunction(v) and v.__module__ == "redis_lock" and not n.startswith("_")
    }
    errors = {
        n
        for n, v in vars(redis_lock).items()
        if inspect.isclass(v) and issubclass(v, Exception) and v.__module__ == "redis_lock"
    }
    django_cache = {n for n in vars(redis_lock.django_cache.RedisCache) if not n.startswith("_")}
    assert _names("python-redis-lock-methods") == methods | functions | errors | django_cache


# --- what the guide promises, with real Redis -----------------------------------------------


@pytest.mark.parametrize("name", sorted(DJANGO_REDIS_OPTIONS))
def test_a_django_redis_option_does_not_stop_the_process(name: str) -> None:
    """django-redis option names keep working: none of them may make startup fail.

    Fails today for PICKLE_VERSION, REPLICA_READ_ONLY and CONNECTION_FACTORY (E004).
    """
    outcome = _at_startup(name, SAMPLES.get(name, "anything"))
    assert not re.search(r"E\d{3}", outcome), f"{name}: {outcome}"


def test_pickle_version_reaches_the_serializer(drr_redis_server: RedisServer) -> None:
    """django-redis's ``PICKLE_VERSION`` is read by its ``PickleSerializer``, which the backend
    builds with the cache's ``OPTIONS``; it only needs to be let through."""
    cache = {
        "BACKEND": BACKEND,
        "LOCATION": drr_redis_server.url,
        "KEY_PREFIX": "docs-pickle",
        "OPTIONS": {"PICKLE_VERSION": 2},
    }
    with override_settings(CACHES={"default": cache}):
        caches["default"].set("value", {"a": 1})
        with drr_redis_server.client() as raw:
            stored = raw.get("docs-pickle:1:value")
    assert stored is not None
    assert stored[:2] == b"\x80\x02"  # pickle protocol 2


def test_djangos_serializer_option_is_honoured_or_refused_at_startup(
    drr_redis_server: RedisServer,
) -> None:
    """Django's ``RedisCache`` takes ``OPTIONS["serializer"]``. Here it must either work or be
    refused by the system checks, never reach redis-py and break every call at run time."""
    cache = {
        "BACKEND": BACKEND,
        "LOCATION": drr_redis_server.url,
        "KEY_PREFIX": "docs-serializer",
        "OPTIONS": {"serializer": "django.core.cache.backends.redis.RedisSerializer"},
    }
    with override_settings(CACHES={"default": cache}):
        if any(p.level == "error" for p in conf.problems()):
            return  # refused at startup: the documented way out
        caches["default"].set("value", {"a": 1})
        assert caches["default"].get("value") == {"a": 1}
