"""Real Redis incidents replayed against the example project, as its users would live them.

The site runs as a developer runs it (``manage.py runserver`` in a subprocess,
``REDIS_URL`` in its environment) and is used over HTTP; the servers are the
harness's real ``redis-server`` processes, broken while requests keep coming.
What the users saw is collected by :class:`Traffic`; what Redis saw is read
with a direct client (``INFO commandstats``, the keys themselves).
"""

from __future__ import annotations

import functools
import http.client
import json
import pickle
import runpy
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import global_settings

from django_redis_resilience.testing import RedisServer
from tests._polling import wait_for
from tests.example_project._site import ROOT, Browser, Response, Runserver, project_env

#: The bearer token monitoring uses to read the health endpoints' details.
TOKEN = "incident-monitoring-token-0123456789"
#: Every page of the example site that uses Redis, read with GET.
PAGES = ("/", "/cached/", "/expensive/", "/expensive/async/", "/pulse/", "/job/")
#: Pages whose Redis commands are all idempotent (GET and SET): safe to retry on any
#: connection failure, so none of them may ever be served by the fallback because a
#: pooled connection was dead. And the health endpoint, which reads the breakers.
CACHE_PAGES = ("/pulse/", "/expensive/", "/cached/", "/expensive/async/", "/redis/health/")
#: The cache key of ``/expensive/`` (Django's ``make_key``: no prefix, version 1).
EXPENSIVE_KEY = ":1:example:expensive"
#: The strings the job page shows for each documented outcome of its lock.
JOB_RAN = "under the lock, fencing token"
JOB_BUSY = "Skipped: another run holds the lock."
JOB_UNAVAILABLE = "Skipped: Redis is unavailable, so the lock could not be taken."


@contextmanager
def example_site(tmp_path: Path, redis_url: str, **env: str) -> Iterator[Runserver]:
    """The example project under ``runserver`` on ``redis_url``, stopped whatever happens.

    ``REDIS_URL`` is set here, after :func:`project_env`, which drops any it is given.
    """
    environment = {
        **project_env(tmp_path),
        "REDIS_URL": redis_url,
        "DRR_HEALTH_TOKEN": TOKEN,
        **env,
    }
    site = Runserver(tmp_path, env=environment)
    try:
        site.wait_until_serving()
        yield site
    finally:
        site.close()


def tail(site: Runserver, lines: int = 60) -> str:
    """The end of the site's output (tracebacks of 500s), for assertion messages."""
    return "\n".join(site.output.splitlines()[-lines:])


def redis_state(browser: Browser) -> str:
    """``redis`` from ``/redis/health/``, which must answer 200 whatever Redis does."""
    answer = browser.get("/redis/health/")
    assert answer.status == 200, answer
    return str(json.loads(answer.body)["redis"])


def monitor(base: str, path: str) -> tuple[int, dict[str, Any]]:
    """GET ``path`` as monitoring does, with the bearer token: (status, JSON body)."""
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def fresh_report(base: str, *, newer_than: float, timeout: float = 10.0) -> dict[str, Any]:
    """The probe report with details, made after ``newer_than`` (``time.time()``): the
    endpoint caches it for a few seconds, and counters read before then would be stale."""
    found: dict[str, Any] = {}

    def made_since() -> bool:
        _, body = monitor(base, "/redis/health/redis/")
        found.update(body)
        made = body.get("generated_at")  # ISO 8601, UTC
        return made is not None and datetime.fromisoformat(made).timestamp() >= newer_than

    assert wait_for(made_since, timeout=timeout, step=0.2), found
    return found


def client_view(report: dict[str, Any], alias: str = "default") -> dict[str, Any]:
    """The site process's own view (breakers, counters) of one cache in a report."""
    (cache,) = [c for c in report["caches"] if c["alias"] == alias]
    client: dict[str, Any] = cache["client"]
    return client


def command_calls(server: RedisServer) -> dict[str, int]:
    """How often the server ran each command since it started (``INFO commandstats``)."""
    with server.client() as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}


def stored(server: RedisServer, key: str) -> Any:
    """A cache value as Redis holds it (the example uses the default pickle serializer),
    or ``None``. Only for servers the test started itself: unpickling runs code."""
    with server.client() as client:
        raw = client.get(key)
    return None if raw is None else pickle.loads(raw)


def computed_at(page: Response) -> str:
    """The "Value computed at" time that ``/expensive/`` shows, ``HH:MM:SS``."""
    marker = "<th>Value computed at</th><td>"
    assert marker in page.body, page.body
    return page.body.split(marker, 1)[1][:8]


@functools.cache
def _site_zone() -> ZoneInfo:
    """The zone the site shows times in: its ``TIME_ZONE``, else Django's default."""
    settings = runpy.run_path(str(ROOT / "example_project" / "example_project" / "settings.py"))
    return ZoneInfo(settings.get("TIME_ZONE", global_settings.TIME_ZONE))


def as_shown(moment: datetime) -> str:
    """``moment`` as the site's templates show a time, ``HH:MM:SS``."""
    return moment.astimezone(_site_zone()).strftime("%H:%M:%S")


# --- traffic -----------------------------------------------------------------------------

Step = Callable[[Browser], Response]


def get(path: str) -> tuple[str, Step]:
    return path, lambda browser: browser.get(path)


def post_job(runs: int = 1) -> tuple[str, Step]:
    """Run the job (the browser must have visited ``/job/`` for the CSRF cookie)."""
    return f"POST /job/ x{runs}", lambda browser: browser.post("/job/", {"runs": str(runs)})


@dataclass
class Outcome:
    """One request as its user lived it."""

    step: str
    #: ``None`` when no HTTP answer came at all (refused, reset, timed out).
    status: int | None
    error: str
    seconds: float
    body: str
    #: When it was sent (``time.monotonic()``).
    at: float

    @property
    def failed(self) -> bool:
        return self.status is None or self.status >= 500


class Traffic:
    """A user who keeps clicking through ``steps`` in a loop, on a thread of their own.

    Every answer is kept; a request that got no HTTP answer at all is kept too,
    with the error, so that "no request failed" covers the site's process and
    not only its status codes.
    """

    def __init__(
        self,
        base: str,
        steps: Sequence[tuple[str, Step]],
        *,
        prepare: str = "",
        pause: float = 0.0,
    ) -> None:
        self.browser = Browser(base)
        self.steps = list(steps)
        self.outcomes: list[Outcome] = []
        self._prepare = prepare
        self._pause = pause
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="incident-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        if self._prepare:
            self.browser.get(self._prepare)  # e.g. the CSRF cookie for the job's form
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the traffic thread did not stop"

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, step in self.steps:
                if self._stop.is_set():
                    return
                self.outcomes.append(self._one(name, step))
                self._stop.wait(self._pause)

    def _one(self, name: str, step: Step) -> Outcome:
        started = time.monotonic()
        try:
            answer = step(self.browser)
        except (OSError, http.client.HTTPException) as exc:
            return Outcome(name, None, repr(exc), time.monotonic() - started, "", started)
        return Outcome(name, answer.status, "", answer.seconds, answer.body, started)

    def wait_for_more(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` more requests have been answered (the incident meets traffic)."""
        target = len(self.outcomes) + count
        assert wait_for(lambda: len(self.outcomes) >= target, timeout=timeout, step=0.01), (
            f"only {len(self.outcomes)} requests of {target} in {timeout}s"
        )

    def failures(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.failed]

    def of(self, step: str) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if outcome.step == step]
