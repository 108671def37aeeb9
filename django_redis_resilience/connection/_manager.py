"""Run commands against the endpoints of one cache: routing, retries, breakers.

The sync and async paths share every decision through :class:`_Attempt`; they
differ only in how they wait (``time.sleep`` or ``await asyncio.sleep``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import redis
import redis.asyncio

from django_redis_resilience.connection._background import Scheduler
from django_redis_resilience.connection._endpoint import Endpoint
from django_redis_resilience.connection._errors import ErrorKind, classify, translate, was_unsent
from django_redis_resilience.connection._location import Topology, TopologyKind
from django_redis_resilience.connection._options import ConnectionOptions
from django_redis_resilience.connection._retry import is_idempotent
from django_redis_resilience.connection._sentinel import SentinelService
from django_redis_resilience.exceptions import BreakerOpen, ConfigurationError

T = TypeVar("T")


class _Attempt:
    """The decisions of one call across its retries and endpoints."""

    __slots__ = ("attempt", "drop_idle", "endpoint", "idempotent", "index", "manager", "route")

    def __init__(
        self, manager: ConnectionManager, route: tuple[Endpoint, ...], *, idempotent: bool
    ) -> None:
        self.manager = manager
        self.route = route
        self.idempotent = idempotent
        self.index = 0
        self.attempt = 0
        self.endpoint = route[0]
        self.drop_idle = False

    def next_endpoint(self) -> Endpoint:
        """The endpoint to try now; raises :class:`BreakerOpen` when none is allowed."""
        while self.index < len(self.route):
            endpoint = self.route[self.index]
            if endpoint.breaker.allow():
                self.endpoint = endpoint
                return endpoint
            self.index += 1
            self.attempt = 0
        last = self.route[-1]
        raise translate(
            BreakerOpen("breaker open"),
            ErrorKind.BREAKER_OPEN,
            endpoint=last.display,
            alias=self.manager.alias,
        ) from last.breaker.last_error

    def failed(self, exc: Exception) -> float:
        """Decide after a failure: return the delay before the next try, or raise."""
        kind = classify(exc)
        if kind is None:
            raise exc  # the server answered: the caller must see it as it is
        endpoint = self.endpoint
        unsent = was_unsent(exc)
        policy = self.manager.options.retry
        if kind is ErrorKind.RESET or kind is ErrorKind.READONLY:
            # One dead pooled socket after a mass disconnect means the others
            # are dead too, and READONLY means every pooled socket talks to a
            # demoted primary: make sure the retry gets a fresh connection.
            self.drop_idle = True
        if policy.should_retry(
            attempt=self.attempt, kind=kind, unsent=unsent, idempotent=self.idempotent
        ):
            self.attempt += 1
            return policy.delay(self.attempt - 1)
        error = translate(exc, kind, endpoint=endpoint.display, alias=self.manager.alias)
        error.__cause__ = exc
        if kind.trips:
            endpoint.breaker.trip(error)
        elif kind.counts:
            endpoint.breaker.record_failure(error)
        # A read that failed on a replica falls over to the next endpoint (the primary).
        if self.index + 1 < len(self.route):
            self.index += 1
            self.attempt = 0
            return 0.0
        raise error


class ConnectionManager:
    """The clients of one cache: a primary and optional read replicas."""

    def __init__(
        self,
        *,
        alias: str,
        topology: Topology,
        options: ConnectionOptions,
        scheduler: Scheduler,
    ) -> None:
        if topology.kind is TopologyKind.CLUSTER:
            raise ConfigurationError(
                f"CACHES[{alias!r}]['LOCATION']: cluster locations "
                "are not supported by this version."
            )
        self.alias = alias
        self.topology = topology
        self.options = options
        self.sentinel: SentinelService | None = None
        if topology.kind is TopologyKind.SENTINEL:
            self.sentinel = SentinelService(topology=topology, options=options)
            # One endpoint per role of the service; the address only carries
            # credentials, database and TLS options (Sentinel names the host).
            template = replace(topology.nodes[0], host="", port=0)
            self.primary = Endpoint(
                alias=alias,
                role="primary",
                address=template,
                options=options,
                scheduler=scheduler,
                sentinel=self.sentinel,
            )
            replicas: tuple[Endpoint, ...] = ()
            if options.read_from_replicas:
                replicas = (
                    Endpoint(
                        alias=alias,
                        role="replicas",
                        address=template,
                        options=options,
                        scheduler=scheduler,
                        sentinel=self.sentinel,
                    ),
                )
            self.replicas = replicas
        else:
            self.primary = Endpoint(
                alias=alias,
                role="primary",
                address=topology.primary,
                options=options,
                scheduler=scheduler,
            )
            self.replicas = tuple(
                Endpoint(
                    alias=alias,
                    role=f"replica{i}",
                    address=address,
                    options=options,
                    scheduler=scheduler,
                )
                for i, address in enumerate(topology.replicas, start=1)
            )
        self.endpoints = (self.primary, *self.replicas)
        self._primary_route = (self.primary,)
        self._reads_from_replicas = bool(self.replicas) and options.read_from_replicas is not False

    def __repr__(self) -> str:
        return f"<ConnectionManager {self.alias} {self.topology.display}>"

    # --- routing ------------------------------------------------------------

    def route(self, *, write: bool) -> tuple[Endpoint, ...]:
        """Endpoints to try in order: a healthy replica for reads, then the primary."""
        if write or not self._reads_from_replicas:
            return self._primary_route
        healthy = [r for r in self.replicas if r.breaker.closed]
        if not healthy:
            return self._primary_route
        return (random.choice(healthy), self.primary)

    def get_client(self, *, write: bool = True) -> redis.Redis:
        """The raw redis-py client (django-redis's ``get_client``); no breaker on it."""
        return self.route(write=write)[0].client

    # --- sync ---------------------------------------------------------------

    def execute(
        self, fn: Callable[[redis.Redis], T], *, write: bool = True, idempotent: bool = True
    ) -> T:
        """Run ``fn(client)`` with breaker, retries and error translation.

        Raises :class:`RedisUnavailable` (or a subclass) for connection-class
        failures; anything the server answered is raised unchanged.
        """
        route: tuple[Endpoint, ...]
        if write or not self._reads_from_replicas:
            route = self._primary_route
            endpoint = self.primary
            if endpoint.breaker.closed:
                try:
                    result = fn(endpoint.client)
                except Exception as exc:
                    attempt = _Attempt(self, route, idempotent=idempotent)
                    return self._execute_slow(fn, attempt, attempt.failed(exc))
                endpoint.breaker.record_success()
                return result
        else:
            route = self.route(write=False)
        return self._execute_slow(fn, _Attempt(self, route, idempotent=idempotent), None)

    def _execute_slow(
        self, fn: Callable[[redis.Redis], T], attempt: _Attempt, delay: float | None
    ) -> T:
        while True:
            if attempt.drop_idle:
                attempt.drop_idle = False
                attempt.endpoint.drop_idle_connections()
            if delay:
                time.sleep(delay)
            endpoint = attempt.next_endpoint()
            try:
                result = fn(endpoint.client)
            except Exception as exc:
                delay = attempt.failed(exc)
                continue
            endpoint.breaker.record_success()
            return result

    def execute_command(
        self, *args: Any, write: bool = True, idempotent: bool | None = None
    ) -> Any:
        """Run one raw command; idempotency is guessed from the command when not given."""
        if idempotent is None:
            idempotent = is_idempotent(str(args[0]), *args)
        return self.execute(
            lambda c: c.execute_command(*args),  # type: ignore[no-untyped-call]
            write=write,
            idempotent=idempotent,
        )

    # --- async --------------------------------------------------------------

    async def aexecute(
        self,
        fn: Callable[[redis.asyncio.Redis], Awaitable[T]],
        *,
        write: bool = True,
        idempotent: bool = True,
    ) -> T:
        """The asyncio twin of :meth:`execute`, on the running loop's pool."""
        attempt = _Attempt(self, self.route(write=write), idempotent=idempotent)
        delay: float | None = None
        while True:
            if attempt.drop_idle:
                attempt.drop_idle = False
                await attempt.endpoint.adrop_idle_connections()
            if delay:
                await asyncio.sleep(delay)
            endpoint = attempt.next_endpoint()
            try:
                result = await fn(endpoint.async_client())
            except Exception as exc:
                delay = attempt.failed(exc)
                continue
            endpoint.breaker.record_success()
            return result

    async def aexecute_command(
        self, *args: Any, write: bool = True, idempotent: bool | None = None
    ) -> Any:
        if idempotent is None:
            idempotent = is_idempotent(str(args[0]), *args)
        return await self.aexecute(
            lambda c: c.execute_command(*args),  # type: ignore[no-untyped-call]
            write=write,
            idempotent=idempotent,
        )

    # --- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        for endpoint in self.endpoints:
            endpoint.close()
        if self.sentinel is not None:
            self.sentinel.close()

    def forget(self) -> None:
        for endpoint in self.endpoints:
            endpoint.forget()
