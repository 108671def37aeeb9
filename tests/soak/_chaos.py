"""The chaos loop: one fault at a time, on a node picked at random, from a seeded RNG.

Faults and the rules they follow (the conditions under which the app promises
anything at all). Of the server:

- ``kill``: SIGKILL, then the node stays down for longer than the lock lease
  before it starts again, empty. A server restarted without persistence forgets
  the locks it granted; the README's rule for that (Redlock section) is to keep
  it down for longer than the lease, so that no lease it granted is still running.
- ``hang``: SIGSTOP for a while, then SIGCONT; commands queued meanwhile run then.
- ``restart``: ``SHUTDOWN SAVE`` and an immediate start on the same port from
  that snapshot: a restart that keeps every acknowledged write (as a server
  with ``appendfsync always`` would), so the old values are back in Redis.
- ``kill_clients``: the server closes every client connection (failover,
  proxy or TLS terminator restart).

Of the network, for a node whose clients reach it through a :class:`FaultProxy`
(``app``: this process's traffic; the site's server has none):

- ``slow``: every chunk waits 0.2 to 0.6 s in each direction, more than the
  socket timeout for a round trip, for 0.3 to 2.5 s, then the network heals.
  A call times out *after* its request left, and Redis runs the request
  anyway, late: a write the app took for failed (journaled, kept in the
  fallback) lands in Redis; a lock script runs after its caller gave up (past
  the deadline it carries it neither grants nor queues); a
  rate-limit decision nobody sees counts in Redis. The checks still hold
  because reads of a journaled key are served by the fallback until the key
  has been deleted in Redis, and that delete cannot overtake the late write:
  one connection delivers in order, every connection waits the same delay,
  and healing releases what waits before anything sent afterwards. A lock
  granted in time whose reply alone came too late is given back by the
  caller's leave or runs out with its lease (a cost in liveness only); a
  decision nobody saw is one more admission in Redis than in the ledger, so
  the rate check can only get stricter.
- ``blackhole``: silence for 0.3 to 2.5 s (a partition, a firewall DROP rule):
  connections are accepted, nothing is forwarded or answered, bytes sent
  meanwhile are lost for good, nothing is closed; then the network heals. A
  request either ran before the silence (its answer lost: a write applied
  that the app took for failed, as above) or never runs.
- ``reset``: every open connection through the proxy gets an RST at both ends
  (a middlebox dropping its connection state); a request in flight may or may
  not have run, and only one that is safe to repeat is repeated.

Chaos runs on the main thread: the harness ties each ``redis-server`` to the
thread that started it (``PR_SET_PDEATHSIG``), and restarts start new ones.
The proxy follows its server through kills and restarts: the server keeps its
port, so new connections reach the new process, and the old process's
connections die with it. While a killed server is down the proxy refuses
connections, as the dead server's own port would; in the short gap of a
restart it accepts a connection and closes it, as a load balancer whose
backend is gone does.

Each node keeps its *lives*: from just before a start to just after the kill
that ended it. A rate-limit decision Redis made belongs to a life that
overlapped its round trip; a new life is a new limiter state (also after a
restart from a snapshot: the check can only get stricter for it). A network
fault is no new life: the server behind the proxy keeps running with its
state, and a decision it made, however late its request arrived or its answer
came back, was still made between the moment the request was sent and the
moment the answer arrived, by the life running then.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from django_redis_resilience.testing import FaultProxy, RedisServer

#: Faults of the server itself, for every node.
SERVER_KINDS = ("kill", "hang", "restart", "kill_clients")
#: Faults of the network in front of a server: only for a node behind a proxy.
NETWORK_KINDS = ("slow", "blackhole", "reset")
KINDS = SERVER_KINDS + NETWORK_KINDS
#: How often each kind is picked: the server's faults 3:3:2:1 among themselves, the
#: network's a quarter of a proxied node's faults.
WEIGHTS = {
    "kill": 6,
    "hang": 6,
    "restart": 4,
    "kill_clients": 2,
    "slow": 3,
    "blackhole": 2,
    "reset": 1,
}


@dataclass
class Life:
    """One process of a node: started after ``born_after``, dead by ``died_by``."""

    born_after: float
    died_by: float = math.inf


@dataclass
class Node:
    """A real server the chaos loop breaks, with its lives and every pid it had.

    ``proxied``: clients reach it through a :class:`FaultProxy`, started with the
    server and stopped with it, so that the network in between can fail too.
    """

    name: str
    server: RedisServer
    proxied: bool = False
    proxy: FaultProxy | None = None
    lives: list[Life] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        """Where clients connect: the proxy if there is one, else the server."""
        return self.proxy.url() if self.proxy is not None else self.server.url

    def kinds(self) -> tuple[str, ...]:
        """The faults this node can suffer: the network's only with a proxy in front."""
        return KINDS if self.proxy is not None else SERVER_KINDS

    def _born(self, start: float) -> None:
        self.lives.append(Life(start))
        assert self.server.pid is not None
        self.pids.add(self.server.pid)

    def start(self) -> Node:
        started = time.monotonic()
        self.server.start()
        self._born(started)
        if self.proxied and self.proxy is None:  # the server's port is known once it runs
            self.proxy = FaultProxy(self.server.host, self.server.port).start()
        return self

    def kill(self) -> None:
        """SIGKILL; a proxy in front then refuses connections, as the dead server's port does."""
        self.server.kill()
        self.lives[-1].died_by = time.monotonic()
        if self.proxy is not None:
            self.proxy.refuse()

    def start_empty(self) -> None:
        started = time.monotonic()
        self.server.restart()  # not running: a new, empty process on the same port
        self._born(started)
        if self.proxy is not None:
            self.proxy.heal()  # listening again (no network fault overlaps a kill)

    def restart_from_snapshot(self) -> None:
        """``SHUTDOWN SAVE``, then a new process on the same port that loads the snapshot.

        Not ``SAVE`` then SIGKILL: writes Redis acknowledged between the two
        would be lost, and a writer would read back an older value, which no
        cache can prevent. Here every acknowledged write survives, as with
        ``appendfsync always``; what the app must still get right is the
        writes that went to its fallback while the server was away.
        """
        process = self.server._process
        assert process is not None
        with self.server.client() as client:
            client.shutdown(save=True)
        process.wait(timeout=10)
        self.lives[-1].died_by = time.monotonic()
        started = time.monotonic()
        self.server.restart(keep_data=True)  # not running: loads the snapshot
        self._born(started)

    def stop(self) -> None:
        """The proxy (its thread, its listener, every connection), then the server."""
        try:
            if self.proxy is not None:
                self.proxy.stop()
        finally:
            self._stop_server()

    def _stop_server(self) -> None:
        if self.server.is_running():
            self.server.stop()
            self.lives[-1].died_by = time.monotonic()
        else:
            self.server.stop()  # its directory, and its place in the harness's registry

    def lives_during(self, send: float, recv: float) -> list[int]:
        """The lives that could have answered a request sent at ``send``, answered at ``recv``."""
        return [
            i for i, life in enumerate(self.lives) if life.born_after < recv and send < life.died_by
        ]


