"""``lock`` on real Redis: exclusion, fencing tokens, fair waiting, the decorator, argument
checks, exactness across processes, round trips and the outage policies."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from redis.crc import key_slot

from django_redis_resilience import Lock, lock, signals
from django_redis_resilience.exceptions import (
    InvalidLock,
    LockAlreadyHeld,
    LockLost,
    LockNotAcquired,
    RedisUnavailable,
)
from django_redis_resilience.locks import Held
from django_redis_resilience.locks._protocol import LOCK, LockKeys, script_args
from django_redis_resilience.testing import RedisServer
from tests import _processes
from tests._polling import wait_for
from tests.cache.conftest import FAST_BREAKER, resilient_caches
from tests.locks import _lock_worker
from tests.locks.conftest import unique

LOCMEM = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}


# --- helpers ------------------------------------------------------------------------------------


def _base(prefix: str, name: str) -> str:
    """The lock's key: ``<KEY_PREFIX>:drr:lock:{<name>}`` (a digest of a name with braces)."""
    return LockKeys.build(prefix, name).lock


def test_a_lock_key_names_the_lock_unless_the_name_has_braces() -> None:
    assert _base("p", "invoice:7") == "p:drr:lock:{invoice:7}"
    tagged = _base("p", "}x")
    assert tagged.startswith("p:drr:lock:{#")
    assert tagged.count("{") == 1
    assert tagged.count("}") == 1
    assert _base("p", "}y") != tagged


def test_a_name_starting_with_a_hash_is_tagged_by_its_digest() -> None:
    """Digest tags start with ``#``: a name that does too is digested, so no plain name can
    spell another name's digest and share its keys."""
    braced = _base("p", "report{2024}")
    digest_text = braced.split("{", 1)[1][:-1]
    assert digest_text.startswith("#")
    assert _base("p", digest_text) != braced
    assert _base("p", "#") != _base("p", "{")
    assert _base("p", "#x").startswith("p:drr:lock:{#")
    assert _base("p", "#x") not in (_base("p", "#y"), "p:drr:lock:{#x}")


@pytest.mark.parametrize("name", ["invoice:7", "a#b", "x#", " #", "é:1", "report"])
def test_other_names_keep_their_keys(name: str) -> None:
    assert _base("p", name) == f"p:drr:lock:{{{name}}}"


@pytest.mark.parametrize("prefix", ["{}", "app{}", "{}{tenant}", "{p}", "x}", "a{b"])
def test_braces_in_a_prefix_never_take_the_tag_s_place(prefix: str) -> None:
    """Escaped as ``key_prefix()`` escapes them, which leaves its own prefixes unchanged."""
    escaped = prefix.replace("{", "%7B").replace("}", "%7D")
    keys = LockKeys.build(prefix, "report")
    assert keys == LockKeys.build(escaped, "report")
    assert keys.lock == f"{escaped}:drr:lock:{{report}}"
    assert len({key_slot(key.encode()) for key in (*keys.all, keys.wake("0"))}) == 1


def _all_keys(prefix: str, name: str) -> list[str]:
    base = _base(prefix, name)
    return [base, f"{base}:fence", f"{base}:queue", f"{base}:waiters"]


def _cmd(server: RedisServer, *args: Any) -> Any:
    with server.client() as client:
        return client.execute_command(*args)


def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a new thread (a caller that holds nothing); its result or its error."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    if "error" in box:
        raise box["error"]
    return box.get("value")


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``predicate`` from a coroutine, letting other tasks run in between."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
def node_of(request: pytest.FixtureRequest, topology: str) -> Callable[[str], RedisServer]:
    """The data node that holds a key on ``topology``'s shared servers."""
    if topology == "standalone":
        server = request.getfixturevalue("drr_redis_server")
        return lambda key: server
    if topology == "sentinel":
        group = request.getfixturevalue("drr_sentinel_group")
        return lambda key: group.primary
    cluster = request.getfixturevalue("drr_cluster")
    return cluster.node_for_key  # type: ignore[no-any-return]


# --- basics on every topology -------------------------------------------------------------------


def test_lock_is_the_lock_class() -> None:
    assert lock is Lock
    assert issubclass(InvalidLock, ValueError)
    assert issubclass(InvalidLock, ImproperlyConfigured)


def test_acquire_release_busy_locked_and_owned(
    shared: str, node_of: Callable[[str], RedisServer]
) -> None:
    name = unique()
    key = _base(shared, name)
    lk = lock(name, timeout=10)
    assert not lk.locked()
    assert not lk.owned()
    with lk as held:
        assert isinstance(held, Held)
        assert held
        assert held.acquired
        assert not held.lost
        assert not held.degraded
        assert isinstance(held.token, int)
        value = _cmd(node_of(key), "GET", key)
        assert value.endswith(f":{held.token}".encode())
        assert lk.locked()
        assert lk.owned()
        # Another thread sees the lock taken, does not own it, and cannot take it.
        assert _in_thread(lk.locked) is True
        assert _in_thread(lk.owned) is False
        assert _in_thread(lock(name).locked) is True

        def busy() -> None:
            with lock(name, wait=0):
                pytest.fail("a held lock was acquired")

        with pytest.raises(LockNotAcquired, match=name):
            _in_thread(busy)
        assert _cmd(node_of(key), "GET", key) == value  # untouched by the attempt
    assert _cmd(node_of(key), "EXISTS", key) == 0
    assert not lk.locked()
    assert not lk.owned()
    assert not held.lost


def test_on_busy_skip_does_not_run_and_gives_a_falsy_handle(
    shared: str, node_of: Callable[[str], RedisServer]
) -> None:
    name = unique()
    queue = _base(shared, name) + ":queue"
    calls: list[str] = []

    @lock(name, wait=0, on_busy="skip")
    def guarded() -> str:
        calls.append("ran")
        return "result"

    def context_manager() -> tuple[bool, Any, bool, bool]:
        with lock(name, wait=0, on_busy="skip") as held:
            return bool(held), held.token, held.acquired, held.degraded

    with lock(name, timeout=10):
        assert _in_thread(guarded) is None
        assert _in_thread(context_manager) == (False, None, False, False)
        assert _in_thread(lambda: lock(name, on_busy="skip").acquire(wait=0)) is None
        # Waiting a while, then giving up: also None, and the queue is left behind clean.
        assert _in_thread(lambda: lock(name, on_busy="skip").acquire(wait=0.2)) is None
        with pytest.raises(LockNotAcquired):
            _in_thread(lambda: lock(name).acquire(wait=0.2))
        assert _cmd(node_of(queue), "ZCARD", queue) == 0
    assert calls == []
    assert guarded() == "result"
    assert calls == ["ran"]


