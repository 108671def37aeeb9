"""The steps plans yield for Redis and for callers' functions, shared by every subpackage.

A plan (see ``_drive``) decides; these steps are the I/O it asks for, each
carrying itself out with the sync clients (``do``) or with ``redis.asyncio`` on
the running event loop (``ado``). So a sync function and its asyncio twin are
one plan, run by :func:`run` or :func:`arun`, and differ only in how they wait.
They know only the connection manager and Lua scripts, nothing of a caller; a
subpackage adds a step of its own by subclassing :class:`Step`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

import redis.exceptions as rex

from django_redis_resilience._drive import Plan, Sleep, Step, adrive, arun, drive, run
from django_redis_resilience._lua import LuaScript
from django_redis_resilience.connection import ConnectionManager, classify, redirect_of
from django_redis_resilience.exceptions import RedisUnavailable

__all__ = [
    "POP_FAILED",
    "Call",
    "Execute",
    "Gather",
    "Grouped",
    "Plan",
    "Pop",
    "Primaries",
    "Script",
    "ScriptGrouped",
    "Session",
    "Settled",
    "Shield",
    "Sleep",
    "Step",
    "arun",
    "command",
    "mapped",
    "one",
    "run",
]

T = TypeVar("T")
S = TypeVar("S")

#: Called with the sync client, or (unless an async one is given) with the asyncio
#: client, whose methods mirror the sync ones and return awaitables.
ClientFn = Callable[[Any], Any]
AsyncClientFn = Callable[[Any], Awaitable[Any]]

#: Turns a ``ResponseError`` the script raised into the call's result, or raises
#: (then the connection layer handles it as for any command: READONLY, LOADING...).
OnError = Callable[[rex.ResponseError], Any]


async def awaited(value: Any) -> Any:
    """``value``, awaited when it is awaitable (a caller's function may be either)."""
    return await value if inspect.isawaitable(value) else value


class Execute(Step):
    """Run ``fn(client)`` on the endpoint of ``key`` (breaker, retries, routing)."""

    __slots__ = ("afn", "fn", "idempotent", "key", "manager", "write")

    def __init__(
        self,
        manager: ConnectionManager,
        fn: ClientFn,
        *,
        key: Any,
        write: bool = True,
        idempotent: bool = True,
        afn: AsyncClientFn | None = None,
    ) -> None:
        self.manager = manager
        self.fn = fn
        self.afn = afn
        self.key = key
        self.write = write
        self.idempotent = idempotent

    def do(self) -> Any:
        return self.manager.execute(
            self.fn, key=self.key, write=self.write, idempotent=self.idempotent
        )

    async def ado(self) -> Any:
        fn = self.fn
        afn = self.afn or (lambda client: awaited(fn(client)))
        return await self.manager.aexecute(
            afn, key=self.key, write=self.write, idempotent=self.idempotent
        )


class Grouped(Step):
    """Run ``fn(client, keys)`` once per shard: ``[(keys, result or RedisUnavailable)]``.

    A shard that is down costs only its own keys; the asyncio driver asks the
    shards concurrently.
    """

    __slots__ = ("fn", "keys", "manager", "write")

    def __init__(
        self,
        manager: ConnectionManager,
        keys: Sequence[str],
        fn: Callable[[Any, list[str]], Any],
        *,
        write: bool = True,
    ) -> None:
        self.manager = manager
        self.keys = keys
        self.fn = fn
        self.write = write

    def do(self) -> Any:
        return self.manager.execute_grouped(self.keys, self.fn, write=self.write)

    async def ado(self) -> Any:
        fn = self.fn
        return await self.manager.aexecute_grouped(
            self.keys, lambda client, keys: awaited(fn(client, keys)), write=self.write
        )


class Primaries(Step):
    """Run a function on every master: ``[(endpoint, result or RedisUnavailable)]``."""

    __slots__ = ("afn", "fn", "manager")

    def __init__(self, manager: ConnectionManager, fn: ClientFn, afn: AsyncClientFn) -> None:
        self.manager = manager
        self.fn = fn
        self.afn = afn

    def do(self) -> Any:
        return self.manager.for_each_primary(self.fn)

    async def ado(self) -> Any:
        return await self.manager.afor_each_primary(self.afn)


class _Scripted(Step):
    """What both script steps carry; ``on_error`` applies inside the call (see :data:`OnError`)."""

    __slots__ = ("args", "idempotent", "keys", "manager", "on_error", "script", "write")

    def __init__(
        self,
        manager: ConnectionManager,
        script: LuaScript,
        keys: Sequence[str],
        args: Any,
        *,
        write: bool = True,
        idempotent: bool = True,
        on_error: OnError | None = None,
    ) -> None:
        self.manager = manager
        self.script = script
        self.keys = keys
        self.args = args
        self.write = write
        self.idempotent = idempotent
        self.on_error = on_error

    def _caught(self, client: Any, keys: Sequence[str], args: Any) -> Any:
        """The script's answer; a server error through ``on_error`` inside the call, so
        what it raises again reaches the connection layer (a failover's READONLY is retried)."""
        try:
            return self.script(client, keys, args)
        except rex.ResponseError as error:
            if self.on_error is None:
                raise
            return self.on_error(error)

    async def _acaught(self, client: Any, keys: Sequence[str], args: Any) -> Any:
        try:
            return await self.script.acall(client, keys, args)
        except rex.ResponseError as error:
            if self.on_error is None:
                raise
            return self.on_error(error)


class Script(_Scripted):
    """Run ``script`` with ``keys`` and ``args`` (a sequence) on the endpoint of ``keys[0]``
    (a script's keys share one cluster slot)."""

    __slots__ = ()

    def do(self) -> Any:
        return self.manager.execute(
            self._call,
            key=self.keys[0] if self.keys else None,
            write=self.write,
            idempotent=self.idempotent,
        )

    async def ado(self) -> Any:
        return await self.manager.aexecute(
            self._acall,
            key=self.keys[0] if self.keys else None,
            write=self.write,
            idempotent=self.idempotent,
        )

    def _call(self, client: Any) -> Any:
        return self._caught(client, self.keys, self.args)

    def _acall(self, client: Any) -> Awaitable[Any]:
        return self._acaught(client, self.keys, self.args)


class ScriptGrouped(_Scripted):
    """Run ``script`` once per shard with that shard's ``keys`` and ``args(keys)``.

    The outcome is ``[(keys, result or RedisUnavailable)]``, as from the manager's
    ``execute_grouped``: a shard that is down costs only its own keys.
    """

    __slots__ = ()

    def do(self) -> Any:
        return self.manager.execute_grouped(
            self.keys, self._call, write=self.write, idempotent=self.idempotent
        )

    async def ado(self) -> Any:
        return await self.manager.aexecute_grouped(
            self.keys, self._acall, write=self.write, idempotent=self.idempotent
        )

    def _call(self, client: Any, keys: list[str]) -> Any:
        return self._caught(client, keys, self.args(keys))

    def _acall(self, client: Any, keys: list[str]) -> Awaitable[Any]:
        return self._acaught(client, keys, self.args(keys))


class Gather(Step):
    """Several steps: in order with the sync driver, concurrently with the asyncio one.

    The outcome is the list of their outcomes; the first error is raised.
    """

    __slots__ = ("steps",)

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = steps

    def do(self) -> Any:
        return [each.do() for each in self.steps]

    async def ado(self) -> Any:
        return list(await asyncio.gather(*(each.ado() for each in self.steps)))


class Call(Step):
    """Call the caller's function (a view, ``get_response``, ``get_or_set``'s default);
    the asyncio driver awaits what it returns when that is awaitable."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def do(self) -> Any:
        return self.fn()

    async def ado(self) -> Any:
        return await awaited(self.fn())


class Shield(Step):
    """``step``, which a cancellation of the asyncio driver does not interrupt.

    The plan still sees the cancellation at once; the step runs to its end
    (a release that must reach Redis once the caller counts it as done).
    """

    __slots__ = ("step",)

    def __init__(self, step: Step) -> None:
        self.step = step

    def do(self) -> Any:
        return self.step.do()

    async def ado(self) -> Any:
        return await asyncio.shield(self.step.ado())


class Settled(Step):
    """``step``, whose :class:`RedisUnavailable` is its outcome rather than raised
    (in a :class:`Gather`, one server that is down does not cost the others' answers)."""

    __slots__ = ("step",)

    def __init__(self, step: Step) -> None:
        self.step = step

    def do(self) -> Any:
        try:
            return self.step.do()
        except RedisUnavailable as exc:
            return exc

    async def ado(self) -> Any:
        try:
            return await self.step.ado()
        except RedisUnavailable as exc:
            return exc


#: A client plan: given a client, yields what to run on it (:data:`ClientStep`) and
#: gets each answer back.
ClientPlan = Callable[[Any], Generator["ClientStep", Any, Any]]
#: On one client: a command, ``("get", key)``, or a script run, ``(script, keys, args)``.
ClientStep = tuple[Any, ...]


class Session(Step):
    """Run ``plan(client)`` on one client, inside one call of the manager.

    For several requests that must go to the same server within one attempt
    (a retry by the manager starts the plan afresh on its new client), or that
    need the client itself (its server, its socket timeout).
    """

    __slots__ = ("idempotent", "key", "manager", "plan", "write")

    def __init__(
        self,
        manager: ConnectionManager,
        plan: ClientPlan,
        *,
        key: Any = None,
        write: bool = True,
        idempotent: bool = True,
    ) -> None:
        self.manager = manager
        self.plan = plan
        self.key = key
        self.write = write
        self.idempotent = idempotent

    def do(self) -> Any:
        return self.manager.execute(
            self._on, key=self.key, write=self.write, idempotent=self.idempotent
        )

    async def ado(self) -> Any:
        return await self.manager.aexecute(
            self._aon, key=self.key, write=self.write, idempotent=self.idempotent
        )

    def _on(self, client: Any) -> Any:
        return drive(self.plan(client), functools.partial(_on_client, client))

    async def _aon(self, client: Any) -> Any:
        return await adrive(self.plan(client), functools.partial(_aon_client, client))


def _on_client(client: Any, request: ClientStep) -> Any:
    if isinstance(request[0], LuaScript):
        script, keys, args = request
        return script(client, keys, args)
    return getattr(client, request[0])(*request[1:])


async def _aon_client(client: Any, request: ClientStep) -> Any:
    if isinstance(request[0], LuaScript):
        script, keys, args = request
        return await script.acall(client, keys, args)
    return await getattr(client, request[0])(*request[1:])


def command(manager: ConnectionManager, *args: Any, key: Any, write: bool = True) -> Session:
    """One command, ``("get", key)``, on the endpoint of ``key``."""
    return Session(manager, functools.partial(_once, args), key=key, write=write)


def _once(request: ClientStep, client: Any) -> Generator[ClientStep, Any, Any]:
    return (yield request)


#: What a :class:`Pop` gives back when it could not block.
POP_FAILED = object()


class Pop(Step):
    """``BLPOP key`` on a blocking connection of the endpoint serving ``route`` for writes.

    The outcome is the popped value, ``None`` when ``timeout`` ran out, or
    :data:`POP_FAILED` when the endpoint's breaker is open or the connection
    failed: a blocked caller asks again rather than fail (its next request
    tells whether Redis is really unavailable). Not through the manager: a
    blocked read must neither be retried nor count against the breaker.
    """

    __slots__ = ("key", "manager", "route", "timeout")

    def __init__(self, manager: ConnectionManager, route: str, key: str, timeout: float) -> None:
        self.manager = manager
        self.route = route
        self.key = key
        self.timeout = timeout

    def do(self) -> Any:
        endpoint = self.manager.route(write=True, key=self.route)[0]
        if not endpoint.breaker.closed:
            return POP_FAILED
        try:
            popped = endpoint.blocking_client().blpop([self.key], timeout=self.timeout)
        except Exception as exc:
            if _pop_failure(exc):
                return POP_FAILED
            raise
        return None if popped is None else popped[1]

    async def ado(self) -> Any:
        endpoint = self.manager.route(write=True, key=self.route)[0]
        if not endpoint.breaker.closed:
            return POP_FAILED
        try:
            blocking = endpoint.async_blocking_client()
            popped = await blocking.blpop([self.key], timeout=self.timeout)
        except Exception as exc:
            if _pop_failure(exc):
                return POP_FAILED
            raise
        return None if popped is None else popped[1]


def _pop_failure(exc: Exception) -> bool:
    return classify(exc) is not None or redirect_of(exc) is not None


def one(step: Step) -> Plan[Any]:
    """A plan of one step: its outcome."""
    return (yield step)


def mapped(plan: Generator[S, Any, T], to_step: Callable[[S], Step]) -> Plan[T]:
    """``plan``, whose own steps (a subpackage's) become shared ones by ``to_step``.

    Outcomes and errors go back into ``plan`` as a driver sends them; closed,
    it closes ``plan`` (so its cleanup runs as under a driver).
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        try:
            value = yield to_step(step)
        except GeneratorExit:
            plan.close()
            raise
        except BaseException as exc:
            error = exc
