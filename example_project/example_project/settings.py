"""Settings of the example project.

``REDIS_URL`` points the Redis cache at a server (any ``LOCATION`` the backend
takes: ``redis://``, ``redis+sentinel://``, ``redis+cluster://``);
``manage.py demo`` starts embedded servers and points the cache at them by
itself. ``SQLITE_PATH`` moves the database file (the tests use a temporary one).
The site starts, and answers, with no Redis running at all.
"""

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
    }
}
STATIC_URL = "static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

#: The resilient Redis cache. Short socket timeouts and a fast breaker: a call
#: to a dead or frozen server gives up after a quarter of a second, and after
#: three such failures calls go to the fallback store without waiting at all.
REDIS_CACHE = {
    "BACKEND": "django_redis_resilience.cache.ResilientRedisCache",
    "LOCATION": os.environ.get("REDIS_URL", "redis://127.0.0.1:6390/0"),
    "OPTIONS": {"BREAKER": {"FAILURE_THRESHOLD": 3, "RECOVERY_TIMEOUT": 0.5}},
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
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_redis_resilience": {"handlers": ["console"], "level": "INFO"}},
}
