"""Django settings for the test suite: no cache points at a real server here.

Tests that need Redis start their own servers through the harness and use
``override_settings``; nothing ever talks to a Redis the suite did not start.
"""

import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.admin",
    "django.contrib.messages",
    "django_redis_resilience",
    "tests.fencing_app",
]
DATABASES: dict[str, dict[str, object]] = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
}


def _postgres_reachable(host: str, port: int) -> bool:
    """Whether a PostgreSQL server listens there and psycopg is installed (the fencing
    tests run on it too; without one they run on SQLite only, and say so)."""
    import importlib.util
    import socket

    if importlib.util.find_spec("psycopg") is None:
        return False
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


#: ``DRR_POSTGRES=host:port`` (default 127.0.0.1:5432, user postgres, trust or PGPASSWORD).
_PG_HOST, _, _PG_PORT = os.environ.get("DRR_POSTGRES", "127.0.0.1:5432").partition(":")
if _postgres_reachable(_PG_HOST, int(_PG_PORT or 5432)):
    DATABASES["postgres"] = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": _PG_HOST,
        "PORT": int(_PG_PORT or 5432),
        "NAME": "drr",
        "USER": os.environ.get("PGUSER", "postgres"),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
        "TEST": {"NAME": f"test_drr_{os.getpid()}"},
    }
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
REDIS_RESILIENCE: dict[str, object] = {}

# What the admin needs: the health panel is tested through it (tests/test_admin.py).
INSTALLED_APPS.append("django.contrib.staticfiles")
STATIC_URL = "static/"
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
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
