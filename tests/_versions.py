"""What this test run runs on: Python, Django, redis-py (and its parser), django-redis
and the server binary. Shown in pytest's header and printed by ``.ci/run`` before each
pass of its matrix (``python -m tests._versions``), so a failure names its versions."""

from __future__ import annotations

import platform
from importlib import metadata


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _hiredis() -> str:
    from redis.utils import HIREDIS_AVAILABLE

    version = _version("hiredis")
    if version == "not installed":
        return version
    return f"{version} ({'used' if HIREDIS_AVAILABLE else 'installed but not used'} by redis-py)"


def describe() -> str:
    from django_redis_resilience.testing import find_redis_server, redis_version, server_name

    try:
        binary = find_redis_server()
        server = f"{server_name(binary).capitalize()} {'.'.join(map(str, redis_version(binary)))}"
        server += f" ({binary})"
    except Exception as exc:  # shown, not hidden: the servers then fail to start on their own
        server = f"none ({exc})"
    parts = [
        f"Python {platform.python_version()}",
        f"Django {_version('django')}",
        f"redis-py {_version('redis')}",
        f"hiredis {_hiredis()}",
        f"django-redis {_version('django-redis')}",
        f"server {server}",
    ]
    return ", ".join(parts)


if __name__ == "__main__":
    print(describe())
