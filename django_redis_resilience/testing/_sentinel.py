"""Redis Sentinel for tests: a replicated primary watched by real Sentinel processes.

What a Sentinel-aware client has to survive — the primary's address changing
under it, a failover that takes seconds, Sentinels that are themselves down —
only shows up against real Sentinels, so :class:`SentinelGroup` runs them:
a :class:`ReplicaGroup` for the data and (by default) three
``redis-server --sentinel`` processes with quorum 2. The timeouts are cut to a
second or a few (``down-after-milliseconds`` 1000, ``failover-timeout`` 3000)
so a killed primary is replaced within a few seconds instead of the
production defaults' half a minute.

Everything announces and is reached on 127.0.0.1 only, and Sentinels are told
not to resolve host names, so what they report can be mapped back to the
harness's own :class:`RedisServer` handles.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

from django_redis_resilience.testing._binary import find_redis_server
from django_redis_resilience.testing._errors import HarnessError
from django_redis_resilience.testing._lifecycle import Startable
from django_redis_resilience.testing._servers import HOST, RedisServer, ReplicaGroup
from django_redis_resilience.testing._tls import TLSMaterial

__all__ = ["SentinelGroup", "SentinelGroupFactory", "SentinelServer"]

_CONFIG_NAME = "sentinel.conf"
_POLL_INTERVAL = 0.05
_WRITE_PROBE_KEY = "drr-harness:sentinel-write-probe"


def _responsive(server: RedisServer) -> bool:
    """Running and not frozen: a hung process would only make the harness wait for timeouts."""
    return server.is_running() and not server._hung


def _as_dict(reply: Any) -> dict[str, str]:
    """A RESP2 flat ``[key, value, ...]`` list or a RESP3 map, as ``{str: str}``."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    items = list(reply)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items) - 1, 2)}


class SentinelServer(RedisServer):
    """One ``redis-server <config> --sentinel`` process, with the usual chaos controls.

    Sentinel insists on a config file it can rewrite: it records there what it
    learnt (the replicas, the other Sentinels, its own id, the current
    primary). Each Sentinel therefore gets its own file in its own directory,
    written before the first start and kept by :meth:`restart`, so a restarted
    Sentinel comes back knowing the topology, as a real one would.

    Caveat for :meth:`hang`: a Sentinel that was frozen for more than two
    seconds enters TILT mode on :meth:`resume` and takes no action for 30 s.
    """

    def __init__(
        self,
        *,
        config: str,
        binary: str | None = None,
        start_timeout: float = 10.0,
        tls: TLSMaterial | None = None,
    ) -> None:
        super().__init__(binary=binary, start_timeout=start_timeout, tls=tls)
        self._config = config

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<SentinelServer {HOST}:{self._port} {state}>"

    @property
    def config_path(self) -> Path:
        """The file Sentinel rewrites; read it to see what this Sentinel has learnt."""
        return self.directory / _CONFIG_NAME

    def _command(self) -> list[str]:
        path = self.config_path
        if not path.exists():  # on restart, keep what the Sentinel wrote there
            path.write_text(self._config)
        binary, *options = super()._command()
        # The config file must be the first argument, or Redis takes it for an option.
        return [binary, str(path), "--sentinel", *options]


