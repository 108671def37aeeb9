"""The load-and-soak run: mixed traffic while a seeded chaos loop breaks servers and the network.

Two real servers on loopback ports: ``site`` serves the example project, run
as ``manage.py runserver`` in a subprocess and driven by three browsers over
HTTP; ``app`` serves this process's own traffic, threads and asyncio tasks
using the cache, one lock and two rate limits (``_traffic.py``), through a
fault-injecting proxy in this process, so that the network in between can be
slow, silent or reset as well. A chaos loop on the main thread breaks one of
the two at a time: a server (killed, frozen, restarted, its clients
disconnected), or the network in front of ``app`` (``_chaos.py``). When the
time is up every node is whole again; traffic goes on until this process's
breakers have closed and the site says Redis is ``ok``, then stops.

What must hold, whatever the seed:

- no 5xx from the example views, and every request answered;
- no two holders of the lock in its critical section at once, fencing tokens
  increasing in the order the sections ran, and nobody in the section without
  the lock (``on_unavailable`` is ``"raise"`` or ``"skip"``);
- a second lock, held for longer than its lease by the background renewal:
  when a fault outlasts the lease and a second holder comes in, the older
  holder has been told that its lease was lost, and only such a holder is
  refused by the fenced register;
- no stale read: a writer reads back the last value it wrote, or a miss; every
  writer re-reads all its keys after each recovery, and once more at the end;
- rate limits within their documented allowance: each limiter state (one per
  life of the server, and this process's local limiter while Redis is down)
  keeps its algorithm's bound;
- nothing leaks: threads, file descriptors, redis-server processes (the
  proxy is stopped before they are counted, and its thread and sockets with it);
- no call that the contract says never raises raised.

``SOAK_SECONDS`` sets the length (default: a short run for the normal suite;
``SOAK_SECONDS=600 tox -e soak`` for the long one), ``SOAK_SEED`` repeats a
fault schedule. The summary block is printed at the end, and written with the
fault timeline to ``test-artifacts/soak/`` (or ``$DRR_ARTIFACTS/soak/``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import secrets
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.test import override_settings

from django_redis_resilience.connection import get_registry
from django_redis_resilience.testing import RedisServer
from tests._polling import wait_for
from tests.cache.conftest import FAST_BREAKER, resilient_caches
from tests.example_project._site import ROOT, Browser, Runserver, project_env, redis_processes
from tests.soak._chaos import NETWORK_KINDS, Chaos, Node
from tests.soak._http import SiteLedger, site_threads
from tests.soak._ledger import (
    Admission,
    RateLedger,
    StaleRead,
    overlaps,
    token_disorder,
    unexplained_overlaps,
)
from tests.soak._traffic import LEASE, Soak, breakers_closed, workers

#: The normal suite's run: about half a minute of chaos, under a minute in all.
DEFAULT_SECONDS = 30.0
SECONDS = max(5.0, float(os.environ.get("SOAK_SECONDS") or DEFAULT_SECONDS))
#: Calls to a frozen or dead server give up quickly: a fault costs a fraction of a second.
TIMEOUTS = {"SOCKET_TIMEOUT": 0.25, "SOCKET_CONNECT_TIMEOUT": 0.25}
#: After the last fault: how long recovery may take, and how long traffic then goes on.
RECOVERY_BOUND = 30.0
AFTER_RECOVERY = 1.5
ARTIFACTS = Path(os.environ.get("DRR_ARTIFACTS", ROOT / "test-artifacts")) / "soak"


def _seed() -> int:
    given = os.environ.get("SOAK_SEED")
    return int(given) if given else secrets.randbelow(2**32)


def _fds() -> Counter[str]:
    """This process's open file descriptors by kind (``/proc/self/fd``)."""
    kinds: Counter[str] = Counter()
    for entry in os.scandir("/proc/self/fd"):
        try:
            target = os.readlink(entry.path)
        except OSError:  # the directory's own descriptor, closed meanwhile
            continue
        kinds[target.split(":", 1)[0] if ":" in target else "file"] += 1
    kinds["all"] = sum(kinds.values())
    return kinds


def _site_says_ok(browser: Browser) -> bool:
    try:
        answer = browser.get("/redis/health/")
    except OSError:
        return False
    return answer.status == 200 and json.loads(answer.body)["redis"] == "ok"


