"""The process-wide home of pools, breakers and background work.

Django builds a cache backend object per thread and per async context and
calls ``close()`` after every request, so nothing that must outlive a request
(pools, breaker state, the background thread) may live on that object. It
lives here instead, keyed by alias and by a fingerprint of the configuration:
a changed configuration gets new clients, an unchanged one keeps its pools.

After ``fork()`` the child starts from an empty registry (sockets, locks and
threads do not survive a fork in a usable state); the parent is untouched.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from django_redis_resilience.connection._background import Scheduler
from django_redis_resilience.connection._location import Topology
from django_redis_resilience.connection._manager import ConnectionManager
from django_redis_resilience.connection._options import ConnectionOptions, fingerprint
from django_redis_resilience.connection._slots import Extensions

#: Called with each new manager, e.g. to connect breaker listeners to signals.
ManagerHook = Callable[[ConnectionManager], None]


class Registry:
    """Every :class:`ConnectionManager` of this process."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.scheduler = Scheduler()
        self._lock = threading.Lock()
        self._managers: dict[str, tuple[str, ConnectionManager]] = {}
        self._hooks: list[ManagerHook] = []
        #: Per-feature state of this process that is not one cache's (counters, the cached
        #: health report): it starts empty with the registry, after ``fork()`` and when the
        #: settings change, like every manager.
        self.extensions = Extensions()

    def add_hook(self, hook: ManagerHook) -> None:
        """Run ``hook`` on every manager created from now on."""
        self._hooks.append(hook)

    def manager(
        self, alias: str, *, topology: Topology, options: ConnectionOptions
    ) -> ConnectionManager:
        """The manager for ``alias``, built on first use or when its configuration changed."""
        key = fingerprint(topology, options)
        entry = self._managers.get(alias)
        if entry is not None and entry[0] == key:
            return entry[1]
        with self._lock:
            entry = self._managers.get(alias)
            if entry is not None and entry[0] == key:
                return entry[1]
            manager = ConnectionManager(
                alias=alias, topology=topology, options=options, scheduler=self.scheduler
            )
            for hook in self._hooks:
                hook(manager)
            self._managers[alias] = (key, manager)
        if entry is not None:
            entry[1].close()
        return manager

    def cached(self, alias: str) -> ConnectionManager | None:
        """The current manager for ``alias`` without building one."""
        entry = self._managers.get(alias)
        return entry[1] if entry is not None else None

    def managers(self) -> list[ConnectionManager]:
        return [manager for _, manager in list(self._managers.values())]

    def close(self) -> None:
        """Close every pool and stop background work (settings changed, shutdown)."""
        with self._lock:
            entries = list(self._managers.values())
            self._managers.clear()
        self.scheduler.stop()
        for _, manager in entries:
            manager.close()

    def forget(self) -> None:
        """Drop everything without closing sockets the parent process still uses."""
        for _, manager in list(self._managers.values()):
            manager.forget()
        self._managers = {}


_registry = Registry()
_hooks: list[ManagerHook] = []


def get_registry() -> Registry:
    """The registry of the current process."""
    registry = _registry
    if registry.pid != os.getpid():  # a fork that bypassed register_at_fork
        _after_fork_in_child()
        registry = _registry
    return registry


def add_manager_hook(hook: ManagerHook) -> None:
    """Run ``hook`` on every manager created in this process, now and after any reset."""
    _hooks.append(hook)
    _registry.add_hook(hook)


def reset_registry() -> Registry:
    """Close the current registry and start an empty one (e.g. settings changed)."""
    global _registry
    old = _registry
    _registry = _new_registry()
    old.close()
    return _registry


def _new_registry() -> Registry:
    registry = Registry()
    for hook in _hooks:
        registry.add_hook(hook)
    return registry


def _after_fork_in_child() -> None:
    global _registry
    old = _registry
    _registry = _new_registry()
    old.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
