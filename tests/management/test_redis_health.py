"""``manage.py redis_health``: output, exit codes and option handling, on real servers.

Exit codes: 0 healthy (information only), 1 warnings, 2 critical, 3 could not
check. In-process runs use ``call_command`` (a non-zero report ends in
``SystemExit``, a usage problem in ``CommandError(returncode=3)``); what only
the command line does (argument parsing errors, ``--watch`` until Ctrl-C) runs
``python -m django`` in a child process with ``tests.management._settings``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.test import override_settings

from django_redis_resilience.testing import RedisServer
from tests.cache.conftest import BACKEND, FAST_BREAKER, resilient_caches

ROOT = Path(__file__).resolve().parents[2]
CHILD_SETTINGS = "tests.management._settings"
#: Long enough for a Django start-up and a few reports on a slow machine.
CHILD_DEADLINE = 30.0


def _address(server: RedisServer) -> str:
    return f"{server.host}:{server.port}"


def _run(*args: str, **options: Any) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``call_command("redis_health", *args)``."""
    out, err = StringIO(), StringIO()
    try:
        call_command("redis_health", *args, stdout=out, stderr=err, **options)
    except SystemExit as exc:
        code = exc.code
        assert isinstance(code, int)
    else:
        code = 0
    return code, out.getvalue(), err.getvalue()


def _json(*args: str, **options: Any) -> tuple[int, dict[str, Any]]:
    code, out, _ = _run("--json", *args, **options)
    data: dict[str, Any] = json.loads(out)
    assert data["exit_code"] == code
    return code, data


def _usage_error(*args: str) -> CommandError:
    with pytest.raises(CommandError) as info:
        call_command("redis_health", *args, stdout=StringIO(), stderr=StringIO())
    assert info.value.returncode == 3
    return info.value