@dataclass(frozen=True)
class Fault:
    at: float
    node: str
    kind: str
    seconds: float
    #: What the timeline says besides: the added latency, the connections reset.
    detail: str = ""


class Chaos:
    """Faults at random intervals until a deadline; every node is whole when it returns."""

    def __init__(
        self,
        nodes: list[Node],
        *,
        seed: int,
        lease: float,
        calm: tuple[float, float] = (0.5, 2.5),
        hang: tuple[float, float] = (0.2, 2.5),
        latency: tuple[float, float] = (0.2, 0.6),
        slow: tuple[float, float] = (0.3, 2.5),
        silence: tuple[float, float] = (0.3, 2.5),
    ) -> None:
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.lease = lease
        self.calm = calm
        self.hang = hang
        self.latency = latency
        self.slow = slow
        self.silence = silence
        self.faults: list[Fault] = []
        #: Connections the ``reset`` faults cut, over every proxy.
        self.resets = 0
        self.started = time.monotonic()

    def counts(self) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {node.name: Counter() for node in self.nodes}
        for fault in self.faults:
            counts[fault.node][fault.kind] += 1
        return counts

    def run(self, until: float) -> None:
        turns: list[Node] = []
        while True:
            calm = self.rng.uniform(*self.calm)
            if time.monotonic() + calm >= until:
                return
            time.sleep(calm)
            if not turns:  # nodes in random order, each once per round: every node gets hit
                turns = self.rng.sample(self.nodes, len(self.nodes))
            node = turns.pop()
            kinds = node.kinds()
            kind = self.rng.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
            self.inject(node, kind)

    def inject(self, node: Node, kind: str) -> None:
        at = time.monotonic()
        detail = ""
        if kind in NETWORK_KINDS:
            detail = self._network(node, kind)
        elif kind == "kill":
            node.kill()
            time.sleep(self.rng.uniform(self.lease + 0.3, self.lease + 1.2))
            node.start_empty()
        elif kind == "hang":
            node.server.hang()
            try:
                time.sleep(self.rng.uniform(*self.hang))
            finally:
                node.server.resume()
        elif kind == "restart":
            node.restart_from_snapshot()
        elif kind == "kill_clients":
            node.server.kill_clients()
        else:
            raise ValueError(kind)
        self.faults.append(Fault(at - self.started, node.name, kind, time.monotonic() - at, detail))

    def _network(self, node: Node, kind: str) -> str:
        """A fault of the proxy in front of ``node``; healed before this returns."""
        proxy = node.proxy
        if proxy is None:
            raise ValueError(f"{kind}: {node.name} has no proxy in front of it")
        if kind == "reset":
            reset = proxy.reset_all()
            self.resets += reset
            return f"{reset} connections reset"
        if kind == "slow":
            latency = self.rng.uniform(*self.latency)
            proxy.set_latency(latency)
            detail, lasting = f"{latency:.2f} s each way", self.slow
        elif kind == "blackhole":
            proxy.blackhole()
            detail, lasting = "", self.silence
        else:
            raise ValueError(kind)
        try:
            time.sleep(self.rng.uniform(*lasting))
        finally:
            proxy.heal()
        return detail
