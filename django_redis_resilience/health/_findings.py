"""Findings: what the probes mean, each with a stable code, a severity and one sentence.

Codes are stable (monitoring and runbooks refer to them):

H001 node unreachable · H002 authentication refused · H003 TLS failed · H004 loading
H010 slots not covered · H011 nodes flagged fail/fail? · H012 cluster links disconnected
H013 nodes disagree on cluster_state · H014 master without a healthy replica
H015 replica link down · H016 replica lagging · H017 masters sharing a host
H018 half the masters or more in one zone · H019 memory near maxmemory without eviction
H020 connections rejected · H021 slow round trip · H022 persistence failing
H023 a master and all its replicas in one zone · H024 a master and all its replicas on one host
H030 breaker open in this process · H031 this process's slot map is stale
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Mapping
from typing import Any

from django_redis_resilience.health._model import CacheReport, Finding, NodeReport, Severity

SLOTS = 16384
#: Replication lag (seconds) from which a replica counts as lagging.
LAG_SECONDS = 10
NON_EVICTING = {"noeviction"}


def ranges(slots: list[int]) -> str:
    """``0-99,200`` for sorted slot numbers."""
    out: list[str] = []
    start = prev = None
    for slot in slots:
        if start is None:
            start = prev = slot
        elif slot == prev + 1:  # type: ignore[operator]
            prev = slot
        else:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = slot
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(out)


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def node_findings(cache: CacheReport, *, slow_ms: float) -> list[Finding]:
    found: list[Finding] = []
    alias = cache.alias

    def add(code: str, severity: Severity, message: str, node: NodeReport | None = None) -> None:
        found.append(Finding(code, severity, message, alias, node.address if node else ""))

    for node in cache.nodes:
        important = node.kind in ("primary", "master")
        if node.error == "auth":
            add("H002", Severity.CRITICAL, f"{node.address} refused the credentials.", node)
        elif node.error == "tls":
            add(
                "H003",
                Severity.CRITICAL,
                f"TLS to {node.address} failed: {node.error_detail}",
                node,
            )
        elif node.error == "loading":
            add("H004", Severity.WARNING, f"{node.address} is loading its dataset.", node)
        elif not node.reachable:
            add(
                "H001",
                Severity.CRITICAL if important else Severity.WARNING,
                f"{node.address} ({node.kind}) is unreachable: {node.error}.",
                node,
            )
        if not node.reachable:
            continue
        memory = node.memory
        used, limit = memory.get("used_memory"), memory.get("maxmemory")
        if limit and used and memory.get("maxmemory_policy") in NON_EVICTING:
            share = used / limit
            if share >= 0.9:
                add(
                    "H019",
                    Severity.CRITICAL if share >= 0.98 else Severity.WARNING,
                    f"{node.address} uses {share:.0%} of maxmemory with policy noeviction: "
                    "writes will fail when it is full.",
                    node,
                )
        rejected = node.clients.get("rejected_connections")
        if rejected:
            add(
                "H020",
                Severity.WARNING,
                f"{node.address} rejected {rejected} connections (maxclients "
                f"{node.clients.get('maxclients', '?')}).",
                node,
            )
        if node.ping_ms is not None and node.ping_ms > slow_ms:
            add(
                "H021",
                Severity.WARNING,
                f"{node.address} answered PING in {node.ping_ms:.0f} ms (over {slow_ms:g} ms).",
                node,
            )
        persistence = node.persistence
        for key in ("rdb_last_bgsave_status", "aof_last_write_status"):
            if persistence.get(key) not in (None, "ok"):
                add("H022", Severity.WARNING, f"{node.address}: {key} is {persistence[key]}.", node)
        replication = node.replication
        if replication.get("role") == "slave" and replication.get("master_link_status") == "down":
            add(
                "H015",
                Severity.WARNING,
                f"Replica {node.address} lost its link to its primary.",
                node,
            )
        for replica in replication.get("replicas", []):
            lag = replica.get("lag")
            if isinstance(lag, int) and lag > LAG_SECONDS:
                add(
                    "H016",
                    Severity.WARNING,
                    f"Replica {replica.get('ip')}:{replica.get('port')} of {node.address} lags "
                    f"{lag} s.",
                    node,
                )
    primaries = [n for n in cache.nodes if n.kind == "primary" and n.reachable]
    replicas = [n for n in cache.nodes if n.kind == "replica"]
    if (
        primaries
        and replicas
        and not any(
            n.reachable and n.replication.get("master_link_status") == "up" for n in replicas
        )
    ):
        add("H014", Severity.WARNING, f"The primary {primaries[0].address} has no healthy replica.")
    return found


def cluster_findings(
    cache: CacheReport, *, zones: Mapping[str, str], client_masters: Mapping[int, str] | None
) -> list[Finding]:
    """Coverage, flags, links, agreement, replicas and placement of a cluster."""
    found: list[Finding] = []
    alias = cache.alias

    def add(code: str, severity: Severity, message: str, node: str = "") -> None:
        found.append(Finding(code, severity, message, alias, node))

    reachable = [n for n in cache.nodes if n.reachable and n.cluster.get("nodes")]
    down = {n.address for n in cache.nodes if not n.reachable}
    if not reachable:
        cache.cluster = {"slots_covered": 0, "slots_total": SLOTS}
        add("H010", Severity.CRITICAL, "No cluster node answered: no slot is served.")
        return found
    # The view of the node that knows the most nodes (all views should agree).
    view: list[dict[str, Any]] = max((n.cluster["nodes"] for n in reachable), key=len)
    masters = [n for n in view if "master" in n["flags"] and n["slots"]]
    covered = [False] * SLOTS
    for node in masters:
        address = f"{node['host']}:{node['port']}"
        if "fail" in node["flags"] or address in down:
            continue
        for first, last in node["slots"]:
            for slot in range(first, last + 1):
                covered[slot] = True
    missing = [slot for slot, ok in enumerate(covered) if not ok]
    cache.cluster = {
        "slots_covered": SLOTS - len(missing),
        "slots_total": SLOTS,
        "coverage_ratio": round((SLOTS - len(missing)) / SLOTS, 6),
        "uncovered": ranges(missing),
        "masters": [f"{n['host']}:{n['port']}" for n in masters],
        # Who serves what, for the admin panel's slot bar: [first, last, master, served].
        "ranges": sorted(
            [
                first,
                last,
                f"{n['host']}:{n['port']}",
                f"{n['host']}:{n['port']}" not in down and "fail" not in n["flags"],
            ]
            for n in masters
            for first, last in n["slots"]
        ),
    }
    if missing:
        add(
            "H010",
            Severity.CRITICAL,
            f"{len(missing)} of {SLOTS} slots are not served ({ranges(missing)[:200]}).",
        )
    flagged = [n for n in view if "fail" in n["flags"] or "fail?" in n["flags"]]
    for node in flagged:
        flag = "fail" if "fail" in node["flags"] else "fail?"
        add(
            "H011",
            Severity.WARNING,
            f"{node['host']}:{node['port']} is flagged {flag}.",
            f"{node['host']}:{node['port']}",
        )
    broken = [
        n
        for n in view
        if n["link_state"] == "disconnected"
        and "myself" not in n["flags"]
        and "fail" not in n["flags"]
    ]
    for node in broken:
        add(
            "H012",
            Severity.WARNING,
            f"The cluster bus link to {node['host']}:{node['port']} is disconnected.",
            f"{node['host']}:{node['port']}",
        )
    states = {n.cluster.get("cluster_state") for n in reachable if n.cluster.get("cluster_state")}
    if len(states) > 1:
        add(
            "H013",
            Severity.WARNING,
            "Nodes disagree on cluster_state: " + ", ".join(sorted(map(str, states))) + ".",
        )
    replicas_of = Counter(
        n["master"]
        for n in view
        if "slave" in n["flags"] and "fail" not in n["flags"] and n["link_state"] == "connected"
    )
    alive = [m for m in masters if "fail" not in m["flags"]]
    bare = [m for m in alive if not replicas_of.get(m["id"])]
    if bare and len(bare) == len(alive) and not any("slave" in n["flags"] for n in view):
        # Built without replicas: a choice, not a fault; say what it means once.
        add(
            "H014",
            Severity.INFO,
            "No master has a replica: a master that fails takes its slots down until it returns.",
        )
    else:
        for node in bare:
            add(
                "H014",
                Severity.WARNING,
                f"Master {node['host']}:{node['port']} has no healthy replica: its slots have "
                "no failover.",
                f"{node['host']}:{node['port']}",
            )
    found += placement_findings(alias, masters, zones, view)
    if client_masters:
        server = {}
        for node in masters:
            for first, _last in node["slots"]:
                server[first] = f"{node['host']}:{node['port']}"
        stale = [
            slot
            for slot, address in client_masters.items()
            if slot in server and server[slot] != address
        ]
        if stale:
            add(
                "H031",
                Severity.WARNING,
                f"This process routes {len(stale)} shard(s) to a node that no longer serves "
                "them; its slot map is refreshed in the background.",
            )
    return found


def zone_of(node: Mapping[str, Any], zones: Mapping[str, str]) -> str | None:
    """A node's declared zone: by ``host:port`` first (nodes sharing a host may still sit in
    different zones' containers), then by host, then by announced hostname."""
    for key in (f"{node['host']}:{node['port']}", node["host"], node.get("hostname") or ""):
        if key and key in zones:
            return zones[key]
    return None


