"""The fault-tolerant cache backend: ``django_redis_resilience.cache.ResilientRedisCache``."""

from django_redis_resilience.cache import _settings  # noqa: F401 - registers its settings
from django_redis_resilience.cache._backend import ResilientRedisCache
from django_redis_resilience.cache._state import CACHE_STATE, CacheState

__all__ = ["CACHE_STATE", "CacheState", "ResilientRedisCache"]
