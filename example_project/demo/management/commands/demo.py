"""``manage.py demo``: the example site on embedded Redis, with a page to break it.

It starts real ``redis-server`` processes with the package's test harness
(standalone, ``--cluster`` or ``--sentinel``), points ``CACHES["default"]`` at
them, migrates the SQLite database, sets up an ``admin`` superuser and runs
the development server in this process, so the chaos page can reach the
servers. It needs no setup and never touches a Redis you already run. Every
Redis process it started is stopped on the way out: Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import secrets
import signal
import socket
from types import FrameType
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands, load_command_class
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.servers.basehttp import WSGIServer
from django.test import override_settings

from demo import embedded
from demo.views import ADMIN_HEALTH_URL

USERNAME = "admin"
#: Addresses that mean "every interface" (compared with ``--addr``, never bound here).
_WILDCARDS = ("0.0.0.0", "::", "0")  # noqa: S104


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the demo as Ctrl-C does, so that the servers are stopped on the way out.

    Only once: a second SIGTERM must not interrupt that cleanup.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


class _ClosingServer(WSGIServer):
    """runserver's server, closing its listening socket when it stops (no ResourceWarning)."""

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        try:
            super().serve_forever(poll_interval)
        finally:
            self.server_close()


def _runserver() -> BaseCommand:
    """The project's ``runserver`` (staticfiles' when installed) with :class:`_ClosingServer`."""
    command = load_command_class(get_commands()["runserver"], "runserver")
    command.server_cls = _ClosingServer  # type: ignore[attr-defined]
    return command


def _check_port(addr: str, port: int) -> None:
    """Fail before starting Redis: runserver exits with ``os._exit`` when it cannot bind."""
    if not 0 < port < 65536:
        raise CommandError(f"--port {port} is not a port number (1-65535)")
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            sock.bind((addr, port))
        except OSError as exc:
            raise CommandError(f"cannot listen on {addr}:{port}: {exc.strerror or exc}") from exc


class Command(BaseCommand):
    help = (
        "Run the example site on embedded Redis (a standalone server, a cluster or Sentinel), "
        "with a chaos page to break it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
        parser.add_argument(
            "--addr", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
        )
        topology = parser.add_mutually_exclusive_group()
        topology.add_argument("--cluster", action="store_true", help="a Redis Cluster of 3 masters")
        topology.add_argument(
            "--sentinel",
            action="store_true",
            help="a primary and a replica watched by 3 Sentinels",
        )
        parser.add_argument(
            "--password",
            help=f"password of the {USERNAME!r} superuser (default: a new random one each run)",
        )

    def handle(
        self,
        *args: Any,
        port: int,
        addr: str,
        cluster: bool,
        sentinel: bool,
        password: str | None,
        **options: Any,
    ) -> None:
        topology: embedded.Topology = (
            "cluster" if cluster else "sentinel" if sentinel else "standalone"
        )
        _check_port(addr, port)
        password = password or secrets.token_urlsafe(12)
        previous = signal.signal(signal.SIGTERM, _terminate)
        started = False
        try:
            self.stdout.write(f"Starting embedded Redis ({topology})...")
            self.stdout.flush()
            with embedded.running(topology) as env:
                started = True
                with override_settings(**self._overrides(env, addr)):
                    call_command("migrate", verbosity=0, interactive=False)
                    self._ensure_admin(password)
                    self._banner(env, addr, port, password)
                    addrport = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
                    call_command(_runserver(), addrport, use_reloader=False)
        except KeyboardInterrupt:
            pass  # interrupted before the site ran; the servers are stopped already
        finally:
            signal.signal(signal.SIGTERM, previous)
            if started:
                self.stdout.write("Stopped the embedded Redis servers.")
                self.stdout.flush()

    def _overrides(self, env: embedded.Embedded, addr: str) -> dict[str, Any]:
        """``CACHES["default"]`` on the embedded servers; the listening address allowed.

        ``override_settings`` sends ``setting_changed``, on which the app rebuilds its
        connections and Django its cache handlers, before the first request.
        """
        cache = {**settings.CACHES["default"], "LOCATION": env.location}
        hosts = list(settings.ALLOWED_HOSTS)
        if addr in _WILDCARDS:
            hosts.append("*")  # listening on every interface: reached under any of its names
        else:
            hosts.append(f"[{addr}]" if ":" in addr else addr)  # a Host header's IPv6 form
        return {
            "CACHES": {**settings.CACHES, "default": cache},
            "ALLOWED_HOSTS": hosts,
            "SETTINGS_MODULE": settings.SETTINGS_MODULE,  # runserver prints it
        }

    def _ensure_admin(self, password: str) -> None:
        """Create the superuser if missing; either way it gets this run's password."""
        user_model = get_user_model()
        manager = user_model._default_manager
        user: Any = manager.filter(**{str(user_model.USERNAME_FIELD): USERNAME}).first()
        if user is None:
            cast(Any, manager).create_superuser(USERNAME, "admin@example.com", password)
            return
        user.is_active = user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()

    def _banner(self, env: embedded.Embedded, addr: str, port: int, password: str) -> None:
        host = "127.0.0.1" if addr in _WILDCARDS else f"[{addr}]" if ":" in addr else addr
        base = f"http://{host}:{port}"
        write = self.stdout.write
        write("")
        write(self.style.SUCCESS(f"Embedded Redis ({env.topology}): {env.location}"))
        for node in env.nodes.values():
            write(f"  node {node.name}: {node.role} at {node.address}, pid {node.pid}")
        write("")
        write(self.style.SUCCESS("Log in to the admin and the chaos page as:"))
        write(f"  Username: {USERNAME}")
        write(f"  Password: {password}")
        write("")
        write(self.style.SUCCESS("Pages:"))
        for label, path in (
            ("Site", "/"),
            ("Chaos page", "/chaos/"),
            ("Admin: Redis health", ADMIN_HEALTH_URL),
            ("Health (load balancers)", "/redis/health/"),
            ("Health (probe report)", "/redis/health/redis/"),
        ):
            write(f"  {label + ':':<25}{base}{path}")
        write("")
        write("Ctrl-C stops the site and every Redis server the demo started.")
        write("")
        self.stdout.flush()
