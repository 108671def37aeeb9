"""The fault-tolerant cache backend: ``django_redis_resilience.cache.ResilientRedisCache``."""

from django_redis_resilience.cache._backend import ResilientRedisCache

__all__ = ["ResilientRedisCache"]
