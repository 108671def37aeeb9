"""Locks against real failures: dead and frozen holders, dead waiters, a frozen Redis,
a Sentinel failover, an open breaker and a server-side mass disconnect.

Every test breaks servers (or processes) it started itself. Assertions are on
states, tokens and signals; the few bounds on time are generous and follow
from the leases (a lock must not be granted while its key exists, and must be
granted once the lease that blocks it has ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_redis_resilience import lock, signals
from django_redis_resilience.clients import get_manager
from django_redis_resilience.connection import BreakerState, CircuitBreaker
from django_redis_resilience.exceptions import (
    BreakerOpen,
    LockLost,
    LockNotAcquired,
    RedisUnavailable,
)
from django_redis_resilience.locks._protocol import ENTRY_LEASE, LockKeys
from django_redis_resilience.testing import RedisServer
from tests._polling import wait_for
from tests.cache.conftest import FAST_BREAKER, resilient_caches
from tests.locks.conftest import unique

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
#: Short socket timeouts: a frozen server costs a fraction of a lease per call.
TIMEOUTS = {"SOCKET_TIMEOUT": 0.25, "SOCKET_CONNECT_TIMEOUT": 0.25}
#: Opens after two failures and stays open for the whole test: no probe touches the network.
STAYS_OPEN = {"FAILURE_THRESHOLD": 2, "RECOVERY_TIMEOUT": 60, "MAX_RECOVERY_TIMEOUT": 60}
#: Generous allowance over what the leases dictate (scheduling, process start-up, re-checks).
MARGIN = 1.5


# --- helpers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _caches(location: Any, **options: Any) -> Iterator[str]:
    """``default`` on ``location`` with a fresh ``KEY_PREFIX``, which it yields."""
    prefix = f"lk{uuid.uuid4().hex[:8]}"
    merged = {**TIMEOUTS, **options}
    with override_settings(CACHES=resilient_caches(location, KEY_PREFIX=prefix, **merged)):
        yield prefix


def _breaker(name: str, prefix: str) -> CircuitBreaker:
    keys = LockKeys.build(prefix, name)
    return get_manager().route(write=True, key=keys.lock)[0].breaker


def _queued(server: RedisServer, keys: LockKeys) -> list[str]:
    """The waiter ids in the lock's queue, in arrival order."""
    with server.client() as client:
        return [member.decode() for member in client.zrange(keys.queue, 0, -1)]


def _holder(server: RedisServer, keys: LockKeys) -> tuple[str, int] | None:
    """``(waiter id, fence)`` of whoever holds the lock in Redis, or ``None``."""
    with server.client() as client:
        value = client.get(keys.lock)
    if value is None:
        return None
    owner, _, fence = value.decode().rpartition(":")
    return owner, int(fence)


def _blocked_clients(server: RedisServer) -> int:
    with server.client() as client:
        return int(client.info("clients")["blocked_clients"])


