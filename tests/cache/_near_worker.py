"""A second OS process for the near cache's cross-process test (``tests/cache/test_near.py``).

Run as ``python -m tests.cache._near_worker SPEC`` where ``SPEC`` is JSON with ``caches``
(a ``CACHES`` setting, near cache on, the reader's ``KEY_PREFIX``), ``keys``, ``versions``
and ``pause`` (seconds between versions). It sets every key to ``1``, ``2``, ...
``versions`` in turn and reads each key back right after its write: a process's own
write is visible to it at once, whatever its near cache held. Its report is one JSON
line on stdout: the own reads that were not the value just written, and its stats.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from typing import Any


def write_versions(spec: dict[str, Any]) -> dict[str, Any]:
    from django.core.cache import caches
    from django.test import override_settings

    wrong_own_reads: list[list[Any]] = []
    with override_settings(CACHES=spec["caches"]):
        cache = caches["default"]
        for version in range(1, spec["versions"] + 1):
            for key in spec["keys"]:
                cache.set(key, version)
                got = cache.get(key)
                if got != version:
                    wrong_own_reads.append([key, version, got])
            time.sleep(spec["pause"])
        stats = cache.stats()
    return {
        "wrong_own_reads": wrong_own_reads[:20],
        "stats": {name: value for name, value in stats.items() if name.startswith("near_")},
    }


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    warnings.simplefilter("error")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    print(json.dumps(write_versions(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
