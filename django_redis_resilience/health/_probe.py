"""Probe one server on a fresh connection with its own timeout: what ``INFO`` and friends say.

Never a pooled socket (the point is whether a new client could talk to the
server now), never a command that writes. A managed server that refuses a
command (``CONFIG``, ``SLOWLOG``, an ``INFO`` section) is reported as "not
available", not as an error.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import redis.exceptions as rex
from redis._parsers.helpers import parse_info

from django_redis_resilience.connection import classify
from django_redis_resilience.health._model import NodeReport

#: ``INFO`` fields kept, by section of the report (names as Redis spells them).
MEMORY = (
    "used_memory",
    "used_memory_rss",
    "maxmemory",
    "maxmemory_policy",
    "mem_fragmentation_ratio",
    "evicted_keys",
)
CLIENTS = ("connected_clients", "blocked_clients", "rejected_connections", "maxclients")
PERSISTENCE = (
    "loading",
    "rdb_changes_since_last_save",
    "rdb_last_bgsave_status",
    "aof_enabled",
    "aof_last_write_status",
    "aof_last_bgrewrite_status",
)
REPLICATION = (
    "role",
    "connected_slaves",
    "master_host",
    "master_port",
    "master_link_status",
    "master_last_io_seconds_ago",
    "master_sync_in_progress",
    "master_repl_offset",
    "slave_repl_offset",
)
CLUSTER_INFO = (
    "cluster_state",
    "cluster_slots_assigned",
    "cluster_slots_ok",
    "cluster_slots_pfail",
    "cluster_slots_fail",
    "cluster_known_nodes",
    "cluster_size",
)


def command(connection: Any, *args: Any) -> Any:
    connection.send_command(*args)
    return connection.read_response()


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _number(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def _refused(exc: Exception) -> bool:
    """A command a managed server does not allow (renamed, ACL, disabled)."""
    if isinstance(exc, rex.NoPermissionError):  # an ACL denial (redis-py drops "NOPERM")
        return True
    text = str(exc).lower()
    return isinstance(exc, rex.ResponseError) and (
        "unknown command" in text
        or "noperm" in text
        or "not allowed" in text
        or "disabled" in text
        or "unknown subcommand" in text
    )


def _error_kind(exc: BaseException) -> str:
    kind = classify(exc) if isinstance(exc, Exception) else None
    if kind is None:
        return "error"
    return {
        "refused": "refused",
        "timeout": "timeout",
        "reset": "refused",
        "auth": "auth",
        "tls": "tls",
        "loading": "loading",
    }.get(kind.label, kind.label)


def probe(
    report: NodeReport,
    connect: Callable[[], Any],
    *,
    cluster: bool = False,
    sentinel_service: str | None = None,
) -> NodeReport:
    """Fill ``report`` from the server ``connect()`` reaches; never raises for the server's sake."""
    started = time.perf_counter()
    connection = None
    try:
        connection = connect()
        connection.connect()
        report.connect_ms = round((time.perf_counter() - started) * 1000, 3)
        sent = time.perf_counter()
        command(connection, "PING")
        report.ping_ms = round((time.perf_counter() - sent) * 1000, 3)
        report.reachable = True
        if sentinel_service is not None:
            _sentinel(report, connection, sentinel_service)
        else:
            _server(report, connection, cluster=cluster)
    except Exception as exc:
        report.error = report.error or _error_kind(exc)
        report.error_detail = f"{type(exc).__name__}: {exc}"[:300]
        if report.error == "loading":
            report.reachable = True  # it answers, but serves nothing yet
    finally:
        if connection is not None:
            with contextlib.suppress(Exception):  # closing a probe's socket cannot fail it
                connection.disconnect()
    return report


def _info(raw: Any) -> dict[str, Any]:
    return parse_info(_text(raw))  # type: ignore[no-untyped-call,no-any-return]


