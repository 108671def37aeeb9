"""Signals sent by django-redis-resilience.

``redis_degraded(alias, endpoint, error)``: an endpoint's breaker opened.
``redis_recovered(alias, endpoint, outage_seconds, invalidated_keys)``: it closed again.
``breaker_state_changed(alias, endpoint, old, new)``: any breaker transition.
``ratelimit_exceeded(request, decision)``: a request was over its limit.
``lock_lost(name, token)``: a held lock's lease could not be kept.
"""

from django.dispatch import Signal

redis_degraded = Signal()
redis_recovered = Signal()
breaker_state_changed = Signal()
ratelimit_exceeded = Signal()
lock_lost = Signal()
