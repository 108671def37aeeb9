"""Throwaway certificates for TLS servers, and ACL rules for extra Redis users.

:class:`TLSMaterial` makes a private CA with the ``trustme`` package (a test
dependency, imported only when material is created), so no test ever trusts a
real CA or needs ``openssl`` on the machine. Besides the good chain it makes an
unrelated second CA and a certificate for a host name nobody connects to, so
tests can show that verification actually rejects a bad server.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from django_redis_resilience.testing._errors import HarnessError

__all__ = ["SERVER_HOSTS", "WRONG_HOST", "TLSMaterial", "TLSUnsupportedError", "acl_user"]

#: What the good server certificate is valid for.
SERVER_HOSTS = ("127.0.0.1", "localhost")
#: What the wrong-host certificate is valid for: never the address a test connects to.
WRONG_HOST = "not-this-host.example"
_CLIENT_IDENTITY = "drr-test-client@example.org"
_DIR_PREFIX = "drr-tls-"

_FILES = {
    "ca_file": "ca.pem",
    "server_cert": "server.crt",
    "server_key": "server.key",
    "client_cert": "client.crt",
    "client_key": "client.key",
    "other_ca_file": "other-ca.pem",
    "wrong_host_cert": "wrong-host.crt",
    "wrong_host_key": "wrong-host.key",
}


class TLSUnsupportedError(HarnessError):
    """The ``redis-server`` binary was built without TLS; tests needing TLS should skip."""


class TLSMaterial:
    """PEM files for one test session: CA, server and client certificates, and bad ones.

    * ``ca_file`` signed ``server_cert`` (valid for 127.0.0.1 and localhost) and
      ``client_cert`` (for mutual TLS).
    * ``other_ca_file`` is an unrelated CA; it signed ``wrong_host_cert``, valid
      only for :data:`WRONG_HOST`.

    Make it with :meth:`create`; :meth:`cleanup` (also run at interpreter exit)
    deletes the files.
    """

    def __init__(self, directory: Path, *, owns_directory: bool) -> None:
        """Use :meth:`create`; this only wraps files that already exist."""
        self._directory = directory
        self._owns_directory = owns_directory
        self._cleaned = False

    @classmethod
    def create(cls, directory: Path | None = None) -> TLSMaterial:
        """Generate fresh keys and certificates into ``directory`` (a new temp dir if ``None``).

        A directory the caller passed in is kept at cleanup; only the files written are removed.
        """
        try:
            import trustme
        except ImportError as exc:  # pragma: no cover - trustme is in the test extra
            raise HarnessError(
                "TLS material needs the trustme package: pip install trustme"
            ) from exc
        owns = directory is None
        path = Path(tempfile.mkdtemp(prefix=_DIR_PREFIX)) if directory is None else directory
        material = cls(path, owns_directory=owns)
        try:
            path.mkdir(parents=True, exist_ok=True)
            ca = trustme.CA(organization_name="django-redis-resilience tests")
            server = ca.issue_cert(*SERVER_HOSTS)
            client = ca.issue_cert(_CLIENT_IDENTITY)
            other_ca = trustme.CA(organization_name="an unrelated CA")
            wrong_host = other_ca.issue_cert(WRONG_HOST)

            ca.cert_pem.write_to_path(material.ca_file)
            other_ca.cert_pem.write_to_path(material.other_ca_file)
            for leaf, cert, key in (
                (server, material.server_cert, material.server_key),
                (client, material.client_cert, material.client_key),
                (wrong_host, material.wrong_host_cert, material.wrong_host_key),
            ):
                cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
                _write_private(key, leaf.private_key_pem.bytes())
        except BaseException:
            material.cleanup()
            raise
        atexit.register(material.cleanup)
        return material

    def cleanup(self) -> None:
        """Delete the files (and the directory, if :meth:`create` made it). Idempotent."""
        if self._cleaned:
            return
        self._cleaned = True
        atexit.unregister(self.cleanup)
        if self._owns_directory:
            shutil.rmtree(self._directory, ignore_errors=True)
            return
        for name in _FILES.values():
            with contextlib.suppress(FileNotFoundError):
                (self._directory / name).unlink()

    def __enter__(self) -> TLSMaterial:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<TLSMaterial {self._directory}>"

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def ca_file(self) -> Path:
        return self._directory / _FILES["ca_file"]

    @property
    def server_cert(self) -> Path:
        return self._directory / _FILES["server_cert"]

    @property
    def server_key(self) -> Path:
        return self._directory / _FILES["server_key"]

    @property
    def client_cert(self) -> Path:
        return self._directory / _FILES["client_cert"]

    @property
    def client_key(self) -> Path:
        return self._directory / _FILES["client_key"]

    @property
    def other_ca_file(self) -> Path:
        return self._directory / _FILES["other_ca_file"]

    @property
    def wrong_host_cert(self) -> Path:
        return self._directory / _FILES["wrong_host_cert"]

    @property
    def wrong_host_key(self) -> Path:
        return self._directory / _FILES["wrong_host_key"]

    @property
    def wrong_host(self) -> tuple[Path, Path]:
        """``(cert, key)`` for ``RedisServer(tls_cert=...)``: signed by the other CA."""
        return self.wrong_host_cert, self.wrong_host_key


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def acl_user(
    name: str,
    password: str,
    *,
    commands: str = "+@all",
    keys: str = "~*",
    channels: str = "&*",
) -> str:
    """An ACL rule line for ``RedisServer(users=[...])``: ``"<name> on ><password> ~* &* +@all"``.

    ``commands``, ``keys`` and ``channels`` are ACL rule fragments and may hold
    several rules (``commands="+get +set +ping"``). The channel rule is explicit
    because the default differs (Redis 6.2 allows all channels, 7 none). Name
    and password are shell-quoted when needed; the line is split with
    :func:`shlex.split` when the server starts.
    """
    if not name or any(char.isspace() for char in name):
        raise ValueError(f"an ACL user name must be non-empty without spaces, not {name!r}")
    return " ".join(
        part
        for part in (_quote(name), "on", _quote(f">{password}"), keys, channels, commands)
        if part
    )


def _quote(token: str) -> str:
    """Shell-quote only what :func:`shlex.split` would otherwise change, so rules stay readable."""
    if token and not any(char.isspace() or char in "'\"\\" for char in token):
        return token
    return shlex.quote(token)
