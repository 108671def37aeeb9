"""Writing degradation events: off the request path, rate-limited, never failing.

Signal receivers only append to a bounded in-process queue; the background
thread writes the queue in one ``bulk_create`` shortly after. Per process,
one kind of event for one endpoint is written at most once per
``EVENT_INTERVAL`` seconds (the rest are counted into a "suppressed" event),
so an incident on many workers and nodes cannot flood the database. When the
database is unavailable the batch is dropped with one warning: a Redis
outage must not turn into a database one.

Every process also keeps its latest events in memory, which is all there is
with ``EVENT_STORE = "memory"`` (no database writes at all), and what the
admin lists when the database cannot store them: none configured, or the
table not migrated. That condition is logged once per process, with the fix,
never as a traceback at every outage.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from django_redis_resilience.conf import conf

if TYPE_CHECKING:
    from django_redis_resilience.models import DegradationEvent

logger = logging.getLogger("django_redis_resilience")

#: Events waiting to be written, at most (older ones are dropped first).
QUEUE_LIMIT = 1000
#: Events this process keeps in memory (the newest), whatever the store.
MEMORY_LIMIT = 200
#: Seconds between a first event and its write (events of one incident share a batch).
FLUSH_DELAY = 0.5
#: Seconds between two prunings of old events by one process.
PRUNE_EVERY = 3600.0
#: Seconds before a database found unable to store events (no table) is tried again,
#: silently: a ``migrate`` run meanwhile is picked up without a restart.
RETRY_UNUSABLE = 300.0

_lock = threading.Lock()
_queue: deque[dict[str, Any]] = deque(maxlen=QUEUE_LIMIT)
_memory: deque[dict[str, Any]] = deque(maxlen=MEMORY_LIMIT)
_last: dict[tuple[str, str, str], float] = {}
_suppressed: dict[tuple[str, str, str], int] = {}
_flush_scheduled = False
#: The scheduler the pending flush was given to: the queue outlives the registry (settings
#: changed), whose stopped scheduler drops its jobs; the current one must then flush it.
_flush_scheduler: object | None = None
_last_prune = 0.0
_last_failure = 0.0
#: Why the database cannot store events (``None``: it can, as far as we know) and since when.
_unusable: str | None = None
_unusable_at = 0.0
_unusable_logged = False


def in_memory() -> bool:
    """``EVENT_STORE = "memory"``: events stay in this process, the database is never used."""
    return bool(conf.HEALTH["EVENT_STORE"] == "memory")


def record(
    kind: str, *, alias: str, endpoint: str, message: str = "", outage_seconds: float | None = None
) -> bool:
    """Queue one event; ``False`` when rate-limited (counted, written as "suppressed")."""
    health = conf.HEALTH
    if not health["EVENTS"]:
        return False
    key = (kind, alias, endpoint)
    now = time.monotonic()
    with _lock:
        last = _last.get(key)
        if last is not None and now - last < float(health["EVENT_INTERVAL"]):
            _suppressed[key] = _suppressed.get(key, 0) + 1
            return False
        _last[key] = now
        item = _item(kind, alias, endpoint, message, outage_seconds)
        _memory.append(item)
        if health["EVENT_STORE"] != "memory":
            _queue.append(item)
            _schedule_flush()
    return True


def record_now(kind: str, *, alias: str, endpoint: str, message: str = "") -> None:
    """Store one event at once, not batched nor rate-limited (an operator's action is an
    audit record); kept in memory too, and only there when the database cannot take it."""
    item = _item(kind, alias, endpoint, message, None)
    with _lock:
        _memory.append(item)
    if not in_memory() and _database_usable():
        _write([item])


def _item(
    kind: str, alias: str, endpoint: str, message: str, outage_seconds: float | None
) -> dict[str, Any]:
    return {
        "created_at": timezone.now(),
        "kind": kind,
        "alias": alias,
        "endpoint": endpoint[:500],
        "message": message[:2000],
        "outage_seconds": outage_seconds,
    }


def _schedule_flush() -> None:
    global _flush_scheduled, _flush_scheduler
    from django_redis_resilience.connection import get_registry

    scheduler = get_registry().scheduler
    if _flush_scheduled and _flush_scheduler is scheduler:
        return
    _flush_scheduled, _flush_scheduler = True, scheduler
    scheduler.call_later(FLUSH_DELAY, flush, name="write degradation events")


def flush() -> int:
    """Write what is queued (and counts of what was suppressed); how many rows were written."""
    global _flush_scheduled
    with _lock:
        batch = list(_queue)
        _queue.clear()
        suppressed = dict(_suppressed)
        _suppressed.clear()
        _flush_scheduled = False
    now = timezone.now()
    counted = [
        {
            "created_at": now,
            "kind": "suppressed",
            "alias": alias,
            "endpoint": endpoint[:500],
            "message": f"{count} more '{kind}' event(s) within the event interval",
            "outage_seconds": None,
        }
        for (kind, alias, endpoint), count in suppressed.items()
    ]
    with _lock:
        _memory.extend(counted)
    items = batch + counted
    if not items or in_memory() or not _database_usable():
        return 0
    return _write(items)


def _write(items: list[dict[str, Any]]) -> int:
    """``bulk_create`` on the events' database; a failure is judged and reported by
    :func:`_failed`, never raised (this runs on the background thread)."""
    global _unusable
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError, close_old_connections, connections, router

    from django_redis_resilience._process import process_label
    from django_redis_resilience.models import DegradationEvent

    using = router.db_for_write(DegradationEvent)
    process = process_label()
    rows = [DegradationEvent(process=process, **item) for item in items]
    try:
        close_old_connections()
        DegradationEvent.objects.using(using).bulk_create(rows)
        _prune(using)
    except (DatabaseError, ImproperlyConfigured) as exc:
        _failed(exc, using, f"write {len(rows)} degradation event(s)")
        return 0
    finally:
        if threading.current_thread() is not threading.main_thread():
            connections[using].close()  # the background thread keeps no database connection
    _unusable = None
    return len(rows)


def _failed(exc: Exception, using: str, doing: str) -> None:
    """One line, never a traceback: once per process when the database cannot store events
    at all (with the fix), at most once a minute when it is down for a while."""
    global _last_failure, _unusable, _unusable_at, _unusable_logged
    problem = _unusable_because(exc, using)
    if problem is not None:
        _unusable, _unusable_at = problem, time.monotonic()
        if not _unusable_logged:
            _unusable_logged = True
            logger.warning(
                "Degradation events are kept in this process's memory only: %s. To store them "
                "for every process, %s; to keep them in memory on purpose, set "
                "REDIS_RESILIENCE['HEALTH']['EVENT_STORE'] = 'memory'.",
                problem,
                (
                    "configure a database and run 'manage.py migrate'"
                    if "DATABASES" in problem
                    else "run 'manage.py migrate django_redis_resilience'"
                ),
            )
        return
    if time.monotonic() - _last_failure > 60 or not _last_failure:
        logger.warning(
            "Could not %s (%s: %s); they are kept in this process's memory.",
            doing,
            type(exc).__name__,
            exc,
        )
    _last_failure = time.monotonic()


def _unusable_because(exc: Exception, using: str) -> str | None:
    """Why the database can never store events as it is, or ``None`` for a passing failure
    (the database down, locked, timing out)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    from django_redis_resilience.models import DegradationEvent

    if isinstance(exc, ImproperlyConfigured):
        return "no database is configured (settings.DATABASES)"
    table = DegradationEvent._meta.db_table
    try:
        tables = connections[using].introspection.table_names()
    except Exception:  # cannot even list the tables: the database is down, which passes
        return None
    if table not in tables:
        return f"the table {table} does not exist in database {using!r} (migrations not applied)"
    return None


