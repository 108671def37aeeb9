"""Keeps Django sites working when Redis fails."""

from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"

if TYPE_CHECKING:  # what the lazy names below are, for type checkers and IDEs
    from django_redis_resilience.locks import Lock, Redlock, lock
    from django_redis_resilience.ratelimiting import ratelimit

__all__ = ["Lock", "Redlock", "lock", "ratelimit"]


def __getattr__(name: str) -> object:
    """``from django_redis_resilience import lock, ratelimit``; Django is imported on use."""
    if name == "ratelimit":
        from django_redis_resilience.ratelimiting import ratelimit

        return ratelimit
    if name in ("lock", "Lock", "Redlock"):
        from django_redis_resilience import locks

        return getattr(locks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
