"""The Django settings django-redis's tests run with here (copied beside them as
``tests/drr_settings.py`` by ``tests/cache/test_django_redis_suite.py``).

The four caches django-redis's settings modules define, each with this repository's
``BACKEND`` instead of django-redis's: on the throwaway server in ``DRR_SUITE_URL``, with
the ``OPTIONS`` in ``DRR_SUITE_OPTIONS`` (JSON: the serializer and compressor of the run).
"""

from __future__ import annotations

import json
import os
from typing import Any

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"
URL = os.environ["DRR_SUITE_URL"]
OPTIONS: dict[str, Any] = json.loads(os.environ.get("DRR_SUITE_OPTIONS", "{}"))
#: The ``doesnotexist`` cache: nothing listens on port 1 (never 6379, the developer's Redis).
CLOSED = "redis://127.0.0.1:1/1"


def _cache(location: str, **entry: Any) -> dict[str, Any]:
    return {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": dict(OPTIONS), **entry}


SECRET_KEY = "django_tests_secret_key"
CACHES = {
    "default": _cache(URL),
    "doesnotexist": _cache(CLOSED),
    "sample": _cache(URL),
    "with_prefix": _cache(URL, KEY_PREFIX="test-prefix"),
}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]
USE_TZ = False
