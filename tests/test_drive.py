"""The drivers themselves: what goes into a plan and what comes out of it.

No Redis here: the steps are the smallest that carry themselves out (a value,
an error, a note in a log), so each test watches one thing the drivers do
with a plan. The asyncio steps really suspend, so the asyncio driver waits for
them as it waits for Redis.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator
from typing import Any

import pytest

from django_redis_resilience._drive import Plan, Step, adrive, arun, drive, run

Drive = Callable[[Plan[Any]], Any]


def _sync(plan: Plan[Any]) -> Any:
    return run(plan)


def _async(plan: Plan[Any]) -> Any:
    return asyncio.run(arun(plan))


drivers = pytest.mark.parametrize("drive_", [_sync, _async], ids=["sync", "async"])


class Interrupt(BaseException):
    """Like ``KeyboardInterrupt``: not an ``Exception``, so no ``except Exception`` stops it."""


class Value(Step):
    """Its outcome is ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def do(self) -> Any:
        return self.value

    async def ado(self) -> Any:
        await asyncio.sleep(0)
        return self.value


class Fail(Step):
    """Raises ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def do(self) -> Any:
        raise self.error

    async def ado(self) -> Any:
        await asyncio.sleep(0)
        raise self.error


class Note(Step):
    """Writes ``note`` in ``log``: shows that the step ran."""

    __slots__ = ("log", "note")

    def __init__(self, log: list[str], note: str) -> None:
        self.log = log
        self.note = note

    def do(self) -> None:
        self.log.append(self.note)

    async def ado(self) -> None:
        await asyncio.sleep(0)
        self.log.append(self.note)


class NoteAtOnce(Note):
    """:class:`Note` without suspending: it could run to its end even in a closing coroutine."""

    __slots__ = ()

    async def ado(self) -> None:
        self.log.append(self.note)


class Wait(Step):
    """Waits for ``event`` (asyncio only), noting when it starts and when it ends."""

    __slots__ = ("event", "log", "name")

    def __init__(self, event: asyncio.Event, log: list[str], name: str) -> None:
        self.event = event
        self.log = log
        self.name = name

    async def ado(self) -> None:
        self.log.append(f"{self.name} started")
        try:
            await self.event.wait()
        except asyncio.CancelledError:
            self.log.append(f"{self.name} interrupted")
            raise
        self.log.append(f"{self.name} done")


# --- outcomes and errors ---------------------------------------------------------


@drivers
def test_each_step_outcome_is_sent_back_into_the_plan(drive_: Drive) -> None:
    def plan() -> Plan[tuple[Any, ...]]:
        first = yield Value(1)
        second = yield Value("two")
        third = yield Value(None)
        return first, second, third

    assert drive_(plan()) == (1, "two", None)


@drivers
def test_the_plans_return_value_is_the_drivers(drive_: Drive) -> None:
    def no_steps() -> Plan[str]:
        return "at once"
        yield  # a generator all the same

    def after_steps() -> Plan[list[int]]:
        seen = []
        for n in range(3):
            seen.append((yield Value(n)))
        return seen

    assert drive_(no_steps()) == "at once"
    assert drive_(after_steps()) == [0, 1, 2]


@drivers
def test_a_steps_error_is_thrown_into_the_plan_which_may_catch_it(drive_: Drive) -> None:
    error = ValueError("step failed")
    caught: list[BaseException] = []

    def plan() -> Plan[Any]:
        try:
            yield Fail(error)
        except ValueError as exc:
            caught.append(exc)
        # the next step's outcome comes back as usual after a caught error
        return (yield Value("after"))

    assert drive_(plan()) == "after"
    assert caught == [error]  # the very error the step raised


def test_a_step_raising_stopiteration_does_not_end_the_plan() -> None:
    """Only the plan's own end is its result (a coroutine cannot raise StopIteration)."""

    def plan() -> Plan[str]:
        try:
            yield Fail(StopIteration("from a step"))
        except StopIteration as exc:
            return f"caught {exc}"
        return "not caught"

    assert run(plan()) == "caught from a step"


@drivers
def test_an_error_the_plan_does_not_catch_reaches_the_caller_after_its_cleanup(
    drive_: Drive,
) -> None:
    log: list[str] = []

    def plan() -> Plan[None]:
        try:
            yield Fail(LookupError("no such key"))
        finally:
            log.append("finally")
        log.append("went on")

    with pytest.raises(LookupError, match="no such key"):
        drive_(plan())
    assert log == ["finally"]


@drivers
def test_an_interrupt_reaches_the_plans_cleanup_steps_then_the_caller(drive_: Drive) -> None:
    log: list[str] = []

    def plan() -> Plan[None]:
        try:
            yield Fail(Interrupt())
        except BaseException:
            yield Note(log, "cleaned up")
            raise

    with pytest.raises(Interrupt):
        drive_(plan())
    assert log == ["cleaned up"]


def test_a_keyboard_interrupt_in_a_step_reaches_the_plans_cleanup() -> None:
    log: list[str] = []

    def plan() -> Plan[None]:
        try:
            yield Fail(KeyboardInterrupt())
        except BaseException:
            yield Note(log, "cleaned up")
            raise

    with pytest.raises(KeyboardInterrupt):
        run(plan())
    assert log == ["cleaned up"]


