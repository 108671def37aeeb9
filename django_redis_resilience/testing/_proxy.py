"""A fault-injecting TCP proxy to put between a client and a harness server.

Killing or freezing a server (see :class:`RedisServer`) covers failures of the
server itself. The network in between fails differently: it gets slow or
narrow, it silently drops packets, a firewall or load balancer resets
connections or cuts long transfers, a backend stops accepting connections.
:class:`FaultProxy` listens on 127.0.0.1, forwards bytes to a target and
injects those faults on demand. It never parses what it forwards, so it works
in front of TLS servers too.

All I/O runs on one asyncio event loop in one daemon thread named
``drr-proxy-<port>``. The public methods are called from the test's thread
and take effect on that loop before they return, for new and open
connections alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import math
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from django_redis_resilience.testing._errors import HarnessError
from django_redis_resilience.testing._lifecycle import Startable
from django_redis_resilience.testing._ports import free_port

try:
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - not POSIX
    _TIOCOUTQ = None

__all__ = ["FaultProxy", "FaultProxyFactory"]

_T = TypeVar("_T")

_LOOPBACK = "127.0.0.1"
_CHUNK = 65536  # bytes read at once; also the unit of the added latency
_QUEUE_CHUNKS = 64  # per direction: at most 4 MiB held in the proxy before reading pauses
_BACKLOG = 128
_PORT_ATTEMPTS = 5
_CONNECT_TIMEOUT = 5.0  # to the target
_CALL_TIMEOUT = 5.0  # for a control call to be applied on the loop
_START_TIMEOUT = 5.0
_JOIN_TIMEOUT = 2.0
_SLICES_PER_SECOND = 20  # throttled data goes out in slices of 1/20 s worth of bandwidth
_DRAIN_TIMEOUT = 0.2
_DRAIN_POLL = 0.005
_ACCEPT_RETRY = 0.05
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
_EOF = b""


class _Addressable(Protocol):
    """Anything with a TCP address, such as a :class:`RedisServer`."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


class FaultProxyFactory(Protocol):
    """What ``drr_proxy_factory`` yields: ``factory(server)`` or ``factory(host, port)``."""

    def __call__(
        self, server_or_host: _Addressable | str, port: int | None = None
    ) -> FaultProxy: ...


class _Connection:
    """One proxied connection: the accepted client socket and the socket to the target."""

    def __init__(self, client: socket.socket, budget: int | None, finished: asyncio.Future[None]):
        self.client = client
        self.upstream: socket.socket | None = None
        self.budget = budget  # bytes left before close_after() resets it; None = no limit
        self.finished = finished  # resolved once both sockets are closed
        self.closed = False
        self.directions_done = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def is_open(self) -> bool:
        return not self.closed

    def sockets(self) -> Iterator[socket.socket]:
        yield self.client
        if self.upstream is not None:
            yield self.upstream


