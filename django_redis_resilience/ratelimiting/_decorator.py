"""``@ratelimit``: function views, class-based views and async views, one EVALSHA per request.

Everything that can be checked is checked when the decorator is applied (the
rate unless it is a callable, the key, the algorithm, the options), so a typo
fails at import time, not on the first request in production.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.module_loading import import_string

from django_redis_resilience import _steps, signals
from django_redis_resilience._steps import Call, Plan
from django_redis_resilience.conf import conf
from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting._core import (
    Decision,
    Limit,
    check_options,
    check_plan,
    policy_for,
    release,
    release_plan,
)
from django_redis_resilience.ratelimiting._headers import add_headers
from django_redis_resilience.ratelimiting._keys import KeySpec, resolve_key
from django_redis_resilience.ratelimiting._rates import Rate

logger = logging.getLogger("django_redis_resilience")
V = TypeVar("V", bound=Callable[..., Any])
#: ``method=ALL``: every HTTP method is limited.
ALL = None


def _methods(method: str | Iterable[str] | None) -> frozenset[str] | None:
    if method is None:
        return None
    names = [method] if isinstance(method, str) else method
    if (
        not isinstance(names, list | tuple | set | frozenset)
        or not names
        or not all(isinstance(m, str) and m.isalpha() for m in names)
    ):
        raise InvalidRateLimit(
            f"method={method!r} is not valid: give 'POST', ['GET', 'POST'] or ALL."
        )
    return frozenset(m.upper() for m in names)


def _request_of(args: tuple[Any, ...]) -> HttpRequest:
    """The request among a view's arguments: first for functions, second for methods."""
    for arg in args[:2]:
        if isinstance(arg, HttpRequest):
            return arg
    raise InvalidRateLimit("@ratelimit decorates views: no HttpRequest among the first arguments.")


def _release_all(held: list[Decision]) -> None:
    for decision in held:
        try:
            release(decision)
        except Exception:  # one failed release must not keep the others
            logger.exception("Could not release a concurrency slot")


