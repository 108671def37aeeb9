"""The in-process twins of the Lua scripts, on a synthetic clock: each algorithm's guarantee.

Every twin is driven like its script (the state it returns is the state Redis would
hold) through seeded, generated request streams; times are integer microseconds.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting import ALGORITHMS, LocalLimiter, Policy, parse_rate

#: An arbitrary instant (µs) that is not aligned to any of the periods used here.
BASE = 1_700_000_123_456_789
SEEDS = range(12)
ALL = ["gcra", "sliding_window", "sliding_window_counter", "fixed_window"]


def policy(rate: Any, algorithm: str = "gcra", burst: int | None = None) -> Policy:
    return Policy.build(parse_rate(rate), algorithm, burst)


def period_us(p: Policy) -> int:
    return round(p.rate.period * 1_000_000)


@dataclass(frozen=True)
class Step:
    now: int
    cost: int
    state_before: Any
    result: tuple[int, int, int, int]

    @property
    def allowed(self) -> bool:
        return bool(self.result[0])


def check(p: Policy, now: int, state: Any, cost: int = 1) -> Any:
    """The twin's answer: ((allowed, remaining, retry_after_us, reset_after_us), new state)."""
    return ALGORITHMS[p.algorithm](now, state, p.args(cost)[1:])


def drive(p: Policy, requests: list[tuple[int, int]]) -> list[Step]:
    """Run ``requests`` ((now, cost), in time order) through the twin, as its script would."""
    state: Any = None
    steps = []
    for now, cost in requests:
        result, new_state = check(p, now, state, cost)
        steps.append(Step(now, cost, state, result))
        state = new_state
    return steps


def admitted(steps: list[Step]) -> list[tuple[int, int]]:
    return [(s.now, s.cost) for s in steps if s.allowed]


def generated(
    seed: int, *, n: int, mean_gap: float, burst: float = 0.3, max_cost: int = 1
) -> list[tuple[int, int]]:
    """``n`` requests: exponential gaps of mean ``mean_gap`` µs, a ``burst`` share at once."""
    rng = random.Random(seed)
    now = BASE + rng.randrange(10_000_000)
    out = []
    for _ in range(n):
        if rng.random() >= burst:
            now += int(rng.expovariate(1 / mean_gap))
        out.append((now, rng.randint(1, max_cost)))
    return out


def evenly(start: int, gap: int, n: int) -> list[tuple[int, int]]:
    return [(start + i * gap, 1) for i in range(n)]


def trailing_units(admits: list[tuple[int, int]], span: int) -> Iterator[tuple[int, int]]:
    """For each admitted instant t: (t, units admitted in (t - span, t])."""
    times = [t for t, _ in admits]
    prefix = [0]
    for _, cost in admits:
        prefix.append(prefix[-1] + cost)
    for t in sorted(set(times)):
        hi = bisect.bisect_right(times, t)
        lo = bisect.bisect_right(times, t - span)
        yield t, prefix[hi] - prefix[lo]


# --- gcra --------------------------------------------------------------------------------------

GCRA_CASES = [("10/s", None), ("100/m", None), ("5/10s", 2), ("3/1.5s", 7), ("20/m", 1)]


@pytest.mark.parametrize(("rate", "burst"), GCRA_CASES)
def test_gcra_admits_exactly_the_burst_at_once(rate: str, burst: int | None) -> None:
    p = policy(rate, "gcra", burst)
    b = burst if burst is not None else p.rate.count
    steps = drive(p, [(BASE, 1)] * (3 * b))
    assert [s.allowed for s in steps] == [True] * b + [False] * (2 * b)
    assert [s.result[1] for s in steps[:b]] == list(range(b - 1, -1, -1))
    assert all(s.result[1] == 0 for s in steps[b:])


