"""``REDIS_RESILIENCE["HEALTH"]``: the health report, its endpoints and degradation events.

Given keys are merged over these defaults (``conf.HEALTH``), so every reader finds them all.
"""

from __future__ import annotations

from collections.abc import Mapping

from django_redis_resilience import _schema
from django_redis_resilience._schema import Section, Setting, is_num

HEALTH = _schema.register(Section("HEALTH", (
    Setting(
        "TIMEOUT",
        default=1.0,
        test=lambda v: is_num(v) and 0 < v <= 30,
        need="seconds, more than 0 and at most 30",
        kind="seconds, 0 < s ≤ 30",
        doc=(
            "each node's probe timeout in the report (`redis_health --timeout` overrides it); a "
            "hung node delays a report by at most this"
        ),
        ids="E002",
    ),
    Setting(
        "SLOW_MS",
        default=100.0,
        test=lambda v: is_num(v) and v > 0,
        need="milliseconds > 0",
        kind="milliseconds > 0",
        doc="a PING slower than this is finding H021",
        ids="E002",
    ),
    Setting(
        "NODE_ZONES",
        default={},
        test=lambda v: (
            isinstance(v, Mapping)
            and all(isinstance(k, str) and isinstance(z, str) for k, z in v.items())
        ),
        need="a dict of host:port, host or announced hostname to zone name",
        kind="dict of `host:port`, host or announced hostname to zone",
        doc=(
            "where the nodes are (the most specific key wins: `host:port`, then host, then "
            "hostname), for findings H018 (half the masters or more in one zone) and H023 (a "
            "master and all its replicas in one zone)"
        ),
        ids="E002",
    ),
    Setting(
        "TOKEN",
        default=None,
        test=lambda v: v is None or (isinstance(v, str) and len(v) >= 16),
        need="a string of at least 16 characters, or None",
        secret=True,
        kind="string of 16 characters or more, or `None`",
        doc="a bearer token that unlocks the details of the health endpoints",
        ids="E002",
    ),
    Setting(
        "CACHE_SECONDS",
        default=5.0,
        test=lambda v: is_num(v) and 0 <= v <= 300,
        need="seconds from 0 to 300",
        kind="seconds, 0 to 300",
        doc=(
            "the probe report is reused for this long by the endpoint, the admin page and the "
            "metrics; the admin page refreshes itself at this interval (2 s at least)"
        ),
        ids="E002",
    ),
    Setting(
        "EVENTS",
        default=True,
        test=lambda v: isinstance(v, bool),
        need="True or False",
        kind="`True` or `False`",
        doc="write degradation events to the database",
        ids="E002",
    ),
    Setting(
        "EVENT_STORE",
        default="database",
        test=lambda v: v in ("database", "memory"),
        need=(
            "'database' (every process's events, in the DegradationEvent table) or 'memory' "
            "(this process's latest events only, no database writes)"
        ),
        kind='`"database"` or `"memory"`',
        doc=(
            "where degradation events are kept: the `DegradationEvent` table (every process's, "
            "run `migrate`), or this process's memory only (its latest 200, listed on the admin "
            "page; the database is never written) for projects without a database or the app's "
            'table. With `"database"`, a database that cannot store them (none configured, table '
            "not migrated) is one warning per process and the events stay in memory"
        ),
        ids="E002",
    ),
    Setting(
        "EVENT_INTERVAL",
        default=10.0,
        test=lambda v: is_num(v) and v >= 0,
        need="seconds >= 0",
        kind="seconds ≥ 0",
        doc=(
            "at most one event per kind and endpoint per this many seconds per process; the rest "
            'are counted in one "suppressed" event'
        ),
        ids="E002",
    ),
    Setting(
        "EVENT_MAX_AGE_DAYS",
        default=30.0,
        test=lambda v: is_num(v) and v > 0,
        need="days > 0",
        kind="days > 0",
        doc="events older than this are deleted",
        ids="E002",
    ),
)))  # fmt: skip
