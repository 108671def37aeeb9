"""The near cache: hot values kept in the process, dropped the moment Redis says they changed.

Each master the cache reads from gets one invalidation link
(:class:`~django_redis_resilience.connection.InvalidationLink`): broadcast
tracking of the cache's key prefixes, so every write of such a key, by anyone,
reaches every process as a message on that socket.

The rules that make it safe, each enforced here:

- A value is served from the process only while its node's link is verified:
  connected, subscribed, and seen to deliver (a probe key is written and its
  invalidation must arrive). Until then, and after any doubt, reads go to Redis.
- The thread about to serve a near value first applies what the link holds
  (a readiness check of about a microsecond when it holds nothing), so a write
  whose message has arrived is never hidden behind a background thread's turn.
- A value fetched while an invalidation of its node arrived, or while this
  process wrote, is not kept (the fetch may have read the older value).
- Every entry belongs to a link's *epoch*. The epoch moves, and the node's
  entries go, when its link drops or is replaced, when its breaker opens, when
  the node is no longer the one serving those keys (failover, slots moved), and
  when a ping on the link goes unanswered for a heartbeat.
- ``MAX_AGE`` bounds an entry's life whatever happens.

Values are kept as the bytes Redis returned and decoded on each hit, so a
caller mutating what it got never changes what the next caller gets.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django_redis_resilience.connection import (
    BreakerState,
    CircuitBreaker,
    ConnectionManager,
    InvalidationLink,
    LinkBroken,
    LogicalEndpoint,
    get_registry,
    slot_of,
)

logger = logging.getLogger("django_redis_resilience")

#: How often the background thread pings each link, reopens lost ones and checks
#: that each node still serves its keys; a hung node is doubted within two.
HEARTBEAT = 0.2
#: What an entry costs besides its key and value (the entry, the ordered dict's node,
#: the objects' headers), as measured with tracemalloc.
_ENTRY_OVERHEAD = 280


@dataclass(frozen=True)
class NearSettings:
    """``OPTIONS["NEAR_CACHE"]``, read once; ``prefixes`` are Redis key prefixes."""

    max_entries: int
    max_bytes: int
    max_age: float
    prefixes: tuple[str, ...]
    #: Connect, subscribe and probe timeout of a link.
    timeout: float


class _Node:
    """One master's link and what the process knows of it."""

    __slots__ = ("address", "endpoint", "epoch", "link", "probe", "verified")

    def __init__(self, endpoint: LogicalEndpoint) -> None:
        self.endpoint = endpoint
        self.link: InvalidationLink | None = None
        self.verified = False
        #: Moves whenever the node's entries must all go (lazily: entries carry theirs).
        self.epoch = 0
        #: What the link is connected to (a host and port, a cluster shard's master).
        self.address: Any = None
        #: The probe key whose invalidation will verify the link, while one is awaited.
        self.probe: bytes | None = None


class _Entry:
    __slots__ = ("epoch", "expires", "node", "raw", "size")

    def __init__(self, raw: bytes, size: int, node: _Node, epoch: int, expires: float) -> None:
        self.raw = raw
        self.size = size
        self.node = node
        self.epoch = epoch
        self.expires = expires


