"""Every ```python block in docs/*.md and README.md runs, against real Redis from the harness.

Each block runs in a fresh module, with Django configured by the suite's
settings and ``CACHES["default"]`` a ``ResilientRedisCache`` on the session's
server (with a key prefix of its own). Conventions, so that blocks read as a
user would write them:

- Addresses: ``127.0.0.1:6379`` is the session's standalone server. A block
  marked ``needs: replicas`` (or ``sentinel``, ``cluster``, ``servers``) gets
  ``10.0.0.1``, ``10.0.0.2``, ... replaced by the nodes of a primary and its
  replica (port 6379), of a Sentinel group (26379), of a cluster (7000), or
  of three independent servers (6379); ``needs: tls`` replaces
  ``localhost:6380`` and ``/etc/redis/tls/ca.pem`` by a TLS server and its CA.
  No block may reach another address.
- A function whose body is ``...`` is a placeholder: it records its name in
  ``example_calls`` and returns ``HttpResponse("ok")`` when its first argument
  is a request, else ``None``.
- A block that defines settings (``CACHES``, ``REDIS_RESILIENCE``,
  ``MIDDLEWARE``, ``SESSION_ENGINE``; ``urlpatterns`` becomes ``ROOT_URLCONF``)
  is a settings fragment: they are applied with ``override_settings`` (``...``
  in ``MIDDLEWARE`` standing for the suite's middleware, every ``KEY_PREFIX``
  made unique), must pass the system checks without errors, and every resilient
  cache in them must store and read back a value. ``INSTALLED_APPS`` must name
  the app.
- A block of dict entries (``"LOCATION": ...,``) is a fragment of a cache
  configuration: each ``LOCATION`` (with the ``OPTIONS`` after it) must pass
  the system checks.
- Views (functions whose first argument is ``request``) are called once with a
  GET from ``RequestFactory`` and must not answer 5xx, unless an ``after`` line
  calls them itself.
- An HTML comment ``<!-- example`` before a block may add ``setup:`` lines (run
  first, in the same module), ``after:`` lines (run last: the checks) and
  ``needs:``. README.md cannot carry such comments; its blocks get them from
  :data:`README_DIRECTIVES` below.

The helpers the directives use are in :func:`_helpers`.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import linecache
import re
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import caches
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.test import Client, RequestFactory, override_settings

from django_redis_resilience import views
from django_redis_resilience.conf import BACKEND, conf
from django_redis_resilience.locks import Lock
from django_redis_resilience.ratelimiting import RateLimitMiddleware
from tests.docs._markdown import DOCS, ROOT, Block, python_blocks


@dataclass(frozen=True)
class Directive:
    setup: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()


#: README.md blocks, found by a line only they contain.
README_DIRECTIVES: dict[str, Directive] = {
    "def charge(invoice_id, amount): ...": Directive(
        after=(
            "assert charge(7, 100) is None and example_calls == ['charge']",
            "assert asyncio.run(refresh()) is None",
        ),
    ),
    '"VIEW": "myapp.views.too_many_requests"': Directive(
        after=(
            "assert call_middleware('/api/orders/')['RateLimit-Policy'] == '\"api\";q=100;w=60'",
            "login = call_middleware('/login', method='post', data={'username': 'ann'})",
            "assert login['RateLimit'].startswith('\"rule1\";r=4')",
        ),
    ),
    "def save_report(report_id, body):": Directive(
        needs=("db",),
        setup=(
            "from myapp.models import Report",
            "create_tables(Report); Report.objects.create(pk=1, body='')",
            "build = str.upper; StaleWriter = type('StaleWriter', (Exception,), {})",
        ),
        after=(
            "save_report(1, 'first'); first = Report.objects.get(pk=1).fence",
            "save_report(1, 'second'); row = Report.objects.get(pk=1)",
            "assert row.body == 'SECOND' and row.fence > first",
        ),
    ),
    "def sync_customer(self, customer_id): ...": Directive(
        # The block relies on the import of the section's first example.
        setup=("app = celery_stand_in()", "from django_redis_resilience import lock"),
        after=(
            "assert sync_customer(None, 42) is None and example_calls == ['sync_customer']",
            "release_it = hold_lock('sync-customer:42')",
            "assert sync_customer(None, 42) is None and example_calls == ['sync_customer']",
            "release_it()",
        ),
    ),
}

#: Settings a block may define that are applied for its checks.
APPLIED = ("CACHES", "REDIS_RESILIENCE", "MIDDLEWARE", "SESSION_ENGINE")
_FOREIGN = re.compile(r"10\.0\.0\.\d|:6379\b|:26379\b|:7000\b|localhost:6380")


def _blocks() -> list[Block]:
    found = [b for page in sorted(DOCS.glob("*.md")) for b in python_blocks(page)]
    readme = python_blocks(ROOT / "README.md")
    for marker, directive in README_DIRECTIVES.items():
        matching = [b for b in readme if marker in b.code]
        assert len(matching) == 1, f"README directive {marker!r} matches {len(matching)} blocks"
        matching[0].setup += directive.setup
        matching[0].after += directive.after
        matching[0].needs.update(directive.needs)
    return found + readme


BLOCKS = _blocks()


# --- addresses ----------------------------------------------------------------------------


def _addresses(block: Block, request: pytest.FixtureRequest) -> dict[str, str]:
    """Documentation address -> test address, for this block's needs."""
    server = request.getfixturevalue("drr_redis_server")
    found = {"127.0.0.1:6379": f"127.0.0.1:{server.port}"}
    nodes: list[tuple[str, int]] = []
    port = 6379
    if "replicas" in block.needs:
        group = request.getfixturevalue("drr_replica_group")
        nodes = [(s.host, s.port) for s in [group.primary, *group.replicas]]
    elif "sentinel" in block.needs:
        nodes = request.getfixturevalue("drr_sentinel_group").sentinel_addresses
        port = 26379
    elif "cluster" in block.needs:
        nodes = request.getfixturevalue("drr_cluster").seeds
        port = 7000
    elif "servers" in block.needs:
        factory = request.getfixturevalue("drr_redis_factory")
        nodes = [(s.host, s.port) for s in (factory(), factory(), factory())]
    for number, (host, node_port) in enumerate(nodes, start=1):
        found[f"10.0.0.{number}:{port}"] = f"{host}:{node_port}"
        found[f'("10.0.0.{number}", {port})'] = f'("{host}", {node_port})'
    if "tls" in block.needs:
        tls = request.getfixturevalue("drr_tls_server")
        found["localhost:6380"] = f"localhost:{tls.port}"
        found["/etc/redis/tls/ca.pem"] = str(tls.tls.ca_file)
    return found