def test_tokens_strictly_increase_across_acquisitions(shared: str) -> None:
    name = unique()
    tokens: list[int] = []

    async def in_a_task() -> int:
        async with lock(name) as held:
            return held.token  # type: ignore[return-value]

    for _ in range(3):
        with lock(name) as held:
            tokens.append(held.token)  # type: ignore[arg-type]
        manual = lock(name)
        got = manual.acquire()
        assert got is not None
        tokens.append(got.token)  # type: ignore[arg-type]
        manual.release()
        tokens.append(asyncio.run(in_a_task()))
    assert len(tokens) == 9
    assert all(a < b for a, b in itertools.pairwise(tokens)), tokens


def test_extend_adds_to_the_lease(shared: str, node_of: Callable[[str], RedisServer]) -> None:
    name = unique()
    key = _base(shared, name)
    lk = lock(name, timeout=20, renew=False)
    held = lk.acquire()
    assert held is not None
    assert 0 < _cmd(node_of(key), "PTTL", key) <= 20_000
    held.extend(30)
    assert 30_000 < _cmd(node_of(key), "PTTL", key) <= 50_000
    lk.extend(40)  # through the Lock: this thread's acquisition
    assert 60_000 < _cmd(node_of(key), "PTTL", key) <= 90_000
    held.extend(5, replace=True)
    assert 0 < _cmd(node_of(key), "PTTL", key) <= 5_000
    assert not held.lost
    lk.release()
    with pytest.raises(LockLost):
        held.extend(1)
    assert _cmd(node_of(key), "EXISTS", key) == 0


def test_a_caller_that_holds_nothing_cannot_release(
    shared: str, node_of: Callable[[str], RedisServer]
) -> None:
    name = unique()
    base = _base(shared, name)
    lk = lock(name, timeout=10)
    held = lk.acquire()
    assert held is not None
    value = _cmd(node_of(base), "GET", base)
    # Another thread, same Lock object: it holds nothing, so nothing is released.
    with pytest.raises(LockLost):
        _in_thread(lk.release)
    with pytest.raises(LockLost):
        _in_thread(lock(name).release)
    assert _cmd(node_of(base), "GET", base) == value
    # Forged script calls: the right fence with another owner, and a wrong fence.
    owner = value.decode().rpartition(":")[0]
    forged = [f"{uuid.uuid4().hex[:24]}:{held.token}", f"{owner}:{held.token + 1}"]
    with node_of(base).client() as client:
        for token in forged:
            assert LOCK(client, _all_keys(shared, name), script_args("release", token)) == [0]
            extend = script_args("extend", token, 1, "set")
            assert LOCK(client, _all_keys(shared, name), extend) == 0
    assert _cmd(node_of(base), "GET", base) == value
    assert _cmd(node_of(base), "PTTL", base) > 1_000
    assert held.release() is True
    assert _cmd(node_of(base), "EXISTS", base) == 0


def test_taking_a_lock_already_held_here_fails_at_once(shared: str) -> None:
    name = unique()
    lk = lock(name, timeout=10, wait=5)
    with lk:
        with pytest.raises(LockAlreadyHeld), lk:
            pytest.fail("entered a lock this thread holds")
        with pytest.raises(LockAlreadyHeld):
            lock(name, wait=None).acquire()
        with pytest.raises(LockAlreadyHeld):
            lock(name)(lambda: None)()
        assert lk.owned()
    held = lk.acquire()  # free again
    assert held is not None
    with pytest.raises(LockAlreadyHeld):
        lk.acquire(wait=5)
    lk.release()

    async def in_a_task() -> None:
        async with lk:
            with pytest.raises(LockAlreadyHeld):
                async with lock(name, wait=None):
                    pytest.fail("entered a lock this task holds")
            with pytest.raises(LockAlreadyHeld):
                await lk.aacquire()
            assert await lk.aowned()

    asyncio.run(in_a_task())
    assert not lk.locked()


def test_keys_are_reserved_unversioned_and_survive_cache_clear(
    shared: str, node_of: Callable[[str], RedisServer]
) -> None:
    name = unique()
    base = _base(shared, name)
    default = settings.CACHES["default"]
    both = {
        "default": {**default, "VERSION": 1},
        "v2": {**default, "VERSION": 2},
    }
    cached = f"{shared}:1:{name}"  # the cache's own keys carry the version
    with override_settings(CACHES=both):
        with lock(name, timeout=10) as held:
            caches["default"].set(name, "value")
            assert _cmd(node_of(cached), "EXISTS", cached) == 1
            with node_of(base).client() as client:
                found = sorted(k.decode() for k in client.scan_iter(match=f"{shared}:*:{{*"))
            assert found == [base, f"{base}:fence"]

            def other_version() -> None:
                with lock(name, cache="v2", wait=0):
                    pytest.fail("a version bump split the lock")

            with pytest.raises(LockNotAcquired):
                _in_thread(other_version)
            caches["default"].clear()
            caches["v2"].clear()
            assert _cmd(node_of(cached), "EXISTS", cached) == 0
            assert _cmd(node_of(base), "GET", base).endswith(f":{held.token}".encode())
        assert not held.lost
        with lock(name, cache="v2", wait=0) as again:
            assert again.token > held.token  # type: ignore[operator]


