"""Operations written once as generators of steps, carried out by a sync or an asyncio driver.

A *plan* decides everything (what to ask Redis, what to do with the answer or
the error) and yields each piece of I/O as a step; the driver performs the
step with the sync or the asyncio client and sends the outcome back in, or
throws the exception the step raised. So the cache's ``get``/``aget`` and the
lock's ``acquire``/``aacquire`` share every decision and differ only in how
they wait.

A :class:`Step` knows how to carry itself out both ways (``do``/``ado``), so
any package can add its own kinds of step without this module or the drivers
knowing them, and :func:`run`/:func:`arun` dispatch by one method call.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")
S = TypeVar("S")


class Step:
    """One piece of I/O a plan asks for; it carries itself out with either driver."""

    __slots__ = ()

    def do(self) -> Any:
        """Carry the step out, blocking; return its outcome or raise."""
        raise NotImplementedError

    async def ado(self) -> Any:
        """Carry the step out on the running event loop."""
        raise NotImplementedError


Plan = Generator[Step, Any, T]


def run(plan: Plan[T]) -> T:
    """Carry out ``plan``, blocking."""
    return drive(plan, _do)


async def arun(plan: Plan[T]) -> T:
    """Carry out ``plan`` on the running event loop."""
    return await adrive(plan, _ado)


#: ``step.do()`` and ``step.ado()``, called from C: no Python frame between a driver and a step.
_do: Callable[[Step], Any] = operator.methodcaller("do")
_ado: Callable[[Step], Awaitable[Any]] = operator.methodcaller("ado")


def drive(plan: Generator[S, Any, T], do: Callable[[S], Any]) -> T:
    """Carry out ``plan`` with ``do(step)``, blocking."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        try:
            value = do(step)
        except GeneratorExit:
            plan.close()
            raise
        except BaseException as exc:  # the plan cleans up (even on KeyboardInterrupt)
            error = exc


async def adrive(plan: Generator[S, Any, T], ado: Callable[[S], Awaitable[Any]]) -> T:
    """Carry out ``plan`` with ``await ado(step)`` on the running event loop.

    A cancellation goes into the plan like any error, so its cleanup runs
    (leaving a lock's queue, ending a flight others wait for); the steps of
    that cleanup are shielded from the cancellation. Cancelled again during
    the cleanup, the plan is closed and the cancellation goes on.
    """
    value: Any = None
    error: BaseException | None = None
    cancelled = False
    while True:
        try:
            step = plan.send(value) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        value, error = None, None
        try:
            value = await (asyncio.shield(ado(step)) if cancelled else ado(step))
        except asyncio.CancelledError as exc:
            if cancelled:
                plan.close()
                raise
            cancelled = True
            error = exc
        except GeneratorExit:  # this coroutine is being closed: no step may run now
            plan.close()
            raise
        except BaseException as exc:
            error = exc


class Sleep(Step):
    """Wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``): a retry's back-off, a poll."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def do(self) -> None:
        time.sleep(self.seconds)

    async def ado(self) -> None:
        await asyncio.sleep(self.seconds)
