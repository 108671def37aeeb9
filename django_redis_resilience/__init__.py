"""Keeps Django sites working when Redis fails."""

__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> object:
    """``from django_redis_resilience import lock, ratelimit``; Django is imported on use."""
    if name == "ratelimit":
        from django_redis_resilience.ratelimiting import ratelimit

        return ratelimit
    if name in ("lock", "Lock", "Redlock"):
        from django_redis_resilience import locks

        return getattr(locks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
