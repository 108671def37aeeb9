"""The Django side of the connection layer: settings in, managers out, signals wired.

This module reads settings and passes plain values to the framework-free
:mod:`django_redis_resilience.connection`; nothing there imports Django settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from django_redis_resilience import signals
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import (
    BreakerState,
    CircuitBreaker,
    ConnectionManager,
    LogicalEndpoint,
    Slot,
    add_manager_hook,
    get_registry,
    reset_registry,
    untagged,
)


def get_manager(alias: str = "default") -> ConnectionManager:
    """The process-wide connection manager of the cache ``alias``.

    Cheap after the first call (one dict lookup); rebuilt when settings change.
    """
    registry = get_registry()
    manager = registry.cached(alias)
    if manager is not None:
        return manager
    return registry.manager(
        alias, topology=conf.topology(alias), options=conf.connection_options(alias)
    )


def key_prefix(alias: str) -> str | None:
    """The ``KEY_PREFIX`` of the resilient cache ``alias``, or ``None`` when it is not one.

    Locks and rate limits put their keys under it, without the cache's
    version (a version bump during a rolling deploy must not split locks or
    reset limits), with its braces escaped (:func:`untagged`) so that it cannot
    override the hash tag that keeps one lock's or one client's keys in one
    slot. Looked up once per ``CACHES`` object: ``override_settings`` makes a
    new one.
    """
    caches: Mapping[str, Any] = settings.CACHES
    holder = get_registry().extensions.obtain(_PREFIXES, _Prefixes)
    known = holder.known
    if known is None or known[0] is not caches:
        known = holder.known = (caches, {})
    prefixes = known[1]
    if alias not in prefixes:
        if alias in conf.resilient_aliases():
            prefixes[alias] = untagged(str(caches[alias].get("KEY_PREFIX", "")))
        else:
            prefixes[alias] = None
    return prefixes[alias]


class _Prefixes:
    """The ``KEY_PREFIX`` of each alias, for one ``settings.CACHES`` object."""

    __slots__ = ("known",)

    def __init__(self) -> None:
        #: That ``CACHES`` object, and alias -> KEY_PREFIX or ``None`` (replaced at once
        #: when ``CACHES`` is another object, so no reader mixes two settings).
        self.known: tuple[Mapping[str, Any], dict[str, str | None]] | None = None


#: Where the registry keeps the key prefixes (rebuilt with it when settings change).
_PREFIXES: Slot[_Prefixes] = Slot("key prefixes")


def _wire_signals(manager: ConnectionManager) -> None:
    def wire(endpoint: LogicalEndpoint) -> None:
        def listener(
            breaker: CircuitBreaker,
            old: BreakerState,
            new: BreakerState,
            error: BaseException | None,
        ) -> None:
            # Read at event time: a cluster shard's display names its master now.
            common: dict[str, Any] = {"alias": manager.alias, "endpoint": endpoint.display}
            signals.breaker_state_changed.send(
                sender=ConnectionManager, old=old.value, new=new.value, **common
            )
            if old is BreakerState.CLOSED and new is BreakerState.OPEN:
                signals.redis_degraded.send(sender=ConnectionManager, error=error, **common)
            elif new is BreakerState.CLOSED:
                signals.redis_recovered.send(
                    sender=ConnectionManager,
                    outage_seconds=breaker.last_outage_seconds or 0.0,
                    invalidated_keys=breaker.last_recovered_count,
                    **common,
                )

        endpoint.breaker.add_listener(listener)

    # Cluster shards found later (a new shard after resharding) are wired too.
    manager.add_endpoint_hook(wire)


_installed = False


def install() -> None:
    """Connect the registry to Django signals (``AppConfig.ready``; idempotent)."""
    global _installed
    if not _installed:
        _installed = True
        add_manager_hook(_wire_signals)


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """Rebuild clients when ``CACHES`` or ``REDIS_RESILIENCE`` change (``override_settings``)."""
    if setting in {"CACHES", "REDIS_RESILIENCE"}:
        reset_registry()