@pytest.mark.parametrize("name", ["plain", "a:b", "a{b", "a}b", "{x}", "ünï"])
def test_on_a_cluster_every_key_of_a_lock_is_in_one_slot(drr_cluster: Any, name: str) -> None:
    prefix = unique("lk")
    base = _base(prefix, name)
    with override_settings(CACHES=resilient_caches(drr_cluster.location, KEY_PREFIX=prefix)):
        with lock(lambda: name, timeout=10):

            def wait_then_release() -> None:
                with lock(lambda: name, wait=10):
                    pass

            waiter = threading.Thread(target=wait_then_release)
            waiter.start()
            node = drr_cluster.node_for_key(base)
            assert wait_for(lambda: _cmd(node, "EXISTS", f"{base}:queue") == 1)
            seen: list[tuple[str, int]] = []
            for server in drr_cluster.nodes:
                with server.client() as client:
                    seen += [(k.decode(), server.port) for k in client.scan_iter(f"{prefix}:*")]
        waiter.join(15)
    assert not waiter.is_alive()
    assert sorted(k for k, _ in seen) == sorted(_all_keys(prefix, name))
    assert {port for _, port in seen} == {node.port}
    documented = [*_all_keys(prefix, name), f"{base}:wake:0123abcd"]
    assert len({key_slot(k.encode()) for k in documented}) == 1


def test_on_a_cluster_a_name_starting_with_a_closing_brace_still_works(drr_cluster: Any) -> None:
    """With a name that starts with ``}`` the key's hash tag ``{<name>}`` is the empty ``{}``,
    so Redis hashes each whole key and the lock's keys land in different slots."""
    prefix = unique("lk")
    name = "}x"
    assert len({key_slot(k.encode()) for k in _all_keys(prefix, name)}) == 1
    with override_settings(CACHES=resilient_caches(drr_cluster.location, KEY_PREFIX=prefix)):
        with lock(lambda: name, timeout=10) as held:
            assert held.token
        assert not lock(lambda: name).locked()


# --- the decorator ------------------------------------------------------------------------------


def _held_names(server: RedisServer, prefix: str) -> list[str]:
    """The names of the locks held now under ``prefix``."""
    start = f"{prefix}:drr:lock:{{"
    with server.client() as client:
        keys = [k.decode() for k in client.scan_iter(match=f"{prefix}:drr:lock:*")]
    return sorted(k[len(start) : -1] for k in keys if not k.endswith((":fence", ":queue")))


def test_decorator_fills_the_template_from_bound_arguments(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    seen: list[list[str]] = []

    def charge(invoice_id: int, amount: int, currency: str = "EUR") -> int:
        """Charge an invoice."""
        seen.append(_held_names(drr_redis_server, standalone))
        return amount * 2

    decorated = lock("invoice:{invoice_id}:{currency}", timeout=5)(charge)
    assert decorated(42, 10) == 20
    assert decorated(invoice_id=7, amount=1, currency="USD") == 2
    assert decorated(8, currency="GBP", amount=3) == 6
    assert seen == [["invoice:42:EUR"], ["invoice:7:USD"], ["invoice:8:GBP"]]
    assert decorated.__name__ == "charge"
    assert decorated.__doc__ == "Charge an invoice."
    assert decorated.__wrapped__ is charge  # type: ignore[attr-defined]
    assert inspect.signature(decorated) == inspect.signature(charge)
    assert _held_names(drr_redis_server, standalone) == []

    @lock("user:{user.pk}:{user.profile.kind}")
    def touch(user: Any, *, note: str = "") -> None:
        seen.append(_held_names(drr_redis_server, standalone))

    touch(SimpleNamespace(pk=5, profile=SimpleNamespace(kind="staff")), note="x")
    assert seen[-1] == ["user:5:staff"]

    @lock("job:{kind}:{attempt}", timeout=5)
    async def run_job(kind: str, attempt: int = 1) -> str:
        """Run a job."""
        await asyncio.sleep(0)
        seen.append(_held_names(drr_redis_server, standalone))
        return kind.upper()

    assert inspect.iscoroutinefunction(run_job)
    assert run_job.__name__ == "run_job"
    assert run_job.__doc__ == "Run a job."
    assert asyncio.run(run_job("mail")) == "MAIL"
    assert asyncio.run(run_job(kind="sms", attempt=3)) == "SMS"
    assert seen[-2:] == [["job:mail:1"], ["job:sms:3"]]
    assert _held_names(drr_redis_server, standalone) == []


def test_decorator_with_a_callable_name(standalone: str, drr_redis_server: RedisServer) -> None:
    seen: list[list[str]] = []

    @lock(lambda order, **_: f"order:{order['id']}")
    def ship(order: dict[str, int], *, express: bool = False) -> bool:
        seen.append(_held_names(drr_redis_server, standalone))
        return express

    @lock(lambda: "nightly")
    async def report() -> None:
        seen.append(_held_names(drr_redis_server, standalone))

    assert ship({"id": 3}, express=True) is True
    asyncio.run(report())
    with lock(functools.partial(str.format, "batch-{}", 9)):
        seen.append(_held_names(drr_redis_server, standalone))
    assert seen == [["order:3"], ["nightly"], ["batch-9"]]


def test_decorator_releases_when_the_function_raises(standalone: str) -> None:
    name = unique()

    @lock(name)
    def fails() -> None:
        assert lock(name).locked()
        raise KeyError("boom")

    @lock(name)
    async def afails() -> None:
        assert await lock(name).alocked()
        raise KeyError("boom")

    with pytest.raises(KeyError):
        fails()
    with pytest.raises(KeyError):
        asyncio.run(afails())
    assert not lock(name).locked()


def test_a_template_naming_a_missing_argument_fails_at_decoration() -> None:
    def charge(order_id: int) -> None: ...

    async def acharge(order_id: int) -> None: ...

    with pytest.raises(InvalidLock, match="invoice_id") as excinfo:
        lock("invoice:{invoice_id}")(charge)
    assert "charge" in str(excinfo.value)
    with pytest.raises(InvalidLock, match="invoice_id"):
        lock("invoice:{invoice_id}")(acharge)
    with pytest.raises(InvalidLock, match="user"):
        lock("{user.pk}")(charge)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("invoice:{a!z}", "unknown conversion !z"),
        ("invoice:{a.}", "Empty attribute"),
        ("invoice:{a..pk}", "Empty attribute"),
        ("invoice:{a[]}", "Empty attribute"),
        ("invoice:{a[0]x}", "Only '.' or '['"),
        ("invoice:{a:{d}}", "uses d, which"),
        ("invoice:{a:{}}", "positional field {}"),
        ("invoice:{a:{0}}", "positional field {0}"),
        ("invoice:{a:{b!z}}", "unknown conversion !z"),
        ("invoice:{a:{b:{c}}}", "nests fields too deeply"),
    ],
)
def test_a_template_no_call_can_fill_fails_at_decoration(template: str, fragment: str) -> None:
    def job(a: Any, b: Any = 1, c: Any = 2) -> None: ...

    with pytest.raises(InvalidLock, match=r"^Lock name 'invoice:") as excinfo:
        lock(template)(job)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize(
    ("template", "argument", "reason"),
    [
        ("invoice:{a.missing}", SimpleNamespace(pk=1), "AttributeError"),
        ("invoice:{a[3]}", "ab", "IndexError"),
        ("invoice:{a[k]}", {"other": 1}, "KeyError: 'k'"),
        ("invoice:{a[0]}", 5, "TypeError"),
        ("invoice:{a:d}", "text", "ValueError: Unknown format code 'd'"),
        ("invoice:{a:%}", 10**400, "OverflowError"),
        ("invoice:{a!r}", 10**5000, "ValueError"),
        ("invoice:{a:{b}}", 1, "ValueError: Unknown format code '?'"),
    ],
    ids=["attribute", "index", "key", "not-subscriptable", "spec", "overflow", "repr", "nested"],
)
def test_a_template_the_arguments_cannot_fill_fails_with_invalid_lock(
    template: str, argument: Any, reason: str
) -> None:
    """Only the call can tell; nothing is asked of Redis before the name is known."""

    def job(a: Any, b: Any = "?") -> None:
        pytest.fail("ran without a lock name")

    async def ajob(a: Any, b: Any = "?") -> None:
        pytest.fail("ran without a lock name")

    with pytest.raises(InvalidLock) as excinfo:
        lock(template)(job)(argument)
    message = str(excinfo.value)
    assert message.startswith(f"Lock name {template!r} cannot be filled from the arguments of ")
    assert "job()" in message
    assert reason in message
    assert excinfo.value.__cause__ is not None
    with pytest.raises(InvalidLock, match=r"^Lock name 'invoice:"):
        asyncio.run(lock(template)(ajob)(argument))