class _Worker(threading.Thread):
    """A thread that keeps what its target returned or raised, for the test to check."""

    def __init__(self, target: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:
            self.error = exc

    def outcome(self, timeout: float = 15.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the worker thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


class Child:
    """A lock holder or waiter in a process of its own (``tests/locks/_chaos_child.py``)."""

    def __init__(self, config: dict[str, Any], stderr_path: Path) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self._stderr_path = stderr_path
        self._stderr = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.locks._chaos_child", json.dumps(config)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self.seen: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def expect(self, word: str, timeout: float = 20.0) -> list[str]:
        """The next output line starting with ``word``, split in words."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(
                    f"the child never printed {word!r}; it printed {self.seen!r}; "
                    f"stderr: {self._stderr_path.read_text()[-3000:]}"
                )
            self.seen.append(line)
            if line.split()[0] == word:
                return line.split()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)
        _wait_for_process_state(self.proc.pid, stopped=signum == signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone (its sockets closed by the kernel)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        self._reader.join(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()


def _wait_for_process_state(pid: int, *, stopped: bool) -> None:
    """Signals are asynchronous: wait until ``/proc`` shows the process (not) stopped."""

    def applied() -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        return (stat.rpartition(")")[2].split()[0] == "T") == stopped

    assert wait_for(applied, timeout=5, step=0.005)


SpawnChild = Callable[..., Child]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[SpawnChild]:
    """``spawn(location, prefix, name, timeout=, mode=)``: a child process, killed at teardown."""
    children: list[Child] = []

    def start(location: str, prefix: str, name: str, *, timeout: float, mode: str) -> Child:
        config = {
            "location": location,
            "prefix": prefix,
            "name": name,
            "timeout": timeout,
            "mode": mode,
            "options": TIMEOUTS,
        }
        child = Child(config, tmp_path / f"child-{len(children)}.stderr")
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


@pytest.fixture
def lost_signals() -> Iterator[list[tuple[str, int]]]:
    """Every ``lock_lost`` sent during the test, as ``(name, token)``."""
    fired: list[tuple[str, int]] = []

    def receiver(sender: Any, *, name: str, token: int, **kwargs: Any) -> None:
        fired.append((name, token))

    signals.lock_lost.connect(receiver, weak=False)
    yield fired
    signals.lock_lost.disconnect(receiver)


def _about(name: str, fired: list[tuple[str, int]]) -> list[int]:
    """The tokens ``lock_lost`` reported for the lock ``name``."""
    return [token for lost_name, token in fired if lost_name == name]


# --- 1. a holder process killed while holding ----------------------------------------------------


def test_a_killed_holder_keeps_the_lock_until_its_lease_ends_then_a_waiter_gets_it(
    drr_redis_factory: Any, spawn: SpawnChild
) -> None:
    server = drr_redis_factory()
    name = unique()
    with _caches(server.url) as prefix:
        keys = LockKeys.build(prefix, name)
        holder = spawn(server.url, prefix, name, timeout=1.0, mode="hold")
        dead_token = int(holder.expect("held")[1])
        assert _holder(server, keys) is not None
        assert _holder(server, keys)[1] == dead_token  # type: ignore[index]
        holder.kill()
        started = time.monotonic()
        with server.client() as client:
            left = client.pttl(keys.lock) / 1000
        # Killed with its lease running: the key outlives the process.
        assert 0 < left <= 1.0
        with lock(name, timeout=2.0, wait=5) as held:
            waited = time.monotonic() - started
            assert held.token is not None
            assert held.token > dead_token
            assert _holder(server, keys)[1] == held.token  # type: ignore[index]
    # Not granted while the dead holder's key existed, and granted soon after it ended.
    assert waited >= left - 0.05
    assert waited <= left + MARGIN


# --- 2. a holder that runs past its lease -------------------------------------------------------


@pytest.mark.parametrize("on_lost", ["raise", "log"])
def test_a_holder_past_its_lease_without_renewal_finds_out_on_exit(
    drr_redis_factory: Any, caplog: pytest.LogCaptureFixture, on_lost: str
) -> None:
    server = drr_redis_factory()
    name = unique()
    caplog.set_level(logging.WARNING, logger="django_redis_resilience")
    with _caches(server.url) as prefix:
        keys = LockKeys.build(prefix, name)
        taken = threading.Event()
        done = threading.Event()

        def other() -> int:
            with lock(name, timeout=5.0, wait=5) as theirs:
                assert theirs.token is not None
                taken.set()
                assert done.wait(15)
                return theirs.token

        worker = _Worker(other)
        raised: LockLost | None = None
        try:
            with lock(name, timeout=0.5, renew=False, on_lost=on_lost) as held:
                mine = held.token
                worker.start()
                time.sleep(1.0)  # the guarded code runs past its 0.5 s lease
                assert taken.wait(5)  # meanwhile the other thread got the lock
                assert held.lost
                assert held.valid_for == 0
        except LockLost as exc:
            raised = exc
        finally:
            # The lost holder's exit released nothing of the other thread's.
            still = _holder(server, keys)
            done.set()
        theirs = worker.outcome()
        assert mine is not None
        assert theirs > mine
        assert still is not None
        assert still[1] == theirs
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "lost" in r.getMessage()]
    if on_lost == "raise":
        assert raised is not None
        assert str(mine) in str(raised)
    else:
        assert raised is None
        assert errors, caplog.text
        assert str(mine) in errors[0].getMessage()


def test_a_frozen_holder_process_learns_it_lost_the_lock_once_it_runs_again(
    drr_redis_factory: Any, spawn: SpawnChild
) -> None:
    server = drr_redis_factory()
    name = unique()
    with _caches(server.url) as prefix:
        keys = LockKeys.build(prefix, name)
        holder = spawn(server.url, prefix, name, timeout=1.0, mode="hold")
        frozen_token = int(holder.expect("held")[1])
        holder.signal(signal.SIGSTOP)  # renewal stops with the whole process
        with lock(name, timeout=5.0, wait=5) as mine:
            assert mine.token is not None
            assert mine.token > frozen_token
            holder.signal(signal.SIGCONT)
            # Its next renewal is refused: lock_lost fires in the holder's process...
            assert holder.expect("signal") == ["signal", name, str(frozen_token)]
            holder.send("state")
            assert holder.expect("lost") == ["lost", "True"]
            # ...and leaving the block raises LockLost (on_lost="raise").
            holder.send("exit")
            holder.expect("LockLost")
            assert holder.proc.wait(10) == 0
            # Its release did not touch the lock it no longer owned.
            assert _holder(server, keys) is not None
            assert _holder(server, keys)[1] == mine.token  # type: ignore[index]
            assert not mine.lost


# --- 3. Redis frozen while a holder renews --------------------------------------------------------


@pytest.mark.parametrize(
    "redis_at_exit", ["still frozen", "resumed, key expired", "resumed, key kept by a late renewal"]
)
def test_renewal_against_a_frozen_server_fires_lock_lost_and_the_holder_finds_out(
    drr_redis_factory: Any, lost_signals: list[tuple[str, int]], redis_at_exit: str
) -> None:
    """Whatever Redis answers at exit, a holder told its lock was lost gets ``LockLost``.

    "key kept by a late renewal": renewals sent while the server was frozen
    are still in its socket buffers; on resume the server runs them, and one
    that arrived before the key expired on the server's clock keeps the key
    alive although the holder already counted it as failed. That happens now
    and then on its own; the test writes the holder's value back to make it
    certain.
    """
    server = drr_redis_factory()
    name = unique()
    lease = 1.0
    frozen = False
    seen: list[Any] = []

    def hold_through_the_freeze(prefix: str) -> None:
        nonlocal frozen
        keys = LockKeys.build(prefix, name)
        with lock(name, timeout=lease) as held:
            seen.append(held)
            ours = _holder(server, keys)
            assert ours is not None
            server.hang()
            frozen = True
            # Renewal keeps failing until the lease is over: then lock_lost fires.
            assert wait_for(lambda: bool(_about(name, lost_signals)), timeout=2 * lease + MARGIN)
            assert _about(name, lost_signals) == [held.token]
            assert held.lost
            assert held.valid_for == 0
            if redis_at_exit != "still frozen":
                server.resume()
                frozen = False
                assert wait_for(lambda: _breaker(name, prefix).closed, timeout=10)
            if redis_at_exit == "resumed, key expired":
                assert wait_for(lambda: _holder(server, keys) is None, timeout=lease + MARGIN)
            elif redis_at_exit == "resumed, key kept by a late renewal":
                with server.client() as client:
                    client.set(keys.lock, f"{ours[0]}:{ours[1]}", px=int(lease * 1000))
        # Leaving the block must still tell the caller the lock was lost, whether
        # Redis cannot be asked, or answers that the key is gone, or that it is
        # (still or again) the holder's.

    with _caches(server.url, BREAKER=FAST_BREAKER) as prefix:
        try:
            with pytest.raises(LockLost):
                hold_through_the_freeze(prefix)
        finally:
            if frozen:
                server.resume()
    (held,) = seen
    assert _about(name, lost_signals) == [held.token]


def test_a_freeze_shorter_than_the_lease_keeps_the_lock(
    drr_redis_factory: Any,
    lost_signals: list[tuple[str, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = drr_redis_factory()
    name = unique()
    lease = 4.0
    caplog.set_level(logging.WARNING, logger="django_redis_resilience")
    with _caches(server.url, BREAKER=FAST_BREAKER) as prefix:
        keys = LockKeys.build(prefix, name)
        with lock(name, timeout=lease) as held:
            server.hang()
            try:
                time.sleep(1.6)  # renewals are due every lease/3: at least one fails
            finally:
                server.resume()
            assert "renewal failed" in caplog.text
            # The retries land before the lease runs out, and the lease is full again.
            assert wait_for(lambda: held.valid_for > lease - 1.0, timeout=lease)
            assert not held.lost
            assert _holder(server, keys) is not None
            assert _holder(server, keys)[1] == held.token  # type: ignore[index]
    assert _about(name, lost_signals) == []
    assert not held.lost


# --- 4. fencing tokens across a failover ---------------------------------------------------------


def _token(name: str) -> int:
    with lock(name, timeout=1.0, wait=5) as held:
        assert held.token is not None
        return held.token


def _token_once_available(name: str, timeout: float = 30.0) -> int:
    """Keep acquiring until it works (the failover is over)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _token(name)
        except (RedisUnavailable, LockNotAcquired):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def _is_primary(node: RedisServer) -> bool:
    if not node.is_running():
        return False
    with node.client() as client:
        return bool(client.info("replication")["role"] == "master")


@pytest.mark.parametrize("how", ["primary killed", "SENTINEL FAILOVER"])
def test_tokens_increase_across_a_sentinel_failover(drr_sentinel_factory: Any, how: str) -> None:
    group = drr_sentinel_factory()
    name = unique()
    with _caches(group.location, BREAKER=FAST_BREAKER) as prefix:
        keys = LockKeys.build(prefix, name)
        before = [_token(name) for _ in range(5)]
        assert before == sorted(set(before))
        old = group.primary
        if how == "primary killed":
            old.kill()  # the last writes may not have reached the replica
            after = [_token_once_available(name)]
            new = group.wait_for_failover(old)
        else:
            new = group.failover()
            after = [_token_once_available(name)]
        assert new is not old
        after += [_token(name) for _ in range(5)]
        assert after == sorted(set(after))
        assert min(after) > max(before)
        # A failover that lost the counter as well: still larger. (Until Sentinel
        # demotes it, a primary that was failed over by hand still takes writes
        # on the connections open to it: delete the counter on every primary.)
        issuers = [node for node in group.data_nodes if _is_primary(node)]
        assert new in issuers
        for node in issuers:
            with node.client() as client:
                client.delete(keys.counter)
        assert _token(name) > after[-1]


@pytest.mark.parametrize("lost", ["counter", "every key of the lock"])
def test_tokens_increase_when_the_counter_was_lost(
    drr_redis_factory: Any, lost: str, lost_signals: list[tuple[str, int]]
) -> None:
    server = drr_redis_factory()
    name = unique()
    with _caches(server.url) as prefix:
        keys = LockKeys.build(prefix, name)
        before = [_token(name) for _ in range(20)]
        assert before == sorted(set(before))
        # With only the counter gone the release works; with the lock key gone too,
        # the holder is told it lost the lock (the promoted replica never knew it).
        gone = [keys.counter] if lost == "counter" else list(keys.all)
        on_exit = contextlib.nullcontext() if lost == "counter" else pytest.raises(LockLost)
        with on_exit, lock(name, timeout=2.0) as held:
            assert held.token is not None
            before.append(held.token)
            with server.client() as client:
                assert client.delete(*gone) >= 1
        assert held.lost == (lost != "counter")
        assert _token(name) > max(before)
    assert _about(name, lost_signals) == ([] if lost == "counter" else [before[-1]])


# --- 5. a waiter that dies in the queue -----------------------------------------------------------


def test_a_dead_waiter_stalls_the_queue_at_most_for_its_entry_lease(
    drr_redis_factory: Any, spawn: SpawnChild
) -> None:
    server = drr_redis_factory()
    name = unique()
    with _caches(server.url) as prefix:
        keys = LockKeys.build(prefix, name)
        acquired: dict[str, Any] = {}

        def second_waiter() -> None:
            with lock(name, timeout=5.0, wait=30) as theirs:
                acquired["at"] = time.monotonic()
                acquired["token"] = theirs.token

        second = _Worker(second_waiter)
        mine = lock(name, timeout=10.0)
        held = mine.acquire()
        assert held is not None
        assert held.token is not None
        # Its lease (20 s) is far longer than its queue entry's: the bound below
        # tells which of the two the stall is limited by, with room for a slow machine.
        dead = spawn(server.url, prefix, name, timeout=20.0, mode="wait")
        assert wait_for(lambda: len(_queued(server, keys)) == 1, timeout=20)
        (dead_id,) = _queued(server, keys)
        second.start()
        assert wait_for(lambda: len(_queued(server, keys)) == 2, timeout=5)
        assert _queued(server, keys)[0] == dead_id  # the dead one is first in line
        dead.kill()
        released_at = time.monotonic()
        mine.release()
        # Handed to the dead waiter, whose entry had not expired yet, for the
        # hand-off lease at most.
        handed = _holder(server, keys)
        with server.client() as client:
            handoff_left = client.pttl(keys.lock) / 1000
        assert handed is not None
        assert handed[0] == dead_id
        assert 0 < handoff_left <= ENTRY_LEASE
        second.outcome(timeout=ENTRY_LEASE + 10)
        assert "acquired" not in " ".join(dead.seen)
    assert acquired["token"] > handed[1] > held.token
    assert acquired["at"] - released_at <= ENTRY_LEASE + 3 * MARGIN


# --- 6. an open breaker ---------------------------------------------------------------------------


def test_an_open_breaker_decides_without_any_network_attempt(
    drr_redis_factory: Any, drr_proxy_factory: Any
) -> None:
    server = drr_redis_factory()
    proxy = drr_proxy_factory(server)
    name = unique()
    with _caches(proxy.url(), BREAKER=STAYS_OPEN) as prefix:
        with lock(name, timeout=1.0, wait=0) as held:
            assert held.token is not None
        assert proxy.total_connections >= 1
        server.kill()
        breaker = _breaker(name, prefix)
        seen = proxy.total_connections

        def skipped() -> bool:
            return lock(name, timeout=1.0, wait=0, on_unavailable="skip").acquire() is None

        assert wait_for(lambda: skipped() and not breaker.closed, timeout=10)
        # Attempts while the breaker was closed went through the proxy: it counts them.
        assert proxy.total_connections > seen
        assert breaker.state is BreakerState.OPEN
        quiet = proxy.total_connections

        with lock(name, timeout=1.0, wait=5, on_unavailable="skip") as held:
            assert not held
            assert held.degraded
        assert lock(name, timeout=1.0, wait=None, on_unavailable="skip").acquire() is None
        calls: list[int] = []

        @lock(name, timeout=1.0, wait=5, on_unavailable="skip")
        def guarded() -> int:
            calls.append(1)
            return 1

        assert guarded() is None
        assert calls == []
        with lock(name, timeout=1.0, on_unavailable="run") as held:
            assert not held
            assert held.degraded
        with pytest.raises(BreakerOpen), lock(name, timeout=1.0, wait=5):
            pass

        async def async_skip() -> bool:
            async with lock(name, timeout=1.0, wait=5, on_unavailable="skip") as held:
                return bool(held)

        assert asyncio.run(async_skip()) is False
        assert proxy.total_connections == quiet
        assert breaker.state is BreakerState.OPEN


# --- 7. a server-side mass disconnect -------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_mass_disconnect_loses_neither_the_waiter_nor_the_release(
    drr_redis_factory: Any, caplog: pytest.LogCaptureFixture, flavour: str
) -> None:
    server = drr_redis_factory()
    name = unique()
    holder_lease = 9.0
    caplog.set_level(logging.WARNING, logger="django_redis_resilience")
    with _caches(server.url, BREAKER=FAST_BREAKER) as prefix:
        keys = LockKeys.build(prefix, name)
        # If the release were lost the lock would stay taken for most of the
        # renewed lease (at least 2/3 of it), longer than the waiter waits.
        waiter_wait = holder_lease * 2 / 3 - 0.5

        def sync_waiter() -> int | None:
            with lock(name, timeout=5.0, wait=waiter_wait) as theirs:
                return theirs.token

        async def async_waiter() -> int | None:
            async with lock(name, timeout=5.0, wait=waiter_wait) as theirs:
                return theirs.token

        waiter = _Worker(sync_waiter if flavour == "sync" else lambda: asyncio.run(async_waiter()))
        with lock(name, timeout=holder_lease) as held:
            waiter.start()
            assert wait_for(lambda: len(_queued(server, keys)) == 1, timeout=5)
            assert wait_for(lambda: _blocked_clients(server) == 1, timeout=5)  # in BLPOP
            killed = server.kill_clients()
            # The holder's pooled connection, the waiter's and its blocking one at least.
            assert killed >= 2
            assert not held.lost
        token = waiter.outcome(timeout=waiter_wait + 5)
    assert held.token is not None
    assert token is not None
    assert token > held.token
    assert not held.lost
    assert "release failed" not in caplog.text


# --- 8. an acquisition given up while Redis was frozen ------------------------------------------

#: One failure opens the breaker, so the caller's best-effort ``leave`` is refused
#: without being sent: only the acquire script is left in the frozen server's buffers.
#: It closes again quickly once the server answers.
ONE_FAILURE_OPENS = {"FAILURE_THRESHOLD": 1, "RECOVERY_TIMEOUT": 0.05, "MAX_RECOVERY_TIMEOUT": 0.2}


def _given_up(flavour: str, server: RedisServer, name: str, **options: Any) -> None:
    """Freeze the server, then ``lock(name, **options)`` acquires with the sync or the
    asyncio client and is told Redis is unavailable.

    On a connection used before (a new one would wait for its handshake and send
    nothing else), so the acquire script is sent and stays in the server's buffers.
    In a thread of its own: the test's thread may hold the lock.
    """

    def attempt() -> None:
        _token(unique())
        server.hang()
        with pytest.raises(RedisUnavailable):
            lock(name, **options).acquire()

    async def aattempt() -> None:
        async with lock(unique(), timeout=1.0, wait=5):
            pass
        server.hang()
        with pytest.raises(RedisUnavailable):
            await lock(name, **options).aacquire()

    worker = _Worker(attempt if flavour == "sync" else lambda: asyncio.run(aattempt()))
    worker.start()
    worker.outcome()


def _answers_again(server: RedisServer, name: str, prefix: str) -> None:
    """Resume the server and wait until it has run what its buffers held and the
    breaker lets calls through: a new connection's PING is served after the data
    that was waiting on the old ones."""
    server.resume()
    with server.client() as client:
        assert client.ping()
    assert wait_for(lambda: _breaker(name, prefix).closed, timeout=10)


def _taken_by_another_caller(name: str) -> bool:
    """A fresh caller gets the lock at once (``wait=0``); it lets it go again."""
    held = lock(name, timeout=5.0, wait=0, on_busy="skip", on_unavailable="skip").acquire()
    if held is None:
        return False
    assert held.release()
    return True


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_an_acquisition_given_up_in_a_frozen_server_never_keeps_the_lock(
    drr_redis_factory: Any, flavour: str
) -> None:
    """The caller is told Redis is unavailable; the server runs its acquire script
    when it resumes. Without a guard the script grants the lock to an owner nobody
    holds, for the whole lease (30 s here)."""
    server = drr_redis_factory()
    name = unique()
    with _caches(server.url, BREAKER=ONE_FAILURE_OPENS) as prefix:
        keys = LockKeys.build(prefix, name)
        try:
            _given_up(flavour, server, name, timeout=30.0, wait=0)
        finally:
            _answers_again(server, name, prefix)
        # The buffered script has run: it granted nothing and queued nobody.
        assert _holder(server, keys) is None
        assert _queued(server, keys) == []
        assert wait_for(lambda: _taken_by_another_caller(name), timeout=1.0)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_waiter_that_gave_up_in_a_frozen_server_is_not_handed_the_lock(
    drr_redis_factory: Any, flavour: str
) -> None:
    """A waiter's acquire script queues it behind the holder. Run late, it would put
    a waiter nobody is behind at the head of the queue, and the holder's release
    would hand the lock to it for the hand-off lease."""
    server = drr_redis_factory()
    name = unique()
    with _caches(server.url, BREAKER=ONE_FAILURE_OPENS) as prefix:
        keys = LockKeys.build(prefix, name)
        held = lock(name, timeout=30.0).acquire()
        assert held is not None
        try:
            _given_up(flavour, server, name, timeout=30.0, wait=5)
        finally:
            _answers_again(server, name, prefix)
        assert _queued(server, keys) == []
        assert held.release()
        assert _holder(server, keys) is None
        assert wait_for(lambda: _taken_by_another_caller(name), timeout=1.0)


def test_a_slow_network_within_the_socket_timeout_never_makes_the_script_refuse(
    drr_redis_factory: Any, drr_proxy_factory: Any
) -> None:
    """The deadline leaves half the socket timeout for the reply's way back, and the
    clock estimate takes the server's time as read halfway through the round trip: a
    round trip shorter than the socket timeout is granted at the first script call."""
    server = drr_redis_factory()
    proxy = drr_proxy_factory(server)
    name = unique()
    with _caches(proxy.url(), SOCKET_TIMEOUT=2.0):
        _token(unique())  # connected, script loaded, clock learned without delay
        with server.client() as client:
            before = int(client.info("commandstats")["cmdstat_evalsha"]["calls"])
        proxy.set_latency(0.6)  # each way: a 1.2 s round trip
        try:
            for _ in range(2):  # the second one on an estimate learned through the delay
                with lock(name, timeout=5.0, wait=0) as held:
                    assert held
        finally:
            proxy.set_latency(0)
        with server.client() as client:
            after = int(client.info("commandstats")["cmdstat_evalsha"]["calls"])
    assert after - before == 4  # two acquisitions, two releases: nothing refused