def _doubling() -> Generator[int, Any, list[int]]:
    """Any kind of step: numbers, doubled by the function that carries them out."""
    doubled = []
    for n in (1, 2, 3):
        doubled.append((yield n))
    try:
        yield -1
    except ArithmeticError as exc:
        doubled.append(len(str(exc)))
    return doubled


def _double(n: int) -> int:
    if n < 0:
        raise ArithmeticError("negative")
    return 2 * n


async def _adouble(n: int) -> int:
    await asyncio.sleep(0)
    return _double(n)


def test_drive_carries_out_steps_with_the_function_it_is_given() -> None:
    assert drive(_doubling(), _double) == [2, 4, 6, 8]


def test_adrive_carries_out_steps_with_the_coroutine_function_it_is_given() -> None:
    assert asyncio.run(adrive(_doubling(), _adouble)) == [2, 4, 6, 8]


# --- closing -----------------------------------------------------------------------


class _Suspend:
    """Suspends the awaiting coroutine once, with no event loop (a step waiting on I/O)."""

    def __await__(self) -> Generator[None, None, None]:
        yield


class Pending(Step):
    """Waits until resumed; driven by hand, the coroutine is closed meanwhile."""

    __slots__ = ()

    async def ado(self) -> None:
        await _Suspend()


def test_closing_the_driving_coroutine_closes_the_plan() -> None:
    log: list[str] = []

    def plan() -> Plan[None]:
        try:
            yield Pending()
        finally:
            log.append("finally")

    the_plan = plan()
    coroutine = arun(the_plan)
    coroutine.send(None)  # now inside the step
    assert log == []
    coroutine.close()
    assert log == ["finally"]
    assert inspect.getgeneratorstate(the_plan) == inspect.GEN_CLOSED


def test_no_step_runs_once_the_driving_coroutine_is_closed() -> None:
    """A closed coroutine waits for nothing more: the plan is closed, not thrown into,
    so a cleanup step it would yield never runs (Python reports the attempt)."""
    log: list[str] = []

    def plan() -> Plan[None]:
        try:
            yield Pending()
        except BaseException:
            yield NoteAtOnce(log, "cleanup ran")
            raise

    the_plan = plan()
    coroutine = arun(the_plan)
    coroutine.send(None)
    with pytest.raises(RuntimeError, match="ignored GeneratorExit"):
        coroutine.close()
    assert log == []


def test_generator_exit_from_a_step_closes_the_plan_without_running_more_steps() -> None:
    """The sync driver inside a closing generator (a nested plan): the plan is closed."""
    log: list[str] = []

    def plan() -> Plan[None]:
        try:
            yield Fail(GeneratorExit())
        except BaseException:
            yield NoteAtOnce(log, "cleanup ran")
            raise

    with pytest.raises(RuntimeError, match="ignored GeneratorExit"):
        run(plan())
    assert log == []


# --- cancellation ----------------------------------------------------------------------


async def _until(log: list[str], *notes: str) -> None:
    """Until one of ``notes`` is in ``log`` (bounded: a broken driver fails, not hangs)."""

    async def poll() -> None:
        while not any(note in log for note in notes):
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), timeout=10)


def test_a_cancellation_goes_into_the_plan_whose_cleanup_step_runs_to_its_end() -> None:
    log: list[str] = []

    def plan(never: asyncio.Event, cleanup: asyncio.Event) -> Plan[None]:
        try:
            yield Wait(never, log, "work")
        except asyncio.CancelledError:
            log.append("plan saw the cancellation")
            yield Wait(cleanup, log, "cleanup")
            raise

    async def main() -> None:
        never, cleanup = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(arun(plan(never, cleanup)))
        await asyncio.sleep(0.01)
        task.cancel()
        await _until(log, "cleanup started")
        cleanup.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert log == [
        "work started",
        "work interrupted",
        "plan saw the cancellation",
        "cleanup started",
        "cleanup done",
    ]


def test_a_second_cancellation_closes_the_plan_but_not_its_shielded_cleanup_step() -> None:
    log: list[str] = []

    def plan(never: asyncio.Event, cleanup: asyncio.Event) -> Plan[None]:
        try:
            yield Wait(never, log, "work")
        except asyncio.CancelledError:
            try:
                yield Wait(cleanup, log, "cleanup")
            except GeneratorExit:
                log.append("plan closed")
                raise
            except asyncio.CancelledError:
                log.append("plan cancelled again")
                raise

    async def main() -> None:
        never, cleanup = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(arun(plan(never, cleanup)))
        await asyncio.sleep(0.01)
        task.cancel()
        await _until(log, "cleanup started")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        # The task is over; the cleanup step it had started goes on to its end.
        cleanup.set()
        await _until(log, "cleanup done", "cleanup interrupted")

    asyncio.run(main())
    assert log == [
        "work started",
        "work interrupted",
        "cleanup started",
        "plan closed",
        "cleanup done",
    ]
