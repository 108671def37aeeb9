"""Steps a plan may yield for Redis scripts and callers' functions, and their two drivers.

A plan (see ``_drive``) decides; these steps are the I/O it asks for. :func:`run`
performs them with the sync clients, :func:`arun` with ``redis.asyncio`` on the
running event loop, so a sync function and its asyncio twin are one plan and
differ only in how they wait. Shared by every subpackage (rate limits now), so
it knows only the connection manager and Lua scripts, nothing of a caller.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

import redis.exceptions as rex

from django_redis_resilience._drive import adrive, drive
from django_redis_resilience._lua import LuaScript
from django_redis_resilience.connection import ConnectionManager

T = TypeVar("T")

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


Step = Script | ScriptGrouped | Gather | Call
Plan = Generator[Step, Any, T]


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
    assert type(step) is Call
    return await step.fn()


def _route(step: _Scripted) -> Any:
    """The key whose endpoint runs the script (a script's keys share one cluster slot)."""
    return step.keys[0] if step.keys else None


def _how(step: _Scripted) -> dict[str, bool]:
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