class NearCache:
    """The near entries of one cache in one process and the links that keep them true."""

    def __init__(
        self, *, manager: ConnectionManager, settings: NearSettings, counters: Any
    ) -> None:
        self.settings = settings
        self.counters = counters
        self._manager = manager
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._nodes: dict[int, _Node] = {}
        #: Moves with every invalidation, flush, lost link and write by this process: a
        #: fetch that saw it move may have read an older value and is not kept.
        self.version = 0
        self._closed = threading.Event()
        #: All links' sockets, checked for arrivals in one call (C, no Python frame).
        self._watched = select.poll()
        self._ready = self._watched.poll
        self._by_fd: dict[int, _Node] = {}
        #: Links whose readiness cannot be seen by the kernel (TLS): polled on every hit.
        self._unpollable = 0
        manager.add_endpoint_hook(self._watch)
        # Its own thread, not the process's scheduler: opening a link to a hung node
        # blocks for its timeout, which must not delay lock renewals or breaker probes.
        threading.Thread(
            target=self._tend_links, name=f"drr-near-{manager.alias}", daemon=True
        ).start()

    # --- the read and write paths (called under no lock; they take it briefly) ------------

    def eligible(self, made: str) -> bool:
        return made.startswith(self.settings.prefixes)

    def get(self, made: str) -> bytes | None:
        """The bytes kept for ``made``, after applying what its node's link holds."""
        with self._lock:
            entry = self._entries.get(made)
            if entry is None:
                return None
            node = entry.node
            if node.epoch != entry.epoch or not node.verified:
                self._remove(made)
                return None
            # Every link, not only the entry's node's: a slot that moved in a cluster
            # reports its writes on its new master's link. One system call for all.
            if self._ready(0) or self._unpollable:
                self._poll_all()
                if self._entries.get(made) is not entry or node.epoch != entry.epoch:
                    return None  # invalidated just now
            if entry.expires <= time.monotonic():
                self._remove(made)
                return None
            self._entries.move_to_end(made)
            return entry.raw

    def keep(self, made: str, raw: bytes, before: int, ttl_ms: int, endpoint: Any) -> None:
        """Keep what a fetch read (``before``: :attr:`version` when it started; ``ttl_ms``:
        the key's time to live, negative for none), unless anything changed meanwhile.

        Nothing is polled here: a message still unread when the value is kept is
        applied by the next reader before it serves the value.
        """
        if ttl_ms == 0 or type(raw) is not bytes:
            return
        life = self.settings.max_age if ttl_ms < 0 else min(self.settings.max_age, ttl_ms / 1000)
        size = len(raw) + len(made) + _ENTRY_OVERHEAD
        if size > self.settings.max_bytes:
            return
        with self._lock:
            node = self._nodes.get(id(endpoint))
            if self.version != before or node is None or not node.verified:
                return
            self._remove(made)
            self._entries[made] = _Entry(raw, size, node, node.epoch, time.monotonic() + life)
            self._bytes += size
            self._evict()

    def wrote(self, made: Iterable[str] | None) -> None:
        """This process is writing ``made`` (``None``: keys it cannot name, as ``clear()``):
        forget them, and let no fetch in flight keep what it read."""
        with self._lock:
            self.version += 1
            if made is not None:
                for k in made:
                    self._remove(k)
                return
            for node in self._nodes.values():
                node.epoch += 1
            self._clear_entries()
            self.counters.near_flushes += 1

    # --- numbers ----------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "near_entries": len(self._entries),
                "near_bytes": self._bytes,
                "near_links": len(self._nodes),
                "near_links_verified": sum(n.verified for n in self._nodes.values()),
            }

    # --- under the lock ----------------------------------------------------------------

    def _poll(self, node: _Node) -> None:
        link = node.link
        if link is None:
            return
        try:
            events = link.poll()
        except LinkBroken as exc:
            self._lose(node, f"its invalidation link broke ({exc})")
            return
        for keys in events:
            self.version += 1
            if keys is None:  # the database was flushed
                node.epoch += 1
                self._drop_node_entries(node)
                self.counters.near_flushes += 1
                continue
            if node.probe is not None and node.probe in keys:
                node.verified, node.probe = True, None  # the link delivers: verified
            for raw_key in keys:
                k = raw_key.decode(errors="replace")
                if self._remove(k):
                    self.counters.near_invalidations += 1

    def _poll_all(self) -> None:
        for node in list(self._nodes.values()):
            if node.link is not None:
                self._poll(node)

    def _unwatch(self, node: _Node) -> None:
        """Close ``node``'s link and stop watching its socket."""
        link, node.link = node.link, None
        if link is None:
            return
        if link.pollable:
            self._by_fd.pop(link.fileno, None)
            with contextlib.suppress(KeyError):  # already unregistered
                self._watched.unregister(link.fileno)
        else:
            self._unpollable -= 1
        link.close()

    def _remove(self, made: str) -> bool:
        entry = self._entries.pop(made, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        return True

    def _evict(self) -> None:
        settings = self.settings
        while len(self._entries) > settings.max_entries or self._bytes > settings.max_bytes:
            _, entry = self._entries.popitem(last=False)
            self._bytes -= entry.size

    def _clear_entries(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _drop_node_entries(self, node: _Node) -> None:
        for k in [k for k, e in self._entries.items() if e.node is node]:
            self._remove(k)

    def _lose(self, node: _Node, why: str) -> None:
        """Doubt ``node``: no near value of it until a new link is verified."""
        was_verified = node.verified
        node.verified = False
        node.epoch += 1
        self.version += 1
        self._drop_node_entries(node)
        self._unwatch(node)
        if was_verified:
            self.counters.near_flushes += 1
            logger.info(
                "Near cache of %s: values of %s dropped: %s",
                self._manager.alias,
                node.endpoint.display,
                why,
            )

    # --- links: watched per endpoint, kept by the background thread --------------------

    def _watch(self, endpoint: LogicalEndpoint) -> None:
        if endpoint.role.startswith("replica"):
            return  # near misses are read from masters, whose links report every write
        with self._lock:
            self._nodes.setdefault(id(endpoint), _Node(endpoint))

        def listener(
            breaker: CircuitBreaker,
            old: BreakerState,
            new: BreakerState,
            error: BaseException | None,
        ) -> None:
            if new is not BreakerState.CLOSED:
                with self._lock:
                    node = self._nodes.get(id(endpoint))
                    if node is not None:
                        self._lose(node, "its breaker opened")

        endpoint.breaker.add_listener(listener)

    def _tend_links(self) -> None:
        """Every :data:`HEARTBEAT`: ping each link, reopen lost ones, check who serves."""
        while not self._closed.is_set():
            if get_registry().cached(self._manager.alias) is not self._manager:
                self.close()  # the settings changed: a new manager has its own near cache
                return
            with self._lock:
                nodes = list(self._nodes.values())
            for node in nodes:
                try:
                    self._tend(node)
                except Exception:  # one node's trouble must not end the others' care
                    logger.exception("Near cache link of %s", node.endpoint.display)
            self._closed.wait(HEARTBEAT)

    def _tend(self, node: _Node) -> None:
        endpoint = node.endpoint
        if getattr(endpoint, "retired", False):
            with self._lock:
                self._lose(node, "its slots moved to another shard")
                self._nodes.pop(id(endpoint), None)
            return
        if endpoint.breaker.state is not BreakerState.CLOSED:
            return
        with self._lock:
            link = node.link
            if link is not None and node.verified:
                if _serving(endpoint) != node.address:
                    self._lose(node, "another node serves its keys now")
                    link = None
                elif not link.answering:
                    self._lose(node, "a ping on its invalidation link went unanswered")
                    link = None
                else:
                    self._poll(node)
                    if node.link is not None:
                        try:
                            node.link.ping()
                        except LinkBroken as exc:
                            self._lose(node, f"its invalidation link broke ({exc})")
                    return
        self._open(node)

    def _open(self, node: _Node) -> None:
        """Open and verify a link to ``node`` (background thread; blocking, bounded)."""
        endpoint = node.endpoint
        settings = self.settings
        try:
            address = _serving(endpoint)
            link = InvalidationLink.open(
                lambda: _pools(endpoint).fresh_connection(settings.timeout),
                prefixes=settings.prefixes,
                timeout=settings.timeout,
            )
        except Exception as exc:  # a node that cannot be reached now: tried again later
            logger.debug("Near cache link to %s not opened: %s", endpoint.display, exc)
            return
        with self._lock:
            self._unwatch(node)
            node.link, node.address, node.verified = link, address, False
            node.epoch += 1
            self.version += 1
            if link.pollable:
                self._watched.register(link.fileno, select.POLLIN)
                self._by_fd[link.fileno] = node
            else:
                self._unpollable += 1
        if self._verify(node, link):
            logger.debug("Near cache link to %s verified", endpoint.display)
        else:
            with self._lock:
                if node.link is link:
                    self._lose(node, "its invalidation link did not deliver a probe")

    def _verify(self, node: _Node, link: InvalidationLink) -> bool:
        """Write a probe key under a tracked prefix; the link must deliver its invalidation
        (seen by whichever poll reads it: this loop's, or a reader's)."""
        probe = _probe_key(self.settings.prefixes, node.endpoint)
        with self._lock:
            node.probe = probe.encode()
        try:
            node.endpoint.client.set(probe, b"1", px=int(self.settings.timeout * 1000) + 1000)
        except Exception as exc:  # the node stopped answering: tried again later
            logger.debug("Near cache probe of %s failed: %s", node.endpoint.display, exc)
            return False
        deadline = time.monotonic() + self.settings.timeout
        while time.monotonic() < deadline:
            with self._lock:
                if node.link is not link:
                    return False
                self._poll(node)
                if node.verified:
                    return True
            time.sleep(0.001)
        return False

    def close(self) -> None:
        """Stop tending links and close them (the cache's state is being discarded)."""
        with self._lock:
            self._closed.set()
            for node in self._nodes.values():
                node.verified = False
                self._unwatch(node)
            self._clear_entries()


@contextlib.contextmanager
def writing(near: NearCache | None, made: Iterable[str] | None) -> Iterator[None]:
    """Around a write of ``made`` (``None``: keys that cannot be named) by this process:
    forgotten before it (this process reads its own write from then on) and after it
    (no read that raced it keeps the older value)."""
    if near is None:
        yield
        return
    keys = None if made is None else list(made)
    near.wrote(keys)
    try:
        yield
    finally:
        near.wrote(keys)


def _pools(endpoint: Any) -> Any:
    """The pools of the node serving ``endpoint`` now (a cluster shard's master)."""
    return getattr(endpoint, "master", endpoint)


def _serving(endpoint: Any) -> Any:
    """Which node serves ``endpoint`` now: a cluster shard's master address and slots
    (a slot moved away takes its keys' invalidations to another link), or where a
    Sentinel service's primary is; ``None`` for a fixed server."""
    view = getattr(endpoint, "view", None)
    if view is not None:
        return view.master, tuple(view.ranges)
    pool = getattr(endpoint, "pool", None)
    master = getattr(pool, "get_master_address", None)
    return master() if callable(master) else None


def _probe_key(prefixes: Sequence[str], endpoint: Any) -> str:
    """A key under the first tracked prefix that lands on ``endpoint``'s slots."""
    head = f"{prefixes[0] if prefixes else ''}drr:near-probe:{uuid.uuid4().hex}"
    view = getattr(endpoint, "view", None)
    if view is None:
        return head
    return f"{head}:{{{_tag_for(tuple(view.ranges))}}}"


def _tag_for(ranges: tuple[tuple[int, int], ...], _found: dict[Any, str] = {}) -> str:  # noqa: B006
    """A hash tag whose slot is in ``ranges`` (remembered per set of ranges)."""
    tag = _found.get(ranges)
    if tag is None:
        n = 0
        while not any(a <= slot_of(f"{{t{n}}}") <= b for a, b in ranges):
            n += 1
        tag = _found[ranges] = f"t{n}"
    return tag


def near_prefixes(
    make_key: Callable[[str], str], key_prefixes: Sequence[str] | None
) -> tuple[str, ...]:
    """The Redis key prefixes tracked: the given ones made into keys, or the cache's
    whole default version (``make_key("")``)."""
    if key_prefixes is None:
        return (make_key(""),)
    return tuple(make_key(p) for p in key_prefixes)