def _child(*args: str, location: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": CHILD_SETTINGS,
        "DRR_HEALTH_LOCATION": location,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "django", "redis_health", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=CHILD_DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out, err


# --- reports ----------------------------------------------------------------------------------


def test_table_of_a_healthy_server(drr_redis_server) -> None:
    with override_settings(CACHES=resilient_caches(drr_redis_server.url)):
        code, out, err = _run()
    assert code == 0
    assert err == ""
    assert f"default  standalone  redis://{_address(drr_redis_server)}/0  OK" in out
    row = next(line for line in out.splitlines() if _address(drr_redis_server) + " " in line)
    assert row.split()[:3] == [_address(drr_redis_server), "primary", "yes"]
    assert "master" in row.split()
    assert "no findings" in out
    assert "this process (" in out
    assert "primary closed" in out
    assert "status: ok (exit 0)" in out


@pytest.mark.chaos
def test_table_of_a_dead_server_lists_findings_and_exits_2(drr_redis_factory) -> None:
    server = drr_redis_factory()
    server.kill()
    with override_settings(CACHES=resilient_caches(server.url)):
        code, out, _ = _run("--timeout", "0.5")
    assert code == 2
    assert "CRITICAL" in out
    row = next(line for line in out.splitlines() if line.strip().startswith(_address(server)))
    assert "no (refused)" in row
    assert "findings:" in out
    assert f"H001 [default] {_address(server)} (primary) is unreachable: refused." in out
    assert "status: critical (exit 2)" in out


def test_json_of_a_healthy_server(drr_redis_server) -> None:
    with override_settings(CACHES=resilient_caches(drr_redis_server.url)):
        code, data = _json()
    assert code == 0
    assert (data["status"], data["exit_code"], data["error"]) == ("ok", 0, None)
    [cache] = data["caches"]
    assert (cache["alias"], cache["topology"], cache["status"]) == ("default", "standalone", "ok")
    node = cache["nodes"][0]
    assert node["address"] == _address(drr_redis_server)
    assert node["reachable"] is True
    assert node["replication"]["role"] == "master"
    assert node["memory"]["used_memory"] > 0
    assert cache["findings"] == []


@pytest.mark.chaos
def test_json_of_a_dead_server_exits_2(drr_redis_factory) -> None:
    server = drr_redis_factory()
    server.kill()
    with override_settings(CACHES=resilient_caches(server.url)):
        code, data = _json("--timeout", "0.5")
    assert code == 2
    assert data["status"] == "critical"
    [finding] = data["caches"][0]["findings"]
    assert (finding["code"], finding["severity"], finding["node"]) == (
        "H001",
        "critical",
        _address(server),
    )


def test_warnings_exit_1(drr_redis_server) -> None:
    health = {"HEALTH": {"SLOW_MS": 0.001}}  # every PING is "slow"
    with (
        override_settings(CACHES=resilient_caches(drr_redis_server.url)),
        override_settings(REDIS_RESILIENCE=health),
    ):
        code, out, _ = _run()
    assert code == 1
    assert "WARNING  H021 [default]" in out
    assert "status: warning (exit 1)" in out


def test_cluster_table_shows_slots(drr_cluster) -> None:
    with override_settings(CACHES=resilient_caches(drr_cluster.location)):
        code, out, _ = _run()
    assert code == 0  # H014 and H017 on loopback are information
    for node in drr_cluster.nodes:
        row = next(line for line in out.splitlines() if line.strip().startswith(_address(node)))
        assert row.split()[-1] in {"5461", "5462"}
    assert "slots served: 16384/16384" in out
    assert "INFO     H017" in out
    assert "INFO     H014" in out
    assert "status: ok (exit 0)" in out


@pytest.mark.chaos
def test_timeout_option_bounds_a_hung_server(drr_redis_factory) -> None:
    server = drr_redis_factory()
    server.hang()
    with override_settings(CACHES=resilient_caches(server.url)):
        started = time.monotonic()
        code, data = _json("--timeout", "0.3")
        elapsed = time.monotonic() - started
    assert code == 2
    assert data["caches"][0]["nodes"][0]["error"] == "timeout"
    assert data["duration_ms"] < 3 * 300
    assert elapsed < 3 * 0.3 + 0.5  # plus the command's own work


@pytest.mark.chaos
def test_alias_selects_caches(drr_redis_server, drr_redis_factory) -> None:
    dead = drr_redis_factory()
    dead.kill()
    configured = {
        "default": {"BACKEND": BACKEND, "LOCATION": dead.url},
        "other": resilient_caches(drr_redis_server.url)["default"],
    }
    with override_settings(CACHES=configured):
        code, out, _ = _run("--alias", "other", "--timeout", "0.5")
        assert code == 0
        assert _address(drr_redis_server) in out
        assert _address(dead) not in out
        code, data = _json("--timeout", "0.5")
        assert code == 2
        assert [c["alias"] for c in data["caches"]] == ["default", "other"]
        code, data = _json("--alias", "default", "--alias", "other", "--timeout", "0.5")
        assert code == 2
        assert [c["status"] for c in data["caches"]] == ["critical", "ok"]


def test_no_color_and_forced_color(drr_cluster) -> None:
    with override_settings(CACHES=resilient_caches(drr_cluster.location)):
        _, coloured, _ = _run(force_color=True)
        _, plain, _ = _run(no_color=True)
    assert "\x1b[" in coloured
    assert "\x1b[" not in plain
    assert "status: ok (exit 0)" in plain


@pytest.mark.chaos
def test_never_prints_a_password(drr_redis_factory) -> None:
    secret, wrong = "s3cret-pass-7781", "wrong-pass-5523"
    server = drr_redis_factory(password=secret)
    dead = drr_redis_factory(password=secret)
    dead.kill()
    configured = {
        "default": resilient_caches(server.url)["default"],
        "wrong": resilient_caches(
            f"redis://:{wrong}@{server.host}:{server.port}/0", BREAKER=FAST_BREAKER
        )["default"],
        "dead": resilient_caches(dead.url, BREAKER=FAST_BREAKER)["default"],
    }
    with override_settings(CACHES=configured):
        for alias in ("wrong", "dead"):  # their breakers open, with the errors they saw
            for _ in range(5):
                caches[alias].get("k")
        table = _run("--timeout", "0.5")
        as_json = _run("--json", "--timeout", "0.5")
    for code, out, err in (table, as_json):
        assert code == 2
        assert _address(server) in out
        assert _address(dead) in out
        assert secret not in out + err
        assert wrong not in out + err
    data = json.loads(as_json[1])
    by_alias = {c["alias"]: c for c in data["caches"]}
    assert by_alias["wrong"]["nodes"][0]["error"] == "auth"
    assert "***" in by_alias["default"]["location"]


# --- exit code 3: could not check --------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--alias", "nope"],
        ["--alias", "local"],
        ["--watch", "0"],
        ["--watch", "-1"],
        ["--watch", "soon"],
        ["--timeout", "0"],
        ["--timeout", "31"],
        ["--bogus"],
    ],
)
def test_usage_problems_exit_3(drr_redis_server, args: list[str]) -> None:
    configured = {
        **resilient_caches(drr_redis_server.url),
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    with override_settings(CACHES=configured):
        _usage_error(*args)


def test_unknown_alias_names_the_known_ones(drr_redis_server) -> None:
    with override_settings(CACHES=resilient_caches(drr_redis_server.url)):
        error = _usage_error("--alias", "nope")
    assert "nope" in str(error)
    assert "default" in str(error)


def test_no_resilient_cache_exits_3() -> None:
    error = _usage_error()  # the test settings have only a local-memory cache
    assert "No ResilientRedisCache" in str(error)


def test_a_report_that_cannot_be_made_exits_3() -> None:
    # Settings changed at run time past validation: the manager cannot be built.
    with override_settings(CACHES=resilient_caches("nonsense://nowhere")):
        error = _usage_error()
    assert str(error).startswith("Could not check:")


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--bogus"], ["--watch", "soon"]])
def test_command_line_usage_error_exits_3(drr_redis_server, args: list[str]) -> None:
    code, _out, err = _finish(_child(*args, location=drr_redis_server.url))
    assert code == 3, err[-400:]
    assert "Traceback" not in err


def test_command_line_exit_code_is_the_reports(drr_redis_server) -> None:
    code, out, _ = _finish(_child("--json", location=drr_redis_server.url))
    assert code == 0
    assert json.loads(out)["caches"][0]["nodes"][0]["address"] == _address(drr_redis_server)


def _reader(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _read_until(lines: queue.Queue[str | None], text: str) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + CHILD_DEADLINE
    while True:
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        assert line is not None, f"output ended before {text!r}: {''.join(seen)}"
        seen.append(line)
        if text in line:
            return seen


@pytest.mark.chaos
def test_watch_reports_until_interrupted_and_exits_with_the_last_code(
    drr_redis_factory,
) -> None:
    server = drr_redis_factory()
    with _child("--watch", "0.2", "--timeout", "0.5", location=server.url) as process:
        try:
            lines = _reader(process)
            _read_until(lines, "status: ok (exit 0)")
            _read_until(lines, "status: ok (exit 0)")  # it reports again
            server.kill()
            _read_until(lines, "status: critical (exit 2)")
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=CHILD_DEADLINE)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.stderr is not None
        err = process.stderr.read()
        while lines.get(timeout=CHILD_DEADLINE) is not None:
            pass  # the reader has seen the end of the output
    assert "Traceback" not in err
    assert code == 2
