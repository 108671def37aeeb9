"""What the soak run saw, and the checks that judge it.

Workers record facts (a read and what its writer expected, a critical section
with its fencing token and its start and end, a rate-limit decision with the
times it was asked and answered); the checks are plain functions over those
records, so ``test_checks.py`` can show that each one catches what it is meant to.

Time is ``time.monotonic()`` throughout: one clock for every thread, task and
chaos action of the process. A decision Redis made happened somewhere between
the moment the request was sent and the moment its answer came back; the
rate-limit checks only flag what is certain whatever that moment was.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

# --- counters --------------------------------------------------------------------------------


class Tally:
    """Counts by name, shared by threads and the event loop's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def total(self, prefix: str = "") -> int:
        with self._lock:
            return sum(n for name, n in self._counts.items() if name.startswith(prefix))

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))


class Errors:
    """Exceptions by place and class; the unexpected ones keep their traceback."""

    def __init__(self) -> None:
        self.expected = Tally()
        self.unexpected = Tally()
        self._lock = threading.Lock()
        self.first_unexpected: list[str] = []

    def expect(self, where: str, exc: BaseException) -> None:
        self.expected.add(f"{where}:{type(exc).__name__}")

    def surprise(self, where: str, exc: BaseException) -> None:
        self.unexpected.add(f"{where}:{type(exc).__name__}")
        with self._lock:
            if len(self.first_unexpected) < 5:
                text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                self.first_unexpected.append(f"{where}: {text[-2500:]}")


# --- locks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One run of the guarded code: the token it held, when it started and ended."""

    token: int
    start: float
    end: float
    who: str
    #: The holder's handle said its lease was lost by the end of the section.
    lost: bool = False


class LockLedger:
    """Critical sections guarded by one lock name, as they really ran.

    ``inside`` counts the holders in the section right now (all of them live in
    this process), so ``max_inside`` is the overlap as it happened, not as
    reconstructed. The section ends with a write to a fenced register, the
    storage the README's fencing example describes: it refuses a token not
    larger than the last one it accepted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sections: list[Section] = []
        self.inside = 0
        self.max_inside = 0
        self.unguarded = 0
        self.fence = 0
        self.fence_refused = 0
        #: Refusals of a holder whose handle did not say it had lost the lease.
        self.refused_while_held = 0

    def enter(self, held: Any) -> float:
        """A holder starts the guarded code; a handle that does not hold the lock is counted."""
        with self._lock:
            self.inside += 1
            self.max_inside = max(self.max_inside, self.inside)
            if not held or held.degraded or not isinstance(held.token, int):
                self.unguarded += 1
            return time.monotonic()

    def leave(self, token: int, start: float, who: str, *, lost: bool = False) -> None:
        end = time.monotonic()
        with self._lock:
            self.inside -= 1
            if token > self.fence:
                self.fence = token
            else:
                self.fence_refused += 1
                self.refused_while_held += not lost
            self.sections.append(Section(token, start, end, who, lost))


def overlaps(sections: Iterable[Section]) -> list[tuple[Section, Section]]:
    """Pairs of sections that ran at the same time (each with the one it overlapped)."""
    found: list[tuple[Section, Section]] = []
    latest: Section | None = None
    for section in sorted(sections, key=lambda s: s.start):
        if latest is not None and section.start < latest.end:
            found.append((latest, section))
        if latest is None or section.end > latest.end:
            latest = section
    return found


def unexplained_overlaps(sections: Iterable[Section]) -> list[tuple[Section, Section]]:
    """Pairs of sections that ran at the same time although the older holder (the smaller
    token) was not told that its lease was lost.

    A lease lock cannot stop a holder that keeps working after its lease ended
    (renewals failed, or Redis forgot the lock); what it promises is that such a
    holder knows (``held.lost``, ``lock_lost``, ``LockLost``) and that its token
    is older, which a fenced resource refuses. Every pair of holders is looked at.
    """
    ordered = sorted(sections, key=lambda s: s.start)
    found: list[tuple[Section, Section]] = []
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if second.start >= first.end:
                break
            older = first if first.token < second.token else second
            if not older.lost or first.token == second.token:
                found.append((first, second))
    return found


def token_disorder(sections: Iterable[Section]) -> list[tuple[Section, Section]]:
    """Consecutive sections (in order of start) whose tokens do not strictly increase."""
    ordered = sorted(sections, key=lambda s: s.start)
    return [(a, b) for a, b in pairwise(ordered) if b.token <= a.token]


# --- cache -----------------------------------------------------------------------------------

#: What a writer stores: (writer, key, sequence number), compared as a whole.
Value = tuple[str, str, int]


@dataclass(frozen=True)
class Write:
    """One write of a key: its value's sequence number (``None``: a delete), when and how long."""

    seq: int | None
    op: str
    at: float
    seconds: float
    breaker_closed_after: bool


