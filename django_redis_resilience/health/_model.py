"""What a health report says: nodes, caches, findings; plain data, JSON-ready.

Field names follow Redis's ``INFO`` (and so redis_exporter's metric names,
which are ``redis_`` + the same words) wherever one exists.
"""

from __future__ import annotations

import datetime as dt
import enum
import time
from dataclasses import asdict, dataclass, field
from typing import Any


def iso_utc(unix: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC (``2025-01-31T12:00:00.000+00:00``): the one way a
    report shows a moment, whatever the site's ``TIME_ZONE``."""
    if unix is None:
        return None
    moment = dt.datetime.fromtimestamp(float(unix), tz=dt.timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def iso_utc_from_monotonic(value: float | None) -> str | None:
    """A ``time.monotonic()`` reading (breakers and the cluster router keep those, since the
    wall clock may jump) as the wall-clock moment it was, in ISO 8601, UTC."""
    if value is None:
        return None
    return iso_utc(time.time() - (time.monotonic() - value))


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


@dataclass(frozen=True)
class Finding:
    """One thing worth knowing, like a Django system check: a stable code and a sentence."""

    code: str
    severity: Severity
    message: str
    alias: str = ""
    #: The node it is about (``host:port``), when it is about one.
    node: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "severity": self.severity.value}


@dataclass
class NodeReport:
    """One server as this process sees it now."""

    #: ``host:port`` (never credentials).
    address: str
    #: What the topology says it is: ``primary``, ``replica``, ``master`` (cluster),
    #: ``sentinel``; the server's own view is ``replication["role"]``.
    kind: str
    reachable: bool = False
    #: Why not: ``refused``, ``timeout``, ``auth``, ``tls``, ``loading``, ``error``.
    error: str | None = None
    error_detail: str = ""
    connect_ms: float | None = None
    ping_ms: float | None = None
    #: As ``INFO`` gives it; Valkey reports the Redis version it is compatible with here.
    redis_version: str | None = None
    #: Valkey's own version (``None`` on Redis).
    valkey_version: str | None = None
    uptime_in_seconds: int | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)
    persistence: dict[str, Any] = field(default_factory=dict)
    replication: dict[str, Any] = field(default_factory=dict)
    slowlog_len: int | None = None
    #: On a cluster node: ``cluster_state``, slot counts, and its view of the others.
    cluster: dict[str, Any] = field(default_factory=dict)
    #: On a Sentinel: what it says about the service.
    sentinel: dict[str, Any] = field(default_factory=dict)
    #: Commands or sections the server refused (managed services): "not available".
    not_available: list[str] = field(default_factory=list)
    #: On a primary or master: the app's lock and rate-limit keys found in one ``SCAN``
    #: page (a sample: 0 does not prove there are none).
    app_keys: int | None = None
    #: ``cluster-require-full-coverage`` on a cluster node (``yes``/``no``), when readable.
    require_full_coverage: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def server(self) -> str | None:
        """``Valkey 9.1.2`` or ``Redis 7.2.4``: what the node runs, for people."""
        if self.valkey_version:
            return f"Valkey {self.valkey_version}"
        return f"Redis {self.redis_version}" if self.redis_version else None


@dataclass
class CacheReport:
    """One Redis-backed cache: its nodes, this process's view of them, and findings."""

    alias: str
    topology: str
    location: str
    nodes: list[NodeReport] = field(default_factory=list)
    #: This process (``pid@host``): breakers, fallback, journal, counters.
    client: dict[str, Any] = field(default_factory=dict)
    #: On a cluster: slot coverage and the masters' placement.
    cluster: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def status(self) -> str:
        return status_of(self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "topology": self.topology,
            "location": self.location,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "nodes": [n.as_dict() for n in self.nodes],
            "client": self.client,
            "cluster": self.cluster,
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass
class Report:
    """Every cache's report; ``exit_code`` as ``redis_health`` returns it."""

    caches: list[CacheReport]
    #: Unix time; ``as_dict()`` writes it in ISO 8601, UTC.
    generated_at: float
    duration_ms: float
    #: Set when the report itself could not be made (exit code 3).
    error: str | None = None

    @property
    def findings(self) -> list[Finding]:
        return [f for cache in self.caches for f in cache.findings]

    @property
    def status(self) -> str:
        return "unknown" if self.error else status_of(self.findings)

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "warning": 1, "critical": 2}.get(self.status, 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "generated_at": iso_utc(self.generated_at),
            "duration_ms": round(self.duration_ms, 3),
            "error": self.error,
            "caches": [c.as_dict() for c in self.caches],
        }


def status_of(findings: list[Finding]) -> str:
    """``ok`` (information only), ``warning`` or ``critical``."""
    worst = max((f.severity.rank for f in findings), default=0)
    return ("ok", "warning", "critical")[worst]
