"""Real ``redis-server`` processes for tests, and the controls that break them.

Resilience code is only as good as the failures it was tested against, and a
mock cannot reproduce a half-open socket, a server frozen mid-reply or a
restart on the same port. So every server here is a real process on
127.0.0.1, in its own temporary directory, that the test owns and may kill.

A server may speak only TLS (``tls=TLSMaterial``) and may have extra ACL users
(``users=[acl_user(...)]``); the harness's own connections follow along, so
the chaos controls work the same on every server.

POSIX only: the chaos controls are signals (``SIGKILL``, ``SIGSTOP``, ``SIGCONT``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
import redis.retry
from redis.backoff import NoBackoff

from django_redis_resilience.testing._binary import absolute, find_redis_server, supports_tls
from django_redis_resilience.testing._errors import HarnessError
from django_redis_resilience.testing._lifecycle import Startable
from django_redis_resilience.testing._ports import CLUSTER_BUS_OFFSET, free_port
from django_redis_resilience.testing._tls import TLSMaterial, TLSUnsupportedError

__all__ = [
    "HOST",
    "RedisServer",
    "RedisServerFactory",
    "ReplicaGroup",
    "ReplicaGroupFactory",
    "stop_all",
]

HOST = "127.0.0.1"
_POLL_INTERVAL = 0.02
_PROBE_TIMEOUT = 0.2
_CLIENT_TIMEOUT = 1.0
_ADMIN_TIMEOUT = 5.0
_STOP_GRACE = 3.0
_PORT_ATTEMPTS = 5
_LOG_TAIL_LINES = 20
_ADDRESS_IN_USE = "Address already in use"
_DATA_FILES = ("dump.rdb",)
_PR_SET_PDEATHSIG = 1


# --- process safety ---------------------------------------------------------------

_registry_lock = threading.Lock()
_registry: dict[int, RedisServer] = {}


def _register(server: RedisServer) -> None:
    with _registry_lock:
        _registry[id(server)] = server


def _unregister(server: RedisServer) -> None:
    with _registry_lock:
        _registry.pop(id(server), None)


def _claimed_ports(*, besides: RedisServer) -> set[int]:
    """Ports owned by other live harness servers, even while they are killed.

    Their ``+10000`` twins count as claimed too: a killed cluster node's bus
    port is just as unbound as its client port until the node is restarted.
    """
    with _registry_lock:
        ports = {s._port for s in _registry.values() if s is not besides and s._port is not None}
    return ports | {port + CLUSTER_BUS_OFFSET for port in ports}


def stop_all() -> None:
    """Stop every server the harness started and has not stopped yet.

    Runs at interpreter exit and at the end of a pytest session, so a failing
    test, or one that forgot ``stop()``, never leaves a server behind.
    """
    with _registry_lock:
        servers = list(_registry.values())
    failures: list[BaseException] = []
    for server in servers:
        try:
            server.stop()
        except Exception as exc:  # keep going: the others must still be stopped
            failures.append(exc)
    if failures:
        raise HarnessError(f"could not stop {len(failures)} server(s): {failures!r}")


atexit.register(stop_all)


@functools.lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, resolved once in the parent so the forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    func: Callable[..., int] = prctl
    return func


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the server get SIGKILL when the test process dies.

    ``atexit`` does not run when the test process is itself SIGKILLed (CI
    timeouts, OOM), so the kernel is asked to clean up instead. Caveat:
    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits,
    not the process. The harness forks from the caller's thread, which in
    tests is the main thread; starting servers from a short-lived worker
    thread would kill them as soon as that thread ends.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _process_state(pid: int) -> str | None:
    """The one-letter state from ``/proc/<pid>/stat`` (``T`` = stopped), if readable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[0]


