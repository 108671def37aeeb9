"""Rate limits on Redis: ``hit()``/``peek()``/``check_many()`` for any code, ``ratelimit``
for views, ``RateLimitMiddleware`` for rules in settings.

Algorithms: ``gcra`` (default), ``sliding_window`` (exact), ``sliding_window_counter``
(O(1), approximate), ``fixed_window`` and ``concurrency`` (requests in flight, with
leases); each check is one EVALSHA on Redis's clock.
"""

from django_redis_resilience.ratelimiting import _settings  # noqa: F401 - registers its settings
from django_redis_resilience.ratelimiting._algorithms import ALGORITHMS, LocalLimiter, Policy
from django_redis_resilience.ratelimiting._core import (
    Decision,
    Limit,
    acheck_many,
    ahit,
    apeek,
    arelease,
    check_many,
    hit,
    peek,
    release,
)
from django_redis_resilience.ratelimiting._decorator import ALL, RateLimitMixin, ratelimit
from django_redis_resilience.ratelimiting._headers import DRAFT
from django_redis_resilience.ratelimiting._keys import client_ip
from django_redis_resilience.ratelimiting._middleware import RateLimitMiddleware
from django_redis_resilience.ratelimiting._rates import Rate, parse_rate

__all__ = [
    "ALGORITHMS",
    "ALL",
    "DRAFT",
    "Decision",
    "Limit",
    "LocalLimiter",
    "Policy",
    "Rate",
    "RateLimitMiddleware",
    "RateLimitMixin",
    "acheck_many",
    "ahit",
    "apeek",
    "arelease",
    "check_many",
    "client_ip",
    "hit",
    "parse_rate",
    "peek",
    "ratelimit",
    "release",
]
