"""Steps a plan may yield for Redis scripts and callers' functions, and their two drivers.

A plan (see ``_drive``) decides; these steps are the I/O it asks for. :func:`run`
performs them with the sync clients, :func:`arun` with ``redis.asyncio`` on the
running event loop, so a sync function and its asyncio twin are one plan and
differ only in how they wait. Shared by every subpackage (rate limits, locks),
so it knows only the connection manager and Lua scripts, nothing of a caller.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import redis.exceptions as rex

from django_redis_resilience._drive import adrive, drive
from django_redis_resilience._lua import LuaScript
from django_redis_resilience.connection import ConnectionManager, classify
from django_redis_resilience.connection._errors import redirect_of
from django_redis_resilience.exceptions import RedisUnavailable

T = TypeVar("T")
S = TypeVar("S")

#: Turns a ``ResponseError`` the script raised into the call's result, or raises
#: (then the connection layer handles it as for any command: READONLY, LOADING...).
OnError = Callable[[rex.ResponseError], Any]


class _Scripted:
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


class Script(_Scripted):
    """Run ``script`` with ``keys`` and ``args`` (a sequence) on the endpoint of ``keys[0]``."""

    __slots__ = ()


class ScriptGrouped(_Scripted):
    """Run ``script`` once per shard with that shard's ``keys`` and ``args(keys)``.

    The outcome is ``[(keys, result or RedisUnavailable)]``, as from the manager's
    ``execute_grouped``: a shard that is down costs only its own keys.
    """

    __slots__ = ()


class Gather:
    """Several steps: in order with the sync driver, concurrently with the asyncio one.

    The outcome is the list of their outcomes; the first error is raised.
    """

    __slots__ = ("steps",)

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = steps


class Call:
    """Call the caller's function (a view, ``get_response``); the asyncio driver awaits
    what it returns, so there it must be an async function's call."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn


class Sleep:
    """Wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Shield:
    """``step``, which a cancellation of the asyncio driver does not interrupt.

    The plan still sees the cancellation at once; the step runs to its end
    (a release that must reach Redis once the caller counts it as done).
    """

    __slots__ = ("step",)

    def __init__(self, step: Step) -> None:
        self.step = step


class Settled:
    """``step``, whose :class:`RedisUnavailable` is its outcome rather than raised
    (in a :class:`Gather`, one server that is down does not cost the others' answers)."""

    __slots__ = ("step",)

    def __init__(self, step: Step) -> None:
        self.step = step


#: A client plan: given a client, yields what to run on it (:data:`ClientStep`) and
#: gets each answer back.
ClientPlan = Callable[[Any], Generator["ClientStep", Any, Any]]
#: On one client: a command, ``("get", key)``, or a script run, ``(script, keys, args)``.
ClientStep = tuple[Any, ...]


class Session:
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


def command(manager: ConnectionManager, *args: Any, key: Any, write: bool = True) -> Session:
    """One command, ``("get", key)``, on the endpoint of ``key``."""
    return Session(manager, functools.partial(_once, args), key=key, write=write)


def _once(request: ClientStep, client: Any) -> Generator[ClientStep, Any, Any]:
    return (yield request)


class Pop:
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


#: What a :class:`Pop` gives back when it could not block.
POP_FAILED = object()

Step = Script | ScriptGrouped | Gather | Call | Sleep | Shield | Settled | Session | Pop
Plan = Generator[Step, Any, T]


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


def run(plan: Plan[T]) -> T:
    """Carry out ``plan`` with the sync clients."""
    return drive(plan, _do)


async def arun(plan: Plan[T]) -> T:
    """Carry out ``plan`` with the asyncio clients of the running event loop."""
    return await adrive(plan, _ado)


def _do(step: Step) -> Any:
    if type(step) is Script:
        call = functools.partial(_caught, step, keys=step.keys, args=step.args)
        return step.manager.execute(call, key=_route(step), **_how(step))
    if type(step) is ScriptGrouped:
        grouped = functools.partial(_caught_grouped, step)
        return step.manager.execute_grouped(step.keys, grouped, **_how(step))
    if type(step) is Gather:
        return [_do(each) for each in step.steps]
    if type(step) is Session:
        session = functools.partial(_session, step)
        return step.manager.execute(session, key=step.key, **_how(step))
    if type(step) is Settled:
        try:
            return _do(step.step)
        except RedisUnavailable as exc:
            return exc
    if type(step) is Shield:
        return _do(step.step)
    if type(step) is Sleep:
        time.sleep(step.seconds)
        return None
    if type(step) is Pop:
        return _pop(step)
    assert type(step) is Call
    return step.fn()


async def _ado(step: Step) -> Any:
    if type(step) is Script:
        call = functools.partial(_acaught, step, keys=step.keys, args=step.args)
        return await step.manager.aexecute(call, key=_route(step), **_how(step))
    if type(step) is ScriptGrouped:
        grouped = functools.partial(_acaught_grouped, step)
        return await step.manager.aexecute_grouped(step.keys, grouped, **_how(step))
    if type(step) is Gather:
        return list(await asyncio.gather(*(_ado(each) for each in step.steps)))
    if type(step) is Session:
        session = functools.partial(_asession, step)
        return await step.manager.aexecute(session, key=step.key, **_how(step))
    if type(step) is Settled:
        try:
            return await _ado(step.step)
        except RedisUnavailable as exc:
            return exc
    if type(step) is Shield:
        return await asyncio.shield(_ado(step.step))
    if type(step) is Sleep:
        await asyncio.sleep(step.seconds)
        return None
    if type(step) is Pop:
        return await _apop(step)
    assert type(step) is Call
    return await step.fn()


def _pop(step: Pop) -> Any:
    endpoint = step.manager.route(write=True, key=step.route)[0]
    if not endpoint.breaker.closed:
        return POP_FAILED
    try:
        popped = endpoint.blocking_client().blpop([step.key], timeout=step.timeout)
    except Exception as exc:
        if _pop_failure(exc):
            return POP_FAILED
        raise
    return None if popped is None else popped[1]


async def _apop(step: Pop) -> Any:
    endpoint = step.manager.route(write=True, key=step.route)[0]
    if not endpoint.breaker.closed:
        return POP_FAILED
    try:
        popped = await endpoint.async_blocking_client().blpop([step.key], timeout=step.timeout)
    except Exception as exc:
        if _pop_failure(exc):
            return POP_FAILED
        raise
    return None if popped is None else popped[1]


def _pop_failure(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and (
        classify(exc) is not None or redirect_of(exc) is not None
    )


def _session(step: Session, client: Any) -> Any:
    return drive(step.plan(client), functools.partial(_on_client, client))


async def _asession(step: Session, client: Any) -> Any:
    return await adrive(step.plan(client), functools.partial(_aon_client, client))


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


def _route(step: _Scripted) -> Any:
    """The key whose endpoint runs the script (a script's keys share one cluster slot)."""
    return step.keys[0] if step.keys else None


def _how(step: _Scripted | Session) -> dict[str, bool]:
    return {"write": step.write, "idempotent": step.idempotent}


def _caught(step: _Scripted, client: Any, *, keys: Sequence[str], args: Any) -> Any:
    """The script's answer; a server error through ``on_error`` inside the call, so what
    it raises again reaches the connection layer (a failover's READONLY is retried)."""
    try:
        return step.script(client, keys, args)
    except rex.ResponseError as error:
        if step.on_error is None:
            raise
        return step.on_error(error)


async def _acaught(step: _Scripted, client: Any, *, keys: Sequence[str], args: Any) -> Any:
    try:
        return await step.script.acall(client, keys, args)
    except rex.ResponseError as error:
        if step.on_error is None:
            raise
        return step.on_error(error)


def _caught_grouped(step: _Scripted, client: Any, keys: list[str]) -> Any:
    return _caught(step, client, keys=keys, args=step.args(keys))


async def _acaught_grouped(step: _Scripted, client: Any, keys: list[str]) -> Any:
    return await _acaught(step, client, keys=keys, args=step.args(keys))