def _wait_for_state(pid: int, *, stopped: bool, timeout: float = 2.0) -> None:
    """Signals are asynchronous; wait until the kernel has applied SIGSTOP/SIGCONT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _process_state(pid)
        if state is None or (state == "T") == stopped:
            return
        time.sleep(0.005)
    raise HarnessError(f"process {pid} did not become {'stopped' if stopped else 'running'}")


# --- one server ----------------------------------------------------------------------


class RedisServer(Startable):
    """One real ``redis-server`` on 127.0.0.1, owned by the test that started it.

    ``extra_args`` are appended after the harness's own options, so they win
    when they set the same directive. Pass the password as ``password=`` rather
    than ``--requirepass`` so that :meth:`client` and the chaos controls can log in.

    With ``tls`` the server listens only with TLS on :attr:`port` (the plain
    port is off) and presents ``tls.server_cert``, or ``tls_cert=(cert, key)``
    instead; ``tls_auth_clients`` makes it demand a client certificate signed by
    ``tls.ca_file``. ``users`` are ACL rule lines (see
    :func:`~django_redis_resilience.testing.acl_user`) for users besides
    ``default``, which stays the harness's own login.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        start_timeout: float = 10.0,
        unix_socket: bool = False,
        tls: TLSMaterial | None = None,
        tls_auth_clients: bool = False,
        tls_cert: tuple[Path, Path] | None = None,
        users: Sequence[str] = (),
    ) -> None:
        if isinstance(extra_args, str):
            raise TypeError("extra_args must be a sequence of arguments, not one string")
        if isinstance(users, str):
            raise TypeError("users must be a sequence of ACL rule lines, not one string")
        if tls is None and (tls_auth_clients or tls_cert is not None):
            raise ValueError("tls_auth_clients and tls_cert need tls=TLSMaterial")
        self._fixed_port = port is not None
        self._port = port
        self._password = password
        self._extra_args = tuple(extra_args)
        self._binary = None if binary is None else absolute(binary)
        self._start_timeout = start_timeout
        self._want_unix_socket = unix_socket
        self._tls = tls
        self._tls_auth_clients = tls_auth_clients
        self._tls_cert = tls_cert
        self._user_args = _user_args(users)
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._hung = False
        self._probe_error: Exception | None = None

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        tls = " tls" if self._tls else ""
        return f"<RedisServer {HOST}:{self._port}{tls} {state}>"

    # --- addresses -----------------------------------------------------------------

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        if self._port is None:
            raise HarnessError("the server has no port until start() is called")
        return self._port

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def pid(self) -> int | None:
        """The process id while the process exists (also while hung), else ``None``."""
        return self._process.pid if self.is_running() and self._process else None

    @property
    def tls(self) -> TLSMaterial | None:
        return self._tls

    @property
    def url(self) -> str:
        """``redis://`` or, for a TLS server, ``rediss://`` (add :attr:`tls_options` to connect)."""
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        scheme = "rediss" if self._tls else "redis"
        return f"{scheme}://{auth}{HOST}:{self.port}/0"

    @property
    def tls_options(self) -> dict[str, Any]:
        """redis-py keyword arguments that reach this server (``{}`` without TLS).

        They trust ``tls.ca_file`` and check the host name, and carry the client
        certificate when the server demands one. For a server with a custom
        ``tls_cert`` the harness cannot know who signed it or for which names,
        so these options do not verify the server at all; tests that care pass
        their own ``ssl_ca_certs``/``ssl_check_hostname``.
        """
        if self._tls is None:
            return {}
        options: dict[str, Any] = {
            "ssl": True,
            "ssl_ca_certs": str(self._tls.ca_file),
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
        }
        if self._tls_cert is not None:
            options.update(ssl_ca_certs=None, ssl_cert_reqs="none", ssl_check_hostname=False)
        if self._tls_auth_clients:
            options.update(
                ssl_certfile=str(self._tls.client_cert), ssl_keyfile=str(self._tls.client_key)
            )
        return options

    @property
    def unix_socket(self) -> str | None:
        if not self._want_unix_socket or self._dir is None:
            return None
        return str(self._dir / "redis.sock")

    @property
    def directory(self) -> Path:
        if self._dir is None:
            raise HarnessError("the server has no directory until start() is called")
        return self._dir

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def is_hung(self) -> bool:
        """Stopped with :meth:`hang` (SIGSTOP) and not resumed yet."""
        return self._hung

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --- clients -------------------------------------------------------------------

    def client(self, **kwargs: Any) -> redis.Redis:
        """A client for test assertions; the caller closes it (``with server.client() as c``).

        Retries are off and timeouts short: an assertion client must show the
        server's state as it is, not paper over it. It logs in as ``default``
        (with ``password``) and, on a TLS server, uses :attr:`tls_options`.
        """
        options: dict[str, Any] = {
            "host": HOST,
            "port": self.port,
            "password": self._password,
            "socket_timeout": _CLIENT_TIMEOUT,
            "socket_connect_timeout": _CLIENT_TIMEOUT,
            "retry": redis.retry.Retry(NoBackoff(), 0),
            "decode_responses": False,
            **self.tls_options,
        }
        options.update(kwargs)
        return redis.Redis(**options)

    def _admin_client(self) -> redis.Redis:
        """A fresh connection for the harness itself, never one a test may have broken."""
        return self.client(socket_timeout=_ADMIN_TIMEOUT, socket_connect_timeout=_ADMIN_TIMEOUT)

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the process and return once it answers; a no-op if it is running."""
        if self.is_running():
            return self
        if self._binary is None:
            self._binary = find_redis_server()
        if self._tls is not None and not supports_tls(self._binary):
            raise TLSUnsupportedError(
                f"this redis-server has no TLS support ({self._binary} was built without "
                "BUILD_TLS=yes; set REDIS_SERVER_BIN to one with TLS, e.g. Debian's redis-server)"
            )
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="drr-redis-"))
        _register(self)
        try:
            self._launch(same_port=False)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Shut the server down for good (SIGTERM, then SIGKILL) and delete its directory."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a stopped process ignores SIGTERM
            process.terminate()
            try:
                process.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._hung = False
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if not self._fixed_port:
            self._port = None
        _unregister(self)

    # --- chaos ---------------------------------------------------------------------

    def kill(self) -> None:
        """Simulates a crash or OOM kill: sockets reset, the port refuses connections."""
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._hung = False

    def hang(self) -> None:
        """Simulates a frozen server: TCP connects complete from the backlog, no reply comes."""
        process = self._require_running()
        os.kill(process.pid, signal.SIGSTOP)
        self._hung = True
        _wait_for_state(process.pid, stopped=True)

    def resume(self) -> None:
        """Ends :meth:`hang`; commands queued meanwhile are then executed and answered."""
        process = self._require_running()
        os.kill(process.pid, signal.SIGCONT)
        self._hung = False
        _wait_for_state(process.pid, stopped=False)

    def restart(self, *, keep_data: bool = False) -> None:
        """Simulates a crash-and-restart on the same address: clients must reconnect.

        With ``keep_data`` a responsive server first ``SAVE``s, so the new
        process loads the same keys; otherwise the new process starts empty.
        """
        if self._dir is None:
            raise HarnessError("restart() needs a started server; call start() first")
        if self._hung:
            self.resume()
        if keep_data and self.is_running():
            with contextlib.suppress(redis.RedisError), self._admin_client() as admin:
                admin.save()
        self.kill()
        if not keep_data:
            for name in _DATA_FILES:
                (self._dir / name).unlink(missing_ok=True)
        self._launch(same_port=True)

    def kill_clients(self, *, skip_self: bool = True) -> int:
        """Simulates a server-side disconnect (idle timeout, proxy reset, operator's CLIENT KILL).

        Closes every normal and pub/sub connection; replication links survive.
        ``skip_self`` spares the harness's own admin connection. Returns how many
        connections were closed.
        """
        self._require_running()
        with self._admin_client() as admin:
            killed = admin.client_kill_filter(_type="pubsub", skipme=skip_self)
            killed += admin.client_kill_filter(_type="normal", skipme=skip_self)
        return int(killed)

    # --- internals -----------------------------------------------------------------

    def _require_running(self) -> subprocess.Popen[bytes]:
        process = self._process
        if process is None or process.poll() is not None:
            raise HarnessError(f"{self!r} is not running")
        return process

    def _launch(self, *, same_port: bool) -> None:
        """Spawn the process and wait for it, retrying when the port was taken meanwhile.

        A port picked by the harness may be grabbed by another process before
        Redis binds it; then a new port is picked. On restart the port must not
        change, so the same port is retried until the start timeout passes.
        """
        deadline = time.monotonic() + self._start_timeout
        attempts = 0
        while True:
            attempts += 1
            if self._port is None:
                self._port = free_port(avoid=_claimed_ports(besides=self))
            log_offsets = self._log_offsets()
            process = self._spawn()
            if self._wait_until_ready(process, deadline=deadline):
                return
            log = self._log_since(log_offsets)
            if _ADDRESS_IN_USE in log:
                if same_port and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                if not same_port and not self._fixed_port and attempts < _PORT_ATTEMPTS:
                    self._port = None
                    continue
            raise HarnessError(
                f"redis-server on port {self._port} exited with status {process.returncode} "
                f"during startup; log tail:\n{self._log_tail(log)}"
            )

    def _command(self) -> list[str]:
        assert self._binary is not None
        assert self._dir is not None
        args = [
            self._binary,
            *self._listen_args(),
            "--bind",
            HOST,
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._dir),
            "--logfile",
            str(self._dir / "redis.log"),
        ]
        if self._want_unix_socket:
            args += ["--unixsocket", str(self._dir / "redis.sock"), "--unixsocketperm", "700"]
        if self._password:
            args += ["--requirepass", self._password]
        return [*args, *self._user_args, *self._extra_args]

    def _listen_args(self) -> list[str]:
        """Plain TCP on :attr:`port`, or TLS only: the plain listener is switched off."""
        if self._tls is None:
            return ["--port", str(self.port)]
        cert, key = self._tls_cert or (self._tls.server_cert, self._tls.server_key)
        return [
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(self._tls.ca_file),
            "--tls-auth-clients",
            "yes" if self._tls_auth_clients else "no",
        ]

    def _spawn(self) -> subprocess.Popen[bytes]:
        assert self._dir is not None
        # Config errors are printed to stderr before the log file is opened.
        with open(self._dir / "stdio.log", "ab") as stdio:
            self._process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                preexec_fn=_die_with_parent(),  # not setsid: stay in our process group
            )
        self._hung = False
        return self._process

    def _wait_until_ready(self, process: subprocess.Popen[bytes], *, deadline: float) -> bool:
        """True once *this* process answers; False if it exited (e.g. port in use)."""
        while True:
            if process.poll() is not None:
                return False
            if self._answers(process.pid):
                return True
            if time.monotonic() >= deadline:
                process.kill()
                process.wait()
                raise HarnessError(
                    f"redis-server on port {self._port} did not answer PING within "
                    f"{self._start_timeout}s (last probe error: {self._probe_error!r}); "
                    f"log tail:\n{self._log_tail(self._log_since())}"
                )
            time.sleep(_POLL_INTERVAL)

    def _answers(self, pid: int) -> bool:
        """Whether our process answers on the port (checking its pid, not just any Redis)."""
        client = self.client(socket_timeout=_PROBE_TIMEOUT, socket_connect_timeout=_PROBE_TIMEOUT)
        try:
            with client:
                info = client.info("server")
        except redis.AuthenticationError:
            return True  # a Redis that checks passwords is up; it was started with other auth
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._probe_error = exc  # reported if the server never answers (e.g. a TLS error)
            return False  # not listening yet, or still loading the dataset
        return int(info.get("process_id", -1)) == pid

    def _log_files(self) -> list[Path]:
        assert self._dir is not None
        return [self._dir / "stdio.log", self._dir / "redis.log"]

    def _log_offsets(self) -> dict[Path, int]:
        return {path: path.stat().st_size if path.exists() else 0 for path in self._log_files()}

    def _log_since(self, offsets: dict[Path, int] | None = None) -> str:
        """What the logs gained since ``offsets`` (the whole logs without it)."""
        chunks = []
        for path in self._log_files():
            if path.exists():
                data = path.read_bytes()[(offsets or {}).get(path, 0) :]
                chunks.append(data.decode(errors="replace"))
        return "".join(chunks)

    def _log_tail(self, text: str) -> str:
        lines = [line for line in text.splitlines() if line.strip()]
        return "\n".join(lines[-_LOG_TAIL_LINES:]) or "(empty log)"


def _user_args(users: Sequence[str]) -> list[str]:
    """``--user`` options: Redis wants each rule as its own argument, not one string."""
    args: list[str] = []
    for rule in users:
        tokens = shlex.split(rule)
        if not tokens:
            raise ValueError("an ACL rule line must not be empty")
        if tokens[0] == "default":
            raise ValueError(
                "users must not redefine 'default': the harness logs in as default "
                "(set its password with password=)"
            )
        if any(token.startswith("--") for token in tokens):
            raise ValueError(f"no token of an ACL rule may start with '--': {rule!r}")
        args += ["--user", *tokens]
    return args


# --- replication ------------------------------------------------------------------------


class ReplicaGroup(Startable):
    """A primary and ``replicas`` replicas, for testing read routing and failover.

    ``extra_args``, ``tls``, ``tls_auth_clients`` and ``users`` apply to every
    member; with ``tls`` replication runs over TLS too, each replica presenting
    its server certificate as client certificate. The primary syncs replicas through a
    disk snapshot: Redis 7's default diskless sync waits five seconds for more
    replicas, then holds back the command stream until the replica's first
    once-a-second ACK, which would make every group's first ``WAIT`` stall.
    """

    def __init__(
        self,
        *,
        replicas: int = 1,
        password: str | None = None,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        start_timeout: float = 10.0,
        unix_socket: bool = False,
        tls: TLSMaterial | None = None,
        tls_auth_clients: bool = False,
        users: Sequence[str] = (),
    ) -> None:
        if replicas < 1:
            raise ValueError("a ReplicaGroup needs at least one replica")
        if isinstance(extra_args, str):
            raise TypeError("extra_args must be a sequence of arguments, not one string")
        self._replica_count = replicas
        self._password = password
        self._extra_args = tuple(extra_args)
        self._binary = binary
        self._start_timeout = start_timeout
        self._unix_socket = unix_socket
        self._tls = tls
        self._tls_auth_clients = tls_auth_clients
        if isinstance(users, str):
            raise TypeError("users must be a sequence of ACL rule lines, not one string")
        self._users = tuple(users)
        self._primary: RedisServer | None = None
        self._replicas: list[RedisServer] = []

    def __repr__(self) -> str:
        ports = [s._port for s in self._members()]
        return f"<ReplicaGroup ports={ports}>"

    @property
    def primary(self) -> RedisServer:
        if self._primary is None:
            raise HarnessError("the group has no primary until start() is called")
        return self._primary

    @property
    def replicas(self) -> list[RedisServer]:
        return list(self._replicas)

    @property
    def location(self) -> list[str]:
        return [server.url for server in self._members()]

    def start(self) -> ReplicaGroup:
        """Start every member and return once each replica has finished its first sync."""
        if self._primary is not None:
            return self
        binary = self._binary or find_redis_server()
        common: dict[str, Any] = {
            "password": self._password,
            "binary": binary,
            "start_timeout": self._start_timeout,
            "unix_socket": self._unix_socket,
            "tls": self._tls,
            "tls_auth_clients": self._tls_auth_clients,
            "users": self._users,
        }
        own_args = ["--repl-diskless-sync", "no"]
        if self._tls is not None:
            own_args += ["--tls-replication", "yes"]
        try:
            self._primary = RedisServer(extra_args=[*own_args, *self._extra_args], **common)
            self._primary.start()
            follow = ["--replicaof", HOST, str(self._primary.port)]
            if self._password:
                follow += ["--masterauth", self._password]
            for _ in range(self._replica_count):
                replica = RedisServer(extra_args=[*own_args, *self._extra_args, *follow], **common)
                self._replicas.append(replica)
                replica.start()
            self._wait_for_links()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in reversed(self._members()):
            server.stop()
        self._primary = None
        self._replicas = []

    def wait_for_replicas(self, *, timeout: float = 5.0) -> None:
        """Block until every replica has acknowledged all writes made so far (``WAIT``)."""
        with self.primary._admin_client() as admin:
            acked = admin.wait(len(self._replicas), int(timeout * 1000))
        if acked < len(self._replicas):
            raise HarnessError(
                f"only {acked}/{len(self._replicas)} replicas caught up in {timeout}s"
            )

    def _members(self) -> list[RedisServer]:
        return ([self._primary] if self._primary else []) + self._replicas

    def _wait_for_links(self) -> None:
        """Wait until both ends agree the first sync is over, so writes flow at once."""
        deadline = time.monotonic() + self._start_timeout
        while True:
            pending = [replica for replica in self._replicas if not _link_is_up(replica)]
            if not pending and _all_online(self.primary, self._replicas):
                return
            if time.monotonic() >= deadline:
                first = (pending or self._replicas)[0]
                raise HarnessError(
                    f"replicas {[r.port for r in pending or self._replicas]} did not finish "
                    f"their first sync (master_link_status:up, state=online) within "
                    f"{self._start_timeout}s; log tail of port {first.port}:\n"
                    f"{first._log_tail(first._log_since())}"
                )
            time.sleep(_POLL_INTERVAL)


def _link_is_up(replica: RedisServer) -> bool:
    try:
        with replica._admin_client() as admin:
            info = admin.info("replication")
    except redis.RedisError:
        return False
    return bool(info.get("master_link_status") == "up")


def _all_online(primary: RedisServer, replicas: Sequence[RedisServer]) -> bool:
    try:
        with primary._admin_client() as admin:
            info = admin.info("replication")
    except redis.RedisError:
        return False
    online = {
        int(entry["port"])
        for name, entry in info.items()
        if name.startswith("slave") and isinstance(entry, dict) and entry.get("state") == "online"
    }
    return all(replica.port in online for replica in replicas)


RedisServerFactory = Callable[..., RedisServer]
"""What the ``drr_redis_factory`` fixture yields: takes :class:`RedisServer`'s keyword arguments."""

ReplicaGroupFactory = Callable[..., ReplicaGroup]
"""What ``drr_replica_group_factory`` yields: takes :class:`ReplicaGroup`'s keyword arguments."""
