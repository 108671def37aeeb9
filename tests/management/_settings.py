"""Settings for ``redis_health`` run as a child process: one resilient cache from the environment.

``DRR_HEALTH_LOCATION`` is the cache's ``LOCATION``.
"""

import os

SECRET_KEY = "tests-only-not-secret"
USE_TZ = True
INSTALLED_APPS = ["django_redis_resilience"]
DATABASES: dict[str, object] = {}
CACHES = {
    "default": {
        "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
        "LOCATION": os.environ["DRR_HEALTH_LOCATION"],
    }
}
REDIS_RESILIENCE: dict[str, object] = {}
