"""A lock holder or waiter in a process of its own, driven over stdin/stdout.

Run as ``python -m tests.locks._chaos_child '<json>'`` with
``DJANGO_SETTINGS_MODULE=tests.settings``; the JSON gives ``location``,
``prefix``, ``name``, ``timeout`` and ``mode``:

- ``hold``: acquire (``renew=True``), print ``held <token>``, then obey
  stdin lines: ``state`` prints ``lost <held.lost>``, ``exit`` leaves the
  block, which prints ``released`` or ``LockLost``.
- ``wait``: acquire with ``wait=30``, print ``acquired <token>``, release.

Every ``lock_lost`` signal prints ``signal <name> <token>``. Output lines are
flushed at once, so the parent can follow along.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import django

_out = threading.Lock()


def say(*words: object) -> None:
    with _out:
        print(*words, flush=True)


def main(raw: str) -> int:
    config = json.loads(raw)
    django.setup()

    from django.test import override_settings

    from django_redis_resilience import lock, signals
    from django_redis_resilience.exceptions import LockLost
    from tests.cache.conftest import resilient_caches

    def on_lost(sender: Any, *, name: str, token: int, **kwargs: Any) -> None:
        say("signal", name, token)

    signals.lock_lost.connect(on_lost, weak=False)
    caches = resilient_caches(
        config["location"], KEY_PREFIX=config["prefix"], **config.get("options", {})
    )
    with override_settings(CACHES=caches):
        if config["mode"] == "wait":
            with lock(config["name"], timeout=config["timeout"], wait=30) as held:
                say("acquired", held.token)
            return 0
        try:
            with lock(config["name"], timeout=config["timeout"], renew=True) as held:
                say("held", held.token)
                for line in sys.stdin:
                    command = line.strip()
                    if command == "state":
                        say("lost", held.lost)
                    elif command == "exit":
                        break
        except LockLost:
            say("LockLost")
        else:
            say("released")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