def test_a_template_that_fills_to_an_empty_name_is_invalid_lock() -> None:
    def job(a: Any) -> None:
        pytest.fail("ran without a lock name")

    with pytest.raises(InvalidLock, match=r"Lock name '\{a\}' is empty for these arguments"):
        lock("{a}")(job)("")


def test_a_nested_field_in_a_format_spec_is_filled_from_the_arguments(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    seen: list[list[str]] = []

    @lock("pad:{n:>{width}}:{n!r:{fill}^5}")
    def job(n: int, width: int = 3, fill: str = "*") -> None:
        seen.append(_held_names(drr_redis_server, standalone))

    job(7)
    job(7, width=5, fill="-")
    assert seen == [["pad:  7:**7**"], ["pad:    7:--7--"]]


def test_a_template_outside_a_decorator_is_refused(standalone: str) -> None:
    lk = lock("invoice:{invoice_id}")
    with pytest.raises(InvalidLock, match="invoice_id"), lk:
        pytest.fail("entered a template lock")
    with pytest.raises(InvalidLock):
        lk.acquire()
    with pytest.raises(InvalidLock):
        lk.locked()

    async def in_a_task() -> None:
        async with lk:
            pytest.fail("entered a template lock")

    with pytest.raises(InvalidLock):
        asyncio.run(in_a_task())


def test_doubled_braces_name_the_same_lock_with_and_without_fields(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    """``{{`` is one literal ``{`` in a template (``str.format``); a name without fields
    must mean the same, or ``lock("{{a}}:1")`` and ``@lock("{{a}}:{n}")`` with ``n=1``
    are two locks."""
    seen: list[list[str]] = []

    @lock("{{a}}:{n}")
    def with_field(n: int) -> None:
        seen.append(_held_names(drr_redis_server, standalone))

    with_field(1)
    with lock("{{a}}:1"):
        seen.append(_held_names(drr_redis_server, standalone))
    tag = _base(standalone, "{a}:1").split("{", 1)[1][:-1]
    assert seen == [[tag], [tag]]


# --- invalid arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"timeout": 0}, "timeout=0 "),
        ({"timeout": -1}, "timeout=-1 "),
        ({"timeout": math.nan}, "timeout=nan "),
        ({"timeout": math.inf}, "timeout=inf "),
        ({"timeout": "5"}, "timeout='5' "),
        ({"timeout": True}, "timeout=True "),
        ({"timeout": None}, "timeout=None "),
        ({"wait": -1}, "wait=-1 "),
        ({"wait": math.nan}, "wait=nan "),
        ({"wait": "1"}, "wait='1' "),
        ({"wait": False}, "wait=False "),
        ({"renew": 1}, "renew=1 "),
        ({"on_busy": "x"}, "on_busy='x' "),
        ({"on_busy": "wait"}, "on_busy='wait' "),
        ({"on_unavailable": "x"}, "on_unavailable='x' "),
        ({"on_lost": "x"}, "on_lost='x' "),
        ({"cache": 3}, "cache=3 "),
        ({"cache": ""}, "cache='' "),
        ({"name": ""}, "Lock name '' "),
        ({"name": None}, "Lock name None "),
        ({"name": 5}, "Lock name 5 "),
        ({"name": "{}"}, "Lock name '{}' "),
        ({"name": "{0}"}, "Lock name '{0}' "),
        ({"name": "a{b"}, "Lock name 'a{b' "),
    ],
)
def test_invalid_arguments_name_the_bad_value(kwargs: dict[str, Any], fragment: str) -> None:
    arguments = {"name": "report", **kwargs}
    with pytest.raises(InvalidLock) as excinfo:
        lock(arguments.pop("name"), **arguments)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize("alias", ["other", "missing"])