def _localised(code: str, addresses: dict[str, str]) -> str:
    for documented, real in sorted(addresses.items(), key=lambda item: -len(item[0])):
        code = code.replace(documented, real)
    leftover = _FOREIGN.search(code)
    assert leftover is None, f"the example reaches {leftover.group()} (add a needs: line?)"
    return code


# --- placeholders and helpers -----------------------------------------------------------------


class _Placeholders(ast.NodeTransformer):
    """``def view(request): ...`` records its call and returns a response (or ``None``)."""

    def _stub(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> Any:
        body = node.body
        if (
            len(body) == 1
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and body[0].value.value is Ellipsis
        ):
            args = node.args.posonlyargs + node.args.args
            first = ast.Name(args[0].arg, ast.Load()) if args else ast.Constant(None)
            call = ast.Call(ast.Name("__example_stub__", ast.Load()), [ast.Constant(node.name),
                            first], [])  # fmt: skip
            node.body = [ast.copy_location(ast.Return(call), body[0])]
        self.generic_visit(node)
        return node

    visit_FunctionDef = _stub
    visit_AsyncFunctionDef = _stub


def _request(method: str = "get", path: str = "/", data: Any = None, **extra: Any) -> HttpRequest:
    request: HttpRequest = getattr(RequestFactory(), method)(path, data or {}, **extra)
    request.user = AnonymousUser()
    return request


def call_view(view: Callable[..., Any], method: str = "get", path: str = "/", data: Any = None,
              **extra: Any) -> Any:  # fmt: skip
    """Call a view once, as Django would, with an anonymous user."""
    request = _request(method, path, data, **extra)
    if inspect.iscoroutinefunction(view):
        return async_to_sync(view)(request)
    return view(request)


def call_middleware(path: str, method: str = "get", data: Any = None) -> HttpResponseBase:
    """One request through ``RateLimitMiddleware`` (built from the current settings)."""
    middleware = RateLimitMiddleware(lambda request: HttpResponse("ok"))
    response: HttpResponseBase = middleware(_request(method, path, data))
    return response


def hold_lock(name: str) -> Callable[[], None]:
    """Hold ``lock(name)`` from another thread (as another process would); returns its release."""
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(Lock(name, timeout=30).acquire, 0).result()
    assert held is not None

    def release() -> None:
        held.release()

    return release


class _CeleryStandIn:
    """Celery is not a dependency: ``app.task(...)`` only passes the function through, so
    the example checks the lock beneath it."""

    def task(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        return lambda fn: fn


def _helpers(calls: list[str], tables: list[Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    def stub(name: str, first: Any) -> Any:
        calls.append(name)
        return HttpResponse("ok") if isinstance(first, HttpRequest) else None

    def create_tables(*models: Any) -> None:
        with connection.schema_editor() as editor:
            for model in models:
                editor.create_model(model)
                tables.append(model)

    def drf_request() -> Any:
        from rest_framework.request import Request

        return Request(_request())

    helpers: dict[str, Any] = {
        "__example_stub__": stub,
        "example_calls": calls,
        "asyncio": asyncio,
        "json": json,
        "caches": caches,
        "client": Client(),
        "call_view": call_view,
        "call_middleware": call_middleware,
        "hold_lock": hold_lock,
        "celery_stand_in": _CeleryStandIn,
        "create_tables": create_tables,
        "drf_request": drf_request,
        "drr_redis_server": request.getfixturevalue("drr_redis_server"),
    }
    return helpers


# --- running a block ------------------------------------------------------------------------------


def _unique_prefixes(caches_setting: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for alias, cfg in caches_setting.items():
        cfg = dict(cfg)
        if cfg.get("BACKEND") == BACKEND:
            cfg["KEY_PREFIX"] = f"{cfg.get('KEY_PREFIX', 'doc')}-{uuid.uuid4().hex[:8]}"
        out[alias] = cfg
    return out


def _settings_of(namespace: dict[str, Any], module: str) -> dict[str, Any]:
    chosen = {name: namespace[name] for name in APPLIED if name in namespace}
    if "CACHES" in chosen:
        chosen["CACHES"] = _unique_prefixes(chosen["CACHES"])
    if "MIDDLEWARE" in chosen:
        expanded: list[str] = []
        for entry in chosen["MIDDLEWARE"]:
            expanded += list(settings.MIDDLEWARE) if entry is Ellipsis else [entry]
        chosen["MIDDLEWARE"] = expanded
    if "urlpatterns" in namespace:
        chosen["ROOT_URLCONF"] = module
    return chosen


def _check_settings(namespace: dict[str, Any]) -> None:
    """The applied settings pass the system checks, and their caches work."""
    errors = [p.text for p in conf.problems() if p.level == "error"]
    assert not errors, errors
    if "INSTALLED_APPS" in namespace:
        assert "django_redis_resilience" in namespace["INSTALLED_APPS"]
    if "CACHES" in namespace:
        for alias in conf.resilient_aliases():
            cache = caches[alias]
            key, value = f"docs-{uuid.uuid4().hex}", {"checked": alias}
            assert cache.set(key, value, timeout=30) is True
            assert cache.get(key) == value
            cache.delete(key)


def _views(namespace: dict[str, Any], module: str, after: str) -> list[Callable[..., Any]]:
    """Views defined by the block that no ``after`` line calls itself."""
    found = []
    for name, value in namespace.items():
        if not inspect.isfunction(value) or value.__module__ != module or name in after:
            continue
        if name.startswith("test_"):
            continue
        parameters = list(inspect.signature(value).parameters)
        if parameters and parameters[0] == "request":
            found.append(value)
    return found


def _compiled(source: str, filename: str, tree: ast.Module | None = None) -> types.CodeType:
    """Compiled with its source registered, so that a traceback shows the failing line."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(tree if tree is not None else source, filename, "exec")


def _run_fragment(block: Block, code: str) -> None:
    """Each ``LOCATION`` of a fragment, with the ``OPTIONS`` after it, passes the checks."""
    tree = ast.parse("{\n" + code + "\n}", mode="eval")
    assert isinstance(tree.body, ast.Dict)
    variants: list[dict[str, Any]] = []
    for key, value in zip(tree.body.keys, tree.body.values, strict=True):
        name = ast.literal_eval(key) if key is not None else None
        if name == "LOCATION":
            variants.append({"BACKEND": BACKEND, "LOCATION": ast.literal_eval(value)})
        elif name == "OPTIONS":
            assert variants, "OPTIONS before any LOCATION"
            variants[-1]["OPTIONS"] = ast.literal_eval(value)
    assert variants, f"{block.id}: a fragment without a LOCATION"
    for variant in variants:
        with override_settings(CACHES={"default": variant}):
            errors = [p.text for p in conf.problems() if p.level == "error"]
            assert not errors, errors
            conf.topology("default")  # parses


def _run(block: Block, request: pytest.FixtureRequest) -> None:
    if block.is_fragment():  # settings only: nothing connects, addresses stay as written
        _run_fragment(block, block.code)
        return
    addresses = _addresses(block, request)
    code = _localised(block.code, addresses)
    name = f"docs_example_{uuid.uuid4().hex[:12]}"
    module = types.ModuleType(name)
    calls: list[str] = []
    tables: list[Any] = []
    namespace = module.__dict__
    namespace.update(_helpers(calls, tables, request))
    if "factory" in block.needs:
        namespace["drr_redis_factory"] = request.getfixturevalue("drr_redis_factory")
    tree = ast.fix_missing_locations(_Placeholders().visit(ast.parse(code, filename=block.id)))
    compiled = _compiled(code, block.id, tree)
    server = namespace["drr_redis_server"]
    default = {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": server.url,
            "KEY_PREFIX": f"doc-{uuid.uuid4().hex[:8]}",
        }
    }
    sys.modules[name] = module
    views.forget_cached_report()
    try:
        with ExitStack() as stack:
            stack.enter_context(override_settings(CACHES=default, REDIS_RESILIENCE={}))
            for number, line in enumerate(block.setup):
                source = _localised(line, addresses)
                exec(_compiled(source, f"{block.id} setup {number}"), namespace)
            exec(compiled, namespace)
            applied = _settings_of(namespace, name)
            if applied:
                stack.enter_context(override_settings(**applied))
                views.forget_cached_report()
                _check_settings(namespace)
            after = "\n".join(block.after)
            for view in _views(namespace, name, after):
                response = call_view(view)
                assert isinstance(response, HttpResponseBase), f"{view.__name__} is not a view"
                assert response.status_code < 500, f"{view.__name__}: {response.status_code}"
            for number, line in enumerate(block.after):
                source = _localised(line, addresses)
                exec(_compiled(source, f"{block.id} after {number}"), namespace)
    finally:
        views.forget_cached_report()
        sys.modules.pop(name, None)
        namespace.clear()
        if tables:
            with connection.schema_editor() as editor:
                for model in reversed(tables):
                    editor.delete_model(model)


def _params() -> Iterator[Any]:
    for block in BLOCKS:
        marks = [pytest.mark.django_db(transaction=True)] if "db" in block.needs else []
        yield pytest.param(block, id=block.id, marks=marks)


@pytest.mark.parametrize("block", list(_params()))
def test_example_runs(block: Block, request: pytest.FixtureRequest) -> None:
    _run(block, request)


def test_every_page_with_code_has_its_examples_collected() -> None:
    """A ```python fence the reader sees is one the test runs (no other spelling of it)."""
    for page in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]:
        text = page.read_text(encoding="utf-8")
        fences = re.findall(r"^```(py|python3|Python)\s*$", text, re.M)
        assert not fences, f"{page.name}: use ```python so that the example is run"
        assert len(re.findall(r"^```python\s*$", text, re.M)) == len(python_blocks(page))
