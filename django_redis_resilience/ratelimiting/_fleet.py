"""Fleet-aware local limiting: how many processes share the limits, learnt while Redis is up.

During an outage each process limits on its own (``on_unavailable="local"``), so N
processes would admit N times the limit, exactly when the system is weakest. So
while Redis answers, each process writes its presence every :data:`INTERVAL`
seconds (a background round trip, never one per check) into one sorted set per
cache, and reads how many processes did so recently. During an outage the local
limiter makes each admission cost that many units: the fleet admits about the
limit, not the limit times the processes.

The bound: processes started during the outage are not counted (they admit the
limit divided by the last size they knew, or the whole limit if they never knew
one); processes that ended are still counted until the next presence round, so
the fleet errs on the side of admitting less. ``RATELIMIT["FLEET"] = False`` turns
the presence off (each process then limits alone).
"""

from __future__ import annotations

import logging
import secrets
import time

from django_redis_resilience._process import process_label
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import ConnectionManager, Slot, get_registry, untagged
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.ratelimiting._settings import RATELIMIT

logger = logging.getLogger("django_redis_resilience")

#: Seconds between two presence writes of a process.
INTERVAL = 5.0
#: A process not seen for this long is no longer counted.
RECENT = 3 * INTERVAL


class Fleet:
    """This process's presence in one cache's fleet, and the fleet's size as last read."""

    def __init__(self, manager: ConnectionManager, prefix: str) -> None:
        self._manager = manager
        self.key = f"{untagged(prefix)}:drr:fleet"
        #: Unique even when a pid is reused on the host.
        self.member = f"{process_label()}:{secrets.token_hex(4)}"
        #: How many processes wrote their presence recently (1 until first read).
        self.size = 1
        # ``RATELIMIT["FLEET"]`` is read once, when the manager's fleet is made: a change of
        # ``REDIS_RESILIENCE`` builds new managers, so the checks never read a setting.
        if RATELIMIT.read(conf.RATELIMIT, "FLEET"):
            manager.scheduler.call_later(0.0, self._beat, name="rate-limit presence")

    def _beat(self) -> None:
        if get_registry().cached(self._manager.alias) is not self._manager:
            return  # the settings changed: the new manager has its own fleet
        try:
            self.size = max(1, int(self._manager.execute(self._write, key=self.key)))
        except RedisUnavailable as exc:  # keep the last size: the outage is when it counts
            logger.debug("Rate-limit presence not written: %s", exc)
        finally:
            self._manager.scheduler.call_later(INTERVAL, self._beat, name="rate-limit presence")

    def _write(self, client: object) -> int:
        now = time.time()
        pipe = client.pipeline(transaction=False)  # type: ignore[attr-defined]
        pipe.zadd(self.key, {self.member: now})
        pipe.zremrangebyscore(self.key, "-inf", now - RECENT)
        pipe.expire(self.key, int(RECENT * 2))
        pipe.zcard(self.key)
        return int(pipe.execute()[-1])


_FLEET: Slot[Fleet] = Slot("rate-limit fleet")


def fleet_of(manager: ConnectionManager, prefix: str) -> Fleet:
    """The fleet of ``manager``'s cache, started on first use (one dict lookup after)."""
    fleet = manager.extensions.get(_FLEET)
    if fleet is None:
        fleet = manager.extensions.obtain(_FLEET, lambda: Fleet(manager, prefix))
    return fleet
