"""The shared steps: one plan, carried out by the sync and the asyncio driver alike.

Each test runs the same plan through ``run`` and through ``arun`` and asserts the
same outcome, including what the plan sees when a step fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis.exceptions as rex

from django_redis_resilience._lua import LuaScript
from django_redis_resilience._steps import (
    POP_FAILED,
    Call,
    Gather,
    Plan,
    Pop,
    Script,
    ScriptGrouped,
    Session,
    Settled,
    Shield,
    Sleep,
    arun,
    command,
    mapped,
    one,
    run,
)
from django_redis_resilience.connection import (
    ConnectionManager,
    ConnectionOptions,
    RetryPolicy,
    Scheduler,
    parse_location,
)
from django_redis_resilience.exceptions import RedisUnavailable
from django_redis_resilience.testing import RedisServer, free_port

#: Adds to an existing integer: a read (EXISTS), then a write (INCRBY).
INCR = LuaScript("django_redis_resilience.cache", "incr")

Drive = Callable[[Plan[Any]], Any]


def _sync(plan: Plan[Any]) -> Any:
    return run(plan)


def _async(plan: Plan[Any]) -> Any:
    return asyncio.run(arun(plan))


drivers = pytest.mark.parametrize("drive", [_sync, _async], ids=["sync", "async"])


@pytest.fixture
def make_manager() -> Iterator[Callable[[str], ConnectionManager]]:
    scheduler = Scheduler()
    made: list[ConnectionManager] = []

    def make(location: str) -> ConnectionManager:
        options = ConnectionOptions(retry=RetryPolicy(attempts=1))
        manager = ConnectionManager(
            alias="steps", topology=parse_location(location), options=options, scheduler=scheduler
        )
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()
    scheduler.stop()


@pytest.fixture
def manager(
    drr_redis_server: RedisServer, make_manager: Callable[[str], ConnectionManager]
) -> ConnectionManager:
    return make_manager(drr_redis_server.url)


@pytest.fixture
def down(make_manager: Callable[[str], ConnectionManager]) -> ConnectionManager:
    """A manager whose only server is a port nothing listens on."""
    return make_manager(f"redis://127.0.0.1:{free_port()}/0")


def _set(server: RedisServer, **values: Any) -> None:
    with server.client() as client:
        client.mset(values)


@drivers
def test_a_script_step_gives_the_plan_its_answer(
    drive: Drive, manager: ConnectionManager, drr_redis_server: RedisServer
) -> None:
    _set(drr_redis_server, **{"steps:n": 1})

    def plan() -> Plan[Any]:
        first = yield Script(manager, INCR, ["steps:n"], [1])
        second = yield Script(manager, INCR, ["steps:n"], [first])
        return first, second

    assert drive(plan()) == (2, 4)


@drivers
def test_a_script_error_is_thrown_into_the_plan_which_may_answer_it(
    drive: Drive, manager: ConnectionManager, drr_redis_server: RedisServer
) -> None:
    _set(drr_redis_server, **{"steps:text": "not a number"})

    def plan() -> Plan[Any]:
        try:
            yield Script(manager, INCR, ["steps:text"], [1])
        except rex.ResponseError as error:
            return f"answered: {error}"
        return "no error"

    assert drive(plan()).startswith("answered: ")


@drivers
def test_on_error_turns_a_script_error_into_the_steps_answer(
    drive: Drive, manager: ConnectionManager, drr_redis_server: RedisServer
) -> None:
    _set(drr_redis_server, **{"steps:text2": "not a number"})

    def plan() -> Plan[Any]:
        return (yield Script(manager, INCR, ["steps:text2"], [1], on_error=type))

    assert drive(plan()) is rex.ResponseError


@drivers
def test_what_on_error_raises_reaches_the_plan(
    drive: Drive, manager: ConnectionManager, drr_redis_server: RedisServer
) -> None:
    _set(drr_redis_server, **{"steps:text3": "not a number"})

    def refuse(error: rex.ResponseError) -> Any:
        raise LookupError("refused here")

    def plan() -> Plan[Any]:
        try:
            yield Script(manager, INCR, ["steps:text3"], [1], on_error=refuse)
        except LookupError as error:
            return str(error)
        return "no error"

    assert drive(plan()) == "refused here"


@drivers
def test_an_outage_is_thrown_into_the_plan_as_redis_unavailable(
    drive: Drive, down: ConnectionManager
) -> None:
    def plan() -> Plan[Any]:
        try:
            yield Script(down, INCR, ["steps:n"], [1])
        except RedisUnavailable:
            return "degraded"
        return "asked"

    assert drive(plan()) == "degraded"


@drivers
def test_a_grouped_script_answers_per_group_with_the_groups_own_args(
    drive: Drive, manager: ConnectionManager, drr_redis_server: RedisServer
) -> None:
    _set(drr_redis_server, **{"steps:g": 10})
    seen: list[list[str]] = []

    def args(keys: list[str]) -> list[Any]:
        seen.append(keys)
        return [5]

    def plan() -> Plan[Any]:
        return (yield ScriptGrouped(manager, INCR, ["steps:g"], args))

    assert drive(plan()) == [(["steps:g"], 15)]
    assert seen == [["steps:g"]]


@drivers
def test_a_grouped_script_on_a_server_that_is_down_answers_redis_unavailable(
    drive: Drive, down: ConnectionManager
) -> None:
    def plan() -> Plan[Any]:
        return (yield ScriptGrouped(down, INCR, ["steps:g"], lambda keys: [1]))

    [(keys, result)] = drive(plan())
    assert keys == ["steps:g"]
    assert isinstance(result, RedisUnavailable)


@drivers
def test_a_grouped_script_error_goes_through_on_error_inside_the_call(
    drive: Drive, manager: ConnectionManager, drr_redis_server: RedisServer
) -> None:
    _set(drr_redis_server, **{"steps:gtext": "not a number"})

    def plan() -> Plan[Any]:
        return (yield ScriptGrouped(manager, INCR, ["steps:gtext"], lambda k: [1], on_error=type))

    assert drive(plan()) == [(["steps:gtext"], rex.ResponseError)]


def test_gather_runs_the_sync_steps_in_order() -> None:
    order: list[int] = []

    def plan() -> Plan[Any]:
        return (
            yield Gather([Call(lambda: order.append(1) or 1), Call(lambda: order.append(2) or 2)])
        )

    assert run(plan()) == [1, 2]
    assert order == [1, 2]


def test_gather_runs_the_async_steps_concurrently() -> None:
    """The first step waits for the second: in turn, they would never end."""

    async def main() -> Any:
        second_started = asyncio.Event()

        async def first() -> str:
            await asyncio.wait_for(second_started.wait(), 5)
            return "first"

        async def second() -> str:
            second_started.set()
            return "second"

        def plan() -> Plan[Any]:
            return (yield Gather([Call(first), Call(second)]))

        return await arun(plan())

    assert asyncio.run(main()) == ["first", "second"]


@drivers
def test_a_failing_call_is_thrown_into_the_plan_whose_cleanup_steps_still_run(
    drive: Drive,
) -> None:
    cleaned: list[str] = []

    def fail() -> Any:
        raise KeyError("view")

    def plan() -> Plan[Any]:
        try:
            yield Call(_maybe_async(drive, fail))
        except KeyError:
            yield Call(_maybe_async(drive, lambda: cleaned.append("cleaned")))
            raise
        return "no error"

    with pytest.raises(KeyError):
        drive(plan())
    assert cleaned == ["cleaned"]


def _async_fn(fn: Callable[[], Any]) -> Callable[[], Any]:
    async def call() -> Any:
        return fn()

    return call


def _maybe_async(drive: Drive, fn: Callable[[], Any]) -> Callable[[], Any]:
    return fn if drive is _sync else _async_fn(fn)


# --- sessions, commands, settled steps, sleeps, shields, pops, mapped plans --------------


@drivers
def test_a_session_runs_its_client_plan_on_one_client_with_each_answer_sent_back(
    drive: Drive, manager: ConnectionManager, drr_redis_server: RedisServer
) -> None:
    _set(drr_redis_server, **{"steps:s": 1})
    clients: list[Any] = []

    def on_client(client: Any) -> Any:
        clients.append(client)
        first = yield (INCR, ["steps:s"], [1])
        second = yield ("get", "steps:s")
        return first, second

    assert drive(one(Session(manager, on_client, key="steps:s"))) == (2, b"2")
    assert len(clients) == 1


@drivers
def test_a_command_gives_its_answer_and_settled_gives_an_outage_as_the_outcome(
    drive: Drive, manager: ConnectionManager, down: ConnectionManager, drr_redis_server: RedisServer
) -> None:
    _set(drr_redis_server, **{"steps:c": "here"})

    def plan() -> Plan[Any]:
        return (
            yield Gather(
                [
                    Settled(command(manager, "get", "steps:c", key="steps:c")),
                    Settled(command(down, "get", "steps:c", key="steps:c")),
                ]
            )
        )

    here, gone = drive(plan())
    assert here == b"here"
    assert isinstance(gone, RedisUnavailable)


@drivers
def test_a_sleep_step_gives_none(drive: Drive) -> None:
    assert drive(one(Sleep(0.001))) is None


@drivers
def test_a_pop_gives_the_value_none_on_timeout_and_failed_when_down(
    drive: Drive, manager: ConnectionManager, down: ConnectionManager, drr_redis_server: RedisServer
) -> None:
    with drr_redis_server.client() as client:
        client.rpush("steps:list", "woken")

    def plan() -> Plan[Any]:
        popped = yield Pop(manager, "steps:list", "steps:list", 1)
        empty = yield Pop(manager, "steps:list", "steps:list", 0.01)
        failed = yield Pop(down, "steps:list", "steps:list", 0.01)
        return popped, empty, failed

    assert drive(plan()) == (b"woken", None, POP_FAILED)


@drivers
def test_a_shielded_step_gives_its_outcome(drive: Drive) -> None:
    assert drive(one(Shield(Call(_maybe_async(drive, lambda: "done"))))) == "done"


def test_a_cancelled_plan_sees_the_cancellation_while_its_shielded_step_runs_to_its_end() -> None:
    finished: list[str] = []

    async def main() -> None:
        started = asyncio.Event()
        go_on = asyncio.Event()

        async def release() -> None:
            started.set()
            await go_on.wait()
            finished.append("released")

        def plan() -> Plan[Any]:
            try:
                yield Shield(Call(release))
            except asyncio.CancelledError:
                finished.append("cancelled")
                raise

        task = asyncio.ensure_future(arun(plan()))
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        go_on.set()
        for _ in range(100):
            if "released" in finished:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert finished == ["cancelled", "released"]


@drivers
def test_a_mapped_plan_makes_its_steps_shared_and_gets_their_errors(drive: Drive) -> None:
    def fail() -> Any:
        raise KeyError("step")

    def inner() -> Any:
        first = yield "ok"
        try:
            yield "fail"
        except KeyError:
            return first, "answered"
        return first, "no error"

    def to_step(name: Any) -> Any:
        return Call(_maybe_async(drive, (lambda: "done") if name == "ok" else fail))

    assert drive(mapped(inner(), to_step)) == ("done", "answered")
