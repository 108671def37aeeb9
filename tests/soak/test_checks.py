"""The soak run's checks catch what they are meant to, and pass what they must pass.

A check that cannot fail proves nothing: each one is shown a record that
breaks its property (by one request, by one microsecond) and one that only
just keeps it. No Redis here; these run in milliseconds.
"""

from __future__ import annotations

import pytest

from django_redis_resilience.testing import FaultProxy, free_port
from tests.soak._chaos import NETWORK_KINDS, SERVER_KINDS, Chaos, Life, Node
from tests.soak._ledger import (
    Admission,
    KeyHistory,
    LockLedger,
    RateLedger,
    Section,
    gcra_excess,
    overlaps,
    token_disorder,
    unexplained_overlaps,
    window_count,
)


class _Held:
    """What the ledger reads of a lock handle: truth, ``token`` and ``degraded``."""

    def __init__(self, token: int | None, *, acquired: bool = True, degraded: bool = False):
        self.token = token
        self.degraded = degraded
        self._acquired = acquired

    def __bool__(self) -> bool:
        return self._acquired


# --- locks ------------------------------------------------------------------------------------


def test_back_to_back_sections_do_not_overlap() -> None:
    sections = [Section(1, 0.0, 1.0, "a"), Section(2, 1.0, 2.0, "b"), Section(3, 2.5, 3.0, "a")]
    assert overlaps(sections) == []
    assert token_disorder(sections) == []


def test_a_section_starting_before_the_last_one_ended_overlaps() -> None:
    long = Section(1, 0.0, 5.0, "a")
    sections = [long, Section(2, 1.0, 2.0, "b"), Section(3, 4.9, 6.0, "c")]
    # The third overlaps the first, although the second ended long before it started.
    assert overlaps(sections) == [(long, sections[1]), (long, sections[2])]


def test_tokens_must_increase_in_the_order_sections_ran() -> None:
    early, late = Section(7, 0.0, 1.0, "a"), Section(5, 2.0, 3.0, "b")
    assert token_disorder([late, early]) == [(early, late)]
    assert token_disorder([Section(5, 0.0, 1.0, "a"), Section(5, 2.0, 3.0, "b")]) != []


def test_the_ledger_sees_two_holders_inside_at_once_and_refuses_an_old_token() -> None:
    ledger = LockLedger()
    first = ledger.enter(_Held(10))
    second = ledger.enter(_Held(9))
    ledger.leave(9, second, "b")
    ledger.leave(10, first, "a")
    assert ledger.max_inside == 2
    assert ledger.fence == 10
    assert ledger.fence_refused == 0  # 9 came first, then 10: in order at the fence
    again = ledger.enter(_Held(8))
    ledger.leave(8, again, "c")
    assert ledger.fence_refused == 1


def test_an_overlap_is_explained_only_by_the_older_holder_being_told() -> None:
    told = Section(4, 0.0, 3.0, "a", lost=True)
    newer = Section(5, 2.0, 4.0, "b")
    assert unexplained_overlaps([told, newer]) == []
    # The newer holder having been told does not explain it: the older one kept the lease.
    untold = Section(4, 0.0, 3.0, "a")
    assert unexplained_overlaps([untold, Section(5, 2.0, 4.0, "b", lost=True)]) != []
    # Judged by token, not by who entered first.
    late_old = Section(3, 2.5, 3.5, "c", lost=True)
    assert unexplained_overlaps([Section(6, 2.0, 4.0, "d"), late_old]) == []
    # Every pair counts, also one the sweep in ``overlaps`` would pair with another.
    long = Section(1, 0.0, 9.0, "e", lost=True)
    assert unexplained_overlaps([long, Section(2, 1.0, 8.0, "f"), Section(3, 2.0, 3.0, "g")])
    assert not unexplained_overlaps([Section(7, 0.0, 1.0, "h"), Section(8, 1.0, 2.0, "i")])


def test_only_a_holder_not_told_is_counted_when_refused() -> None:
    ledger = LockLedger()
    ledger.leave(9, ledger.enter(_Held(9)), "a")
    ledger.leave(8, ledger.enter(_Held(8)), "b", lost=True)
    assert (ledger.fence_refused, ledger.refused_while_held) == (1, 0)
    ledger.leave(7, ledger.enter(_Held(7)), "c")
    assert (ledger.fence_refused, ledger.refused_while_held) == (2, 1)


@pytest.mark.parametrize(
    "held",
    [_Held(None, acquired=False), _Held(None, acquired=False, degraded=True), _Held(None)],
    ids=["skipped", "degraded", "no token"],
)
def test_entering_without_holding_the_lock_is_counted(held: _Held) -> None:
    ledger = LockLedger()
    ledger.leave(1, ledger.enter(held), "a")
    assert ledger.unguarded == 1


