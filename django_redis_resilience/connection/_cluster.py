"""Redis Cluster: a slot map, one breaker per shard, topology refreshed off the request path.

Why commands are not routed through redis-py's ``RedisCluster``: on a
connection error it re-reads the topology from its startup nodes inline, one
node after the other, and on ``CLUSTERDOWN`` it sleeps a quarter of a second
first, both on the caller's request; a startup node that failed once is
forgotten for good; and its sync and asyncio clients handle failures
differently. Here the request path only looks a slot up in a table.
Discovery asks every known node in parallel, each with its own timeout, at
first use and then in the background (periodically, and after ``MOVED``,
connection errors or uncovered slots), at most once per ``min_interval`` per
process, so a thousand workers never stampede one node. Commands still run on
redis-py clients, one pool per node, and ``get_client()`` still hands out a
real ``RedisCluster`` to code that wants one.

A shard is named by the first slot it serves. A replica promotion keeps the
slots, so the shard's breaker follows a failover to the new master; slots that
no node serves keep their last shard, whose breaker stays open until a node
serves them again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis
import redis.asyncio
import redis.exceptions as rex
from redis.crc import key_slot

from django_redis_resilience.connection._background import Job, Scheduler
from django_redis_resilience.connection._breaker import CircuitBreaker
from django_redis_resilience.connection._durations import REFRESH_BUCKETS, Durations
from django_redis_resilience.connection._endpoint import NodePools
from django_redis_resilience.connection._errors import ErrorKind, classify, translate
from django_redis_resilience.connection._location import MASK, NodeAddress, Topology
from django_redis_resilience.connection._options import ClusterRefreshConfig, ConnectionOptions

logger = logging.getLogger("django_redis_resilience")

SLOTS = 16384
#: How long discovery waits for more answers once one covers every slot: twice
#: what that answer took, within these bounds (a slow network gets longer).
_GRACE_MIN = 0.005
_GRACE_MAX = 0.05
Address = tuple[str, int]
#: One ``CLUSTER SLOTS`` entry: first slot, last slot, master, replicas.
SlotRange = tuple[int, int, Address, tuple[Address, ...]]
#: Where the threads of one discovery put each node's answer (or its failure).
_Answers = queue.SimpleQueue[tuple[Address, list[SlotRange] | BaseException]]


def cluster_display(topology: Topology) -> str:
    """``redis+cluster://h1:p1,h2:p2`` with the password masked."""
    first = topology.nodes[0]
    auth = ""
    if first.username or first.password:
        auth = (first.username or "") + (f":{MASK}" if first.password else "") + "@"
    hosts = ",".join(_hostport((n.host, n.port)) for n in topology.nodes)
    scheme = "rediss+cluster" if first.tls else "redis+cluster"
    return f"{scheme}://{auth}{hosts}"


