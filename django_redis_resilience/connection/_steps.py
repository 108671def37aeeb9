"""The steps of the connection layer's plans: its sync and asyncio paths are one plan each.

A plan (see :mod:`django_redis_resilience._drive`) decides what to try next;
these steps are the waiting it asks for, carried out with the sync clients
(``do``) or on the running event loop (``ado``). The shared steps of
``django_redis_resilience._steps`` stand above this layer (they call the
manager), so the few the manager needs are defined here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from django_redis_resilience._drive import Plan, Step, arun, run
from django_redis_resilience.exceptions import RedisUnavailable


class ClientSource(Protocol):
    """Which client of an endpoint one try talks to (a redirect may name another node)."""

    def client(self, endpoint: Any) -> Any: ...

    def async_client(self, endpoint: Any) -> Any: ...


class OnClient(Step):
    """``fn(client)`` on the client ``source`` picks for ``endpoint``; awaited with asyncio.

    ``fn`` matches the driver: a sync function for the sync one, a function
    returning an awaitable for the asyncio one.
    """

    __slots__ = ("endpoint", "fn", "source")

    def __init__(self, fn: Callable[[Any], Any], source: ClientSource, endpoint: Any) -> None:
        self.fn = fn
        self.source = source
        self.endpoint = endpoint

    def do(self) -> Any:
        return self.fn(self.source.client(self.endpoint))

    async def ado(self) -> Any:
        return await self.fn(self.source.async_client(self.endpoint))


class DropIdle(Step):
    """Close ``endpoint``'s idle pooled sockets: its sync pool, or the running loop's."""

    __slots__ = ("endpoint",)

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint

    def do(self) -> None:
        self.endpoint.drop_idle_connections()

    async def ado(self) -> None:
        await self.endpoint.adrop_idle_connections()


class Discover(Step):
    """Read a cluster's slot map if it was never read; off the event loop with asyncio
    (discovery waits on sockets and threads)."""

    __slots__ = ("cluster",)

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    def do(self) -> None:
        self.cluster.ensure_discovered()

    async def ado(self) -> None:
        await self.cluster.aensure_discovered()


class Executed(Step):
    """``manager.execute(fn, ...)`` or ``await manager.aexecute(fn, ...)``: one call
    with its fast path, breaker and retries (``fn`` matches the driver)."""

    __slots__ = ("fn", "idempotent", "key", "manager", "write")

    def __init__(
        self, manager: Any, fn: Callable[[Any], Any], *, key: Any, write: bool, idempotent: bool
    ) -> None:
        self.manager = manager
        self.fn = fn
        self.key = key
        self.write = write
        self.idempotent = idempotent

    def do(self) -> Any:
        return self.manager.execute(
            self.fn, key=self.key, write=self.write, idempotent=self.idempotent
        )

    async def ado(self) -> Any:
        return await self.manager.aexecute(
            self.fn, key=self.key, write=self.write, idempotent=self.idempotent
        )


class Planned(Step):
    """A plan of its own, made by ``make`` and run to its end by the same kind of driver."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Plan[Any]]) -> None:
        self.make = make

    def do(self) -> Any:
        return run(self.make())

    async def ado(self) -> Any:
        return await arun(self.make())


class EachSettled(Step):
    """Several steps, one after the other with the sync driver and concurrently with
    the asyncio one; the outcome lists each one's result or :class:`RedisUnavailable`.

    One server that is down costs only its own part of the answer.
    """

    __slots__ = ("steps",)

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = steps

    def do(self) -> list[Any]:
        outcomes: list[Any] = []
        for step in self.steps:  # a plain loop: execute_grouped runs this on every get_many
            try:
                outcomes.append(step.do())
            except RedisUnavailable as exc:
                outcomes.append(exc)
        return outcomes

    async def ado(self) -> list[Any]:
        return list(await asyncio.gather(*(_asettled(step) for step in self.steps)))


async def _asettled(step: Step) -> Any:
    try:
        return await step.ado()
    except RedisUnavailable as exc:
        return exc