def _database_usable() -> bool:
    """Not known to be unable to store events, or it is time to try again."""
    return _unusable is None or time.monotonic() - _unusable_at > RETRY_UNUSABLE


def _prune(using: str) -> None:
    global _last_prune
    if time.monotonic() - _last_prune < PRUNE_EVERY and _last_prune:
        return
    from django_redis_resilience.models import DegradationEvent

    _last_prune = time.monotonic()
    days = float(conf.HEALTH["EVENT_MAX_AGE_DAYS"])
    cutoff = timezone.now() - dt.timedelta(days=days)
    DegradationEvent.objects.using(using).filter(created_at__lt=cutoff).delete()


def recent(limit: int) -> tuple[list[DegradationEvent], bool]:
    """The newest events, newest first, and whether they are every process's (from the
    database) rather than this process's memory (``EVENT_STORE = "memory"``, or a database
    that cannot store them)."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import DatabaseError, router, transaction

    from django_redis_resilience.models import DegradationEvent

    if not in_memory() and _database_usable():
        using = router.db_for_read(DegradationEvent)
        try:
            with transaction.atomic(using=using):  # a savepoint: a failed read spoils nothing
                return list(DegradationEvent.objects.using(using)[:limit]), True
        except (DatabaseError, ImproperlyConfigured) as exc:
            _failed(exc, using, "read the degradation events")
    return remembered(limit), False


def remembered(limit: int) -> list[DegradationEvent]:
    """This process's events from memory, newest first, as unsaved model instances."""
    from django_redis_resilience._process import process_label
    from django_redis_resilience.models import DegradationEvent

    with _lock:
        items = list(_memory)[-limit:] if limit > 0 else []
    process = process_label()
    return [DegradationEvent(process=process, **item) for item in reversed(items)]


def reset() -> None:
    """Forget queued events and rate-limit state (after ``fork()``, between tests)."""
    global _flush_scheduled, _flush_scheduler, _last_prune, _last_failure, _unusable
    global _unusable_at, _unusable_logged
    with _lock:
        _queue.clear()
        _memory.clear()
        _last.clear()
        _suppressed.clear()
        _flush_scheduled, _flush_scheduler = False, None
        _last_prune = 0.0
        _last_failure = 0.0
        _unusable = None
        _unusable_at = 0.0
        _unusable_logged = False


# --- signal receivers ---------------------------------------------------------------


def on_degraded(*, alias: str, endpoint: str, error: Any = None, **_: Any) -> None:
    record(
        "breaker_opened",
        alias=alias,
        endpoint=endpoint,
        message=f"{type(error).__name__}: {error}" if error else "",
    )


def on_recovered(
    *, alias: str, endpoint: str, outage_seconds: float = 0.0, invalidated_keys: int = 0, **_: Any
) -> None:
    record(
        "breaker_closed",
        alias=alias,
        endpoint=endpoint,
        outage_seconds=outage_seconds,
        message=f"outage of {outage_seconds:.1f}s",
    )
    if invalidated_keys:
        record(
            "journal_drained",
            alias=alias,
            endpoint=endpoint,
            message=f"{invalidated_keys} key(s) written during the outage invalidated",
        )