def _optional(report: NodeReport, name: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (rex.ResponseError, rex.NoPermissionError) as exc:
        if _refused(exc):
            report.not_available.append(name)
            return None
        raise


def _server(report: NodeReport, connection: Any, *, cluster: bool) -> None:
    info = _optional(report, "INFO", lambda: _info(command(connection, "INFO")))
    if info is None:
        return
    report.redis_version = str(info.get("redis_version", "")) or None
    report.valkey_version = str(info.get("valkey_version", "")) or None
    uptime = info.get("uptime_in_seconds")
    report.uptime_in_seconds = int(uptime) if uptime is not None else None
    report.memory = {k: info[k] for k in MEMORY if k in info}
    report.clients = {k: info[k] for k in CLIENTS if k in info}
    report.persistence = {k: info[k] for k in PERSISTENCE if k in info}
    report.replication = {k: info[k] for k in REPLICATION if k in info}
    report.replication["replicas"] = [
        {
            "ip": v.get("ip"),
            "port": v.get("port"),
            "state": v.get("state"),
            "offset": v.get("offset"),
            "lag": v.get("lag"),
        }
        for k, v in sorted(info.items())
        if k.startswith("slave") and isinstance(v, dict)
    ]
    if "maxclients" not in report.clients:  # INFO has it from Redis 7.0
        reply = _optional(
            report,
            "CONFIG GET maxclients",
            lambda: command(connection, "CONFIG", "GET", "maxclients"),
        )
        if reply:
            report.clients["maxclients"] = _number(reply[1])
    if info.get("loading") in (1, "1"):
        report.error = "loading"
    report.slowlog_len = _optional(
        report, "SLOWLOG", lambda: int(command(connection, "SLOWLOG", "LEN"))
    )
    if report.kind in ("primary", "master"):
        report.app_keys = _optional(report, "SCAN", lambda: _app_keys(connection))
    if cluster:
        coverage = _optional(
            report,
            "CONFIG GET cluster-require-full-coverage",
            lambda: command(connection, "CONFIG", "GET", "cluster-require-full-coverage"),
        )
        if coverage:
            report.require_full_coverage = _text(coverage[1])
        raw = _optional(
            report, "CLUSTER INFO", lambda: _text(command(connection, "CLUSTER", "INFO"))
        )
        if raw is not None:
            fields = dict(line.split(":", 1) for line in raw.splitlines() if ":" in line)
            report.cluster = {k: _number(fields[k].strip()) for k in CLUSTER_INFO if k in fields}
        nodes = _optional(
            report, "CLUSTER NODES", lambda: _text(command(connection, "CLUSTER", "NODES"))
        )
        if nodes is not None:
            report.cluster["nodes"] = parse_cluster_nodes(nodes)


def _app_keys(connection: Any) -> int:
    """How many lock and rate-limit keys one ``SCAN`` page (1000 keys looked at) finds:
    they carry TTLs, so an evicting policy may delete them."""
    _, keys = command(connection, "SCAN", 0, "MATCH", "*:drr:*", "COUNT", 1000)
    return sum(1 for k in keys if b":drr:lock:" in k or b":drr:rl:" in k)


def parse_cluster_nodes(text: str) -> list[dict[str, Any]]:
    """``CLUSTER NODES``: one dict per node (id, address, hostname, flags, master, link, slots)."""
    nodes: list[dict[str, Any]] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address, _, hostname = parts[1].partition(",")
        hostport = address.split("@", 1)[0]
        host, _, port = hostport.rpartition(":")
        flags = parts[2].split(",")
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(
            {
                "id": parts[0],
                "host": host,
                "port": int(port) if port.isdigit() else 0,
                "hostname": hostname,
                "flags": flags,
                "master": None if parts[3] == "-" else parts[3],
                "link_state": parts[7],
                "slots": slots,
            }
        )
    return nodes


def _sentinel(report: NodeReport, connection: Any, service: str) -> None:
    raw = command(connection, "SENTINEL", "MASTER", service)
    master = {_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}
    replicas = command(connection, "SENTINEL", "REPLICAS", service)
    sentinels = command(connection, "SENTINEL", "SENTINELS", service)
    report.sentinel = {
        "master": {
            k: master.get(k)
            for k in ("ip", "port", "flags", "num-slaves", "quorum", "num-other-sentinels")
        },
        "replicas": [_pairs(r) for r in replicas],
        "sentinels": [_pairs(s) for s in sentinels],
    }
    report.replication = {"role": "sentinel"}


def _pairs(raw: Any) -> dict[str, str]:
    entry = {_text(raw[i]): _text(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}
    return {k: entry[k] for k in ("ip", "port", "flags", "master-link-status") if k in entry}