@dataclass(frozen=True)
class StaleRead:
    writer: str
    key: str
    expected: Value | None
    got: Any
    at: float
    breaker_closed: bool
    outages_before: int
    #: The key's last writes, oldest first: which one the read went back to, and how it went.
    recent: tuple[Write, ...] = ()
    journal_size: int | None = None


class KeyHistory:
    """One writer's keys and the last value it wrote to each (``None`` after a delete).

    Only this writer writes these keys, so a read may return the last value or
    a miss (evicted, expired, restarted empty, invalidated on recovery), and
    nothing else: anything older is a stale read.
    """

    def __init__(self, writer: str, keys: int) -> None:
        self.writer = writer
        self.keys = [f"{writer}:{i}" for i in range(keys)]
        self.last: dict[str, Value | None] = {}
        self.writes: dict[str, deque[Write]] = {key: deque(maxlen=6) for key in self.keys}
        self._seq = 0
        self.reads = 0
        self.stale: list[StaleRead] = []

    def next_value(self, key: str) -> Value:
        self._seq += 1
        return (self.writer, key, self._seq)

    def wrote(
        self, key: str, value: Value, *, op: str = "set", started: float = 0.0, closed: bool = True
    ) -> None:
        self.last[key] = value
        self._log(key, Write(value[2], op, started, time.monotonic() - started, closed))

    def deleted(self, key: str, *, started: float = 0.0, closed: bool = True) -> None:
        self.last[key] = None
        self._log(key, Write(None, "delete", started, time.monotonic() - started, closed))

    def _log(self, key: str, write: Write) -> None:
        if key in self.writes:
            self.writes[key].append(write)

    def judge(self, key: str, got: Any, *, breaker_closed: bool, outages: int) -> bool:
        """Record a read of ``key``; ``False`` when it returned an outdated or foreign value."""
        self.reads += 1
        if got is None or (key in self.last and got == self.last[key]):
            return True
        recent = tuple(self.writes.get(key, ()))
        self.stale.append(
            StaleRead(
                self.writer,
                key,
                self.last.get(key),
                got,
                time.monotonic(),
                breaker_closed,
                outages,
                recent,
            )
        )
        return False


# --- rate limits -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """An admitted request: asked at ``send``, answered at ``recv``; by Redis or locally."""

    send: float
    recv: float
    degraded: bool


@dataclass
class RateLedger:
    """Decisions of one limit."""

    name: str
    algorithm: str
    count: int
    period: float
    admitted: list[Admission] = field(default_factory=list)
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, send: float, recv: float, *, allowed: bool, degraded: bool) -> None:
        with self._lock:
            if allowed:
                self.admitted.append(Admission(send, recv, degraded))
            else:
                self.refused += 1

    @property
    def interval(self) -> float:
        """GCRA's emission interval T."""
        return self.period / self.count

    def excess(self, admissions: Sequence[Admission]) -> int:
        """The most admissions over the algorithm's bound that one limiter state certainly made."""
        if self.algorithm == "gcra":
            return gcra_excess(admissions, burst=self.count, interval=self.interval)
        return window_count(admissions, self.period) - self.count

    def allowance(self, span: float) -> int:
        """What the algorithm lets one limiter state admit in ``span`` seconds."""
        if self.algorithm == "gcra":
            return self.count + math.floor(span / self.interval)
        return self.count * max(1, math.ceil(span / self.period))


def window_count(admissions: Sequence[Admission], period: float) -> int:
    """The most admissions that certainly fell within one window of ``period`` seconds.

    A set whose answers all came back less than ``period`` after the earliest
    of them was sent was decided within one window, wherever in its round trip
    each decision was made.
    """
    ordered = sorted(admissions, key=lambda a: a.send)
    best = 0
    for i, first in enumerate(ordered):
        edge = first.send + period
        inside = 0
        for later in ordered[i:]:
            if later.send >= edge:
                break
            if later.recv < edge:
                inside += 1
        best = max(best, inside)
    return best


def gcra_excess(admissions: Sequence[Admission], *, burst: int, interval: float) -> int:
    """The most by which a set of admissions certainly beat GCRA's bound.

    GCRA admits any stream at most ``burst + floor(elapsed / interval)`` times,
    ``elapsed`` being the time between the first and the last decision. For a
    set of admissions that time is at most the last answer minus the first
    request, so a set larger than ``burst + floor(that / interval)`` proves
    the bound broken. Returns the largest such surplus (0 or less: within).
    """
    by_answer = sorted(admissions, key=lambda a: a.recv)
    answers = [a.recv for a in by_answer]
    worst = -burst
    for first in admissions:
        n = 0
        # Every member of a set starting with ``first`` was answered after ``first`` was sent.
        for later in by_answer[bisect.bisect_left(answers, first.send) :]:
            if later.send >= first.send:
                n += 1
                worst = max(worst, n - burst - math.floor((later.recv - first.send) / interval))
    return worst
