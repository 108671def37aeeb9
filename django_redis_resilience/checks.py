"""System checks with stable IDs; each mirrors a problem found by :mod:`conf`.

IDs (``django_redis_resilience.``):
E001 unknown key in ``REDIS_RESILIENCE`` (or not a dict) ·
E002 bad value in ``REDIS_RESILIENCE`` ·
E003 invalid ``LOCATION`` ·
E004 bad or unknown cache ``OPTIONS`` value ·
E005 a pool argument that would break the no-double-apply guarantee ·
E006 a ``KEY_FUNCTION`` whose keys ``clear()`` cannot find ·
W001 a django-redis option that has no effect here ·
W002 a socket timeout of ``None`` (waits forever) ·
W003 TLS certificate or host name verification turned off ·
W004 sessions stored only in a resilient cache whose outage fallback is in-process ·
W005 ``RateLimitMiddleware`` before ``AuthenticationMiddleware``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core import checks

# Each feature package registers its settings sections and problem finders when imported;
# importing them here registers every one while Django starts, before the first check.
from django_redis_resilience import cache, connection, health, ratelimiting  # noqa: F401
from django_redis_resilience.conf import conf


@checks.register(checks.Tags.caches)
def check_settings(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Report every configuration problem; nothing here touches the network."""
    messages: list[checks.CheckMessage] = []
    for problem in conf.problems():
        cls = checks.Error if problem.level == "error" else checks.Warning
        messages.append(cls(problem.text, hint=problem.hint, id=problem.id))
    return messages