def _hostport(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ranges_display(ranges: Iterable[tuple[int, int]]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges)


def _ranges(slots: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """Sorted slots folded into inclusive ranges."""
    out: list[list[int]] = []
    for slot in sorted(slots):
        if out and out[-1][1] == slot - 1:
            out[-1][1] = slot
        else:
            out.append([slot, slot])
    return tuple((a, b) for a, b in out)


def parse_cluster_slots(reply: Sequence[Any], asked: Address) -> list[SlotRange]:
    """Parse a raw ``CLUSTER SLOTS`` reply.

    An empty or NULL host means "the node that was asked, at this port"; a
    ``?`` host is an endpoint the answering node does not know: such a replica
    is left out, and such a master leaves its slots unserved rather than
    promoting a replica in the client's eyes.
    """
    entries: list[SlotRange] = []
    for item in reply:
        nodes: list[Address | None] = []
        for node in item[2:]:
            host = "" if node[0] is None else _text(node[0])
            nodes.append(None if host == "?" else (host or asked[0], int(node[1])))
        if nodes and nodes[0] is not None:
            replicas = tuple(n for n in nodes[1:] if n is not None)
            entries.append((int(item[0]), int(item[1]), nodes[0], replicas))
    return entries


@dataclass(frozen=True)
class ShardView:
    """The slots of one shard and the nodes that hold them, as last discovered."""

    id: int
    ranges: tuple[tuple[int, int], ...]
    #: ``None`` when no node serves these slots and none ever did in this process.
    master: Address | None
    replicas: tuple[Address, ...] = ()
    #: ``True`` when no node serves these slots now (the master is the last one known).
    orphaned: bool = False

    @property
    def slot_count(self) -> int:
        return sum(b - a + 1 for a, b in self.ranges)


@dataclass(frozen=True)
class SlotMap:
    """Every slot's shard: built from one node's ``CLUSTER SLOTS``, uncovered slots kept."""

    shards: tuple[ShardView, ...]
    #: ``owner[slot]`` is the id of the shard that holds ``slot``.
    owner: array[int]
    covered: int
    source: Address | None

    @classmethod
    def build(
        cls, entries: Sequence[SlotRange], *, previous: SlotMap | None, source: Address | None
    ) -> SlotMap:
        by_master: dict[Address, list[tuple[int, int]]] = {}
        replicas: dict[Address, list[Address]] = {}
        assigned = array("i", [-1]) * SLOTS
        for first, last, master, reps in entries:
            by_master.setdefault(master, []).append((first, last))
            known = replicas.setdefault(master, [])
            known += [r for r in reps if r not in known]
        shards: list[ShardView] = []
        for master, ranges in by_master.items():
            ranges.sort()
            shard_id = ranges[0][0]
            shards.append(ShardView(shard_id, tuple(ranges), master, tuple(replicas[master])))
            for first, last in ranges:
                for slot in range(first, last + 1):
                    assigned[slot] = shard_id
        covered = sum(1 for s in assigned if s >= 0)
        if covered < SLOTS:
            shards += _orphans(assigned, previous, {s.id for s in shards})
        return cls(tuple(sorted(shards, key=lambda s: s.id)), assigned, covered, source)

    def shard(self, shard_id: int) -> ShardView:
        return next(s for s in self.shards if s.id == shard_id)

    def addresses(self) -> list[Address]:
        """Every node named in the map, masters first."""
        found = [s.master for s in self.shards if s.master is not None]
        found += [r for s in self.shards for r in s.replicas]
        return list(dict.fromkeys(found))


def _orphans(assigned: array[int], previous: SlotMap | None, taken: set[int]) -> list[ShardView]:
    """Shards for slots no node serves: each keeps the shard (and master) it last had."""
    groups: dict[tuple[int, Address | None], list[int]] = {}
    masters = {s.id: s.master for s in previous.shards} if previous is not None else {}
    for slot in range(SLOTS):
        if assigned[slot] >= 0:
            continue
        before: tuple[int, Address | None] = (-1, None)
        if previous is not None:
            old_id = previous.owner[slot]
            before = (old_id, masters[old_id])
        groups.setdefault(before, []).append(slot)
    shards: list[ShardView] = []
    for (old_id, master), slots in groups.items():
        ranges = _ranges(slots)
        if old_id >= 0 and old_id not in taken:
            ids = [(old_id, ranges)]
        elif old_id >= 0:
            ids = [(ranges[0][0], ranges)]
        else:  # never served in this process: one shard per contiguous range
            ids = [(a, ((a, b),)) for a, b in ranges]
        for shard_id, shard_ranges in ids:
            taken.add(shard_id)
            shards.append(ShardView(shard_id, shard_ranges, master, (), orphaned=True))
            for first, last in shard_ranges:
                for slot in range(first, last + 1):
                    assigned[slot] = shard_id
    return shards


@dataclass
class Discovery:
    """What one round of asking the nodes found."""

    entries: list[SlotRange] | None
    source: Address | None
    answered: list[Address]
    failed: dict[Address, BaseException]


def _to_bytes(key: object) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, memoryview):
        return key.tobytes()
    return str(key).encode()


def slot_of(key: object) -> int:
    """The hash slot of ``key`` (hash tags honoured), as Redis computes it."""
    return int(key_slot(_to_bytes(key)))


def untagged(prefix: str) -> str:
    """``prefix`` with its braces escaped (``%7B``, ``%7D``), so that it holds no hash tag.

    Redis Cluster hashes a key on its *first* ``{...}`` (the whole key if that is
    empty): a prefix such as ``"{}"`` or ``"{tenant}"`` would take the place of the
    tag that keeps related keys in one slot. Escaping twice changes nothing.
    """
    return prefix.replace("{", "%7B").replace("}", "%7D")


class ClusterShard:
    """A logical endpoint: the slots of one shard, served by whichever node masters them now."""

    def __init__(self, *, router: ClusterRouter, view: ShardView, scheduler: Scheduler) -> None:
        self.router = router
        self.alias = router.alias
        self.view = view
        #: Set when the shard left the topology (resharding): nothing routes here any more.
        self.retired = False
        self.breaker = CircuitBreaker(
            name=f"{router.alias}/shard@{view.id} {router.display}",
            config=router.options.breaker,
            probe=self.probe,
            scheduler=scheduler,
        )
        self.breaker.add_before_close(self._drop_idle_for_recovery)

    def __repr__(self) -> str:
        return f"<ClusterShard {self.alias} {self.display} {self.breaker.state.value}>"

    @property
    def id(self) -> int:
        """The first slot the shard serves now (a label: the object is matched by master)."""
        return self.view.id

    @property
    def role(self) -> str:
        return f"shard@{self.view.id}"

    @property
    def display(self) -> str:
        """The cluster, the shard's slots and its master now; no secrets."""
        view = self.view
        where = _hostport(view.master) if view.master is not None else "no node"
        state = ", not served" if view.orphaned else ""
        return f"{self.router.display} slots {ranges_display(view.ranges)} @ {where}{state}"

    @property
    def master(self) -> NodePools:
        """The pools of the shard's master; raises when no node was ever known for it."""
        address = self.view.master
        if address is None:
            raise translate(
                rex.ClusterDownError("Hash slot not served"),
                ErrorKind.CLUSTER_DOWN,
                endpoint=self.display,
                alias=self.alias,
            )
        return self.router.node(address)

    @property
    def client(self) -> redis.Redis:
        return self.master.client

    def async_client(self) -> redis.asyncio.Redis:
        return self.master.async_client()

    def blocking_client(self) -> redis.Redis:
        return self.master.blocking_client()

    def async_blocking_client(self) -> redis.asyncio.Redis:
        return self.master.async_blocking_client()

    def drop_idle_connections(self) -> None:
        if self.view.master is not None:
            self.master.drop_idle_connections()

    async def adrop_idle_connections(self) -> None:
        if self.view.master is not None:
            await self.master.adrop_idle_connections()

    def _drop_idle_for_recovery(self) -> int:
        self.drop_idle_connections()
        return 0

    def probe(self) -> None:
        """Re-read the slot map, then check that the shard's master answers and
        that its cluster accepts commands (``cluster_state:ok``)."""
        if not self.router.refresh(reason="probe", max_age=self.router.config.min_interval):
            raise self.router.last_refresh_error or rex.ConnectionError("no node answered")
        if self.retired or self.view.orphaned or self.view.master is None:
            raise rex.ClusterDownError(f"Hash slot not served: slots {self.view.ranges}")
        connection = self.master.fresh_connection()
        try:
            connection.send_command("CLUSTER", "INFO")
            info = _text(connection.read_response())
        finally:
            connection.disconnect()
        state = next(
            (
                line.split(":", 1)[1].strip()
                for line in info.splitlines()
                if line.startswith("cluster_state:")
            ),
            "?",
        )
        if state != "ok":
            raise rex.ClusterDownError(f"The cluster is down (cluster_state:{state})")


class ClusterRouter:
    """The slot map of one cache's cluster, its shards and the pools of its nodes."""

    def __init__(
        self,
        *,
        alias: str,
        topology: Topology,
        options: ConnectionOptions,
        scheduler: Scheduler,
        config: ClusterRefreshConfig,
    ) -> None:
        self.alias = alias
        self.options = options
        self.config = config
        self.display = cluster_display(topology)
        self.seeds: tuple[Address, ...] = tuple((n.host, n.port) for n in topology.nodes)
        #: Credentials, TLS and connection parameters shared by every node.
        self._template: NodeAddress = topology.nodes[0]
        self._scheduler = scheduler
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._nodes: dict[Address, NodePools] = {}
        self._map: SlotMap | None = None
        self._owner: list[ClusterShard] = []
        self._shards: dict[int, ClusterShard] = {}
        self._shard_hooks: list[Callable[[ClusterShard], None]] = []
        self._pending: Job | None = None
        self._periodic: Job | None = None
        self._closed = False
        self._raw_client: Any = None
        #: Refreshes done by this process (failed ones included), for reports and metrics.
        self.refresh_count = 0
        #: Refreshes that no node answered.
        self.refresh_failures = 0
        #: How long every refresh took (for metrics).
        self.refresh_durations = Durations(REFRESH_BUCKETS)
        self.last_refresh_at: float | None = None
        self.last_refresh_error: BaseException | None = None
        #: Seeds that did not answer the last discovery (they are asked again every time).
        self.dead_seeds: tuple[Address, ...] = ()

    def __repr__(self) -> str:
        return f"<ClusterRouter {self.alias} {self.display}>"

    # --- nodes and shards ----------------------------------------------------

    def node(self, address: Address) -> NodePools:
        """The pools of one node, built on first use (opening no socket)."""
        pools = self._nodes.get(address)
        if pools is None:
            with self._lock:
                pools = self._nodes.get(address)
                if pools is None:
                    host, port = address
                    pools = NodePools(
                        address=replace(self._template, host=host, port=port), options=self.options
                    )
                    self._nodes[address] = pools
        return pools

    def add_shard_hook(self, hook: Callable[[ClusterShard], None]) -> None:
        """Run ``hook`` on every shard, those that exist and those discovered later."""
        with self._lock:
            self._shard_hooks.append(hook)
            shards = list(self._shards.values())
        for shard in shards:
            hook(shard)

    @property
    def slot_map(self) -> SlotMap | None:
        return self._map

    def shards(self) -> list[ClusterShard]:
        """The shards of the current map (none before the first use)."""
        return sorted(self._shards.values(), key=lambda s: s.id)

    def shard_for_slot(self, slot: int) -> ClusterShard:
        owner = self._owner
        if not owner:
            self.ensure_discovered()
            owner = self._owner
        return owner[slot]

    def shard_for_key(self, key: object) -> ClusterShard:
        return self.shard_for_slot(slot_of(key))

    def ensure_discovered(self) -> None:
        """Read the slot map once, at first use: never at import or in ``ready()``."""
        if self._owner:
            return
        with self._refresh_lock:
            if self._owner:
                return
            self._refresh_locked("first use")

    async def aensure_discovered(self) -> None:
        if not self._owner:
            await asyncio.to_thread(self.ensure_discovered)

    # --- refreshing ------------------------------------------------------------

    def request_refresh(self, reason: str) -> None:
        """Ask for a background refresh soon; never blocks, at most one per ``min_interval``."""
        with self._lock:
            if self._closed or (self._pending is not None and not self._pending.cancelled):
                return
            wait = 0.0
            if self.last_refresh_at is not None:
                wait = max(0.0, self.last_refresh_at + self.config.min_interval - time.monotonic())
            self._pending = self._scheduler.call_later(
                wait, lambda: self._run_requested(reason), name=f"refresh {self.display}"
            )

    def _run_requested(self, reason: str) -> None:
        with self._lock:
            self._pending = None
        self.refresh(reason=reason, max_age=self.config.min_interval)

    def _run_periodic(self) -> None:
        with self._lock:
            self._periodic = None
        self.refresh(reason="periodic", max_age=self.config.min_interval)

    def refresh(self, *, reason: str, max_age: float = 0.0) -> bool:
        """Read the slot map now unless the last attempt is younger than ``max_age`` seconds.

        Returns whether the last attempt succeeded: a failed one is not retried
        within ``max_age`` either, or every open shard's probe would ask every
        node, one after the other, on the one background thread.
        """
        with self._refresh_lock:
            last = self.last_refresh_at
            if max_age and last is not None and time.monotonic() - last < max_age:
                return self.last_refresh_error is None
            return self._refresh_locked(reason)

    def _refresh_locked(self, reason: str) -> bool:
        if self._closed:
            return False
        candidates = list(
            dict.fromkeys([*self.seeds, *(self._map.addresses() if self._map else [])])
        )
        started = time.monotonic()
        found = self.discover(candidates)
        self.refresh_count += 1
        self.last_refresh_at = time.monotonic()
        self.refresh_durations.observe(self.last_refresh_at - started)
        self.dead_seeds = tuple(s for s in self.seeds if s in found.failed)
        ok = found.entries is not None
        if found.entries is not None:
            self.last_refresh_error = None
            self._install(SlotMap.build(found.entries, previous=self._map, source=found.source))
        else:
            error = _discovery_error(found, self.display, self.alias)
            self.last_refresh_error = error
            self.refresh_failures += 1
            logger.debug("Cluster %s: refresh (%s) failed: %s", self.display, reason, error)
            if self._map is None:
                # Nothing answered at first use: one shard that serves nothing,
                # open at once, so the app boots and degrades without waiting.
                empty = SlotMap.build([], previous=None, source=None)
                self._install(empty)
                for shard in self.shards():
                    shard.breaker.trip(error)
        self._schedule_periodic()
        return ok

    def _schedule_periodic(self) -> None:
        if not self.config.interval:
            return
        with self._lock:
            if self._closed:
                return
            if self._periodic is not None:
                self._periodic.cancel()
            self._periodic = self._scheduler.call_later(
                self.config.interval, self._run_periodic, name=f"periodic refresh {self.display}"
            )

    def _install(self, new: SlotMap) -> None:
        """Publish a new map, keeping each shard object (and its breaker) where it belongs.

        A view keeps the shard whose master it still has (moving slot 0 to
        another master must not hand that master the first one's breaker);
        failing that, the shard it overlaps most (a promoted replica takes its
        former master's slots). New shards are wired to their hooks before any
        request can see them; shards that left the topology stop probing.
        """
        with self._lock:
            old = list(self._shards.values())
        by_master = {s.view.master: s for s in old if s.view.master is not None}
        unused = set(old)
        chosen: dict[int, ClusterShard] = {}
        created: list[ClusterShard] = []
        for view in sorted(new.shards, key=lambda v: v.orphaned):
            shard = by_master.get(view.master) if view.master is not None else None
            if shard is None or shard not in unused:
                overlaps = [(_overlap(s.view.ranges, view.ranges), s) for s in unused]
                best = max(overlaps, key=lambda o: o[0], default=(0, None))
                shard = best[1] if best[0] else None
            if shard is None:
                shard = ClusterShard(router=self, view=view, scheduler=self._scheduler)
                created.append(shard)
            unused.discard(shard)
            chosen[view.id] = shard
        with self._lock:
            hooks = list(self._shard_hooks)
        for shard in created:
            for hook in hooks:
                hook(shard)
        with self._lock:
            for view in new.shards:
                chosen[view.id].view = view
            self._shards = chosen
            self._map = new
            self._owner = [chosen[shard_id] for shard_id in new.owner]
        for shard in unused:
            shard.retired = True
            shard.breaker.stop()
        for view in new.shards:
            if view.orphaned:
                shard = chosen[view.id]
                shard.breaker.trip(
                    translate(
                        rex.ClusterDownError("Hash slot not served"),
                        ErrorKind.CLUSTER_DOWN,
                        endpoint=shard.display,
                        alias=self.alias,
                    )
                )

    def shard_by_master(self, address: Address) -> ClusterShard | None:
        """The serving shard whose master is ``address``, if the map knows one."""
        for shard in list(self._shards.values()):
            if shard.view.master == address and not shard.view.orphaned:
                return shard
        return None

    def discover(self, candidates: Sequence[Address]) -> Discovery:
        """Ask every candidate for ``CLUSTER SLOTS`` in parallel, each with its own timeout.

        Once one answer covers every slot, the others get a short grace period
        (to compare views: twice what that answer took, 5-50 ms) and no more,
        so a hung node costs nothing when another answers. Of the answers, the
        one covering most slots wins; ties go to the view most nodes share.
        """
        timeout = max(
            self.options.socket_connect_timeout or 0.25, self.options.socket_timeout or 0.25
        )
        answers: _Answers = queue.SimpleQueue()
        for address in candidates:
            threading.Thread(
                target=self._ask,
                args=(address, timeout, answers),
                name="drr-discovery",
                daemon=True,
            ).start()
        views, failed = _collect(answers, len(candidates), timeout)
        for address in candidates:
            if address not in views and address not in failed:
                failed[address] = rex.TimeoutError("no CLUSTER SLOTS reply in time")
        return _chosen(views, failed)

    def _ask(self, address: Address, timeout: float, answers: _Answers) -> None:
        """One node's ``CLUSTER SLOTS`` on a fresh connection, or what went wrong, into
        ``answers`` (on a thread of its own)."""
        try:
            connection = self.node(address).fresh_connection(timeout)
            try:
                connection.send_command("CLUSTER", "SLOTS")
                reply = connection.read_response()
            finally:
                connection.disconnect()
            if isinstance(reply, BaseException):
                raise reply
            answers.put((address, parse_cluster_slots(reply, address)))
        except BaseException as exc:
            answers.put((address, exc))

    # --- raw client --------------------------------------------------------------

    def raw_client(self) -> Any:
        """A redis-py ``RedisCluster`` seeded with the nodes known now (no breaker on it)."""
        if self._raw_client is not None:
            return self._raw_client
        from redis.cluster import ClusterNode, RedisCluster

        self.ensure_discovered()
        shards = self.shards()
        if shards and not any(s.breaker.closed for s in shards):
            # Building a RedisCluster would wait out every node's timeout again.
            raise translate(
                rex.ConnectionError("every shard's breaker is open"),
                ErrorKind.BREAKER_OPEN,
                endpoint=self.display,
                alias=self.alias,
            )
        known = self._map.addresses() if self._map else []
        seeds = [ClusterNode(h, p) for h, p in [*known, *self.seeds]]  # type: ignore[no-untyped-call]
        kwargs = dict(self.node(self.seeds[0]).pool.connection_kwargs)
        accepted = set(inspect.signature(redis.Redis.__init__).parameters)
        for name in ("host", "port", "db", "retry", "redis_connect_func"):
            kwargs.pop(name, None)
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        if self._template.tls:
            kwargs["ssl"] = True
        try:
            client = RedisCluster(startup_nodes=seeds, require_full_coverage=False, **kwargs)
        except (rex.RedisError, rex.RedisClusterException) as exc:
            kind = classify(exc) or ErrorKind.UNREACHABLE
            raise translate(exc, kind, endpoint=self.display, alias=self.alias) from exc
        raced: Any
        with self._lock:
            raced, self._raw_client = self._raw_client, self._raw_client or client
        if raced is not None:
            client.close()
        return self._raw_client

    # --- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for job in (self._pending, self._periodic):
                if job is not None:
                    job.cancel()
            nodes = list(self._nodes.values())
            shards = list(self._shards.values())
            raw, self._raw_client = self._raw_client, None
        for shard in shards:
            shard.breaker.stop()
        for pools in nodes:
            pools.close()
        if raw is not None:
            raw.close()

    def forget(self) -> None:
        with self._lock:
            self._closed = True
            nodes = list(self._nodes.values())
            shards = list(self._shards.values())
            self._raw_client = None
        for shard in shards:
            shard.breaker.stop()
        for pools in nodes:
            pools.forget()


def _overlap(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> int:
    """How many slots two range lists share."""
    return sum(max(0, min(y1, y2) - max(x1, x2) + 1) for x1, y1 in a for x2, y2 in b)


def _coverage(entries: Sequence[SlotRange]) -> int:
    return sum(last - first + 1 for first, last, _, _ in entries)


def _collect(
    answers: _Answers, expected: int, timeout: float
) -> tuple[dict[Address, list[SlotRange]], dict[Address, BaseException]]:
    """The answers that arrive in time: until all did, the deadline passed, or the
    grace period after a complete answer ran out."""
    started = time.monotonic()
    deadline = started + 2 * timeout + 0.1
    views: dict[Address, list[SlotRange]] = {}
    failed: dict[Address, BaseException] = {}
    while len(views) + len(failed) < expected:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            address, outcome = answers.get(timeout=remaining)
        except queue.Empty:
            break
        if isinstance(outcome, BaseException):
            failed[address] = outcome
            continue
        views[address] = outcome
        if _coverage(outcome) == SLOTS:
            deadline = min(deadline, _graced(started))
    return views, failed


def _graced(started: float) -> float:
    """When to stop waiting once an answer covers every slot: twice what it took,
    within :data:`_GRACE_MIN` and :data:`_GRACE_MAX`."""
    now = time.monotonic()
    return now + min(_GRACE_MAX, max(_GRACE_MIN, 2 * (now - started)))


def _chosen(
    views: dict[Address, list[SlotRange]], failed: dict[Address, BaseException]
) -> Discovery:
    """The view covering most slots; of equals, the one most nodes share."""
    if not views:
        return Discovery(None, None, [], failed)
    canonical = {a: tuple(sorted(v)) for a, v in views.items()}
    agreement = Counter(canonical.values())
    source = max(views, key=lambda a: (_coverage(views[a]), agreement[canonical[a]]))
    return Discovery(views[source], source, list(views), failed)


def _discovery_error(found: Discovery, display: str, alias: str) -> BaseException:
    first = next(iter(found.failed.values()), None)
    kind = (classify(first) if first is not None else None) or ErrorKind.UNREACHABLE
    detail = "; ".join(f"{_hostport(a)}: {type(e).__name__}" for a, e in found.failed.items())
    error = translate(
        rex.ConnectionError(f"no node answered CLUSTER SLOTS ({detail or 'no nodes'})"),
        kind,
        endpoint=display,
        alias=alias,
    )
    error.__cause__ = first
    return error