def _host_of(node: Mapping[str, Any]) -> str:
    return str(node.get("hostname") or node["host"])


def placement_findings(
    alias: str,
    masters: list[dict[str, Any]],
    zones: Mapping[str, str],
    view: list[dict[str, Any]] | None = None,
) -> list[Finding]:
    """The placement rule: losing any one host or zone must leave a majority of the masters
    (or the cluster cannot fail over) and a copy of every slot (a master or one of its replicas).
    """
    if len(masters) < 2:
        return []
    replicas: dict[str, list[dict[str, Any]]] = {}
    for node in view or []:
        if "slave" in node["flags"] and node.get("master"):
            replicas.setdefault(node["master"], []).append(node)
    return [
        *_shared_hosts(alias, masters),
        *_zone_majority(alias, masters, zones),
        *_replicas_in_zone(alias, masters, replicas, zones),
        *_replicas_on_host(alias, masters, replicas),
    ]


def _shared_hosts(alias: str, masters: list[dict[str, Any]]) -> list[Finding]:
    """H017: masters sharing a host lose their slots together with it."""
    shared = {h: c for h, c in Counter(_host_of(m) for m in masters).items() if c > 1}
    if not shared:
        return []
    loopback = all(_loopback(m["host"]) for m in masters)
    severity = Severity.INFO if loopback else Severity.WARNING
    text = ", ".join(f"{c} on {h}" for h, c in sorted(shared.items()))
    why = (
        " (all on loopback: a test or development setup)"
        if loopback
        else ": losing that host loses their slots at once"
    )
    return [Finding("H017", severity, f"Masters share a host: {text}{why}.", alias)]