def test_a_cache_that_is_not_resilient_is_refused_on_use(
    drr_redis_server: RedisServer, alias: str
) -> None:
    fragment = f"cache={alias!r} is not a ResilientRedisCache"
    setting = {**resilient_caches(drr_redis_server.url), "other": LOCMEM}
    with override_settings(CACHES=setting):
        lk = lock("report", cache=alias)
        with pytest.raises(InvalidLock, match=fragment), lk:
            pytest.fail("entered a lock without Redis")
        with pytest.raises(InvalidLock, match=fragment):
            lk.acquire()
        with pytest.raises(InvalidLock, match=fragment):
            lk.locked()
        with pytest.raises(InvalidLock, match=fragment):
            lock("x:{n}", cache=alias)(lambda n: n)(1)
        with pytest.raises(InvalidLock, match=fragment):
            asyncio.run(lk.aacquire())


def test_without_a_resilient_default_cache_a_lock_says_so() -> None:
    fragment = "cache='default' is not a ResilientRedisCache"
    with (
        override_settings(CACHES={"default": LOCMEM}),
        pytest.raises(InvalidLock, match=fragment),
    ):
        lock("report").acquire()


def test_invalid_per_call_arguments(standalone: str) -> None:
    lk = lock(unique())
    with pytest.raises(InvalidLock, match="wait=-1 "):
        lk.acquire(wait=-1)
    with pytest.raises(InvalidLock, match="wait='2' "):
        asyncio.run(lk.aacquire(wait="2"))  # type: ignore[arg-type]
    held = lk.acquire()
    assert held is not None
    for seconds in (0, -1, math.nan, "1"):
        with pytest.raises(InvalidLock, match=f"seconds={seconds!r} "):
            held.extend(seconds)  # type: ignore[arg-type]
    lk.release()


# --- leases -------------------------------------------------------------------------------------


