"""Running the example project as a real process and talking to it over HTTP.

The project runs with its own settings (``example_project.settings``) in a
subprocess, exactly as a developer starts it, and is driven with ``urllib``
like a browser: a cookie jar, the CSRF token, redirects followed or not.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest

from django_redis_resilience.testing import free_port
from tests._polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ROOT / "example_project" / "manage.py"
_NODE_LINE = re.compile(r"^\s*node (\S+): .* at 127\.0\.0\.1:(\d+), pid (\d+)$", re.MULTILINE)
_PASSWORD_LINE = re.compile(r"^\s*Password: (\S+)$", re.MULTILINE)


def project_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a project process: its own settings and a throwaway database."""
    inherited = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # never the user's
    return {
        **inherited,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@dataclass
class Response:
    status: int
    headers: Message
    body: str
    seconds: float
    url: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Browser:
    """Cookies, CSRF and redirects as a browser has them; never through a proxy."""

    def __init__(self, base: str, *, follow_redirects: bool = True) -> None:
        self.base = base
        self.cookies = CookieJar()
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(self.cookies),
        ]
        if not follow_redirects:
            handlers.append(_NoRedirect())
        self._opener = urllib.request.build_opener(*handlers)

    def get(self, path: str) -> Response:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: dict[str, str], *, csrf: bool = True) -> Response:
        """POST a form; with ``csrf`` the token from the cookie goes along, as a form sends it."""
        data = dict(fields)
        if csrf:
            data["csrfmiddlewaretoken"] = self.cookie("csrftoken")
        body = urllib.parse.urlencode(data).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, method="POST"))

    def cookie(self, name: str) -> str:
        for cookie in self.cookies:
            if cookie.name == name and cookie.value is not None:
                return cookie.value
        raise AssertionError(f"no {name!r} cookie; cookies: {[c.name for c in self.cookies]}")

    def login(self, username: str, password: str, *, next_path: str) -> Response:
        """Through the admin's login form, as a person would."""
        page = self.get(f"/admin/login/?next={next_path}")
        assert page.status == 200, page
        fields = {"username": username, "password": password, "next": next_path}
        return self.post(f"/admin/login/?next={next_path}", fields)

    def _open(self, request: urllib.request.Request) -> Response:
        started = time.monotonic()
        try:
            with self._opener.open(request, timeout=15) as answer:
                body = answer.read().decode()
                return Response(
                    answer.status, answer.headers, body, time.monotonic() - started, answer.url
                )
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            seconds = time.monotonic() - started
            return Response(error.code, error.headers, body, seconds, error.url or "")


class ProjectProcess:
    """``manage.py <command>`` of the example project in a subprocess, output collected."""

    def __init__(
        self,
        tmp_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(MANAGE), *self.arguments(*args)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env or project_env(tmp_path),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def arguments(self, *args: str) -> list[str]:
        raise NotImplementedError

    def _read(self) -> None:
        """Until the process and every child holding its stdout have ended."""
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        """Until the home page answers; fail with the output if the process ends first."""
        browser = Browser(self.base)

        def serving() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"exited with {self.process.returncode}:\n{self.output}")
            try:
                return browser.get("/").status == 200
            except OSError:
                return False

        if not wait_for(serving, timeout=timeout, step=0.1):
            pytest.fail(f"not answering after {timeout}s:\n{self.output}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``; return the exit status once the process has ended."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {timeout}s after {sig.name}:\n{self.output}")

    def close(self) -> None:
        """Whatever happened: the process (and, with it, any server it started) ends."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()  # its redis-servers get SIGKILL from the kernel too
                self.process.wait()
        self._reader.join(timeout=10)


class Runserver(ProjectProcess):
    """The project under plain ``runserver``: no embedded Redis."""

    def arguments(self, *args: str) -> list[str]:
        return ["runserver", f"127.0.0.1:{self.port}", "--noreload", *args]


class Demo(ProjectProcess):
    """``manage.py demo --port <free port> [args]``."""

    def arguments(self, *args: str) -> list[str]:
        return ["demo", "--port", str(self.port), *args]

    @property
    def password(self) -> str:
        match = _PASSWORD_LINE.search(self.output)
        assert match, self.output
        return match.group(1)

    @property
    def nodes(self) -> dict[str, tuple[int, int]]:
        """Node name -> (port, pid), as the demo printed them."""
        found = {m[1]: (int(m[2]), int(m[3])) for m in _NODE_LINE.finditer(self.output)}
        assert found, self.output
        return found

    def redis_children(self) -> set[int]:
        """The ``redis-server`` processes the demo runs now (restarted ones included)."""
        return {pid for pid in redis_processes() if parent_of(pid) == self.process.pid}


def redis_processes() -> set[int]:
    """The pids of every ``redis-server`` process on the machine."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm == "redis-server":
            found.add(int(entry.name))
    return found


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])
