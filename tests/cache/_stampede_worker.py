"""The work of one process of the multi-process stampede test (see ``tests/_processes.py``).

``spec`` holds ``key`` (the cache key everyone asks for), ``keys`` (raw key ``counter``)
and ``threads``: that many threads call ``get_or_set(key, loader, lock=True)`` at once.
The loader increments ``counter`` (every computation in every process shows there) and
takes a while. It returns what each thread got.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
import uuid
from typing import Any

#: How long the loader takes: long enough for every other process to be waiting.
COMPUTE_SECONDS = 0.2


def callers(spec: dict[str, Any], client: Any) -> list[Any]:
    from django.core.cache import caches

    keys = spec["keys"]
    got: list[Any] = []
    errors: list[str] = []

    def loader() -> str:
        client.incr(keys["counter"])
        time.sleep(COMPUTE_SECONDS)
        return f"computed by {os.getpid()}: {uuid.uuid4().hex}"

    barrier = threading.Barrier(spec["threads"])

    def call() -> None:
        try:
            barrier.wait(timeout=30)
            got.append(caches["default"].get_or_set(spec["key"], loader, 60, lock=True))
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=call) for _ in range(spec["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a get_or_set call never returned")
    if errors:
        raise RuntimeError("\n".join(errors))
    return got
