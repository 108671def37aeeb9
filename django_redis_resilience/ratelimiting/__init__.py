"""Rate limits on Redis: ``hit()``/``peek()`` for any code, ``ratelimit`` for views.

Algorithms: ``gcra`` (default), ``sliding_window`` (exact), ``sliding_window_counter``
(O(1), approximate) and ``fixed_window``; each check is one EVALSHA on Redis's clock.
"""

from django_redis_resilience.ratelimiting._algorithms import ALGORITHMS, LocalLimiter, Policy
from django_redis_resilience.ratelimiting._core import Decision, ahit, apeek, hit, peek
from django_redis_resilience.ratelimiting._decorator import ALL, RateLimitMixin, ratelimit
from django_redis_resilience.ratelimiting._headers import DRAFT
from django_redis_resilience.ratelimiting._keys import client_ip
from django_redis_resilience.ratelimiting._rates import Rate, parse_rate

__all__ = [
    "ALGORITHMS",
    "ALL",
    "DRAFT",
    "Decision",
    "LocalLimiter",
    "Policy",
    "Rate",
    "RateLimitMixin",
    "ahit",
    "apeek",
    "client_ip",
    "hit",
    "parse_rate",
    "peek",
    "ratelimit",
]