# --- cache ------------------------------------------------------------------------------------


def test_a_writer_may_read_its_last_value_or_a_miss_and_nothing_older() -> None:
    history = KeyHistory("w", 2)
    key = history.keys[0]
    first = history.next_value(key)
    history.wrote(key, first)
    second = history.next_value(key)
    history.wrote(key, second)
    assert history.judge(key, second, breaker_closed=True, outages=0)
    assert history.judge(key, None, breaker_closed=True, outages=0)
    assert not history.judge(key, first, breaker_closed=True, outages=1)
    history.deleted(key)
    assert not history.judge(key, second, breaker_closed=True, outages=1)
    assert not history.judge(
        history.keys[1], ("w", history.keys[1], 99), breaker_closed=True, outages=1
    )
    assert [read.got for read in history.stale] == [first, second, ("w", history.keys[1], 99)]
    assert history.reads == 5


# --- rate limits ------------------------------------------------------------------------------


def _instant(times: list[float], degraded: bool = False) -> list[Admission]:
    return [Admission(t, t, degraded) for t in times]


def test_sliding_window_counts_only_what_certainly_fell_in_one_window() -> None:
    # Three admissions 0.3 s apart fit in one second...
    assert window_count(_instant([0.0, 0.3, 0.6]), 1.0) == 3
    # ...and a round trip that ended after the window's end may have been decided after it.
    assert window_count([*_instant([0.0, 0.3]), Admission(0.6, 1.2, False)], 1.0) == 2
    assert window_count(_instant([0.0, 1.0, 2.0]), 1.0) == 1


def test_sliding_window_excess_is_positive_one_over_the_count() -> None:
    ledger = RateLedger("sw", "sliding_window", 3, 1.0)
    assert ledger.excess(_instant([0.0, 0.2, 0.4, 1.0, 1.2, 1.4])) == 0
    assert ledger.excess(_instant([0.0, 0.2, 0.4, 0.999])) == 1


def test_gcra_bound_is_burst_plus_one_per_interval() -> None:
    # burst 3, one more every second: 3 at once, then one per second keeps the bound exactly.
    assert gcra_excess(_instant([0.0, 0.0, 0.0, 1.0, 2.0, 3.0]), burst=3, interval=1.0) == 0
    # One more a microsecond early breaks it by one.
    assert gcra_excess(_instant([0.0, 0.0, 0.0, 1.0, 2.0, 2.999999]), burst=3, interval=1.0) == 1
    # Four at once with a burst of three.
    assert gcra_excess(_instant([5.0] * 4), burst=3, interval=1.0) == 1
    # A slow answer gives the decision room: it may have been made a second later.
    slow = [*_instant([0.0, 0.0, 0.0]), Admission(0.0, 1.0, False)]
    assert gcra_excess(slow, burst=3, interval=1.0) == 0


def test_allowance_over_a_span() -> None:
    assert RateLedger("g", "gcra", 10, 1.0).allowance(2.05) == 10 + 20
    assert RateLedger("s", "sliding_window", 15, 1.0).allowance(2.05) == 45
    assert RateLedger("s", "sliding_window", 15, 1.0).allowance(0.1) == 15


# --- lives of a node ----------------------------------------------------------------------------


def test_a_decision_belongs_to_the_lives_its_round_trip_overlapped() -> None:
    node = Node("n", server=None)  # type: ignore[arg-type]
    node.lives = [Life(0.0, 10.0), Life(10.5, 20.0), Life(21.0)]
    assert node.lives_during(1.0, 1.1) == [0]
    assert node.lives_during(9.9, 10.6) == [0, 1]  # sent before the kill, answered after a start
    assert node.lives_during(10.1, 10.4) == []  # while nothing ran
    assert node.lives_during(25.0, 25.1) == [2]


def test_a_network_fault_is_no_new_life() -> None:
    """The proxy delays, drops or cuts bytes; the server behind it lives on, with its state.

    So a decision Redis made during one still belongs to the life running
    then, and only a node behind a proxy is offered network faults.
    """
    node = Node("n", server=None)  # type: ignore[arg-type]
    assert node.kinds() == SERVER_KINDS
    node.lives = [Life(0.0)]
    node.proxy = FaultProxy("127.0.0.1", free_port()).start()  # nothing connects: no target
    chaos = Chaos([node], seed=1, lease=0.0, slow=(0.0, 0.01), silence=(0.0, 0.01))
    try:
        assert set(NETWORK_KINDS) <= set(node.kinds())
        for kind in NETWORK_KINDS:
            chaos.inject(node, kind)
    finally:
        node.proxy.stop()
    assert [fault.kind for fault in chaos.faults] == list(NETWORK_KINDS)
    assert node.lives == [Life(0.0)]
