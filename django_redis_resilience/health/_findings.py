"""Findings: what the probes mean, each with a stable code, a severity and one sentence.

Codes are stable (monitoring and runbooks refer to them):

H001 node unreachable · H002 authentication refused · H003 TLS failed · H004 loading
H010 slots not covered · H011 nodes flagged fail/fail? · H012 cluster links disconnected
H013 nodes disagree on cluster_state · H014 master without a healthy replica
H015 replica link down · H016 replica lagging · H017 masters sharing a host
H018 half the masters or more in one zone · H019 memory near maxmemory without eviction
H020 connections rejected · H021 slow round trip · H022 persistence failing
H023 a master and all its replicas in one zone · H024 a master and all its replicas on one host
H025 one lost shard stops the whole cluster · H026 an evicting policy where locks live
H027 replicas lagging longer than a lock lease · H028 a server older than supported
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


def node_findings(
    cache: CacheReport, *, slow_ms: float, shortest_lease: float | None = None
) -> list[Finding]:
    """What each node's answers (or silence) mean, node by node, then for the primary.

    ``shortest_lease``: the shortest lock lease this process used (seconds), if any.
    """
    found: list[Finding] = []
    for node in cache.nodes:
        found += _reachability(cache.alias, node)
        if node.reachable:
            found += _memory(cache.alias, node)
            found += _rejected(cache.alias, node)
            found += _slow(cache.alias, node, slow_ms)
            found += _persistence(cache.alias, node)
            found += _replication(cache.alias, node)
            found += _doctor(cache.alias, node, shortest_lease)
    found += _primary_without_replica(cache)
    found += _full_coverage(cache)
    return found


#: The oldest server the app supports (Valkey's reported Redis version is 7.2 or later).
OLDEST_SUPPORTED = (6, 2)
#: Policies that delete keys with a TTL when memory is full: the app's lock and
#: rate-limit keys all carry one.
EVICTING_PREFIXES = ("allkeys-", "volatile-")
#: A replica acknowledges once a second and ``lag`` counts whole seconds since the last
#: acknowledgement: up to this much of it is a healthy replica's normal.
ACK_PERIOD = 1


def _doctor(alias: str, node: NodeReport, shortest_lease: float | None) -> list[Finding]:
    """H026 evicting policy where locks live, H027 lag over a lock lease, H028 too old."""
    found = []
    policy = str(node.memory.get("maxmemory_policy", ""))
    if node.app_keys and policy.startswith(EVICTING_PREFIXES):
        message = (
            f"{node.address} evicts keys with maxmemory-policy {policy} and holds lock or "
            "rate-limit keys: when memory is full, a lock or a count can vanish (a second "
            "holder, a reset limit)."
        )
        found.append(_finding("H026", Severity.WARNING, message, alias, node))
    if shortest_lease is not None:
        for replica in node.replication.get("replicas", []):
            lag = replica.get("lag")
            if isinstance(lag, int) and lag - ACK_PERIOD >= shortest_lease:
                message = (
                    f"Replica {replica.get('ip')}:{replica.get('port')} of {node.address} last "
                    f"acknowledged {lag} s ago, a lease longer than its once-a-second "
                    f"acknowledgement: the shortest lock lease in use is {shortest_lease:g} s, "
                    "and a failover now could hand a held lock out again."
                )
                found.append(_finding("H027", Severity.WARNING, message, alias, node))
    version = _version(node.redis_version)
    if version is not None and version < OLDEST_SUPPORTED and not node.valkey_version:
        message = (
            f"{node.address} runs Redis {node.redis_version}, older than the oldest supported "
            f"({'.'.join(map(str, OLDEST_SUPPORTED))})."
        )
        found.append(_finding("H028", Severity.WARNING, message, alias, node))
    return found


def _version(text: str | None) -> tuple[int, ...] | None:
    try:
        return tuple(int(part) for part in (text or "").split(".")[:2])
    except ValueError:
        return None


def _full_coverage(cache: CacheReport) -> list[Finding]:
    """H025 (information): ``cluster-require-full-coverage yes`` (Redis's default), explained.
    A master without a replica to promote is H014's warning."""
    yes = [n for n in cache.nodes if n.require_full_coverage == "yes"]
    if not yes:
        return []
    message = (
        "cluster-require-full-coverage is yes: when one shard has no master, the whole "
        "cluster refuses every command, not only that shard's. With 'no', the other shards "
        "keep serving and this app serves the lost shard's keys from its fallback."
    )
    return [Finding("H025", Severity.INFO, message, cache.alias, yes[0].address)]


def _finding(
    code: str, severity: Severity, message: str, alias: str, node: NodeReport | None = None
) -> Finding:
    return Finding(code, severity, message, alias, node.address if node else "")


def _reachability(alias: str, node: NodeReport) -> list[Finding]:
    """H002 credentials refused, H003 TLS failed, H004 loading, H001 unreachable."""
    address = node.address
    if node.error == "auth":
        return [
            _finding("H002", Severity.CRITICAL, f"{address} refused the credentials.", alias, node)
        ]
    if node.error == "tls":
        message = f"TLS to {address} failed: {node.error_detail}"
        return [_finding("H003", Severity.CRITICAL, message, alias, node)]
    if node.error == "loading":
        return [
            _finding("H004", Severity.WARNING, f"{address} is loading its dataset.", alias, node)
        ]
    if not node.reachable:
        important = node.kind in ("primary", "master")
        severity = Severity.CRITICAL if important else Severity.WARNING
        message = f"{address} ({node.kind}) is unreachable: {node.error}."
        return [_finding("H001", severity, message, alias, node)]
    return []


def _memory(alias: str, node: NodeReport) -> list[Finding]:
    """H019: near ``maxmemory`` with a policy that refuses writes instead of evicting."""
    memory = node.memory
    used, limit = memory.get("used_memory"), memory.get("maxmemory")
    if not (limit and used and memory.get("maxmemory_policy") in NON_EVICTING):
        return []
    share = used / limit
    if share < 0.9:
        return []
    return [
        _finding(
            "H019",
            Severity.CRITICAL if share >= 0.98 else Severity.WARNING,
            f"{node.address} uses {share:.0%} of maxmemory with policy noeviction: "
            "writes will fail when it is full.",
            alias,
            node,
        )
    ]


def _rejected(alias: str, node: NodeReport) -> list[Finding]:
    """H020: connections refused at ``maxclients``."""
    rejected = node.clients.get("rejected_connections")
    if not rejected:
        return []
    message = (
        f"{node.address} rejected {rejected} connections (maxclients "
        f"{node.clients.get('maxclients', '?')})."
    )
    return [_finding("H020", Severity.WARNING, message, alias, node)]


def _slow(alias: str, node: NodeReport, slow_ms: float) -> list[Finding]:
    """H021: a round trip slower than ``SLOW_MS``."""
    if node.ping_ms is None or node.ping_ms <= slow_ms:
        return []
    message = f"{node.address} answered PING in {node.ping_ms:.0f} ms (over {slow_ms:g} ms)."
    return [_finding("H021", Severity.WARNING, message, alias, node)]


def _persistence(alias: str, node: NodeReport) -> list[Finding]:
    """H022: the last RDB save or AOF write failed."""
    persistence = node.persistence
    return [
        _finding(
            "H022", Severity.WARNING, f"{node.address}: {key} is {persistence[key]}.", alias, node
        )
        for key in ("rdb_last_bgsave_status", "aof_last_write_status")
        if persistence.get(key) not in (None, "ok")
    ]


def _replication(alias: str, node: NodeReport) -> list[Finding]:
    """H015: a replica that lost its primary; H016: a primary's replica that lags."""
    replication = node.replication
    found = []
    if replication.get("role") == "slave" and replication.get("master_link_status") == "down":
        message = f"Replica {node.address} lost its link to its primary."
        found.append(_finding("H015", Severity.WARNING, message, alias, node))
    for replica in replication.get("replicas", []):
        lag = replica.get("lag")
        if isinstance(lag, int) and lag > LAG_SECONDS:
            message = (
                f"Replica {replica.get('ip')}:{replica.get('port')} of {node.address} lags {lag} s."
            )
            found.append(_finding("H016", Severity.WARNING, message, alias, node))
    return found


def _primary_without_replica(cache: CacheReport) -> list[Finding]:
    """H014 (outside a cluster): replicas are configured, and none of them is in sync."""
    primaries = [n for n in cache.nodes if n.kind == "primary" and n.reachable]
    replicas = [n for n in cache.nodes if n.kind == "replica"]
    if not primaries or not replicas:
        return []
    if any(n.reachable and n.replication.get("master_link_status") == "up" for n in replicas):
        return []
    message = f"The primary {primaries[0].address} has no healthy replica."
    return [_finding("H014", Severity.WARNING, message, cache.alias)]


def _address(node: Mapping[str, Any]) -> str:
    """A peer of ``CLUSTER NODES`` as ``host:port``."""
    return f"{node['host']}:{node['port']}"


def cluster_findings(
    cache: CacheReport, *, zones: Mapping[str, str], client_masters: Mapping[int, str] | None
) -> list[Finding]:
    """Coverage, flags, links, agreement, replicas and placement of a cluster; fills
    ``cache.cluster`` (coverage and who serves what) on the way."""
    reachable = [n for n in cache.nodes if n.reachable and n.cluster.get("nodes")]
    if not reachable:
        cache.cluster = {"slots_covered": 0, "slots_total": SLOTS}
        message = "No cluster node answered: no slot is served."
        return [Finding("H010", Severity.CRITICAL, message, cache.alias)]
    alias = cache.alias
    # The view of the node that knows the most nodes (all views should agree).
    view: list[dict[str, Any]] = max((n.cluster["nodes"] for n in reachable), key=len)
    masters = [n for n in view if "master" in n["flags"] and n["slots"]]
    down = {n.address for n in cache.nodes if not n.reachable}
    cache.cluster = _coverage(masters, down)
    return [
        *_uncovered(alias, cache.cluster),
        *_flagged(alias, view),
        *_broken_links(alias, view),
        *_disagreement(alias, reachable),
        *_replicas_of_masters(alias, masters, view),
        *placement_findings(alias, masters, zones, view),
        *_stale_routes(alias, masters, client_masters or {}),
    ]


def _coverage(masters: list[dict[str, Any]], down: set[str]) -> dict[str, Any]:
    """Which slots a master that is up serves, and who serves what (for the slot bar)."""
    covered = [False] * SLOTS
    for node in masters:
        if "fail" in node["flags"] or _address(node) in down:
            continue
        for first, last in node["slots"]:
            for slot in range(first, last + 1):
                covered[slot] = True
    missing = [slot for slot, ok in enumerate(covered) if not ok]
    return {
        "slots_covered": SLOTS - len(missing),
        "slots_total": SLOTS,
        "coverage_ratio": round((SLOTS - len(missing)) / SLOTS, 6),
        "uncovered": ranges(missing),
        "masters": [_address(n) for n in masters],
        # Who serves what, for the admin panel's slot bar: [first, last, master, served].
        "ranges": sorted(
            [first, last, _address(n), _address(n) not in down and "fail" not in n["flags"]]
            for n in masters
            for first, last in n["slots"]
        ),
    }


def _uncovered(alias: str, cluster: Mapping[str, Any]) -> list[Finding]:
    """H010: slots no master serves."""
    missing = SLOTS - cluster["slots_covered"]
    if not missing:
        return []
    message = f"{missing} of {SLOTS} slots are not served ({cluster['uncovered'][:200]})."
    return [Finding("H010", Severity.CRITICAL, message, alias)]


def _flagged(alias: str, view: list[dict[str, Any]]) -> list[Finding]:
    """H011: nodes the cluster flags as failing (``fail``) or suspects (``fail?``)."""
    found = []
    for node in view:
        flag = "fail" if "fail" in node["flags"] else "fail?" if "fail?" in node["flags"] else None
        if flag is not None:
            message = f"{_address(node)} is flagged {flag}."
            found.append(Finding("H011", Severity.WARNING, message, alias, _address(node)))
    return found


def _broken_links(alias: str, view: list[dict[str, Any]]) -> list[Finding]:
    """H012: cluster bus links down to nodes not (yet) flagged as failed."""
    return [
        Finding(
            "H012",
            Severity.WARNING,
            f"The cluster bus link to {_address(n)} is disconnected.",
            alias,
            _address(n),
        )
        for n in view
        if n["link_state"] == "disconnected"
        and "myself" not in n["flags"]
        and "fail" not in n["flags"]
    ]


def _disagreement(alias: str, reachable: list[NodeReport]) -> list[Finding]:
    """H013: nodes that do not agree on ``cluster_state``."""
    states = {n.cluster.get("cluster_state") for n in reachable if n.cluster.get("cluster_state")}
    if len(states) <= 1:
        return []
    message = "Nodes disagree on cluster_state: " + ", ".join(sorted(map(str, states))) + "."
    return [Finding("H013", Severity.WARNING, message, alias)]


def _replicas_of_masters(
    alias: str, masters: list[dict[str, Any]], view: list[dict[str, Any]]
) -> list[Finding]:
    """H014: masters without a healthy replica (said once when the cluster has no replicas
    at all: a choice, not a fault)."""
    replicas_of = Counter(
        n["master"]
        for n in view
        if "slave" in n["flags"] and "fail" not in n["flags"] and n["link_state"] == "connected"
    )
    alive = [m for m in masters if "fail" not in m["flags"]]
    bare = [m for m in alive if not replicas_of.get(m["id"])]
    if bare and len(bare) == len(alive) and not any("slave" in n["flags"] for n in view):
        message = (
            "No master has a replica: a master that fails takes its slots down until it returns."
        )
        return [Finding("H014", Severity.INFO, message, alias)]
    return [
        Finding(
            "H014",
            Severity.WARNING,
            f"Master {_address(node)} has no healthy replica: its slots have no failover.",
            alias,
            _address(node),
        )
        for node in bare
    ]


def _stale_routes(
    alias: str, masters: list[dict[str, Any]], client_masters: Mapping[int, str]
) -> list[Finding]:
    """H031: this process routes shards to nodes that no longer serve them."""
    server = {first: _address(node) for node in masters for first, _last in node["slots"]}
    stale = [
        slot
        for slot, address in client_masters.items()
        if slot in server and server[slot] != address
    ]
    if not stale:
        return []
    message = (
        f"This process routes {len(stale)} shard(s) to a node that no longer serves "
        "them; its slot map is refreshed in the background."
    )
    return [Finding("H031", Severity.WARNING, message, alias)]


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
