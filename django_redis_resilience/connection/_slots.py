"""Typed per-feature state kept by a connection manager or by the process's registry.

The connection layer knows no feature (cache, health, metrics), yet each feature
keeps state that must live exactly as long as one manager (a cache's journals,
the health probe's pools) or as the registry (counters, the cached health
report): rebuilt with it when the configuration changes, dropped after
``fork()``. A feature declares a :class:`Slot` typed with its own state class
and fills it on first use; reading it back gives that class, not ``Any``, and no
two features can collide on a name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

S = TypeVar("S")


class Slot(Generic[S]):
    """The typed key of one feature's state; compared by identity, its name is for people."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<Slot {self.name}>"


class Extensions:
    """The filled slots of one owner (a manager or a registry)."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Slot[Any], Any] = {}

    def get(self, slot: Slot[S]) -> S | None:
        """The state in ``slot``, or ``None`` before its first use (one dict lookup)."""
        value: S | None = self._values.get(slot)
        return value

    def obtain(self, slot: Slot[S], build: Callable[[], S]) -> S:
        """The state in ``slot``, built by ``build`` once, whichever thread asks first."""
        value: S | None = self._values.get(slot)
        if value is None:
            with self._lock:
                value = self._values.get(slot)
                if value is None:
                    value = self._values[slot] = build()
        return value
