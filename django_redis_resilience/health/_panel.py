"""What the admin panel shows, computed from a report: plain data for the templates.

The templates only lay things out; every number, percentage, colour class and
SVG coordinate is worked out here, where it can be tested without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django_redis_resilience.health._findings import SLOTS
from django_redis_resilience.health._history import history
from django_redis_resilience.health._model import CacheReport, Finding, NodeReport, Report

#: Sparkline size in SVG user units (the CSS scales it).
SPARK_WIDTH = 120
SPARK_HEIGHT = 24


@dataclass
class Sparkline:
    """An SVG polyline of the latency history, and where samples were missing."""

    points: str
    #: x positions of samples where the node did not answer.
    gaps: list[float]
    last_ms: float | None
    max_ms: float | None
    samples: int
    width: int = SPARK_WIDTH
    height: int = SPARK_HEIGHT


@dataclass
class SlotSegment:
    """One stretch of the slot-coverage bar."""

    first: int
    last: int
    owner: str
    #: ``served``, ``down`` (its master failed) or ``unassigned``.
    state: str
    left: float
    width: float

    @property
    def label(self) -> str:
        owner = self.owner or "no master"
        return f"slots {self.first}-{self.last}: {owner} ({self.state})"


@dataclass
class NodeCard:
    node: NodeReport
    role: str
    status: str
    latency_ms: float | None
    memory_used: int | None
    memory_max: int | None
    #: Used memory against ``maxmemory`` in percent, when there is a limit.
    memory_percent: float | None
    memory_level: str
    replication: str
    slots: int | None
    sparkline: Sparkline
    findings: list[Finding] = field(default_factory=list)


@dataclass
class CacheCard:
    cache: CacheReport
    status: str
    nodes: list[NodeCard]
    #: This process's side: ``process``, ``endpoints``, ``counters``, topology refreshes.
    client: dict[str, Any]
    endpoints: list[dict[str, Any]]
    counters: dict[str, Any]
    findings: list[Finding]
    segments: list[SlotSegment]
    coverage: dict[str, Any]
    is_cluster: bool


def sparkline(series: Sequence[tuple[float, float | None]]) -> Sparkline:
    """Scale the samples into the SVG box; a missing sample breaks the line and is marked."""
    values = [v for _, v in series]
    answered = [v for v in values if v is not None]
    top = max(answered, default=0.0) or 1.0
    step = SPARK_WIDTH / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    gaps: list[float] = []
    for i, value in enumerate(values):
        x = round(i * step, 2)
        if value is None:
            gaps.append(x)
            runs.append([])
            continue
        y = round(SPARK_HEIGHT - 2 - (value / top) * (SPARK_HEIGHT - 4), 2)
        runs[-1].append(f"{x},{y}")
    # One polyline: the longest unbroken run (most recent on a tie) keeps the SVG simple.
    longest = max(reversed(runs), key=len)
    return Sparkline(
        points=" ".join(longest),
        gaps=gaps,
        last_ms=values[-1] if values else None,
        max_ms=max(answered) if answered else None,
        samples=len(values),
    )


def slot_segments(cluster: dict[str, Any]) -> list[SlotSegment]:
    """The 16384 slots as contiguous stretches: served, down, or assigned to no master."""
    ranges = sorted(cluster.get("ranges") or [])
    segments: list[SlotSegment] = []

    def add(first: int, last: int, owner: str, state: str) -> None:
        segments.append(
            SlotSegment(
                first=first,
                last=last,
                owner=owner,
                state=state,
                left=round(first * 100 / SLOTS, 4),
                width=round((last - first + 1) * 100 / SLOTS, 4),
            )
        )

    nxt = 0
    for first, last, owner, served in ranges:
        if first > nxt:
            add(nxt, first - 1, "", "unassigned")
        add(first, last, owner, "served" if served else "down")
        nxt = max(nxt, last + 1)
    if nxt < SLOTS and (ranges or "slots_covered" in cluster):
        add(nxt, SLOTS - 1, "", "unassigned")
    return segments


def _replication(node: NodeReport) -> str:
    rep = node.replication
    role = rep.get("role")
    if role == "master":
        replicas = rep.get("replicas") or []
        if not replicas:
            return "no replicas"
        lags = [r.get("lag") for r in replicas if r.get("lag") is not None]
        lag = f", lag ≤ {max(lags)} s" if lags else ""
        return f"{len(replicas)} replica{'s' if len(replicas) != 1 else ''}{lag}"
    if role in ("slave", "replica"):
        link = rep.get("master_link_status", "?")
        master = f"{rep.get('master_host', '?')}:{rep.get('master_port', '?')}"
        io = rep.get("master_last_io_seconds_ago")
        seen = f", last I/O {io} s ago" if io is not None and int(io) >= 0 else ""
        return f"replica of {master}, link {link}{seen}"
    if node.sentinel:
        seen_primary: dict[str, Any] = node.sentinel.get("master") or {}
        if seen_primary.get("ip"):
            return f"sees primary {seen_primary['ip']}:{seen_primary.get('port')}"
    return ""


def _slots_served(node: NodeReport, segments: Sequence[SlotSegment]) -> int | None:
    if not segments:
        return None
    return sum(s.last - s.first + 1 for s in segments if s.owner == node.address)


def _node_card(cache: CacheReport, node: NodeReport, segments: Sequence[SlotSegment]) -> NodeCard:
    memory = node.memory
    used = memory.get("used_memory")
    limit = memory.get("maxmemory") or None
    percent = round(used * 100 / limit, 1) if used is not None and limit else None
    level = "unknown"
    if percent is not None:
        level = "critical" if percent >= 95 else "warning" if percent >= 80 else "ok"
    findings = [f for f in cache.findings if f.node == node.address]
    worst = max((f.severity.rank for f in findings), default=0)
    status = "down" if not node.reachable else ("ok", "warning", "critical")[worst]
    role = node.replication.get("role") or node.kind
    return NodeCard(
        node=node,
        role="replica" if role == "slave" else role,
        status=status,
        latency_ms=node.ping_ms,
        memory_used=used,
        memory_max=limit,
        memory_percent=percent,
        memory_level=level,
        replication=_replication(node),
        slots=_slots_served(node, segments),
        sparkline=sparkline(history.series(cache.alias, node.address)),
        findings=findings,
    )


def cache_cards(
    report: Report, *, clients: Mapping[str, dict[str, Any]] | None = None
) -> list[CacheCard]:
    """One card per cache, its nodes' cards, findings worst first.

    ``clients`` replaces the report's client side (breakers, counters) with a
    fresher one: it is this process's own memory, so it costs no network and
    need not wait for the cached report to expire.
    """
    cards = []
    for cache in report.caches:
        client = (clients or {}).get(cache.alias, cache.client)
        segments = slot_segments(cache.cluster) if cache.topology == "cluster" else []
        findings = sorted(cache.findings, key=lambda f: (-f.severity.rank, f.code, f.node))
        cards.append(
            CacheCard(
                cache=cache,
                status=cache.status,
                nodes=[_node_card(cache, node, segments) for node in cache.nodes],
                client=client,
                endpoints=list(client.get("endpoints", [])),
                counters=dict(client.get("counters", {})),
                findings=findings,
                segments=segments,
                coverage=cache.cluster,
                is_cluster=cache.topology == "cluster",
            )
        )
    return cards
