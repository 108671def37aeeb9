"""Settings of the example project.

``REDIS_URL`` points the Redis cache at a server (any ``LOCATION`` the backend
takes: ``redis://``, ``redis+sentinel://``, ``redis+cluster://``);
``manage.py demo`` starts embedded servers and points the cache at them by
itself. ``SQLITE_PATH`` moves the database file (the tests use a temporary one).
``DRR_HEALTH_TOKEN`` (16 characters at least) lets monitoring read the health
endpoints' details with ``Authorization: Bearer <token>``; unset, only staff do.
The site starts, and answers, with no Redis running at all.
"""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-project-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_redis_resilience",
    "demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "example_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SQLITE_PATH", BASE_DIR / "db.sqlite3"),
        # Requests and the thread writing degradation events both write: take the write
        # lock up front and wait for it, instead of failing with "database is locked".
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    }
}
STATIC_URL = "static/"
#: The pages label their times UTC: show them in UTC (Django's default is America/Chicago).
TIME_ZONE = "UTC"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#: The resilient Redis cache. Short socket timeouts and a fast breaker: a call
#: to a dead or frozen server gives up after a quarter of a second, and after
#: three such failures calls go to the fallback store without waiting at all.
REDIS_CACHE = {
    "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
    "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"),
    "OPTIONS": {
        "BREAKER": {"FAILURE_THRESHOLD": 3, "RECOVERY_TIMEOUT": 0.5},
        # Whole pages (cache_page) are read from this process's memory while Redis
        # reports no write of them: the cached page's reloads are near hits.
        "NEAR_CACHE": {"KEY_PREFIXES": ["views.decorators.cache."]},
    },
}
CACHES = {"default": REDIS_CACHE}
REDIS_RESILIENCE = {
    "SOCKET_TIMEOUT": 0.25,
    "SOCKET_CONNECT_TIMEOUT": 0.25,
    # Probe reports at most 2 s old, and a frozen node delays one by 0.5 s at most,
    # so the admin's health page shows a chaos action on its next refresh.
    "HEALTH": {"CACHE_SECONDS": 2, "TIMEOUT": 0.5},
    # Refused API calls get JSON, like the API's other answers.
    "RATELIMIT": {"VIEW": "demo.responses.too_many_requests"},
}
if os.environ.get("DRR_HEALTH_TOKEN"):
    # Monitoring reads the details (breakers, counters, findings) with this bearer token.
    REDIS_RESILIENCE["HEALTH"]["TOKEN"] = os.environ["DRR_HEALTH_TOKEN"]
#: ``DRR_NODE_ZONES``: the zone of each Redis node (``host:port``, host or announced
#: hostname), as JSON, e.g. ``{"10.0.1.5": "eu-west-1a"}``. The health report then flags half
#: the masters or more in one zone (H018), or a master and its replicas in one zone (H023),
#: before a zone failure stops failover or takes slots down with every copy of them.
if os.environ.get("DRR_NODE_ZONES"):
    REDIS_RESILIENCE["HEALTH"]["NODE_ZONES"] = json.loads(os.environ["DRR_NODE_ZONES"])
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_redis_resilience": {"handlers": ["console"], "level": "INFO"}},
}
