"""Writing degradation events: off the request path, rate-limited, never failing.

Signal receivers only append to a bounded in-process queue; the background
thread writes the queue in one ``bulk_create`` shortly after. Per process,
one kind of event for one endpoint is written at most once per
``EVENT_INTERVAL`` seconds (the rest are counted into a "suppressed" event),
so an incident on many workers and nodes cannot flood the database. When the
database is unavailable the batch is dropped with one warning: a Redis
outage must not turn into a database one.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from typing import Any

from django.utils import timezone

from django_redis_resilience.conf import conf

logger = logging.getLogger("django_redis_resilience")

#: Events waiting to be written, at most (older ones are dropped first).
QUEUE_LIMIT = 1000
#: Seconds between a first event and its write (events of one incident share a batch).
FLUSH_DELAY = 0.5
#: Seconds between two prunings of old events by one process.
PRUNE_EVERY = 3600.0

_lock = threading.Lock()
_queue: deque[dict[str, Any]] = deque(maxlen=QUEUE_LIMIT)
_last: dict[tuple[str, str, str], float] = {}
_suppressed: dict[tuple[str, str, str], int] = {}
_flush_scheduled = False
_last_prune = 0.0
_last_failure = 0.0


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
        _queue.append(
            {
                "created_at": timezone.now(),
                "kind": kind,
                "alias": alias,
                "endpoint": endpoint[:500],
                "message": message[:2000],
                "outage_seconds": outage_seconds,
            }
        )
        _schedule_flush()
    return True


def _schedule_flush() -> None:
    global _flush_scheduled
    if _flush_scheduled:
        return
    from django_redis_resilience.connection import get_registry

    _flush_scheduled = True
    get_registry().scheduler.call_later(FLUSH_DELAY, flush, name="write degradation events")


def flush() -> int:
    """Write what is queued (and counts of what was suppressed); how many rows were written."""
    global _flush_scheduled, _last_failure
    from django.db import DatabaseError, close_old_connections, connection

    from django_redis_resilience.health import process_label
    from django_redis_resilience.models import DegradationEvent

    with _lock:
        batch = list(_queue)
        _queue.clear()
        suppressed = dict(_suppressed)
        _suppressed.clear()
        _flush_scheduled = False
    process = process_label()
    now = timezone.now()
    rows = [DegradationEvent(process=process, **item) for item in batch]
    rows += [
        DegradationEvent(
            created_at=now,
            kind=DegradationEvent.Kind.SUPPRESSED,
            alias=alias,
            endpoint=endpoint[:500],
            process=process,
            message=f"{count} more '{kind}' event(s) within the event interval",
        )
        for (kind, alias, endpoint), count in suppressed.items()
    ]
    if not rows:
        return 0
    try:
        close_old_connections()
        DegradationEvent.objects.bulk_create(rows)
        _prune()
    except DatabaseError as exc:
        if time.monotonic() - _last_failure > 60:
            logger.warning("Could not write %d degradation event(s): %s", len(rows), exc)
        _last_failure = time.monotonic()
        return 0
    finally:
        if threading.current_thread() is not threading.main_thread():
            connection.close()  # the background thread keeps no database connection
    return len(rows)


def _prune() -> None:
    global _last_prune
    if time.monotonic() - _last_prune < PRUNE_EVERY and _last_prune:
        return
    from django_redis_resilience.models import DegradationEvent

    _last_prune = time.monotonic()
    days = float(conf.HEALTH["EVENT_MAX_AGE_DAYS"])
    cutoff = timezone.now() - dt.timedelta(days=days)
    DegradationEvent.objects.filter(created_at__lt=cutoff).delete()


def reset() -> None:
    """Forget queued events and rate-limit state (after ``fork()``, between tests)."""
    global _flush_scheduled, _last_prune, _last_failure
    with _lock:
        _queue.clear()
        _last.clear()
        _suppressed.clear()
        _flush_scheduled = False
        _last_prune = 0.0
        _last_failure = 0.0


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
