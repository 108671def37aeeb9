"""Run commands against the endpoints of one cache: routing, retries, breakers.

A call on a healthy endpoint is one direct call of the caller's function (the
hot path of every cache read). Anything else (retries, a replica read that
may fall over to the primary, every master or every shard in turn) is written
once as a plan (see :mod:`django_redis_resilience._drive`) whose decisions
:class:`_Attempt` makes; the sync and asyncio entry points run the same plan
and differ only in how they wait.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio

from django_redis_resilience._drive import Plan, Sleep, arun, run
from django_redis_resilience.connection._background import Scheduler
from django_redis_resilience.connection._breaker import CircuitBreaker
from django_redis_resilience.connection._cluster import ClusterRouter, ClusterShard
from django_redis_resilience.connection._endpoint import (
    Endpoint,
    NodePools,
    asking_client,
    async_asking_client,
)
from django_redis_resilience.connection._errors import (
    PIPELINE_MARK,
    ErrorKind,
    classify,
    redirect_of,
    translate,
    was_unsent,
)
from django_redis_resilience.connection._location import Topology, TopologyKind
from django_redis_resilience.connection._options import ConnectionOptions
from django_redis_resilience.connection._retry import is_idempotent
from django_redis_resilience.connection._sentinel import SentinelService
from django_redis_resilience.connection._slots import Extensions
from django_redis_resilience.connection._steps import (
    Discover,
    DropIdle,
    EachSettled,
    Executed,
    OnClient,
    Planned,
)
from django_redis_resilience.exceptions import BreakerOpen, RedisUnavailable

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

#: Redirects (``MOVED``/``ASK``) one call may follow before the cluster counts as reconfiguring.
MAX_REDIRECTS = 5
#: Commands without a key: on a cluster they go to any serving master.
_KEYLESS = frozenset(
    {"PING", "TIME", "INFO", "DBSIZE", "ECHO", "SCAN", "RANDOMKEY", "FLUSHDB", "FLUSHALL",
     "SCRIPT", "CLUSTER", "CONFIG", "CLIENT", "ROLE", "LASTSAVE", "MEMORY", "SLOWLOG"}
)  # fmt: skip
_SCRIPT_COMMANDS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})


class LogicalEndpoint(Protocol):
    """What a call is routed to: a server, a Sentinel role, or a cluster shard."""

    breaker: CircuitBreaker

    @property
    def alias(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def display(self) -> str: ...

    @property
    def client(self) -> redis.Redis: ...

    def async_client(self) -> redis.asyncio.Redis: ...

    def blocking_client(self) -> redis.Redis: ...

    def async_blocking_client(self) -> redis.asyncio.Redis: ...

    def drop_idle_connections(self) -> None: ...

    async def adrop_idle_connections(self) -> None: ...


EndpointHook = Callable[[LogicalEndpoint], None]


def command_key(args: Sequence[Any]) -> Any:
    """The key a raw command routes by on a cluster, or ``None`` for a keyless one."""
    first = args[0]
    name = (first.decode() if isinstance(first, bytes) else str(first)).upper()
    if name in _SCRIPT_COMMANDS:
        return args[3] if len(args) > 3 and int(args[2]) > 0 else None
    if name in _KEYLESS or len(args) < 2:
        return None
    return args[1]


class _Attempt:
    """The decisions of one call across its retries and endpoints."""

    __slots__ = (
        "asking",
        "attempt",
        "drop_idle",
        "endpoint",
        "idempotent",
        "index",
        "last_node",
        "manager",
        "redirect",
        "redirects",
        "route",
    )

    def __init__(
        self, manager: ConnectionManager, route: tuple[LogicalEndpoint, ...], *, idempotent: bool
    ) -> None:
        self.manager = manager
        self.route = route
        self.idempotent = idempotent
        self.index = 0
        self.attempt = 0
        self.endpoint = route[0]
        self.drop_idle = False
        #: A cluster node named by ``MOVED``/``ASK``, for the next try only.
        self.redirect: NodePools | None = None
        self.asking = False
        self.redirects = 0
        #: The node a redirect sent the last try to (``None``: the endpoint's own).
        self.last_node: NodePools | None = None

    def client(self, endpoint: LogicalEndpoint) -> redis.Redis:
        redirect, self.redirect = self.redirect, None
        self.last_node = redirect
        if redirect is None:
            return endpoint.client
        return asking_client(redirect) if self.asking else redirect.client

    def async_client(self, endpoint: LogicalEndpoint) -> redis.asyncio.Redis:
        redirect, self.redirect = self.redirect, None
        self.last_node = redirect
        if redirect is None:
            return endpoint.async_client()
        return async_asking_client(redirect) if self.asking else redirect.async_client()

    def next_endpoint(self) -> LogicalEndpoint:
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
        cluster = self.manager.cluster
        if cluster is not None and (redirect := redirect_of(exc)) is not None:
            return self._redirected(cluster, exc, *redirect)
        kind = classify(exc)
        if kind is None:
            raise exc  # the server answered: the caller must see it as it is
        endpoint = self.endpoint
        if cluster is not None and kind.counts:
            cluster.request_refresh(f"{kind.label} from {endpoint.display}")
            if kind is ErrorKind.CLUSTER_DOWN:
                # No retry helps until the cluster heals itself. Only this shard's
                # breaker opens, even on "the cluster is down": a master that just
                # restarted says so of itself while it rejoins, and the other shards
                # still serve. In a real outage each shard trips on its own first
                # CLUSTERDOWN, one quick round trip each.
                error = translate(exc, kind, endpoint=endpoint.display, alias=self.manager.alias)
                error.__cause__ = exc
                endpoint.breaker.trip(error)
                raise error
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

    def _redirected(
        self, cluster: ClusterRouter, exc: Exception, asking: bool, host: str, port: int
    ) -> float:
        """Follow ``MOVED``/``ASK``: the server did not run the command, so any command may.

        Not so in a pipeline: redis-py sends all of its commands and raises
        the first error afterwards, so the others may have run. Such a call
        fails as unavailable (the caller serves those keys from its fallback)
        and the slot map is refreshed for the next one.
        """
        if not asking or PIPELINE_MARK in str(exc):
            cluster.request_refresh("MOVED")
        self.redirects += 1
        if self.redirects > MAX_REDIRECTS or PIPELINE_MARK in str(exc):
            error = translate(
                exc, ErrorKind.TRY_AGAIN, endpoint=self.endpoint.display, alias=self.manager.alias
            )
            raise error from exc
        if not host:  # "-MOVED 3999 :6380": the same host, another port
            host = self._current_host()
        target = (host, port)
        self.asking = asking
        # Failures on the target count against the shard it serves, not the one
        # the stale map named.
        shard = cluster.shard_by_master(target)
        if shard is not None and shard is not self.endpoint:
            self.route = (shard,)
            self.index = 0
            self.attempt = 0
        self.redirect = cluster.node(target)
        return 0.0

    def _current_host(self) -> str:
        if self.last_node is not None:
            return self.last_node.address.host
        master = getattr(self.endpoint, "view", None)
        address = getattr(master, "master", None)
        return str(address[0]) if address else ""


def _retrying(fn: Callable[[Any], Any], attempt: _Attempt, delay: float | None) -> Plan[Any]:
    """Call ``fn`` on a client until it succeeds or ``attempt`` gives up: every slow call.

    ``delay`` is the wait before the first try (the fast path's failure asked
    for it), ``None`` for none. ``fn`` matches the driver that runs the plan.
    """
    while True:
        if attempt.drop_idle:
            attempt.drop_idle = False
            yield DropIdle(attempt.endpoint)
        if delay:
            yield Sleep(delay)
        endpoint = attempt.next_endpoint()
        try:
            result = yield OnClient(fn, attempt, endpoint)
        except Exception as exc:
            delay = attempt.failed(exc)
            continue
        endpoint.breaker.record_success()
        return result


def _with_keys(fn: Callable[[Any, list[K]], Any], keys: list[K]) -> Callable[[Any], Any]:
    """``fn`` bound to one group of keys: a function of the client alone."""
    return lambda client: fn(client, keys)


class ConnectionManager:
    """The clients of one cache: a primary and read replicas, a Sentinel service, or a cluster."""

    def __init__(
        self,
        *,
        alias: str,
        topology: Topology,
        options: ConnectionOptions,
        scheduler: Scheduler,
    ) -> None:
        self.alias = alias
        self.topology = topology
        self.options = options
        #: The background thread of this manager's registry (probes, refreshes, drains).
        self.scheduler = scheduler
        #: Per-feature state that lives as long as this manager (e.g. the cache's
        #: journals), so it is rebuilt with it when the configuration changes;
        #: each feature reads its own typed :class:`Slot`.
        self.extensions = Extensions()
        self.sentinel: SentinelService | None = None
        self.cluster: ClusterRouter | None = None
        self.primary: Endpoint | None = None
        self.replicas: tuple[Endpoint, ...] = ()
        if topology.kind is TopologyKind.CLUSTER:
            # Nothing is discovered here: the slot map is read at first use.
            self.cluster = ClusterRouter(
                alias=alias,
                topology=topology,
                options=options,
                scheduler=scheduler,
                config=options.cluster,
            )
        elif topology.kind is TopologyKind.SENTINEL:
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
            if options.read_from_replicas:
                self.replicas = (
                    Endpoint(
                        alias=alias,
                        role="replicas",
                        address=template,
                        options=options,
                        scheduler=scheduler,
                        sentinel=self.sentinel,
                    ),
                )
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
        self._fixed: tuple[Endpoint, ...] = (
            (self.primary, *self.replicas) if self.primary is not None else ()
        )
        self._primary_route: tuple[LogicalEndpoint, ...] = self._fixed[:1]
        self._reads_from_replicas = bool(self.replicas) and options.read_from_replicas is not False

    def __repr__(self) -> str:
        return f"<ConnectionManager {self.alias} {self.topology.display}>"

    @property
    def endpoints(self) -> tuple[LogicalEndpoint, ...]:
        """Every logical endpoint now: servers, or the shards discovered so far."""
        if self.cluster is not None:
            return tuple(self.cluster.shards())
        return self._fixed

    def add_endpoint_hook(self, hook: EndpointHook) -> None:
        """Run ``hook`` on every endpoint, now and on cluster shards discovered later."""
        if self.cluster is not None:
            self.cluster.add_shard_hook(hook)
        else:
            for endpoint in self._fixed:
                hook(endpoint)

    # --- routing ------------------------------------------------------------

    def route(self, *, write: bool, key: Any = None) -> tuple[LogicalEndpoint, ...]:
        """Endpoints to try in order: on a cluster the key's shard; elsewhere a
        healthy replica for reads, then the primary."""
        if self.cluster is not None:
            return (self._shard(key),)
        if write or not self._reads_from_replicas:
            return self._primary_route
        healthy = [r for r in self.replicas if r.breaker.closed]
        if not healthy:
            return self._primary_route
        return (random.choice(healthy), self._fixed[0])

    def _shard(self, key: Any) -> ClusterShard:
        cluster = self.cluster
        assert cluster is not None
        if key is not None:
            return cluster.shard_for_key(key)
        cluster.ensure_discovered()
        shards = cluster.shards()
        serving = [s for s in shards if s.breaker.closed and not s.view.orphaned]
        return random.choice(serving or shards)

    def get_client(self, *, write: bool = True) -> Any:
        """The raw redis-py client (django-redis's ``get_client``); no breaker on it.

        On a cluster: a redis-py ``RedisCluster`` seeded with the nodes known now.
        """
        if self.cluster is not None:
            return self.cluster.raw_client()
        return self.route(write=write)[0].client

    def group_keys(self, keys: Sequence[K]) -> list[list[K]]:
        """``keys`` split by cluster shard (one group elsewhere), each in the given order."""
        if self.cluster is None:
            return [list(keys)] if keys else []
        groups: dict[int, list[K]] = {}
        for key in keys:
            groups.setdefault(self.cluster.shard_for_key(key).id, []).append(key)
        return list(groups.values())

    # --- sync ---------------------------------------------------------------

    def execute(
        self,
        fn: Callable[[redis.Redis], T],
        *,
        key: Any = None,
        write: bool = True,
        idempotent: bool = True,
    ) -> T:
        """Run ``fn(client)`` with breaker, retries and error translation.

        On a cluster ``key`` picks the shard (any serving one when ``None``).
        Raises :class:`RedisUnavailable` (or a subclass) for connection-class
        failures; anything the server answered is raised unchanged.
        """
        route = self.route(write=write, key=key)
        endpoint = route[0]
        if len(route) == 1 and endpoint.breaker.closed:
            try:
                result = fn(endpoint.client)
            except Exception as exc:
                attempt = _Attempt(self, route, idempotent=idempotent)
                return self._execute_slow(fn, attempt, attempt.failed(exc))
            endpoint.breaker.record_success()
            return result
        return self._execute_slow(fn, _Attempt(self, route, idempotent=idempotent), None)

    def _execute_slow(
        self, fn: Callable[[redis.Redis], T], attempt: _Attempt, delay: float | None
    ) -> T:
        """The plan of every call the fast path does not settle, run blocking."""
        result: T = run(_retrying(fn, attempt, delay))
        return result

    def execute_command(
        self, *args: Any, write: bool = True, idempotent: bool | None = None
    ) -> Any:
        """Run one raw command; idempotency is guessed from the command when not given."""
        if idempotent is None:
            idempotent = is_idempotent(str(args[0]), *args)
        return self.execute(
            lambda c: c.execute_command(*args),  # type: ignore[no-untyped-call]
            key=command_key(args) if self.cluster is not None else None,
            write=write,
            idempotent=idempotent,
        )

    def execute_grouped(
        self,
        keys: Sequence[K],
        fn: Callable[[redis.Redis, list[K]], T],
        *,
        write: bool = True,
        idempotent: bool = True,
    ) -> list[tuple[list[K], T | RedisUnavailable]]:
        """Run ``fn(client, keys_of_one_shard)`` once per shard (once in all off-cluster).

        ``fn`` typically pipelines one command per key. A shard that is down
        gives its group a :class:`RedisUnavailable` instead of a result, so the
        caller can serve those keys from its fallback and the others from Redis.
        """
        return run(self._grouped(keys, fn, write=write, idempotent=idempotent))

    def for_each_primary(
        self, fn: Callable[[redis.Redis], T], *, idempotent: bool = True
    ) -> list[tuple[LogicalEndpoint, T | RedisUnavailable]]:
        """Run ``fn`` on every master (each shard's on a cluster), e.g. to SCAN them all."""
        return run(self._each_primary(fn, idempotent=idempotent))

    # --- plans of several calls ---------------------------------------------

    def _grouped(
        self,
        keys: Sequence[K],
        fn: Callable[[Any, list[K]], Any],
        *,
        write: bool,
        idempotent: bool,
    ) -> Plan[list[tuple[list[K], Any]]]:
        """One call per shard's keys: in turn with the sync driver, concurrently with asyncio."""
        if self.cluster is not None and keys:
            yield Discover(self.cluster)
        groups = self.group_keys(keys)
        calls = [
            Executed(self, _with_keys(fn, group), key=group[0], write=write, idempotent=idempotent)
            for group in groups
        ]
        results = yield EachSettled(calls)
        return list(zip(groups, results, strict=True))

    def _each_primary(
        self, fn: Callable[[Any], Any], *, idempotent: bool
    ) -> Plan[list[tuple[LogicalEndpoint, Any]]]:
        """``fn`` on every master, each with its own retries: in turn with the sync
        driver, concurrently with asyncio."""
        if self.cluster is not None:
            yield Discover(self.cluster)
        endpoints = self._primaries()
        calls = [Planned(self._retrying_on(endpoint, fn, idempotent)) for endpoint in endpoints]
        results = yield EachSettled(calls)
        return list(zip(endpoints, results, strict=True))

    def _retrying_on(
        self, endpoint: LogicalEndpoint, fn: Callable[[Any], Any], idempotent: bool
    ) -> Callable[[], Plan[Any]]:
        return lambda: _retrying(fn, _Attempt(self, (endpoint,), idempotent=idempotent), None)

    def _primaries(self) -> list[LogicalEndpoint]:
        if self.cluster is None:
            return list(self._primary_route)
        self.cluster.ensure_discovered()
        return list(self.cluster.shards())

    # --- async --------------------------------------------------------------

    async def aexecute(
        self,
        fn: Callable[[redis.asyncio.Redis], Awaitable[T]],
        *,
        key: Any = None,
        write: bool = True,
        idempotent: bool = True,
    ) -> T:
        """The asyncio twin of :meth:`execute`, on the running loop's pool."""
        if self.cluster is not None:
            await self.cluster.aensure_discovered()
        route = self.route(write=write, key=key)
        endpoint = route[0]
        if len(route) == 1 and endpoint.breaker.closed:
            try:
                result = await fn(endpoint.async_client())
            except Exception as exc:
                attempt = _Attempt(self, route, idempotent=idempotent)
                return await self._aexecute_slow(fn, attempt, attempt.failed(exc))
            endpoint.breaker.record_success()
            return result
        return await self._aexecute_slow(fn, _Attempt(self, route, idempotent=idempotent), None)

    async def _aexecute_slow(
        self,
        fn: Callable[[redis.asyncio.Redis], Awaitable[T]],
        attempt: _Attempt,
        delay: float | None,
    ) -> T:
        """The same plan as :meth:`_execute_slow`, run on the event loop."""
        result: T = await arun(_retrying(fn, attempt, delay))
        return result

    async def aexecute_command(
        self, *args: Any, write: bool = True, idempotent: bool | None = None
    ) -> Any:
        if idempotent is None:
            idempotent = is_idempotent(str(args[0]), *args)
        return await self.aexecute(
            lambda c: c.execute_command(*args),  # type: ignore[no-untyped-call]
            key=command_key(args) if self.cluster is not None else None,
            write=write,
            idempotent=idempotent,
        )

    async def aexecute_grouped(
        self,
        keys: Sequence[K],
        fn: Callable[[redis.asyncio.Redis, list[K]], Awaitable[T]],
        *,
        write: bool = True,
        idempotent: bool = True,
    ) -> list[tuple[list[K], T | RedisUnavailable]]:
        """The asyncio twin of :meth:`execute_grouped`; the shards are asked concurrently."""
        return await arun(self._grouped(keys, fn, write=write, idempotent=idempotent))

    async def afor_each_primary(
        self, fn: Callable[[redis.asyncio.Redis], Awaitable[T]], *, idempotent: bool = True
    ) -> list[tuple[LogicalEndpoint, T | RedisUnavailable]]:
        """The asyncio twin of :meth:`for_each_primary`; the masters are asked concurrently."""
        return await arun(self._each_primary(fn, idempotent=idempotent))

    # --- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        for endpoint in self._fixed:
            endpoint.close()
        if self.sentinel is not None:
            self.sentinel.close()
        if self.cluster is not None:
            self.cluster.close()

    def forget(self) -> None:
        for endpoint in self._fixed:
            endpoint.forget()
        if self.cluster is not None:
            self.cluster.forget()