def test_gcra_100_per_minute_is_100_at_once_then_one_every_0_6_s() -> None:
    p = policy("100/m")
    steps = drive(p, [(BASE, 1)] * 101)
    assert sum(s.allowed for s in steps) == 100
    assert steps[-1].result[2] == 600_000  # retry_after: one emission interval
    state = check(p, BASE, None)[1]
    for _ in range(99):
        state = check(p, BASE, state)[1]
    for k in range(1, 6):
        assert check(p, BASE + k * 600_000 - 1, state)[0][0] == 0
        result, state = check(p, BASE + k * 600_000, state)
        assert result[0] == 1
        assert check(p, BASE + k * 600_000, state)[0][0] == 0


def _assert_gcra_bound(p: Policy, admits: list[tuple[int, int]]) -> None:
    """Units admitted in [t_i, t_j] <= B + floor((t_j - t_i) / T) for every pair of admissions."""
    interval, burst = p.args(1)[1:3]
    prefix = [0]
    for _, cost in admits:
        prefix.append(prefix[-1] + cost)
    for i, (start, _) in enumerate(admits):
        for j in range(i, len(admits)):
            units = prefix[j + 1] - prefix[i]
            assert units <= burst + (admits[j][0] - start) // interval, (i, j)


@pytest.mark.parametrize(("rate", "burst"), GCRA_CASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_gcra_never_admits_more_than_burst_plus_elapsed_over_t(
    rate: str, burst: int | None, seed: int
) -> None:
    p = policy(rate, "gcra", burst)
    interval = p.args(1)[1]
    for max_cost in (1, 2):
        steps = drive(p, generated(seed, n=250, mean_gap=interval / 3, max_cost=max_cost))
        admits = admitted(steps)
        assert 0 < len(admits) < len(steps)  # the limit did bite
        _assert_gcra_bound(p, admits)


@pytest.mark.parametrize(("rate", "burst"), GCRA_CASES)
@pytest.mark.parametrize("divisor", [1, 2, 3, 7, 10_000])
def test_gcra_evenly_spaced_dense_streams_get_exactly_the_bound(
    rate: str, burst: int | None, divisor: int
) -> None:
    # Requests every T/divisor (never slower than T). With B >= 2 the limiter is never
    # idle, so after k requests it has admitted exactly min(k, B + floor(elapsed / T)): the
    # bound is also what it grants. With B = 1 admissions are at least T apart and at
    # most T + gap apart (the slack of an idle moment is not carried over).
    p = policy(rate, "gcra", burst)
    interval, b = p.args(1)[1:3]
    gap = interval // divisor
    steps = drive(p, evenly(BASE, gap, 300))
    admits = admitted(steps)
    _assert_gcra_bound(p, admits)
    if b == 1:
        spacing = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(admits)]
        assert all(interval <= d <= interval + gap for d in spacing)
        return
    so_far = 0
    for k, step in enumerate(steps):
        so_far += step.allowed
        assert so_far == min(k + 1, b + (step.now - BASE) // interval), k


@pytest.mark.parametrize(("rate", "burst"), GCRA_CASES)
def test_gcra_admits_every_request_of_a_stream_at_the_steady_rate(
    rate: str, burst: int | None
) -> None:
    p = policy(rate, "gcra", burst)
    interval = p.args(1)[1]
    for gap in (interval, interval + 1, 3 * interval):
        assert all(s.allowed for s in drive(p, evenly(BASE, gap, 200)))


# --- sliding window (exact) ---------------------------------------------------------------------

WINDOW_RATES = ["5/10s", "10/s", "3/1.5s", "50/m"]


def _units_in(admits: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Units admitted at instants in (lo, hi]."""
    return sum(cost for t, cost in admits if lo < t <= hi)


@pytest.mark.parametrize("rate", WINDOW_RATES)
@pytest.mark.parametrize("seed", SEEDS)
def test_sliding_window_never_exceeds_count_in_any_window_and_is_exact(
    rate: str, seed: int
) -> None:
    p = policy(rate, "sliding_window")
    span, count = period_us(p), p.rate.count
    for max_cost in (1, 3):
        steps = drive(p, generated(seed, n=300, mean_gap=span / count / 2, max_cost=max_cost))
        admits = admitted(steps)
        assert 0 < len(admits) < len(steps)
        for t, units in trailing_units(admits, span):
            assert units <= count, t
        # Exact, not merely safe: a request is refused only when it would not fit.
        so_far: list[tuple[int, int]] = []
        for step in steps:
            used = _units_in(so_far, step.now - span, step.now)
            assert step.allowed == (used + step.cost <= count)
            assert step.result[1] == max(count - used - step.cost * step.allowed, 0)
            if step.allowed:
                so_far.append((step.now, step.cost))


def test_sliding_window_counts_a_request_at_exactly_one_period_ago_as_gone() -> None:
    p = policy("2/10s", "sliding_window")
    steps = drive(p, [(BASE, 1), (BASE + 1, 1), (BASE + 9_999_999, 1), (BASE + 10_000_000, 1)])
    assert [s.allowed for s in steps] == [True, True, False, True]


# --- fixed window -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", WINDOW_RATES)
@pytest.mark.parametrize("seed", SEEDS)
def test_fixed_window_admits_at_most_count_per_aligned_window_and_is_exact(
    rate: str, seed: int
) -> None:
    p = policy(rate, "fixed_window")
    span, count = period_us(p), p.rate.count
    for max_cost in (1, 3):
        steps = drive(p, generated(seed, n=300, mean_gap=span / count / 2, max_cost=max_cost))
        per_window: Counter[int] = Counter()
        for step in steps:
            window = step.now // span
            fits = per_window[window] + step.cost <= count
            assert step.allowed == fits
            if step.allowed:
                per_window[window] += step.cost
            assert step.result[3] == (window + 1) * span - step.now  # reset: the window's end
        assert max(per_window.values()) <= count
        assert sum(per_window.values()) < sum(s.cost for s in steps)


def test_fixed_window_admits_twice_the_count_across_a_boundary_as_documented() -> None:
    p = policy("5/10s", "fixed_window")
    end = (BASE // 10_000_000 + 1) * 10_000_000
    steps = drive(p, [(end - 1, 1)] * 6 + [(end, 1)] * 6)
    assert [s.allowed for s in steps] == ([True] * 5 + [False]) * 2


# --- sliding window counter (approximate) -------------------------------------------------------


@pytest.mark.parametrize("rate", WINDOW_RATES)
@pytest.mark.parametrize("seed", SEEDS)
def test_sliding_window_counter_stays_within_twice_count_and_exact_in_the_first_window(
    rate: str, seed: int
) -> None:
    p = policy(rate, "sliding_window_counter")
    span, count = period_us(p), p.rate.count
    for max_cost in (1, 3):
        steps = drive(p, generated(seed, n=300, mean_gap=span / count / 2, max_cost=max_cost))
        admits = admitted(steps)
        assert 0 < len(admits) < len(steps)
        for t, units in trailing_units(admits, span):
            assert units <= 2 * count, t
        per_window = Counter[int]()
        for t, cost in admits:
            per_window[t // span] += cost
        assert max(per_window.values()) <= count
        first = steps[0].now // span
        assert per_window[first] <= count
        # No earlier window to weigh: the first window is exact.
        used = 0
        for step in steps:
            if step.now // span != first:
                break
            assert step.allowed == (used + step.cost <= count)
            used += step.cost * step.allowed


def test_sliding_window_counter_retry_after_when_the_current_window_is_full() -> None:
    # 5/10s: five requests 1 s into a window fill it. A sixth 2 s in is told to retry at
    # the window's end (8 s), but then the full window weighs 5 (elapsed 0): refused again.
    # It fits once 5 * (10 - e) / 10 + 1 <= 5, i.e. 2 s into the next window (10 s later).
    p = policy("5/10s", "sliding_window_counter")
    start = (BASE // 10_000_000 + 1) * 10_000_000
    state: Any = None
    for _ in range(5):
        result, state = check(p, start + 1_000_000, state)
        assert result[0] == 1
    refused, _ = check(p, start + 2_000_000, state)
    assert refused[0] == 0
    retry = refused[2]
    assert check(p, start + 2_000_000 + retry, state)[0][0] == 1, retry


def test_sliding_window_counter_worst_case_is_below_twice_count() -> None:
    # The previous window's requests all came at its very end: the estimate spreads them
    # over the whole window, so a window straddling the boundary sees up to ~2x the count.
    p = policy("10/10s", "sliding_window_counter")
    span, count = period_us(p), p.rate.count
    end = (BASE // span + 1) * span
    requests = [(end - 1, 1)] * count + evenly(end, span // 1000, 1000)
    admits = admitted(drive(p, requests))
    worst = max(units for _, units in trailing_units(admits, span))
    assert count < worst <= 2 * count


# --- every algorithm ----------------------------------------------------------------------------


def _denied_steps(p: Policy, seed: int) -> list[Step]:
    span, count = period_us(p), p.rate.count
    steps = drive(p, generated(seed, n=200, mean_gap=span / count / 2, max_cost=2))
    return [s for s in steps if not s.allowed and s.cost <= p.limit]


@pytest.mark.parametrize("algorithm", ALL)
@pytest.mark.parametrize("seed", SEEDS[:6])
def test_retry_after_is_honoured_a_request_then_is_admitted(algorithm: str, seed: int) -> None:
    p = policy("5/10s", algorithm)
    denied = _denied_steps(p, seed)
    assert denied
    for step in denied:
        retry = step.result[2]
        assert retry > 0
        later, _ = check(p, step.now + retry, step.state_before, step.cost)
        assert later[0] == 1, (step.now, step.cost, retry, step.state_before)


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window", "fixed_window"])
@pytest.mark.parametrize("seed", SEEDS)
def test_retry_after_is_exact_for_the_exact_algorithms(algorithm: str, seed: int) -> None:
    p = policy("5/10s", algorithm)
    for step in _denied_steps(p, seed):
        retry = step.result[2]
        assert check(p, step.now + retry, step.state_before, step.cost)[0][0] == 1
        assert check(p, step.now + retry - 1, step.state_before, step.cost)[0][0] == 0


@pytest.mark.parametrize("algorithm", ALL)
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_reset_after_is_when_the_quota_is_whole_again(algorithm: str, seed: int) -> None:
    # Decision.reset_after: "Seconds until the quota is whole again".
    p = policy("5/10s", algorithm)
    span, count = period_us(p), p.rate.count
    state: Any = None
    for now, cost in generated(seed, n=60, mean_gap=span / count / 2, max_cost=2):
        result, state = check(p, now, state, cost)
        later, _ = check(p, now + result[3], state, 1)
        assert later[:2] == (1, p.limit - 1), (now, result, state)


@pytest.mark.parametrize("algorithm", ALL)
def test_cost_counts_as_that_many_requests(algorithm: str) -> None:
    p = policy("10/h", algorithm)
    steps = drive(p, [(BASE, 4), (BASE, 4), (BASE, 4), (BASE, 2), (BASE, 1)])
    assert [s.allowed for s in steps] == [True, True, False, True, False]
    assert [s.result[1] for s in steps] == [6, 2, 2, 0, 0]


# --- LocalLimiter (the "local" outage policy) ------------------------------------------------


def local(limiter: LocalLimiter, key: str, p: Policy, cost: int = 1, *, peek: bool = False) -> int:
    return int(limiter.check([(key, p, cost, True)], peek=peek)[0][0])


@pytest.mark.parametrize("algorithm", ALL)
def test_local_limiter_peeks_never_change_state(algorithm: str) -> None:
    p = policy("3/h", algorithm)
    limiter = LocalLimiter()
    assert [local(limiter, "k", p, peek=True) for _ in range(10)] == [1] * 10
    assert dict(limiter._state) == {}
    assert [local(limiter, "k", p) for _ in range(4)] == [1, 1, 1, 0]
    before = copy.deepcopy(dict(limiter._state))
    for cost in (1, 1, 2, 3, 1):
        assert local(limiter, "k", p, cost, peek=True) == 0
    assert dict(limiter._state) == before


@pytest.mark.parametrize("algorithm", ALL)
def test_local_limiter_keeps_a_limit_per_key_and_counts_cost(algorithm: str) -> None:
    p = policy("4/h", algorithm)
    limiter = LocalLimiter()
    assert [local(limiter, "a", p, 3), local(limiter, "a", p, 2), local(limiter, "a", p)] == [
        1,
        0,
        1,
    ]
    assert local(limiter, "a", p) == 0
    assert [local(limiter, "b", p) for _ in range(5)] == [1, 1, 1, 1, 0]
    limiter.clear()
    assert local(limiter, "a", p) == 1


def test_local_limiter_is_all_or_nothing_across_limits() -> None:
    wide, narrow = policy("10/h"), policy("1/h", "fixed_window")
    limiter = LocalLimiter()
    assert [
        r[0] for r in limiter.check([("w", wide, 1, True), ("n", narrow, 1, True)], peek=False)
    ] == [1, 1]
    assert [
        r[0] for r in limiter.check([("w", wide, 1, True), ("n", narrow, 1, True)], peek=False)
    ] == [1, 0]
    # The refused call consumed nothing of the limit that admitted it.
    assert limiter.check([("w", wide, 1, True)], peek=False)[0][1] == 8


def test_local_limiter_forgets_the_least_recently_used_keys_beyond_max_keys() -> None:
    p = policy("2/h")
    limiter = LocalLimiter(max_keys=3)
    for key in "abc":
        assert local(limiter, key, p) == 1
    assert local(limiter, "a", p) == 1  # "a" is now the most recently used
    assert local(limiter, "b", p, peek=True) == 1  # a peek is not a use
    assert local(limiter, "d", p) == 1  # evicts "b", the least recently used
    assert list(limiter._state) == ["c", "a", "d"]
    assert [local(limiter, "b", p) for _ in range(3)] == [1, 1, 0]  # forgotten: a fresh quota
    assert local(limiter, "a", p) == 0  # remembered: "a" used its two
    for i in range(100):
        local(limiter, f"many{i}", p)
    assert len(limiter._state) == 3
    assert list(limiter._state) == ["many97", "many98", "many99"]


def test_policy_limit_and_arguments() -> None:
    assert policy("100/m").limit == 100
    assert policy("100/m", "gcra", 7).limit == 7
    assert policy("100/m", "fixed_window").limit == 100
    assert policy("100/m").args(2) == ["gcra", 600_000, 100, 2]
    assert policy("5/10s", "sliding_window").args(1) == ["sliding_window", 10_000_000, 5, 1]


@pytest.mark.parametrize(
    ("algorithm", "burst", "fragment"),
    [
        ("leaky_bucket", None, "'leaky_bucket' is not known"),
        ("gcra", 0, "burst=0 is not valid"),
        ("gcra", True, "burst=True is not valid"),
        ("gcra", 2.5, "burst=2.5 is not valid"),
        ("fixed_window", 3, "not 'fixed_window'"),
    ],
)
def test_policy_rejects_bad_algorithms_and_bursts(
    algorithm: str, burst: Any, fragment: str
) -> None:
    with pytest.raises(InvalidRateLimit, match=fragment):
        policy("10/m", algorithm, burst)


def test_policy_rejects_an_exact_sliding_window_too_large_to_store() -> None:
    assert policy("100000/h", "sliding_window").rate.count == 100_000
    with pytest.raises(InvalidRateLimit, match="100001/3600s is too large"):
        policy("100001/h", "sliding_window")


def test_a_non_blocking_limit_over_its_quota_does_not_stop_the_others() -> None:
    limiter = LocalLimiter()
    wide, narrow = policy("10/h"), policy("1/h")
    checks = [("w", wide, 1, True), ("soft", narrow, 1, False)]
    assert [r[0] for r in limiter.check(checks, peek=False)] == [1, 1]
    assert [r[0] for r in limiter.check(checks, peek=False)] == [1, 0]  # soft is over
    assert limiter.check([("w", wide, 1, True)], peek=True)[0][1] == 7  # wide consumed 2