def _zone_majority(
    alias: str, masters: list[dict[str, Any]], zones: Mapping[str, str]
) -> list[Finding]:
    """H018: a zone holding half the masters or more. Failover needs a majority of all the
    masters to agree, so the ones left after that zone fails (half or fewer) cannot elect
    replacements: 2 of 4 is as bad as 3 of 4."""
    counts = Counter(z for z in (zone_of(m, zones) for m in masters) if z)
    total = len(masters)
    crowded = sorted((zone, c) for zone, c in counts.items() if c * 2 >= total)
    if not crowded:
        return []
    where = "; ".join(f"{c} of {total} masters are in zone {zone}" for zone, c in crowded)
    # Zones are what the operator declared: a warning even on loopback.
    return [
        Finding(
            "H018",
            Severity.WARNING,
            f"{where}: if {'it' if len(crowded) == 1 else 'one of them'} fails, the masters "
            "left are not a majority and the cluster cannot fail over.",
            alias,
        )
    ]


def _replicas_in_zone(
    alias: str,
    masters: list[dict[str, Any]],
    replicas: Mapping[str, list[dict[str, Any]]],
    zones: Mapping[str, str],
) -> list[Finding]:
    """H023: a master whose replicas are all in its own zone: that zone's loss takes its
    slots with no copy left to promote."""
    found = []
    for master in masters:
        mine = replicas.get(master["id"], [])
        zone = zone_of(master, zones)
        if mine and zone and all(zone_of(r, zones) == zone for r in mine):
            address = f"{master['host']}:{master['port']}"
            found.append(
                Finding(
                    "H023",
                    Severity.WARNING,
                    f"Master {address} and its {len(mine)} replica{'s' if len(mine) > 1 else ''} "
                    f"are all in zone {zone}: if it fails, the slots they serve have no copy left.",
                    alias,
                    address,
                )
            )
    return found


def _replicas_on_host(
    alias: str, masters: list[dict[str, Any]], replicas: Mapping[str, list[dict[str, Any]]]
) -> list[Finding]:
    """H024: a master whose replicas all share its host (one finding for a loopback cluster,
    where every node does: information, not a warning)."""
    together = [
        m
        for m in masters
        if replicas.get(m["id"]) and all(_host_of(r) == _host_of(m) for r in replicas[m["id"]])
    ]
    if not together:
        return []
    everyone = masters + [r for m in masters for r in replicas.get(m["id"], [])]
    if all(_loopback(n["host"]) for n in everyone):
        return [
            Finding(
                "H024",
                Severity.INFO,
                f"{len(together)} of {len(masters)} masters share their host with all their "
                "replicas (all on loopback: a test or development setup).",
                alias,
            )
        ]
    return [
        Finding(
            "H024",
            Severity.WARNING,
            f"Master {m['host']}:{m['port']} and all its replicas are on host {_host_of(m)}: "
            "losing that host leaves the slots they serve with no copy.",
            alias,
            f"{m['host']}:{m['port']}",
        )
        for m in together
    ]


def client_findings(cache: CacheReport) -> list[Finding]:
    found: list[Finding] = []
    for endpoint in cache.client.get("endpoints", []):
        if endpoint.get("breaker") != "closed":
            found.append(
                Finding(
                    "H030",
                    Severity.WARNING,
                    f"This process's breaker for {endpoint['endpoint']} is {endpoint['breaker']}: "
                    "calls are served by the fallback.",
                    cache.alias,
                )
            )
    return found
