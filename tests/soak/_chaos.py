"""The chaos loop: one fault at a time, on a node picked at random, from a seeded RNG.

Faults and the rules they follow (the conditions under which the app promises
anything at all):

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

Chaos runs on the main thread: the harness ties each ``redis-server`` to the
thread that started it (``PR_SET_PDEATHSIG``), and restarts start new ones.

Each node keeps its *lives*: from just before a start to just after the kill
that ended it. A rate-limit decision Redis made belongs to a life that
overlapped its round trip; a new life is a new limiter state (also after a
restart from a snapshot: the check can only get stricter for it).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from django_redis_resilience.testing import RedisServer

KINDS = ("kill", "hang", "restart", "kill_clients")
WEIGHTS = (3, 3, 2, 1)


@dataclass
class Life:
    """One process of a node: started after ``born_after``, dead by ``died_by``."""

    born_after: float
    died_by: float = math.inf


@dataclass
class Node:
    """A real server the chaos loop breaks, with its lives and every pid it had."""

    name: str
    server: RedisServer
    lives: list[Life] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)

    def _born(self, start: float) -> None:
        self.lives.append(Life(start))
        assert self.server.pid is not None
        self.pids.add(self.server.pid)

    def start(self) -> Node:
        started = time.monotonic()
        self.server.start()
        self._born(started)
        return self

    def kill(self) -> None:
        self.server.kill()
        self.lives[-1].died_by = time.monotonic()

    def start_empty(self) -> None:
        started = time.monotonic()
        self.server.restart()  # not running: a new, empty process on the same port
        self._born(started)

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
    ) -> None:
        self.nodes = nodes
        self.rng = random.Random(seed)
        self.lease = lease
        self.calm = calm
        self.hang = hang
        self.faults: list[Fault] = []
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
            kind = self.rng.choices(KINDS, WEIGHTS)[0]
            self.inject(turns.pop(), kind)

    def inject(self, node: Node, kind: str) -> None:
        at = time.monotonic()
        if kind == "kill":
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
        self.faults.append(Fault(at - self.started, node.name, kind, time.monotonic() - at))
