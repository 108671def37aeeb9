"""Browsers on the example project: its pages, its rate-limited API and its locked job.

The project runs as ``manage.py runserver`` in a subprocess (``Runserver``), on
a Redis node the chaos loop breaks. Every answer is counted by path and
status; a 5xx from an example view, or a request that got no answer at all,
is kept with its body for the report. ``/redis/health/redis/`` is the one
page that answers 503 by contract (a critical node, for monitoring), so its
503s are counted apart.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.example_project._site import Browser, Response
from tests.soak._ledger import RateLedger, Tally

#: Paths and how often each is asked for; ``POST /job/`` runs the job once or twice at once.
PAGES: tuple[tuple[str, int], ...] = (
    ("/", 2),
    ("/cached/", 2),
    ("/expensive/", 2),
    ("/expensive/async/", 2),
    ("/expensive/?stampede=1", 1),
    ("/expensive/async/?stampede=1", 1),
    ("/api/", 5),
    ("/pulse/", 2),
    ("/job/", 1),
    ("POST /job/", 1),
    ("/redis/health/", 1),
    ("/redis/health/redis/", 1),
)
#: The one page whose 503 is its contract (a critical node), not a failure.
MONITORING = "/redis/health/redis/"
#: The example API's limit: ``@ratelimit(key="ip", rate="5/m")``, GCRA.
API_COUNT, API_PERIOD = 5, 60.0
_TOKEN = re.compile(r"under the lock, fencing token (\d+)")


@dataclass
class SiteLedger:
    """What the browsers saw."""

    requests: Tally = field(default_factory=Tally)
    statuses: Tally = field(default_factory=Tally)
    jobs: Tally = field(default_factory=Tally)
    failures: list[str] = field(default_factory=list)
    transport: Tally = field(default_factory=Tally)
    api: RateLedger = field(
        default_factory=lambda: RateLedger("site /api/ gcra 5/m", "gcra", API_COUNT, API_PERIOD)
    )
    slowest: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, text: str) -> None:
        with self._lock:
            if len(self.failures) < 10:
                self.failures.append(text)

    def answered(self, path: str, response: Response) -> None:
        self.requests.add(path)
        self.statuses.add(str(response.status))
        with self._lock:
            self.slowest = max(self.slowest, response.seconds)
        if response.status >= 500 and not (path == MONITORING and response.status == 503):
            self.statuses.add("5xx from an example view")
            self.failed(f"{path} -> {response.status}: {response.body[:1500]}")

    @property
    def five_xx(self) -> int:
        return self.statuses["5xx from an example view"]


class SiteUser:
    """One browser (its own cookies) going through the pages at random."""

    def __init__(self, base: str, ledger: SiteLedger, rng: random.Random) -> None:
        self.browser = Browser(base)
        self.ledger = ledger
        self.rng = rng
        self._has_csrf_cookie = False

    def step(self) -> None:
        paths, weights = zip(*PAGES, strict=True)
        path = self.rng.choices(paths, weights)[0]
        if path == "POST /job/" and not self._has_csrf_cookie:
            path = "/job/"  # the form's page sets the CSRF cookie a POST needs
        sent = time.monotonic()
        try:
            response = self._ask(path)
        except OSError as exc:  # no answer at all: refused, reset, timed out
            self.ledger.requests.add(path)
            self.ledger.transport.add(type(exc).__name__)
            self.ledger.failed(f"{path}: no answer: {exc!r}")
            return
        answered = time.monotonic()
        self.ledger.answered(path, response)
        if path == "/job/" and response.status == 200:
            self._has_csrf_cookie = True
        if path == "POST /job/" and response.status == 200:
            self._job_outcome(response.body)
        if path == "/api/" and response.status in (200, 429):
            self._api(response, sent, answered)

    def _ask(self, path: str) -> Response:
        if path == "POST /job/":
            return self.browser.post("/job/", {"runs": self.rng.choice(["1", "2"])})
        return self.browser.get(path)

    def _job_outcome(self, body: str) -> None:
        jobs = self.ledger.jobs
        for _ in _TOKEN.finditer(body):
            jobs.add("ran under the lock")
        jobs.add("skipped, lock busy", body.count("Skipped: another run holds the lock."))
        jobs.add("skipped, Redis unavailable", body.count("Skipped: Redis is unavailable"))

    def _api(self, response: Response, sent: float, answered: float) -> None:
        """Admitted calls answer 200 with ``degraded`` in the body; refused ones 429."""
        if response.status == 429:
            self.ledger.api.record(sent, answered, allowed=False, degraded=False)
            return
        degraded = bool(json.loads(response.body)["degraded"])
        self.ledger.api.record(sent, answered, allowed=True, degraded=degraded)


def site_threads(
    base: str, ledger: SiteLedger, stop: threading.Event, rng: Callable[[str], random.Random]
) -> list[threading.Thread]:
    """Three browsers, each on a thread of its own."""

    def run(user: SiteUser) -> None:
        while not stop.is_set():
            try:
                user.step()
            except Exception as exc:  # a bug in the browser itself: report it, keep going
                ledger.transport.add(f"browser {type(exc).__name__}")
                ledger.failed(f"browser: {exc!r}")
            time.sleep(user.rng.uniform(0.01, 0.05))

    return [
        threading.Thread(
            target=run,
            args=(SiteUser(base, ledger, rng(f"browser-{n}")),),
            name=f"soak-browser-{n}",
            daemon=True,
        )
        for n in range(3)
    ]