def _states(ledger: RateLedger, node: Node) -> dict[str, list[Admission]]:
    """Admissions by limiter state: each life of the node, and the local limiter.

    A decision that could have come from two lives (its round trip spans a
    restart) counts in both: the check can only get stricter for it.
    """
    states: dict[str, list[Admission]] = {}
    for admission in ledger.admitted:
        if admission.degraded:
            states.setdefault("local", []).append(admission)
            continue
        lives = node.lives_during(admission.send, admission.recv) or [-1]
        for life in lives:
            states.setdefault(f"life {life}" if life >= 0 else "no life", []).append(admission)
    return states


def _judge_limit(ledger: RateLedger, node: Node, until: float) -> dict[str, Any]:
    """Per limiter state: admitted, the most over the algorithm's bound (must be <= 0), and
    the allowance (a life's span until it died or traffic stopped; the local limiter's from
    its first to its last admission)."""
    per_state: dict[str, dict[str, Any]] = {}
    for name, admitted in _states(ledger, node).items():
        if name.startswith("life "):
            life = node.lives[int(name.split()[1])]
            span = min(life.died_by, until) - life.born_after
        else:
            span = max(a.recv for a in admitted) - min(a.send for a in admitted)
        per_state[name] = {
            "admitted": len(admitted),
            "allowance": ledger.allowance(span),
            "span": round(span, 2),
            "excess": ledger.excess(admitted),
        }
    return {
        "admitted": len(ledger.admitted),
        "by redis": sum(not a.degraded for a in ledger.admitted),
        "local": sum(a.degraded for a in ledger.admitted),
        "refused": ledger.refused,
        "allowance": sum(state["allowance"] for state in per_state.values()),
        "states": len(per_state),
        "max excess": max((state["excess"] for state in per_state.values()), default=0),
        "orphans": per_state.get("no life", {}).get("admitted", 0),
        "per state": per_state,
    }


def _describe(read: StaleRead, since: float) -> str:
    """A stale read with the key's last writes (times in seconds since the chaos began)."""
    got = read.got[2] if isinstance(read.got, tuple) else read.got
    last = read.expected[2] if read.expected else "deleted"
    writes = "; ".join(
        f"{'delete' if w.seq is None else w.seq} {w.op} at {w.at - since:.2f} s "
        f"took {w.seconds:.3f} s{'' if w.breaker_closed_after else ' (breaker open after)'}"
        for w in read.recent
    )
    return (
        f"{read.key} at {read.at - since:.2f} s read {got}, last written {last} "
        f"(breaker {'closed' if read.breaker_closed else 'open'}, journal {read.journal_size}); "
        f"its last writes: {writes}"
    )


def _counts(counter: dict[str, int] | Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items()) if n) or "none"


def _faults(node: str, kinds: Counter[str]) -> str:
    """A node's faults by kind, the network's apart from the server's."""
    server = Counter({kind: n for kind, n in kinds.items() if kind not in NETWORK_KINDS})
    network = Counter({kind: n for kind, n in kinds.items() if kind in NETWORK_KINDS})
    return f"{node}: {_counts(server)}" + (f" (network: {_counts(network)})" if network else "")