def test_a_lease_is_renewed_while_the_lock_is_held(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    name = unique()
    key = _base(standalone, name)
    pttls: list[int] = []

    def renewals() -> int:
        pttls.append(_cmd(drr_redis_server, "PTTL", key))
        return sum(b > a for a, b in itertools.pairwise(pttls))

    with lock(name, timeout=0.9) as held:
        # Four renewals (one every third of the lease) outlast the first lease.
        assert wait_for(lambda: renewals() >= 4, timeout=10)
        assert min(pttls) > 0
        assert not held.lost
        assert lock(name).locked()
    assert _cmd(drr_redis_server, "EXISTS", key) == 0


def test_renewals_of_released_locks_leave_nothing_in_the_background_queue(
    standalone: str,
) -> None:
    """Each acquisition schedules its renewal (a third of the lease ahead) and each
    release cancels it: with an hour's lease none comes due while the test runs, and
    the background queue must stay as small as its live jobs, not grow per acquisition."""
    from django_redis_resilience.clients import get_manager

    scheduler = get_manager().scheduler
    kept = [lock(unique(), timeout=3600).acquire() for _ in range(3)]  # live renewals
    name = unique()
    for _ in range(1500):
        with lock(name, timeout=3600) as held:
            assert held
    live = scheduler.pending()
    assert live >= len(kept)
    assert len(scheduler._queue) <= 2 * live + 64
    for held in kept:
        assert held is not None
        assert held.release()


def test_a_stale_holder_cannot_release_the_new_holders_lock(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    name = unique()
    key = _base(standalone, name)
    reported: list[tuple[str, int]] = []

    def on_lost(sender: Any, *, name: str, token: int, **kwargs: Any) -> None:
        reported.append((name, token))

    signals.lock_lost.connect(on_lost)
    try:
        box: dict[str, Any] = {}

        def hold_past_the_lease() -> None:
            with lock(name, timeout=0.5, renew=False) as held:
                box["held"] = held
                assert wait_for(lambda: _cmd(drr_redis_server, "EXISTS", key) == 0)
                assert held.lost
                box["other"] = _in_thread(lambda: lock(name, timeout=10).acquire())

        with pytest.raises(LockLost, match="was lost"):
            hold_past_the_lease()
        held, other = box["held"], box["other"]
        assert other.token > held.token
        value = _cmd(drr_redis_server, "GET", key)
        assert value.endswith(f":{other.token}".encode())  # the new holder's, untouched
        assert reported == [(name, held.token)]

        stale = lock(name, timeout=0.5, renew=False)
        assert other.release() is True
        mine = stale.acquire()
        assert mine is not None
        assert wait_for(lambda: _cmd(drr_redis_server, "EXISTS", key) == 0)
        newer = _in_thread(lambda: lock(name, timeout=10).acquire())
        assert mine.release() is False
        assert mine.lost
        assert _cmd(drr_redis_server, "GET", key).endswith(f":{newer.token}".encode())
        with pytest.raises(LockLost):
            mine.extend(5)
        assert newer.release() is True
        assert reported == [(name, held.token), (name, mine.token)]
    finally:
        signals.lock_lost.disconnect(on_lost)


def test_locks_handed_on_and_released_at_once_are_not_reported_lost(
    standalone: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A waiter handed the lock gets a short hand-off lease and renews it at once from the
    background thread; releasing meanwhile is a clean release, not a lost lock."""
    name = unique()
    reported: list[int] = []
    errors: list[BaseException] = []

    def on_lost(sender: Any, *, token: int, **kwargs: Any) -> None:
        reported.append(token)

    def contend(hold: float) -> None:
        try:
            for _ in range(30):
                with lock(name, timeout=10, wait=30):
                    time.sleep(hold)
        except BaseException as exc:
            errors.append(exc)

    caplog.set_level(logging.WARNING, logger="django_redis_resilience")
    signals.lock_lost.connect(on_lost)
    try:
        threads = [
            threading.Thread(target=contend, args=(hold,))
            for hold in (0, 0.0002, 0.0003, 0.0005, 0.001, 0.002)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        signals.lock_lost.disconnect(on_lost)
    assert errors == []
    assert [r.getMessage() for r in caplog.records if "lost" in r.getMessage()] == []
    assert reported == []


def test_releasing_early_inside_a_with_block_ends_it_quietly(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    name = unique()
    key = _base(standalone, name)
    with lock(name, timeout=10) as held:
        assert held.release() is True
        assert _cmd(drr_redis_server, "EXISTS", key) == 0
        assert held.release() is True  # already released: nothing more to do
    with pytest.raises(LockLost):
        held.extend(1)
    assert not lock(name).locked()


def test_releasing_early_inside_an_async_with_block_ends_it_quietly(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    name = unique()
    key = _base(standalone, name)

    async def in_a_task() -> None:
        async with lock(name, timeout=10) as held:
            assert await held.arelease() is True
            assert _cmd(drr_redis_server, "EXISTS", key) == 0

    asyncio.run(in_a_task())
    assert not lock(name).locked()


def test_an_error_from_the_guarded_code_is_not_replaced_by_lock_lost(
    standalone: str, drr_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique()
    key = _base(standalone, name)
    caplog.set_level(logging.ERROR, logger="django_redis_resilience")

    @lock(name, timeout=0.5, renew=False)
    def slow() -> None:
        assert wait_for(lambda: _cmd(drr_redis_server, "EXISTS", key) == 0)
        raise KeyError("from the guarded code")

    def block() -> None:
        with lock(name, timeout=0.5, renew=False):
            assert wait_for(lambda: _cmd(drr_redis_server, "EXISTS", key) == 0)
            raise KeyError("from the guarded code")

    for guarded in (slow, block):
        with pytest.raises(KeyError, match="from the guarded code"):
            guarded()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(name in message and "lost" in message for message in errors)


def test_on_lost_log_reports_without_raising(
    standalone: str, drr_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique()
    key = _base(standalone, name)
    caplog.set_level(logging.WARNING, logger="django_redis_resilience")
    with lock(name, timeout=0.5, renew=False, on_lost="log") as held:
        assert wait_for(lambda: _cmd(drr_redis_server, "EXISTS", key) == 0)
        other = _in_thread(lambda: lock(name, timeout=10).acquire())
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert name in errors[0].getMessage()
    assert "lost" in errors[0].getMessage()
    assert str(held.token) in errors[0].getMessage()
    assert other.release() is True


# --- many processes -----------------------------------------------------------------------------

PROCESSES = 8
ITERATIONS = 25


@pytest.fixture(params=["standalone", "cluster"])
def process_target(request: pytest.FixtureRequest) -> dict[str, Any]:
    """``CACHES`` and the counter's location for worker processes."""
    return _processes.target(request, unique("lk"))


def test_eight_processes_never_lose_an_update(process_target: dict[str, Any]) -> None:
    label = unique("mp")
    keys = {part: f"{label}:{part}" for part in ("ready", "go", "counter", "order")}
    spec = {**process_target, "name": label, "keys": keys, "iterations": ITERATIONS}
    with _processes.together(_lock_worker.increments, spec, PROCESSES) as (per_process, client):
        counter = int(client.get(keys["counter"]))
        granted = [int(t) for t in client.lrange(keys["order"], 0, -1)]
    total = PROCESSES * ITERATIONS
    assert counter == total  # no lost update
    assert len(granted) == total
    assert all(a < b for a, b in itertools.pairwise(granted))  # in grant order
    assert all(len(tokens) == ITERATIONS for tokens in per_process)
    assert sorted(t for tokens in per_process for t in tokens) == granted
    # They did contend: the fair queue passed the lock from one process to another (a
    # releaser queues behind the others), not each process 25 times in a row.
    owner = {t: i for i, tokens in enumerate(per_process) for t in tokens}
    assert sum(owner[a] != owner[b] for a, b in itertools.pairwise(granted)) >= total // 2


# --- fair waiting -------------------------------------------------------------------------------


def test_waiters_are_served_in_arrival_order(
    shared: str, node_of: Callable[[str], RedisServer]
) -> None:
    name = unique()
    queue = _base(shared, name) + ":queue"
    order: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def waiter(i: int) -> None:
        try:
            with lock(name, timeout=10, wait=20) as held:
                order.append((i, held.token))  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    lk = lock(name, timeout=10)
    held = lk.acquire()
    assert held is not None
    threads = []
    for i in range(6):
        thread = threading.Thread(target=waiter, args=(i,))
        thread.start()
        threads.append(thread)
        # The next one starts only once this one is queued: the arrival order is certain.
        assert wait_for(lambda n=i + 1: _cmd(node_of(queue), "ZCARD", queue) == n)
    lk.release()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert [i for i, _ in order] == list(range(6))
    tokens = [held.token, *(t for _, t in order)]
    assert all(a < b for a, b in itertools.pairwise(tokens))
    assert _cmd(node_of(queue), "EXISTS", queue) == 0


# --- asyncio ------------------------------------------------------------------------------------


def test_tasks_sharing_one_lock_object_each_keep_their_own_token(standalone: str) -> None:
    name = unique()

    async def main() -> tuple[list[int], int]:
        lk = lock(name, timeout=5, wait=30)
        granted: list[int] = []
        holders = 0
        most = 0

        async def task() -> None:
            nonlocal holders, most
            async with lk as held:
                holders += 1
                most = max(most, holders)
                token = held.token
                assert token is not None
                granted.append(token)
                await asyncio.sleep(0)
                assert await lk.aowned()
                await asyncio.sleep(0.001)
                assert held.token == token
                assert not held.lost
                assert await lk.alocked()
                holders -= 1

        await asyncio.gather(*(task() for _ in range(20)))
        assert not await lk.alocked()
        return granted, most

    granted, most = asyncio.run(main())
    assert most == 1
    assert len(granted) == 20
    assert all(a < b for a, b in itertools.pairwise(granted))


def test_a_task_that_holds_nothing_cannot_release_or_own_its_parents_lock(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    """A task inherits its parent's context; ownership is still the parent's alone, as for
    threads (``LockAlreadyHeld`` already treats the child as another owner)."""
    name = unique()
    key = _base(standalone, name)

    async def main() -> None:
        lk = lock(name, timeout=10)
        held = await lk.aacquire()
        assert held is not None

        async def child() -> bool:
            owned = await lk.aowned()
            with pytest.raises(LockLost):
                await lk.arelease()
            return owned

        assert await asyncio.create_task(child()) is False
        assert _cmd(drr_redis_server, "EXISTS", key) == 1
        assert await lk.aowned()
        await lk.arelease()

    asyncio.run(main())


@pytest.mark.parametrize("yields", [0, 1, 2, 5, 20])
def test_a_waiter_cancelled_as_it_is_handed_the_lock_passes_it_on(
    standalone: str, drr_redis_server: RedisServer, yields: int
) -> None:
    name = unique()
    base = _base(standalone, name)
    queue = f"{base}:queue"

    async def main() -> None:
        granted: list[tuple[str, int]] = []
        done = {"w1": asyncio.Event(), "w2": asyncio.Event()}

        async def hold(label: str) -> None:
            async with lock(name, timeout=10) as held:
                granted.append((label, held.token))  # type: ignore[arg-type]
                await done[label].wait()

        holder = await lock(name, timeout=10).aacquire()
        assert holder is not None
        first = asyncio.create_task(hold("w1"))
        await _until(lambda: _cmd(drr_redis_server, "ZCARD", queue) == 1)
        second = asyncio.create_task(hold("w2"))
        await _until(lambda: _cmd(drr_redis_server, "ZCARD", queue) == 2)
        w1, w2 = (m.decode() for m in _cmd(drr_redis_server, "ZRANGE", queue, 0, -1))
        # A blocking release: the loop cannot run, so w1 is handed the lock unawares.
        assert holder.release() is True
        assert _cmd(drr_redis_server, "GET", base).decode().startswith(f"{w1}:")
        for _ in range(yields):
            await asyncio.sleep(0)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        # Once w1's cancellation is over, the lock is w2's: no lease had to run out.
        assert _cmd(drr_redis_server, "GET", base).decode().startswith(f"{w2}:")
        await _until(lambda: [label for label, _ in granted][-1:] == ["w2"])
        if yields == 0:
            assert [label for label, _ in granted] == ["w2"]
        assert granted[-1][1] > holder.token  # type: ignore[operator]
        done["w2"].set()
        await second
        assert _cmd(drr_redis_server, "EXISTS", base, queue) == 0

    asyncio.run(main())


@pytest.mark.chaos
def test_a_task_cancelled_while_its_first_attempt_is_in_flight_leaves_no_lock(
    drr_redis_factory: Any, drr_proxy_factory: Any
) -> None:
    """The script granted the lock, the reply was still on its way, the task was cancelled:
    nobody will ever release that acquisition, so it must be released on the way out."""
    server = drr_redis_factory()
    proxy = drr_proxy_factory(server)
    prefix = unique("lk")
    name = unique()
    key = _base(prefix, name)
    options = {"KEY_PREFIX": prefix, "SOCKET_TIMEOUT": 5.0}

    async def main() -> None:
        async with lock(unique()):  # this loop's connection is open, the script loaded
            pass
        proxy.set_latency(0.2)
        task = asyncio.create_task(lock(name, timeout=15).aacquire())
        await _until(lambda: _cmd(server, "EXISTS", key) == 1)  # granted on the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proxy.set_latency(0)

    with override_settings(CACHES=resilient_caches(proxy.url(), **options)):
        asyncio.run(main())
    # Nobody holds it: it must be free well before its 15 s lease ends.
    assert wait_for(lambda: _cmd(server, "EXISTS", key) == 0, timeout=5)


# --- round trips --------------------------------------------------------------------------------


def _evalsha_calls(server: RedisServer) -> tuple[int, int]:
    """(EVALSHA calls, SCRIPT calls) from INFO commandstats: commands a script runs count
    under their own names, so EVALSHA counts the scripts clients sent."""
    with server.client() as client:
        stats = client.info("commandstats")
    evalsha = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
    script = sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_script"))
    return evalsha, script


def test_an_uncontended_acquire_and_release_is_two_script_calls(drr_redis_factory: Any) -> None:
    server = drr_redis_factory()  # its own server: no other client's scripts in the counts
    with override_settings(CACHES=resilient_caches(server.url)):
        with lock(unique()):  # warm-up: connects and loads the script
            pass
        evalsha, script = _evalsha_calls(server)
        used = 0
        name = unique()
        for _ in range(5):
            with lock(name):
                pass
            used += 1

        @lock(unique())
        def decorated() -> None:
            pass

        for _ in range(3):
            decorated()
            used += 1

        async def in_a_loop() -> int:
            async with lock(unique()):  # a new loop: its own connection, no script load
                pass
            for _ in range(4):
                async with lock(name):
                    pass
            return 5

        used += asyncio.run(in_a_loop())
        evalsha_after, script_after = _evalsha_calls(server)
    assert evalsha_after - evalsha == 2 * used
    assert script_after - script == 0


@pytest.mark.parametrize("guess", ["an hour behind", "an hour ahead"])
def test_a_wrong_guess_of_the_server_s_clock_is_corrected_by_the_next_reply(
    drr_redis_factory: Any, guess: str
) -> None:
    """Every acquire script gets a deadline on the server's clock, from this process's
    estimate of it. Too early (the guess is behind), the script refuses as late, the
    caller reads that refusal and asks again: one extra script call, then never again.
    Too late (ahead), it grants at once. Either way the reply sets the estimate right."""
    from django_redis_resilience.clients import get_manager
    from django_redis_resilience.locks._protocol import _clock_of

    server = drr_redis_factory()
    with override_settings(CACHES=resilient_caches(server.url)):
        with lock(unique()):  # warm-up: connects, loads the script, learns the clock
            pass
        clock, _ = _clock_of(get_manager().primary.client)
        hour = 3600 * 1_000_000
        clock.offset_us += -hour if guess == "an hour behind" else hour
        before, _ = _evalsha_calls(server)
        for _ in range(3):
            with lock(unique(), wait=0) as held:
                assert held
        extra = 1 if guess == "an hour behind" else 0
        assert _evalsha_calls(server)[0] - before == 3 * 2 + extra
    seconds, micros = _cmd(server, "TIME")
    truth = int(seconds) * 1_000_000 + int(micros) - time.monotonic_ns() // 1000
    assert abs(clock.offset_us - truth) < hour / 60  # a generous bound: the hour is gone


# --- outages ------------------------------------------------------------------------------------


@pytest.fixture
def killed(drr_redis_factory: Any) -> Iterator[RedisServer]:
    """``default`` on a server that was killed after a first lock."""
    server = drr_redis_factory()
    with override_settings(CACHES=resilient_caches(server.url, BREAKER=FAST_BREAKER)):
        with lock(unique()) as held:
            assert held
        server.kill()
        yield server


@pytest.mark.chaos
def test_on_unavailable_raise(killed: RedisServer) -> None:
    calls: list[str] = []

    @lock(unique())
    def guarded() -> None:
        calls.append("ran")

    @lock(unique())
    async def aguarded() -> None:
        calls.append("ran")

    for _ in range(3):  # before and after the breaker opens
        with pytest.raises(RedisUnavailable), lock(unique()):
            calls.append("ran")
        with pytest.raises(RedisUnavailable):
            guarded()
        with pytest.raises(RedisUnavailable):
            asyncio.run(aguarded())
        with pytest.raises(RedisUnavailable):
            lock(unique()).acquire()
    assert calls == []


@pytest.mark.chaos
def test_on_unavailable_skip(killed: RedisServer) -> None:
    calls: list[str] = []

    @lock(unique(), on_unavailable="skip")
    def guarded() -> str:
        calls.append("ran")
        return "result"

    @lock(unique(), on_unavailable="skip")
    async def aguarded() -> str:
        calls.append("ran")
        return "result"

    for _ in range(3):
        assert guarded() is None
        assert asyncio.run(aguarded()) is None
        assert lock(unique(), on_unavailable="skip").acquire() is None
        with lock(unique(), on_unavailable="skip") as held:
            assert not held
            assert held.degraded
            assert held.token is None
    assert calls == []


@pytest.mark.chaos
def test_on_unavailable_run_runs_and_logs_an_error(
    killed: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique()
    calls: list[str] = []

    @lock(name, on_unavailable="run")
    def guarded() -> str:
        calls.append("ran")
        return "result"

    @lock(name, on_unavailable="run")
    async def aguarded() -> str:
        calls.append("ran")
        return "result"

    caplog.set_level(logging.ERROR, logger="django_redis_resilience")
    assert guarded() == "result"
    assert asyncio.run(aguarded()) == "result"
    with lock(name, on_unavailable="run") as held:
        assert not held
        assert held.degraded
        calls.append("ran")
    manual = lock(name, on_unavailable="run").acquire()
    assert manual is not None
    assert manual.degraded
    assert not manual
    assert calls == ["ran", "ran", "ran"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4
    assert all(name in r.getMessage() and "WITHOUT the lock" in r.getMessage() for r in errors)


# --- hand-offs noticed by the script, early releases, lost leases at exit ---------------------


def test_a_hand_off_noticed_by_the_script_is_extended_to_the_full_lease(
    standalone: str, drr_redis_server: RedisServer
) -> None:
    """A waiter that was not blocked when the lock was handed to it learns of it from its
    next script call, with the short hand-off lease: it must still extend it in time."""
    from django_redis_resilience.clients import get_manager
    from django_redis_resilience.locks._protocol import (
        ENTRY_LEASE,
        acquire_steps,
        call,
        new_owner,
        run,
    )

    name = unique()
    keys = LockKeys.build(standalone, name)
    manager = get_manager("default")
    owner = new_owner()
    with lock(name, timeout=10):
        queued = call(manager, keys, script_args("acquire", owner, 6000, 2000))
        assert int(queued[0]) == 0  # queued behind the holder
    # Released: handed to the queued owner, who was not listening.
    grant = run(acquire_steps(keys, owner=owner, lease=6, wait=5), manager, keys)
    assert grant is not None
    assert grant.lease_ms <= ENTRY_LEASE * 1000
    held = lock(name, timeout=6)._outcome(name, manager, keys, owner, grant, 5)
    assert wait_for(lambda: _cmd(drr_redis_server, "PTTL", keys.lock) > ENTRY_LEASE * 1000)
    assert held.release()


def test_releasing_by_hand_inside_a_with_block_exits_quietly(shared: str) -> None:
    lk = lock(unique())
    with lk as held:
        lk.release()
        assert held.released
    with lk as held:
        assert held.release()
    assert not lk.locked()


def test_a_lease_that_ran_out_is_reported_when_the_release_cannot_be_sent(
    drr_redis_factory: Any,
) -> None:
    server = drr_redis_factory()
    options = {"BREAKER": FAST_BREAKER, "SOCKET_TIMEOUT": 0.2, "SOCKET_CONNECT_TIMEOUT": 0.2}
    with override_settings(CACHES=resilient_caches(server.url, **options)):
        seen: list[Held] = []

        def guarded() -> None:
            with lock(unique(), timeout=0.3, renew=False) as held:
                seen.append(held)
                time.sleep(0.5)  # the lease runs out
                server.kill()  # and the release cannot be sent

        with pytest.raises(LockLost):
            guarded()
        assert seen[0].released


def test_a_cancelled_async_release_still_releases(shared: str) -> None:
    lk = lock(unique(), timeout=30)

    async def main() -> None:
        held = await lk.aacquire()
        assert held is not None
        task = asyncio.create_task(held.arelease())
        await asyncio.sleep(0)  # started, not finished
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await _until(lambda: not lk.locked())

    asyncio.run(main())


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


def test_a_decorated_coroutine_cancelled_in_its_body_releases_the_lock(shared: str) -> None:
    """The cancellation reaches the decorator's plan, whose release then runs shielded:
    the lock is free at once (no lease to wait out) and the task holds no record of it."""
    name = unique()
    lk = lock(name, timeout=30)
    entered = asyncio.Event()

    @lk
    async def guarded() -> None:
        entered.set()
        await asyncio.sleep(30)

    async def main() -> None:
        task = asyncio.create_task(guarded())
        await asyncio.wait_for(entered.wait(), 10)
        assert lk.locked()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not lk.locked()
        async with lock(name, wait=0) as held:  # not held by this task any more
            assert held

    asyncio.run(main())