def _on_event_loop() -> bool:
    """Whether this thread is running an event loop (an ASGI server's, a test client's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


#: How long a finalizer outside an event loop waits for the worker to give its slots back,
#: so that the client's next request finds them free, as when the release runs in place.
#: Bounded: if this thread holds a lock the release needs, the wait ends and the worker
#: finishes later instead of the two waiting on each other.
_FREED_WAIT = 1.0

#: Slots to give back, and the event a waiting finalizer is told on.
_Job = tuple[list[Decision], "threading.Event | None"]


class _Releaser:
    """One worker thread per process for releases that must not, or cannot, run where
    they are asked for: on an event loop's thread (a round trip would stall every
    request the loop serves) or in a finalizer (which the garbage collector runs at
    any allocation, maybe while this thread holds a lock the release needs).

    A finalizer only appends to a ``SimpleQueue``, whose ``put`` is safe even there, and
    waits a bounded time on an event of its own; the worker is started beforehand, from
    ordinary code, and again after a fork.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._pid: int | None = None

    def ensure_worker(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                self._queue = queue.SimpleQueue()  # a parent's queue is no child's to serve
                worker = threading.Thread(
                    target=self._run, args=(self._queue,), name="drr-ratelimit-release", daemon=True
                )
                worker.start()
                self._pid = os.getpid()

    def put(self, held: list[Decision]) -> None:
        self._queue.put((held, None))

    def freed(self, held: list[Decision]) -> None:
        """A finalizer's release: handed to the worker; waited for, briefly, off a loop."""
        if _on_event_loop():
            self.put(held)
            return
        done = threading.Event()
        self._queue.put((held, done))
        done.wait(_FREED_WAIT)

    @staticmethod
    def _run(jobs: queue.SimpleQueue[_Job]) -> None:
        while True:
            held, done = jobs.get()
            _release_all(held)
            if done is not None:
                done.set()


_releaser = _Releaser()


def _release_on_close(response: HttpResponseBase, decisions: list[Decision]) -> None:
    """Concurrency slots end when the response is closed: after the last byte of a
    streaming response, not when the view returns. A middleware may replace the
    response without closing it (a 304 from ``ConditionalGetMiddleware``): then
    they end when the discarded response is freed. Releasing twice does nothing.

    Closed on an event loop's thread (a stream an ASGI client closes there), or freed
    anywhere, the release goes to the worker thread; closed elsewhere it runs at once."""
    held = [d for d in decisions if d.lease is not None]
    if not held:
        return
    _releaser.ensure_worker()

    def close() -> None:
        if _on_event_loop():
            _releaser.put(held)
        else:
            _release_all(held)

    response._resource_closers.append(close)  # type: ignore[attr-defined]
    weakref.finalize(response, _releaser.freed, held)


def call_holding(decisions: list[Decision], view: Callable[[], Any]) -> Any:
    """Call the view; its concurrency slots end with its response (or its exception)."""
    return _steps.run(holding_plan(decisions, view))


async def acall_holding(decisions: list[Decision], view: Callable[[], Any]) -> Any:
    """The asyncio twin of :func:`call_holding` (``view()`` returns an awaitable)."""
    return await _steps.arun(holding_plan(decisions, view))


def holding_plan(decisions: list[Decision], view: Callable[[], Any]) -> Plan[Any]:
    """:func:`call_holding` and :func:`acall_holding`, written once."""
    try:
        response = yield Call(view)
    except BaseException:
        for decision in decisions:
            yield from release_plan(decision)
        raise
    _release_on_close(response, decisions)
    return response


def too_many_requests(request: HttpRequest, decision: Decision) -> HttpResponseBase:
    """The default 429 response (``REDIS_RESILIENCE["RATELIMIT"]["VIEW"]`` replaces it)."""
    return HttpResponse("Too Many Requests", status=429, content_type="text/plain")


def _blocked_response(
    request: HttpRequest, decision: Decision, on_unavailable: str
) -> HttpResponseBase:
    if decision.degraded and on_unavailable == "deny":
        return HttpResponse("Service Unavailable", status=503, content_type="text/plain")
    view_path = conf.RATELIMIT.get("VIEW")
    view = import_string(view_path) if view_path else too_many_requests
    response: HttpResponseBase = view(request, decision)
    return response


class _Limit:
    """One ``@ratelimit``'s configuration, validated, shared by its sync and async wrappers."""

    def __init__(
        self,
        *,
        key: Any,
        rate: Any,
        algorithm: str,
        burst: int | None,
        method: str | Iterable[str] | None,
        group: str | None,
        block: bool,
        cost: int,
        cache: str | None,
        on_unavailable: str,
    ) -> None:
        self.key: KeySpec = resolve_key(key)
        check_options(cost=cost, on_unavailable=on_unavailable, cache=cache)
        if group is not None and not isinstance(group, str):
            raise InvalidRateLimit(f"group={group!r} is not valid: give a string.")
        if not isinstance(block, bool):
            raise InvalidRateLimit(f"block={block!r} is not valid: give True or False.")
        if callable(rate):
            policy_for(Rate(1, 1), algorithm, burst)  # the algorithm and burst, now
        elif cost > (limit := policy_for(rate, algorithm, burst).limit):
            raise InvalidRateLimit(
                f"cost={cost} exceeds the limit of {limit} ({rate!r}): such a call could never "
                "be admitted."
            )
        self.rate = rate
        self.algorithm = algorithm
        self.burst = burst
        self.methods = _methods(method)
        self.group = group
        self.block = block
        self.cost = cost
        self.cache = cache
        self.on_unavailable = on_unavailable

    def applies(self, request: HttpRequest) -> bool:
        return self.methods is None or str(request.method).upper() in self.methods

    def limit(self, group: str, identity: str, request: HttpRequest) -> Limit:
        rate = self.rate(group, request) if callable(self.rate) else self.rate
        return Limit(identity, rate, self.algorithm, self.cost, self.burst, group, group,
                     self.block)  # fmt: skip

    def run(self, name: str, request: HttpRequest, view: Callable[[], Any]) -> Any:
        """Check the limit, then call ``view()`` unless it is refused; add the headers."""
        if not self.applies(request):
            return view()
        return _steps.run(self.plan(name, self.key.resolve(name, request), request, view))

    async def arun(self, name: str, request: HttpRequest, view: Callable[[], Any]) -> Any:
        """The asyncio twin of :meth:`run` (``view()`` returns an awaitable)."""
        if not self.applies(request):
            return await view()
        identity = await self.key.aresolve(name, request)
        return await _steps.arun(self.plan(name, identity, request, view))

    def plan(
        self, name: str, identity: str | None, request: HttpRequest, view: Callable[[], Any]
    ) -> Plan[Any]:
        """:meth:`run` and :meth:`arun` once the request's identity is known (``None``:
        not limited), written once."""
        if identity is None:
            return (yield Call(view))
        limit = self.limit(name, identity, request)
        check = check_plan([limit], peek=False, cache=self.cache,
                           on_unavailable=self.on_unavailable)  # fmt: skip
        decision = (yield from check)[0]
        response = self.refused(request, decision) or (yield from holding_plan([decision], view))
        add_headers(response, decision)
        return response

    def refused(self, request: HttpRequest, decision: Decision) -> HttpResponseBase | None:
        """Record the decision on the request; the response that replaces the view, if any."""
        current = getattr(request, "ratelimit", None)
        if current is None or not decision.allowed or current.remaining > decision.remaining:
            request.ratelimit = decision  # type: ignore[attr-defined]
        if decision.allowed:
            return None
        signals.ratelimit_exceeded.send(sender=_Limit, request=request, decision=decision)
        if not self.block and not (decision.degraded and self.on_unavailable == "deny"):
            return None
        return _blocked_response(request, decision, self.on_unavailable)


def ratelimit(
    *,
    key: Any,
    rate: Any,
    algorithm: str = "gcra",
    burst: int | None = None,
    method: str | Iterable[str] | None = ALL,
    group: str | None = None,
    block: bool = True,
    cost: int = 1,
    cache: str | None = None,
    on_unavailable: str = "local",
) -> Callable[[V], V]:
    """Limit a view: over the limit it answers 429 with ``Retry-After``; every limited
    response carries the IETF ``RateLimit-Policy`` and ``RateLimit`` fields.

    ``key`` says who a request counts as (``"ip"``, ``"user"``, ``"user_or_ip"``,
    ``"header:<name>"``, ``"get:<name>"``, ``"post:<name>"``, a callable
    ``(group, request)`` or its dotted path); a request whose key is ``None``
    (``"user"`` for an anonymous user) is not limited. ``rate`` is ``"100/m"``,
    ``"5/10s"``, a ``(count, seconds)`` tuple or a callable ``(group, request)``
    returning one. ``block=False`` only sets ``request.ratelimit``. When Redis is
    unavailable, ``on_unavailable`` decides: ``"local"`` (limit in this process),
    ``"allow"``, or ``"deny"`` (503).
    """
    limit = _Limit(key=key, rate=rate, algorithm=algorithm, burst=burst, method=method,
                   group=group, block=block, cost=cost, cache=cache,
                   on_unavailable=on_unavailable)  # fmt: skip

    def decorator(view: V) -> V:
        name = limit.group or f"{view.__module__}.{view.__qualname__}"

        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                return await limit.arun(name, _request_of(args), lambda: view(*args, **kwargs))

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return limit.run(name, _request_of(args), lambda: view(*args, **kwargs))

        return wrapper  # type: ignore[return-value]

    return decorator


class RateLimitMixin:
    """Class-based views: ``ratelimit_key`` and ``ratelimit_rate`` (and the decorator's
    other options as ``ratelimit_<name>``) limit ``dispatch``, so every method is covered.
    The options are checked on the first request (class attributes may be set late)."""

    ratelimit_key: Any = "ip"
    ratelimit_rate: Any = None
    ratelimit_algorithm: str = "gcra"
    ratelimit_burst: int | None = None
    ratelimit_group: str | None = None
    ratelimit_method: str | Iterable[str] | None = ALL
    ratelimit_block: bool = True
    ratelimit_cost: int = 1
    ratelimit_cache: str | None = None
    ratelimit_on_unavailable: str = "local"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        cls = type(self)
        limit: _Limit | None = cls.__dict__.get("_drr_limit")
        if limit is None:
            if cls.ratelimit_rate is None:
                raise InvalidRateLimit(f"{cls.__name__}.ratelimit_rate is not set.")
            # Read on the class: a function stored there is not bound to the view.
            limit = _Limit(key=cls.ratelimit_key, rate=cls.ratelimit_rate,
                           algorithm=cls.ratelimit_algorithm, burst=cls.ratelimit_burst,
                           method=cls.ratelimit_method, group=cls.ratelimit_group,
                           block=cls.ratelimit_block,
                           cost=cls.ratelimit_cost, cache=cls.ratelimit_cache,
                           on_unavailable=cls.ratelimit_on_unavailable)  # fmt: skip
            cls._drr_limit = limit  # type: ignore[attr-defined]
        name = limit.group or f"{cls.__module__}.{cls.__qualname__}"
        parent = super().dispatch  # type: ignore[misc]
        if getattr(cls, "view_is_async", False):
            return limit.arun(name, request, lambda: parent(request, *args, **kwargs))
        return limit.run(name, request, lambda: parent(request, *args, **kwargs))
