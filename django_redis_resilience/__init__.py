"""Keeps Django sites working when Redis fails."""

__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> object:
    """``from django_redis_resilience import ratelimit`` without importing Django at startup."""
    if name == "ratelimit":
        from django_redis_resilience.ratelimiting import ratelimit

        return ratelimit
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