class SentinelGroup(Startable):
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels monitoring them.

    The data nodes are a :class:`ReplicaGroup` (``password``, ``extra_args``
    and ``binary`` apply to them); with ``password`` every data node also gets
    ``masterauth``, so whichever one is promoted, the others can follow it,
    and the Sentinels get ``auth-pass``. The Sentinels themselves need no password.

    :attr:`primary` follows failovers (it asks a Sentinel); the handles in
    :attr:`data_nodes` and :attr:`sentinels` stay the same objects for the
    group's life, so a test can kill whichever one it likes. A killed data
    node that is restarted comes back with its original arguments (the first
    primary as a primary, empty); the Sentinels then turn it into a replica of
    the current primary, which Sentinel deliberately delays by about 8 s.

    With ``tls`` every process listens only with TLS: the data nodes replicate
    over TLS and the Sentinels reach the data nodes and each other over TLS.
    """

    def __init__(
        self,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        service_name: str = "mymaster",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        start_timeout: float = 10.0,
        ready_timeout: float = 30.0,
        tls: TLSMaterial | None = None,
    ) -> None:
        if replicas < 1:
            raise ValueError("a SentinelGroup needs at least one replica to fail over to")
        if sentinels < 1:
            raise ValueError("a SentinelGroup needs at least one Sentinel")
        if not 1 <= quorum <= sentinels:
            raise ValueError(f"quorum must be between 1 and sentinels ({sentinels})")
        if not service_name or any(c.isspace() for c in service_name):
            raise ValueError("service_name must be a non-empty word without whitespace")
        if isinstance(extra_args, str):
            raise TypeError("extra_args must be a sequence of arguments, not one string")
        self._replica_count = replicas
        self._sentinel_count = sentinels
        self._service_name = service_name
        self._quorum = quorum
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms
        self._password = password
        self._extra_args = tuple(extra_args)
        self._binary = binary
        self._start_timeout = start_timeout
        self._ready_timeout = ready_timeout
        self._tls = tls
        self._group: ReplicaGroup | None = None
        self._data_nodes: list[RedisServer] = []
        self._sentinels: list[SentinelServer] = []
        self._primary: RedisServer | None = None

    def __repr__(self) -> str:
        data = [s._port for s in self._data_nodes]
        sentinels = [s._port for s in self._sentinels]
        return f"<SentinelGroup {self._service_name} data={data} sentinels={sentinels}>"

    # --- topology -------------------------------------------------------------------

    @property
    def service_name(self) -> str:
        return self._service_name

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def primary(self) -> RedisServer:
        """The current primary as a Sentinel reports it; the last one known if none answers."""
        self._require_started()
        try:
            return self.current_primary()
        except HarnessError:
            assert self._primary is not None
            return self._primary

    @property
    def replicas(self) -> list[RedisServer]:
        """Every data node but the current primary, dead or alive."""
        primary = self.primary
        return [node for node in self._data_nodes if node is not primary]

    @property
    def data_nodes(self) -> list[RedisServer]:
        """All data nodes in creation order (the first primary first), whatever their role now."""
        return list(self._data_nodes)

    @property
    def sentinels(self) -> list[SentinelServer]:
        return list(self._sentinels)

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """What ``redis.sentinel.Sentinel(...)`` takes."""
        return [(sentinel.host, sentinel.port) for sentinel in self._sentinels]

    @property
    def location(self) -> str:
        """``redis+sentinel://[:password@]127.0.0.1:p1,.../<service>/0`` for ``CACHES``;
        ``rediss+sentinel://`` with ``tls`` (add the data nodes' ``tls_options``)."""
        self._require_started()
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        scheme = "rediss+sentinel" if self._tls else "redis+sentinel"
        return f"{scheme}://{auth}{hosts}/{quote(self._service_name, safe='')}/0"

    def current_primary(self) -> RedisServer:
        """Ask the Sentinels, in order, for the primary's address and return its handle.

        Dead and hung Sentinels are skipped. Raises :class:`HarnessError` when
        none answers or the address is not one of the group's data nodes.
        """
        self._require_started()
        errors: list[Exception] = []
        for sentinel in self._sentinels:
            if not _responsive(sentinel):
                continue
            try:
                port = self._reported_primary_port(sentinel)
            except redis.RedisError as exc:
                errors.append(exc)
                continue
            if port is None:
                continue
            node = self._node_at(port)
            self._primary = node
            return node
        raise HarnessError(f"no Sentinel of {self!r} reported a primary ({errors!r})")

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> SentinelGroup:
        """Start data nodes and Sentinels; return once every Sentinel sees the whole group.

        "Sees" means: the expected primary, not flagged down, with every replica
        connected and every other Sentinel discovered. Before that a failover
        could fail for want of a known replica, or of a quorum.
        """
        if self._group is not None:
            return self
        binary = self._binary or find_redis_server()
        data_args = ["--replica-announce-ip", HOST]
        if self._password:
            data_args += ["--masterauth", self._password]
        try:
            self._group = ReplicaGroup(
                replicas=self._replica_count,
                password=self._password,
                extra_args=[*data_args, *self._extra_args],
                binary=binary,
                start_timeout=self._start_timeout,
                tls=self._tls,
            )
            self._group.start()
            self._data_nodes = [self._group.primary, *self._group.replicas]
            self._primary = self._group.primary
            config = self._sentinel_config(self._group.primary.port)
            for _ in range(self._sentinel_count):
                sentinel = SentinelServer(
                    config=config, binary=binary, start_timeout=self._start_timeout, tls=self._tls
                )
                self._sentinels.append(sentinel)
                sentinel.start()
            self._wait_until_monitored()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the Sentinels first (so they do not fail over a stopping group), then the data."""
        errors: list[Exception] = []
        for sentinel in reversed(self._sentinels):
            try:
                sentinel.stop()
            except Exception as exc:
                errors.append(exc)
        if self._group is not None:
            try:
                self._group.stop()
            except Exception as exc:
                errors.append(exc)
        self._group = None
        self._sentinels = []
        self._data_nodes = []
        self._primary = None
        if errors:
            raise errors[0]

    # --- failover -------------------------------------------------------------------

    def failover(self, *, timeout: float = 30.0) -> RedisServer:
        """``SENTINEL FAILOVER`` (no agreement needed), then :meth:`wait_for_failover`.

        Returns the new primary. The old primary keeps running; Sentinel turns
        it into a replica some seconds later (see the class docstring).
        """
        old = self.current_primary()
        deadline = time.monotonic() + timeout
        while True:
            sentinel = self._first_responsive_sentinel()
            try:
                with sentinel.client() as client:
                    client.execute_command("SENTINEL", "FAILOVER", self._service_name)
                break
            except redis.ResponseError as exc:
                if str(exc).startswith("INPROG"):
                    break  # a failover is already under way: wait for it
                # NOGOODSLAVE: no replica looks fit yet (e.g. just restarted); it may become fit.
                if not str(exc).startswith("NOGOODSLAVE") or time.monotonic() >= deadline:
                    raise HarnessError(f"SENTINEL FAILOVER failed: {exc}") from exc
            time.sleep(_POLL_INTERVAL)
        return self.wait_for_failover(old, timeout=max(deadline - time.monotonic(), 0.0))

    def wait_for_failover(self, old_primary: RedisServer, *, timeout: float = 30.0) -> RedisServer:
        """Wait until the Sentinels have replaced ``old_primary`` and return the new primary.

        Done means: every responsive Sentinel reports the same new address, that
        node says ``role:master`` and accepts a write, and every other running
        data node except ``old_primary`` replicates from it with the link up —
        so a test can write and read from replicas at once.
        """
        self._require_started()
        deadline = time.monotonic() + timeout
        state = "no Sentinel answered"
        while True:
            new, state = self._failover_state(old_primary)
            if new is not None:
                self._primary = new
                return new
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"no failover away from {old_primary!r} within {timeout}s: {state}"
                )
            time.sleep(_POLL_INTERVAL)

    def wait_until_replicating(self, *, timeout: float = 30.0) -> None:
        """Wait until every running data node but the primary replicates from it, link up.

        After a failover the old primary, or a restarted node, rejoins as a
        replica only when the Sentinels reconfigure it, which they delay by
        about 8 s on purpose; wait for this before counting on every replica.
        """
        self._require_started()
        deadline = time.monotonic() + timeout
        while True:
            primary = self.current_primary()
            problem = self._follower_problem(primary, besides=None)
            if not problem:
                return
            if time.monotonic() >= deadline:
                raise HarnessError(f"the replicas did not settle within {timeout}s: {problem}")
            time.sleep(_POLL_INTERVAL)

    # --- internals ------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._group is None:
            raise HarnessError("the SentinelGroup has no servers until start() is called")

    def _sentinel_config(self, primary_port: int) -> str:
        name = self._service_name
        lines = [
            "sentinel resolve-hostnames no",
            f"sentinel announce-ip {HOST}",
            f"sentinel monitor {name} {HOST} {primary_port} {self._quorum}",
            f"sentinel down-after-milliseconds {name} {self._down_after_ms}",
            f"sentinel failover-timeout {name} {self._failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        if self._password:
            lines.append(f'sentinel auth-pass {name} "{_escape(self._password)}"')
        if self._tls is not None:
            # Sentinel speaks TLS to the data nodes and to the other Sentinels.
            lines.append("tls-replication yes")
        return "\n".join(lines) + "\n"

    def _node_at(self, port: int) -> RedisServer:
        for node in self._data_nodes:
            if node.port == port:
                return node
        raise HarnessError(f"a Sentinel reported {HOST}:{port}, which is not a node of {self!r}")

    def _first_responsive_sentinel(self) -> SentinelServer:
        for sentinel in self._sentinels:
            if _responsive(sentinel):
                return sentinel
        raise HarnessError(f"every Sentinel of {self!r} is dead or hung")

    def _reported_primary_port(self, sentinel: SentinelServer) -> int | None:
        with sentinel.client(decode_responses=True) as client:
            reply = client.execute_command(
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self._service_name
            )
        return None if not reply else int(reply[1])

    def _sentinel_view(
        self, sentinel: SentinelServer
    ) -> tuple[dict[str, str], list[dict[str, str]]]:
        with sentinel.client(decode_responses=True) as client:
            master = _as_dict(client.execute_command("SENTINEL", "MASTER", self._service_name))
            replicas = client.execute_command("SENTINEL", "REPLICAS", self._service_name)
        return master, [_as_dict(entry) for entry in replicas]

    def _wait_until_monitored(self) -> None:
        deadline = time.monotonic() + self._ready_timeout
        state = ""
        while True:
            problems = [p for s in self._sentinels if (p := self._monitor_problem(s))]
            if not problems:
                return
            state = "; ".join(problems)
            if time.monotonic() >= deadline:
                raise HarnessError(
                    f"the Sentinels did not see the whole group within {self._ready_timeout}s: "
                    f"{state}"
                )
            time.sleep(_POLL_INTERVAL)

    def _monitor_problem(self, sentinel: SentinelServer) -> str | None:
        """Why ``sentinel`` is not ready yet, or ``None`` if it is."""
        try:
            master, replicas = self._sentinel_view(sentinel)
        except redis.RedisError as exc:
            return f"{sentinel.port}: {exc}"
        assert self._primary is not None
        expected = {
            "port": str(self._primary.port),
            "flags": "master",
            "num-slaves": str(self._replica_count),
            "num-other-sentinels": str(self._sentinel_count - 1),
        }
        wrong = {k: master.get(k) for k, v in expected.items() if master.get(k) != v}
        if wrong:
            return f"{sentinel.port}: master {wrong} (want {expected})"
        unready = [r.get("name") for r in replicas if r.get("flags") != "slave"]
        unready += [r.get("name") for r in replicas if r.get("master-link-status") != "ok"]
        if unready:
            return f"{sentinel.port}: replicas not connected and synced: {unready}"
        return None

    def _failover_state(self, old_primary: RedisServer) -> tuple[RedisServer | None, str]:
        """The new primary once the failover is complete, else ``None`` and why not."""
        port, problem = self._agreed_primary_port()
        if problem:
            return None, problem
        if port is None or port == old_primary.port:
            return None, f"the Sentinels still report {port}"
        new = self._node_at(port)
        problem = _write_problem(new) or self._follower_problem(new, besides=old_primary)
        if problem:
            return None, problem
        return new, "done"

    def _agreed_primary_port(self) -> tuple[int | None, str]:
        """The primary's port as every responsive Sentinel reports it, or why there is none."""
        ports: set[int | None] = set()
        for sentinel in self._sentinels:
            if not _responsive(sentinel):
                continue
            try:
                ports.add(self._reported_primary_port(sentinel))
            except redis.RedisError as exc:
                return None, f"Sentinel {sentinel.port}: {exc}"
        if len(ports) != 1:
            return None, f"the Sentinels disagree or none answers: {sorted(map(str, ports))}"
        (port,) = ports
        return port, ""

    def _follower_problem(self, primary: RedisServer, *, besides: RedisServer | None) -> str:
        """Why some responsive data node (other than ``besides``) does not replicate
        from ``primary`` yet, or ``""``."""
        for node in self._data_nodes:
            if node is primary or node is besides or not _responsive(node):
                continue
            try:
                with node.client() as client:
                    info = client.info("replication")
            except redis.RedisError as exc:
                return f"{node!r}: {exc}"
            if int(info.get("master_port", -1)) != primary.port:
                return f"{node!r} does not follow {primary!r} yet"
            if info.get("master_link_status") != "up":
                return f"{node!r} has not synced from {primary!r} yet"
        return ""


def _write_problem(node: RedisServer) -> str:
    """Why ``node`` does not take writes as the primary yet, or ``""``."""
    try:
        with node.client() as client:
            if client.info("replication").get("role") != "master":
                return f"{node!r} is reported but not yet master"
            client.set(_WRITE_PROBE_KEY, b"1")
            client.delete(_WRITE_PROBE_KEY)
    except redis.RedisError as exc:
        return f"{node!r} does not accept writes yet: {exc}"
    return ""


def _escape(value: str) -> str:
    """Quote a value for a Redis config file line (inside double quotes)."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


SentinelGroupFactory = Callable[..., SentinelGroup]
"""What ``drr_sentinel_factory`` yields: takes :class:`SentinelGroup`'s keyword arguments."""
