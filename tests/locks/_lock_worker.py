"""The work of one process of the multi-process lock test (see ``tests/_processes.py``).

``spec`` holds ``name`` (the lock), ``keys`` (``counter``, ``order``) and ``iterations``.
The process takes the lock ``iterations`` times and increments ``counter`` with a plain
GET and SET (a lost update shows in the total), appending each fencing token to
``order`` inside the lock. It returns its tokens.
"""

from __future__ import annotations

from typing import Any


def increments(spec: dict[str, Any], client: Any) -> list[int]:
    from django_redis_resilience import lock

    keys = spec["keys"]
    tokens: list[int] = []
    for _ in range(spec["iterations"]):
        with lock(spec["name"], timeout=5, wait=30) as held:
            value = int(client.get(keys["counter"]) or 0)
            client.set(keys["counter"], value + 1)
            client.rpush(keys["order"], held.token)
            tokens.append(held.token)
    return tokens