class FaultProxy(Startable):
    """A TCP proxy on 127.0.0.1 in front of ``(target_host, target_port)`` that breaks on demand.

    Point clients at :meth:`url` (or :attr:`host` and :attr:`port`) instead of
    the server. Faults can be combined and changed at any time; each applies to
    connections opened before and after the change. :meth:`heal` restores a
    clean pass-through. Use it as a context manager or call :meth:`stop`.
    """

    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self._target_host = target_host
        self._target_port = target_port
        self._fixed_port = port is not None
        self._port = port
        # Faults. Once started, they are only changed on the loop (see _call).
        self._latency = 0.0
        self._bandwidth: int | None = None
        self._blackholed = False
        self._close_after: int | None = None
        self._refused = False
        # Runtime state, owned by the loop thread while it runs.
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._listener: socket.socket | None = None
        self._changed: asyncio.Future[None] | None = None
        self._connections: set[_Connection] = set()
        self._serve_tasks: set[asyncio.Task[None]] = set()
        self._target_family = socket.AF_INET
        self._target_address: Any = None
        self._total = 0
        self._errors: list[BaseException] = []

    def __repr__(self) -> str:
        state = "running" if self._thread is not None else "stopped"
        return (
            f"<FaultProxy {_LOOPBACK}:{self._port} -> "
            f"{self._target_host}:{self._target_port} {state}>"
        )

    # --- addresses -----------------------------------------------------------------

    @property
    def host(self) -> str:
        return _LOOPBACK

    @property
    def port(self) -> int:
        if self._port is None:
            raise HarnessError("the proxy has no port until start() is called")
        return self._port

    @property
    def target(self) -> tuple[str, int]:
        return (self._target_host, self._target_port)

    def url(self, *, scheme: str = "redis", db: int = 0, password: str | None = None) -> str:
        """``redis://[:password@]127.0.0.1:<proxy port>/<db>``; ``scheme="rediss"`` for TLS."""
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{db}"

    @property
    def connection_count(self) -> int:
        """Proxied connections open now (a closed client is noticed within milliseconds)."""
        return len(self._connections)

    @property
    def total_connections(self) -> int:
        """Connections accepted since :meth:`start`."""
        return self._total

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen and start forwarding; a no-op if already running."""
        if self._thread is not None:
            return self
        self._resolve_target()
        listener = self._bind_free_port()
        self._total = 0
        ready = threading.Event()
        thread = threading.Thread(
            target=self._run, args=(listener, ready), name=f"drr-proxy-{self.port}", daemon=True
        )
        self._thread = thread
        thread.start()
        if not ready.wait(_START_TIMEOUT) or not thread.is_alive():
            self.stop()
            raise HarnessError(f"the proxy on port {self._port} did not start")
        return self

    def stop(self) -> None:
        """Close the listener and every connection, and end the proxy's thread."""
        thread = self._thread
        if thread is None:
            return
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(self._request_stop)
        thread.join(_JOIN_TIMEOUT)
        if thread.is_alive():
            raise HarnessError(f"the proxy thread {thread.name} did not stop")
        self._thread = None
        self._loop = None
        if not self._fixed_port:
            self._port = None
        errors, self._errors = self._errors, []
        if errors:
            raise HarnessError(f"the proxy failed while running: {errors!r}") from errors[0]

    # --- faults --------------------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Simulates a slow or distant network: every chunk waits ``seconds`` in each direction.

        A request/response round trip therefore gains twice ``seconds``. Data
        already waiting in the proxy is delivered by the new delay. 0 = none.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"latency must be a finite number >= 0, not {seconds!r}")

        def apply() -> None:
            self._latency = float(seconds)
            self._notify()

        self._call(apply)

    def set_bandwidth(self, bytes_per_second: int | None) -> None:
        """Simulates a narrow or congested link: each direction of each connection
        carries at most ``bytes_per_second``. ``None`` = unlimited.
        """
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError(f"bandwidth must be > 0 or None, not {bytes_per_second!r}")

        def apply() -> None:
            self._bandwidth = bytes_per_second
            self._notify()

        self._call(apply)

    def blackhole(self) -> None:
        """Simulates a network that silently drops packets (a partition, a firewall DROP rule,
        a dead NAT or load-balancer entry): no error, just silence until a timeout.

        New connections are accepted but nothing is forwarded or answered and
        the target is not even contacted; open connections stop forwarding.
        Bytes sent meanwhile, in both directions, are swallowed for good; a FIN
        is held back until :meth:`heal`. Nothing is closed.
        """

        def apply() -> None:
            self._blackholed = True
            self._notify()

        self._call(apply)

    def reset_all(self) -> int:
        """Simulates a middlebox or peer dropping its connection state (a firewall or load
        balancer restart, an idle-timeout reaper): every open connection is reset now.

        Both the client and the target side get an RST (``SO_LINGER`` 0, then
        close). The proxy keeps listening. Returns how many connections were reset.
        """

        def apply() -> int:
            connections = list(self._connections)
            for connection in connections:
                self._close(connection, reset=True)
            return len(connections)

        return self._call(apply)

    def close_after(self, nbytes: int | None) -> None:
        """Simulates a middlebox that cuts connections mid-stream (a transfer quota, a proxy
        with a maximum message size): each connection is reset once it has forwarded
        ``nbytes`` more bytes, counting both directions together.

        Counting starts now for open connections and at accept for new ones;
        exactly ``nbytes`` get through, then both sides get an RST. ``None`` = off.
        """
        if nbytes is not None and nbytes < 0:
            raise ValueError(f"nbytes must be >= 0 or None, not {nbytes!r}")

        def apply() -> None:
            self._close_after = nbytes
            for connection in self._connections:
                connection.budget = nbytes
            self._notify()

        self._call(apply)

    def refuse(self) -> None:
        """Simulates a server host whose port is closed (the process is gone, the service is
        being redeployed): new connects get ECONNREFUSED; open connections are untouched.
        """

        def apply() -> None:
            self._refused = True
            self._stop_listening()

        self._call(apply)

    def retarget(self, target_host: str, target_port: int) -> None:
        """Simulates an endpoint that moves to another server (a DNS name or a load balancer
        repointed after a failover): new connections go to the new target, while open
        ones keep talking to the old one, as long-lived pooled connections do.

        Not a fault, so :meth:`heal` keeps the new target.
        """
        family, address = _resolve(target_host, target_port)

        def apply() -> None:
            self._target_host, self._target_port = target_host, target_port
            self._target_family, self._target_address = family, address

        if self._loop is None:
            apply()
        else:
            self._call(apply)

    def heal(self) -> None:
        """Back to a clean pass-through: no latency, no throttle, no blackhole, no byte limit,
        and listening again on the same port if :meth:`refuse` closed it.
        """

        def apply() -> None:
            self._latency = 0.0
            self._bandwidth = None
            self._blackholed = False
            self._close_after = None
            for connection in self._connections:
                connection.budget = None
            if self._refused and self._loop is not None:
                self._listen(self._bind(self.port))
            self._refused = False
            self._notify()

        self._call(apply)

    # --- control plumbing (any thread -> loop thread) ----------------------------------

    def _call(self, func: Callable[[], _T]) -> _T:
        """Run ``func`` on the loop and return its result, so changes are in force on return."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or threading.current_thread() is thread:
            return func()
        result: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(func())
            except BaseException as exc:
                result.set_exception(exc)

        try:
            loop.call_soon_threadsafe(run)
        except RuntimeError as exc:
            raise HarnessError("the proxy is not running") from exc
        try:
            return result.result(timeout=_CALL_TIMEOUT)
        except concurrent.futures.TimeoutError as exc:
            raise HarnessError("the proxy's thread did not respond (stopping?)") from exc

    def _resolve_target(self) -> None:
        self._target_family, self._target_address = _resolve(self._target_host, self._target_port)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # Lets heal() listen again while connections accepted earlier still use the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((_LOOPBACK, port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise HarnessError(f"the proxy cannot listen on port {port}: {exc}") from exc
        return sock

    def _bind_free_port(self) -> socket.socket:
        if self._fixed_port:
            return self._bind(self.port)
        for attempt in range(_PORT_ATTEMPTS):
            self._port = free_port()
            try:
                return self._bind(self._port)
            except HarnessError:  # taken between the probe and the bind
                if attempt == _PORT_ATTEMPTS - 1:
                    self._port = None
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the loop thread -----------------------------------------------------------------

    def _run(self, listener: socket.socket, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._on_loop_error)
        try:
            loop.run_until_complete(self._main(loop, listener, ready))
        except BaseException as exc:
            self._errors.append(exc)
        finally:
            listener.close()  # a no-op unless _main failed before taking it over
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(
        self, loop: asyncio.AbstractEventLoop, listener: socket.socket, ready: threading.Event
    ) -> None:
        self._stopping = loop.create_future()
        self._changed = None  # a future of a previous run's loop, if restarted
        self._loop = loop
        if self._refused:
            listener.close()
        else:
            self._listen(listener)
        ready.set()
        try:
            await self._stopping
        finally:
            self._stop_listening()
            for connection in list(self._connections):
                self._close(connection, reset=False)
            if self._serve_tasks:
                await asyncio.gather(*self._serve_tasks, return_exceptions=True)

    def _request_stop(self) -> None:
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(None)

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self._errors.append(exc if isinstance(exc, BaseException) else HarnessError(str(context)))

    def _notify(self) -> None:
        """Wake every task waiting in :meth:`_wait_until`, to re-read the faults."""
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(None)

    async def _wait_until(self, deadline: Callable[[], float]) -> None:
        """Sleep until the loop time ``deadline()``, re-evaluated whenever a fault changes.

        ``math.inf`` waits for the next change; anything in the past returns at once.
        """
        loop = asyncio.get_running_loop()
        while True:
            remaining = deadline() - loop.time()
            if remaining <= 0:
                return
            if self._changed is None:
                self._changed = loop.create_future()
            await asyncio.wait(
                {self._changed}, timeout=None if math.isinf(remaining) else remaining
            )

    def _unblackholed(self) -> float:
        return math.inf if self._blackholed else 0.0

    def _delivery_time(self, received: float) -> float:
        return received + self._latency

    def _slot_time(self, slot: float) -> float:
        return 0.0 if self._bandwidth is None else slot

    # --- accepting -----------------------------------------------------------------------

    def _listen(self, listener: socket.socket) -> None:
        assert self._loop is not None
        self._listener = listener
        self._loop.add_reader(listener.fileno(), self._on_acceptable)

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            assert self._loop is not None
            self._loop.remove_reader(listener.fileno())
            listener.close()  # pending connects in the backlog are reset

    def _on_acceptable(self) -> None:
        # A callback rather than a task awaiting sock_accept(): cancelling such a task
        # can drop a socket that was already accepted.
        listener, loop = self._listener, self._loop
        assert listener is not None
        assert loop is not None
        for _ in range(_BACKLOG):
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of descriptors or similar: pause instead of spinning
                loop.remove_reader(listener.fileno())
                loop.call_later(_ACCEPT_RETRY, self._resume_accepting, listener)
                return
            self._admit(loop, client)

    def _resume_accepting(self, listener: socket.socket) -> None:
        if self._listener is listener and self._loop is not None:
            self._loop.add_reader(listener.fileno(), self._on_acceptable)

    def _admit(self, loop: asyncio.AbstractEventLoop, client: socket.socket) -> None:
        self._total += 1
        client.setblocking(False)
        with contextlib.suppress(OSError):
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(client, self._close_after, loop.create_future())
        self._connections.add(connection)
        task = loop.create_task(self._serve(connection))
        self._serve_tasks.add(task)
        task.add_done_callback(self._serve_tasks.discard)

    # --- one connection ---------------------------------------------------------------

    async def _serve(self, connection: _Connection) -> None:
        to_target: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_CHUNKS)
        to_client: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(_QUEUE_CHUNKS)
        self._spawn(connection, self._pump_in(connection, connection.client, to_target))
        self._spawn(connection, self._connect(connection, to_target, to_client))
        await connection.finished
        await asyncio.gather(*connection.tasks, return_exceptions=True)

    def _spawn(self, connection: _Connection, coro: Coroutine[Any, Any, None]) -> None:
        if connection.closed:
            coro.close()
            return
        assert self._loop is not None
        task = self._loop.create_task(coro)
        connection.tasks.add(task)
        task.add_done_callback(lambda done: self._task_done(connection, done))

    def _task_done(self, connection: _Connection, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # a bug in the proxy: record it and do not leave the peers hanging
            self._errors.append(exc)
            self._close(connection, reset=True)

    async def _connect(
        self,
        connection: _Connection,
        to_target: asyncio.Queue[tuple[float, bytes]],
        to_client: asyncio.Queue[tuple[float, bytes]],
    ) -> None:
        """Connect to the target once not blackholed, then start the three other pumps."""
        loop = asyncio.get_running_loop()
        await self._wait_until(self._unblackholed)
        if not connection.is_open():
            return
        upstream = socket.socket(self._target_family, socket.SOCK_STREAM)
        connection.upstream = upstream  # from now on _close() closes it too
        upstream.setblocking(False)
        timer = loop.call_later(_CONNECT_TIMEOUT, self._close, connection)
        try:
            await loop.sock_connect(upstream, self._target_address)
        except OSError:
            # The target is down: the client sees its connection closed, as
            # behind a load balancer whose backend is gone.
            self._close(connection)
            return
        finally:
            timer.cancel()
        if not connection.is_open():  # closed meanwhile (awaits do not narrow for mypy)
            return
        with contextlib.suppress(OSError):
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._spawn(connection, self._pump_out(connection, upstream, to_target))
        self._spawn(connection, self._pump_in(connection, upstream, to_client))
        self._spawn(connection, self._pump_out(connection, connection.client, to_client))

    async def _pump_in(
        self,
        connection: _Connection,
        source: socket.socket,
        queue: asyncio.Queue[tuple[float, bytes]],
    ) -> None:
        """Read from ``source`` and queue time-stamped chunks; swallow them while blackholed."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(source, _CHUNK)
            except OSError:
                self._close(connection, reset=True)  # the peer reset: pass the reset on
                return
            if connection.closed:
                return
            if data and self._blackholed:
                continue
            await queue.put((loop.time(), data))
            if not data:
                return

    async def _pump_out(
        self,
        connection: _Connection,
        destination: socket.socket,
        queue: asyncio.Queue[tuple[float, bytes]],
    ) -> None:
        """Deliver queued chunks to ``destination`` after the latency, at the bandwidth,
        within the byte budget; pass end-of-stream on as a half-close.
        """
        pace = _Pace()
        while True:
            received, data = await queue.get()
            await self._wait_until(functools.partial(self._delivery_time, received))
            if data == _EOF:
                await self._half_close(connection, destination)
                return
            if not await self._deliver(connection, destination, data, pace):
                return

    async def _half_close(self, connection: _Connection, destination: socket.socket) -> None:
        """End-of-stream passed on (once no blackhole swallows it); the second direction
        to end closes the connection."""
        await self._wait_until(self._unblackholed)
        if connection.closed:
            return
        with contextlib.suppress(OSError):
            destination.shutdown(socket.SHUT_WR)
        connection.directions_done += 1
        if connection.directions_done == 2:
            self._close(connection)

    async def _deliver(
        self, connection: _Connection, destination: socket.socket, data: bytes, pace: _Pace
    ) -> bool:
        """Send ``data`` slice by slice at the bandwidth (a blackhole swallows the rest);
        ``False`` once the connection is over (reset, or its byte budget spent)."""
        view = memoryview(data)
        while view and not connection.closed:
            await self._wait_until(functools.partial(self._slot_time, pace.next_slot))
            if connection.closed or self._blackholed:
                break  # swallowed
            bandwidth = self._bandwidth
            size = len(view)
            if bandwidth is not None:
                size = min(size, max(1, bandwidth // _SLICES_PER_SECOND))
            size, exhausted = _reserve(connection, size)
            if size and not await self._send(connection, destination, view[:size], bandwidth, pace):
                return False
            if exhausted:
                await _drain(destination)
                self._close(connection, reset=True)
                return False
            view = view[size:]
        return True

    async def _send(
        self,
        connection: _Connection,
        destination: socket.socket,
        chunk: memoryview,
        bandwidth: int | None,
        pace: _Pace,
    ) -> bool:
        """One slice sent, and the next one's time set by the bandwidth; ``False`` when
        the peer reset (the reset is passed on)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(destination, chunk)
        except OSError:
            self._close(connection, reset=True)
            return False
        if bandwidth is not None:
            pace.next_slot = max(pace.next_slot, loop.time()) + len(chunk) / bandwidth
        return True

    def _close(self, connection: _Connection, *, reset: bool = False) -> None:
        """Close both sockets (with an RST if ``reset``) and cancel the connection's pumps."""
        if connection.closed:
            return
        connection.closed = True
        loop = self._loop
        for sock in connection.sockets():
            fd = sock.fileno()
            if fd >= 0 and loop is not None:
                # Unregister first, so no callback touches a reused descriptor.
                loop.remove_reader(fd)
                loop.remove_writer(fd)
            if reset:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            sock.close()
        current = asyncio.current_task()
        for task in connection.tasks:
            if task is not current:
                task.cancel()
        if not connection.finished.done():
            connection.finished.set_result(None)
        self._connections.discard(connection)


class _Pace:
    """When one direction's bandwidth allows its next slice (loop time)."""

    __slots__ = ("next_slot",)

    def __init__(self) -> None:
        self.next_slot = 0.0


def _reserve(connection: _Connection, size: int) -> tuple[int, bool]:
    """Up to ``size`` bytes taken from the connection's budget, before any await (both
    directions share it), and whether that spent the budget."""
    if connection.budget is None:
        return size, False
    size = min(size, connection.budget)
    connection.budget -= size
    return size, connection.budget == 0


async def _drain(sock: socket.socket) -> None:
    """Wait briefly until the kernel has sent what was written: an RST discards unsent data."""
    if _TIOCOUTQ is None:  # pragma: no cover - not Linux
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _DRAIN_TIMEOUT
    while loop.time() < deadline:
        try:
            unsent = struct.unpack("i", fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            return
        if unsent == 0:
            return
        await asyncio.sleep(_DRAIN_POLL)


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, Any]:
    """Resolve once, in the caller's thread, so the loop never needs a resolver thread."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise HarnessError(f"cannot resolve {host!r}: {exc}") from exc
    family, _, _, _, address = infos[0]
    return family, address
