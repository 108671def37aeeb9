"""Distributed locks on Redis: leases, renewal, fencing tokens, fair notified waiting.

``from django_redis_resilience import lock``::

    @lock("invoice:{invoice_id}", timeout=30, wait=5)
    def charge(invoice_id, amount): ...

    with lock("nightly-report", timeout=60, wait=0) as held:
        write_report(fence=held.token)
"""

from django_redis_resilience.locks._fence import Fence
from django_redis_resilience.locks._lock import Held, Lock, lock
from django_redis_resilience.locks._redlock import Redlock, RedlockHeld

__all__ = ["Fence", "Held", "Lock", "Redlock", "RedlockHeld", "lock"]
