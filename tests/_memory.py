"""Measuring what code keeps allocated without asserting on time: tracemalloc counts bytes."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

MEGABYTE = 1_000_000


def retained_by(work: Callable[[], object]) -> int:
    """Bytes ``work()`` left allocated once its garbage is collected."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