@pytest.mark.soak
@pytest.mark.chaos
@pytest.mark.timeout(int(SECONDS) + 300)
def test_soak_under_chaos(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    transactional_db: None,
) -> None:
    """The degradation events the breakers send are written to the test database too."""
    caplog.set_level(logging.WARNING, logger="django_redis_resilience")
    seed = _seed()
    with capsys.disabled():
        print(f"\nsoak: {SECONDS:g} s of chaos, seed {seed} (SOAK_SEED={seed} repeats it)")
    began = time.monotonic()
    threads_before = set(threading.enumerate())
    fds_before = _fds()
    soak = Soak(seed)
    site_ledger = SiteLedger()
    app = Node("app", RedisServer(), proxied=True)
    site = Node("site", RedisServer())
    chaos = Chaos([app, site], seed=seed, lease=LEASE)
    running: list[threading.Thread] = []
    recovered = site_recovered = False
    chaos_until = traffic_until = began

    with contextlib.ExitStack() as stack:
        stack.callback(site.stop)
        stack.callback(app.stop)
        app.start()
        site.start()
        env = project_env(tmp_path, REDIS_URL=site.server.url)
        project = Runserver(tmp_path, env=env)
        stack.callback(project.close)
        config = resilient_caches(app.url, **TIMEOUTS, BREAKER=FAST_BREAKER)  # via the proxy
        stack.enter_context(override_settings(CACHES=config))
        soak.listen()
        stack.callback(soak.unlisten)
        project.wait_until_serving()

        def stop_traffic() -> None:
            soak.stop.set()
            for thread in running:
                thread.join(timeout=30)

        stack.callback(stop_traffic)
        running += workers(soak)
        running += site_threads(project.base, site_ledger, soak.stop, soak.rng)
        for thread in running:
            thread.start()

        chaos.started = time.monotonic()
        chaos.run(until=chaos.started + SECONDS)
        chaos_until = time.monotonic()
        # Every node is whole: wait for the breakers here and in the site, then keep going.
        recovered = wait_for(breakers_closed, timeout=RECOVERY_BOUND, step=0.05)
        site_recovered = wait_for(
            lambda: _site_says_ok(Browser(project.base)), timeout=RECOVERY_BOUND, step=0.1
        )
        time.sleep(AFTER_RECOVERY)
        stop_traffic()
        traffic_until = time.monotonic()
        stuck = [thread.name for thread in running if thread.is_alive()]
        # One more look at every key, from here, now that every breaker is closed.
        for history in soak.histories:
            for key in history.keys:
                history.judge(
                    key,
                    caches["default"].get(key),
                    breaker_closed=breakers_closed(),
                    outages=soak.outages,
                )
        project.close()
        site_log = project.output

    # --- leaks -------------------------------------------------------------------------------
    ours = app.pids | site.pids
    redis_left = wait_for(lambda: not ours & redis_processes(), timeout=10)
    scheduler = get_registry().scheduler.thread  # the process's one background thread

    def new_threads() -> list[str]:
        alive = set(threading.enumerate()) - threads_before - {scheduler}
        return sorted(thread.name for thread in alive)

    threads_gone = wait_for(lambda: not new_threads(), timeout=10)
    gc.collect()
    fds_gone = wait_for(
        lambda: _fds()["socket"] <= fds_before["socket"] and _fds()["all"] <= fds_before["all"],
        timeout=10,
    )
    fds_after = _fds()

    # --- figures -----------------------------------------------------------------------------
    sections = soak.locks.sections
    overlapping = overlaps(sections)
    disorder = token_disorder(sections)
    renewed = soak.renewed.sections
    renewed_overlaps = overlaps(renewed)
    unexplained = unexplained_overlaps(renewed)
    stale = [read for history in soak.histories for read in history.stale]
    reads = sum(history.reads for history in soak.histories)
    limits = {name: _judge_limit(ledger, app, traffic_until) for name, ledger in soak.rates.items()}
    api = _judge_limit(site_ledger.api, site, traffic_until)
    faults = chaos.counts()
    proxied = app.proxy.total_connections if app.proxy is not None else 0
    ops = soak.ops.snapshot()
    elapsed = time.monotonic() - began
    lock_attempts = ops.get("lock.attempt", 0)
    tracebacks = site_log.count("Traceback (most recent call last)")
    logged = Counter(record.levelname for record in caplog.records)
    app_errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    lines = [
        "===== soak summary =====",
        f"seed                  {seed}",
        f"duration              chaos {chaos_until - chaos.started:.1f} s, test {elapsed:.1f} s",
        "faults                "
        + "; ".join(_faults(node, kinds) for node, kinds in faults.items()),
        f"proxy (app)           connections {proxied}, reset by chaos {chaos.resets}",
        f"outages (this proc.)  breaker opened {soak.outages}, closed {soak.recoveries}, "
        f"keys invalidated on recovery {soak.invalidated}",
        f"http requests         {site_ledger.requests.total()} "
        f"(status {_counts(site_ledger.statuses.snapshot())}; slowest "
        f"{site_ledger.slowest:.2f} s)",
        f"http no answer        {_counts(site_ledger.transport.snapshot())}",
        f"site 5xx              {site_ledger.five_xx}",
        f"site job              {_counts(site_ledger.jobs.snapshot())}",
        f"site /api/ gcra 5/m   admitted {api['admitted']} (redis {api['by redis']}, "
        f"local {api['local']}), refused {api['refused']}, allowance {api['allowance']} "
        f"over {api['states']} limiter states, max excess {api['max excess']}",
        f"site tracebacks       {tracebacks}",
        f"app log (this proc.)  {_counts(logged)}",
        f"cache ops             {_counts({k[6:]: v for k, v in ops.items() if k[:6] == 'cache.'})}",
        f"cache reads checked   {reads}, stale {len(stale)}",
        f"lock                  attempts {lock_attempts}, acquisitions {len(sections)}, "
        f"skipped busy {ops.get('lock.skipped_busy', 0)}, skipped unavailable "
        f"{ops.get('lock.skipped_unavailable', 0)}",
        f"lock safety           max overlap {soak.locks.max_inside - 1 if sections else 0}, "
        f"overlapping pairs {len(overlapping)}, token order violations {len(disorder)}, "
        f"fence refusals {soak.locks.fence_refused}, unguarded runs {soak.locks.unguarded}",
        f"renewed lock          acquisitions {len(renewed)} ({ops.get('renewed.held', 0)} held "
        f"throughout, {ops.get('renewed.lost', 0)} lost), skipped "
        f"{ops.get('renewed.skipped', 0)}; overlapping pairs {len(renewed_overlaps)}, "
        f"unexplained {len(unexplained)}; fence refusals {soak.renewed.fence_refused} "
        f"(of holders not told: {soak.renewed.refused_while_held}), "
        f"unguarded runs {soak.renewed.unguarded}",
    ]
    for name, figures in limits.items():
        lines.append(
            f"rate {name:<19} admitted {figures['admitted']} (redis {figures['by redis']}, "
            f"local {figures['local']}), refused {figures['refused']}, allowance "
            f"{figures['allowance']} over {figures['states']} limiter states, "
            f"max excess {figures['max excess']}"
        )
    lines += [
        f"errors (expected)     {_counts(soak.errors.expected.snapshot())}",
        f"errors (unexpected)   {_counts(soak.errors.unexpected.snapshot())}",
        f"leaks                 threads {new_threads() or 0}, sockets "
        f"{fds_after['socket'] - fds_before['socket']:+d}, fds "
        f"{fds_after['all'] - fds_before['all']:+d}, "
        f"redis-server {sorted(ours & redis_processes()) or 0}",
        "========================",
    ]
    stale_lines = [_describe(read, chaos.started) for read in stale]
    lines[-1:-1] = [f"stale read            {line}" for line in stale_lines[:3]]
    summary = "\n".join(lines)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"soak-{seed}.txt").write_text(
        summary
        + "\n\nfault timeline (seconds after the chaos began, node, fault, how long it took):\n"
        + "\n".join(
            f"{f.at:8.2f} {f.node:<5} {f.kind:<13} {f.seconds:.2f} {f.detail}".rstrip()
            for f in chaos.faults
        )
        + "\n\nstale reads:\n"
        + ("\n".join(stale_lines) or "none")
        + "\n\nrate limits by limiter state:\n"
        + json.dumps({**limits, "site /api/": api}, indent=1)
        + "\n"
    )
    with capsys.disabled():
        print("\n" + summary)

    # --- verdict -----------------------------------------------------------------------------
    assert recovered, "this process's breakers did not close after the last fault"
    assert site_recovered, f"the site never said Redis is ok again:\n{site_log[-3000:]}"
    assert stuck == [], f"workers that did not stop: {stuck}"
    assert chaos.faults, "the chaos loop injected no fault"
    assert site_ledger.five_xx == 0, site_ledger.failures
    assert site_ledger.transport.total() == 0, site_ledger.failures
    assert soak.errors.unexpected.total() == 0, "\n".join(soak.errors.first_unexpected)
    assert tracebacks == 0, site_log[max(0, site_log.find("Traceback") - 2000) :][:6000]
    assert app_errors == [], app_errors[:5]
    assert sections, "nobody ever held the lock"
    assert reads > 0
    assert all(f["admitted"] for f in limits.values()), limits
    assert soak.locks.unguarded == 0
    assert soak.locks.max_inside == 1, overlapping[:5]
    assert overlapping == [], overlapping[:5]
    assert disorder == [], disorder[:5]
    assert soak.locks.fence_refused == 0
    # The renewed lock: held beyond its lease only by renewal. A fault that outlasts the
    # lease may let a second holder in; the older one must have been told, and only it
    # may be refused by the fenced register.
    assert renewed, "nobody ever held the renewed lock"
    assert ops.get("renewed.held", 0) > 0, "no section was carried through by renewal"
    assert unexplained == [], unexplained[:5]
    assert soak.renewed.refused_while_held == 0
    assert soak.renewed.unguarded == 0
    assert stale == [], "\n".join(stale_lines[:10])
    for name, figures in {**limits, "site /api/": api}.items():
        assert figures["max excess"] <= 0, (name, figures)
        assert figures["orphans"] == 0, (name, figures)
        assert figures["admitted"] <= figures["allowance"], (name, figures)
    assert redis_left, f"redis-server processes left: {sorted(ours & redis_processes())}"
    assert threads_gone, f"threads left: {new_threads()}"
    assert fds_gone, f"descriptors before {dict(fds_before)}, after {dict(fds_after)}"
