"""Hostile bytes over a real socket to the example project under ``runserver``.

What the test client cannot send: raw header bytes (decoded as latin-1 by the
server), repeated headers, oversized lines. The site runs as a developer starts
it, on a Redis of its own; its ``/api/`` is limited to 5 a minute per address.
Spoofed ``X-Forwarded-For`` values never buy more calls, the health endpoints
tell strangers the status only, and the worker never answers 500 or dies.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.example_project._site import MANAGE, ROOT, Browser, Runserver, project_env

API_LIMIT = 5  # example_project/demo/views.py: API_RATE


def raw_request(
    port: int, head: bytes, *, timeout: float = 15.0
) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (request line and headers, CRLF-separated) as it is; read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + b"\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    top, _, body = answer.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def get(port: int, path: str, *headers: bytes) -> tuple[int, dict[str, str], bytes]:
    head = b"\r\n".join(
        [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close", *headers]
    )
    return raw_request(port, head)


@pytest.fixture
def site(drr_redis_factory: Any, tmp_path: Path) -> Iterator[Runserver]:
    server = drr_redis_factory()
    env = project_env(tmp_path, REDIS_URL=server.url)
    # Sessions are looked up (a forged cookie included): the database needs its tables.
    migrated = subprocess.run(
        [sys.executable, str(MANAGE), "migrate", "--noinput"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    process = Runserver(tmp_path, env=env)
    try:
        process.wait_until_serving()
        yield process
    finally:
        process.close()


SPOOFS = [
    b"X-Forwarded-For: 198.51.100.1",
    b"X-Forwarded-For: 2001:db8::1, 198.51.100.2",
    b"X-Forwarded-For: \x80\xff\xfe garbage, \x00",
    b"X-Forwarded-For: " + b"," * 20_000,
    b"X-Forwarded-For: 198.51.100.3\r\nX-Forwarded-For: 198.51.100.4",
    b"X-Forwarded-For: [::1]:99999999, 1.2.3.4:5",
    b"X-Real-IP: 198.51.100.5\r\nForwarded: for=198.51.100.5",
    b"X-Forwarded-For: unknown",
]


def test_hostile_bytes_never_crash_the_site_or_buy_calls(site: Runserver) -> None:
    # The API: one quota for this address, whatever it claims to be.
    statuses = [get(site.port, "/api/", spoof)[0] for spoof in SPOOFS]
    assert statuses == [200] * API_LIMIT + [429] * (len(SPOOFS) - API_LIMIT), statuses

    # The health endpoints: status only, whatever a stranger sends.
    hostile_headers = [
        b"Authorization: Bearer \x80\xff\xfe\x00",
        b"Authorization: Bearer " + b"A" * 60_000,
        b"Authorization: Basic Zm9vOmJhcg==\r\nAuthorization: Bearer x",
        b"Cookie: sessionid=" + b"\xff" * 100 + b"; csrftoken=\x00",
        b"X-HTTP-Method-Override: DELETE",
    ]
    for path, fields in (
        ("/redis/health/", {"status", "redis"}),
        ("/redis/health/redis/", {"status"}),
    ):
        for query in ("", "?%ff%00=1", "?" + "a=b&" * 2000):
            for header in hostile_headers:
                status, _headers, body = get(site.port, path + query, header)
                assert status != 500, (path, query, header[:40], body[:300])
                if status in (200, 503):
                    assert set(json.loads(body)) == fields, body
                else:
                    # The server itself refused an oversized line: no view ran, nothing leaked.
                    assert status in (400, 413, 414, 431), status
                    assert b"caches" not in body

    # Still serving, and nothing went wrong on the way.
    assert Browser(site.base).get("/").status == 200
    assert site.process.poll() is None
    assert "Traceback" not in site.output, site.output
    assert "Internal Server Error" not in site.output, site.output
