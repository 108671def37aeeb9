"""The Redis servers ``manage.py demo`` runs in its own process, for the chaos page to break.

The demo starts them with the package's test harness (real ``redis-server``
processes on 127.0.0.1) and registers them here; views in the same process
find them through :func:`current`. Without the demo nothing is registered and
the chaos page does not exist.

Every process the harness starts is tied to the thread that started it: the
kernel kills it when that thread ends (so a crashed demo leaves nothing
behind). Request threads end after each request, so chaos actions, which may
start a process (``restart``), run on one long-lived thread of their own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from django_redis_resilience.testing import ClusterGroup, RedisServer, SentinelGroup

Topology = Literal["standalone", "cluster", "sentinel"]
Action = Literal["kill", "hang", "resume", "restart"]
ACTIONS: dict[Action, str] = {
    "kill": "Stop (SIGKILL): crash, connections refused",
    "hang": "Hang (SIGSTOP): frozen, connections time out",
    "resume": "Resume (SIGCONT)",
    "restart": "Restart on the same port, empty",
}
#: How long a view waits for a chaos action (a restart waits for the server to answer).
ACTION_TIMEOUT = 30.0


@dataclass
class Node:
    """One server of the demo: what it was started as, and what the chaos page did to it."""

    name: str
    role: str
    server: RedisServer

    @property
    def address(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    @property
    def pid(self) -> int | None:
        return self.server.pid

    @property
    def state(self) -> Literal["running", "stopped", "hung"]:
        if not self.server.is_running():
            return "stopped"
        return "hung" if self.server.is_hung() else "running"


@dataclass
class Embedded:
    """The running servers of one demo, with the ``LOCATION`` that reaches them."""

    topology: Topology
    location: str
    nodes: dict[str, Node] = field(default_factory=dict)
    _worker: _Worker | None = field(default=None, repr=False)

    def act(self, name: str, action: Action) -> None:
        """Run ``action`` on the node ``name`` (on the long-lived thread); raise what it raised."""
        node = self.nodes[name]
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        assert self._worker is not None
        self._worker.run(lambda: _apply(node, action), timeout=ACTION_TIMEOUT)


def _apply(node: Node, action: Action) -> None:
    server = node.server
    if action == "kill":
        server.kill()
    elif action == "hang":
        server.hang()
    elif action == "resume":
        server.resume()
    else:
        server.restart()  # resumes a hung server first


class _Worker:
    """One daemon thread that runs callables in order and hands back their results."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], None], Future[None]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="demo-chaos", daemon=True)
        self._thread.start()

    def run(self, job: Callable[[], None], *, timeout: float) -> None:
        future: Future[None] = Future()
        self._jobs.put((job, future))
        future.result(timeout=timeout)

    def close(self) -> None:
        """End the thread; only after the servers it may have restarted are stopped."""
        self._jobs.put(None)
        self._thread.join(timeout=ACTION_TIMEOUT)

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                job()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(None)


_current: Embedded | None = None


def current() -> Embedded | None:
    """The demo's servers, or ``None`` when this process did not start any."""
    return _current


@contextmanager
def running(topology: Topology) -> Iterator[Embedded]:
    """Start the servers of ``topology``, register them, and stop every one of them on exit.

    Call it from the main thread: the servers live as long as the thread that started them.
    """
    global _current
    if _current is not None:
        raise RuntimeError("the demo's Redis servers are already running")
    group: RedisServer | ClusterGroup | SentinelGroup
    if topology == "cluster":
        # Without full coverage a dead master degrades only its own slots' keys.
        group = ClusterGroup(masters=3, require_full_coverage=False)
    elif topology == "sentinel":
        group = SentinelGroup(replicas=1, sentinels=3)
    else:
        group = RedisServer()
    worker = _Worker()
    try:
        with group:
            embedded = Embedded(topology=topology, location=_location(group), _worker=worker)
            embedded.nodes = {node.name: node for node in _nodes(group)}
            _current = embedded
            try:
                yield embedded
            finally:
                _current = None
    finally:
        worker.close()


def _location(group: RedisServer | ClusterGroup | SentinelGroup) -> str:
    return group.url if isinstance(group, RedisServer) else group.location


def _nodes(group: RedisServer | ClusterGroup | SentinelGroup) -> list[Node]:
    """Name and label each server; roles are as started (a failover changes them later)."""
    if isinstance(group, RedisServer):
        return [Node("redis", "standalone", group)]
    if isinstance(group, ClusterGroup):
        nodes = []
        for index, server in enumerate(group.nodes, start=1):
            slots = ", ".join(f"{a}-{b}" for a, b in group.slots_of(server))
            nodes.append(Node(f"master-{index}", f"cluster master, slots {slots}", server))
        return nodes
    primary, *replicas = group.data_nodes
    nodes = [Node("primary", "primary (at start)", primary)]
    nodes += [
        Node(f"replica-{i}", "replica (at start)", server)
        for i, server in enumerate(replicas, start=1)
    ]
    nodes += [
        Node(f"sentinel-{i}", "sentinel", server)
        for i, server in enumerate(group.sentinels, start=1)
    ]
    return nodes
