"""``lock``: a decorator, context manager and async context manager over one Redis lock.

A :class:`Lock` holds only its configuration; every acquisition is a
:class:`Held` handle (its fencing token, its owner id, its lease), kept in a
context variable while a ``with`` block or decorated call runs. So threads
and asyncio tasks can share one ``Lock`` object without taking each other's
tokens.
"""

from __future__ import annotations

import _string
import asyncio
import contextlib
import functools
import inspect
import logging
import math
import string
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar, cast

import redis.exceptions

from django_redis_resilience import _process, signals
from django_redis_resilience._steps import Call, Execute, Plan, Shield, arun, command, one, run
from django_redis_resilience.clients import get_manager, key_prefix
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import ConnectionManager, ErrorKind, Job, translate
from django_redis_resilience.exceptions import (
    InvalidLock,
    LockAlreadyHeld,
    LockLost,
    LockNotAcquired,
    RedisUnavailable,
)
from django_redis_resilience.locks._fence import Fence
from django_redis_resilience.locks._protocol import (
    Grant,
    LockKeys,
    acquire_steps,
    bound,
    new_owner,
    script_args,
    script_step,
)

logger = logging.getLogger("django_redis_resilience")

F = TypeVar("F", bound=Callable[..., Any])

ON_BUSY = ("raise", "skip")
ON_UNAVAILABLE = ("raise", "skip", "run")
ON_LOST = ("raise", "log")
_UNSET: Any = object()

#: Every acquisition the current thread or task holds (for self-deadlock
#: detection and to find what ``release()``/``__exit__`` end). A tuple, replaced
#: on change: asyncio tasks copy the context, and must not share a mutable value.
_holding: ContextVar[tuple[Held, ...]] = ContextVar("drr_locks_held", default=())


def _who() -> object:
    """The running asyncio task, else the thread: who an acquisition belongs to.

    Asked up to three times per acquisition: the loop is looked up without
    ``current_task()``'s RuntimeError when there is none (sync code).
    """
    loop = asyncio._get_running_loop()
    task = asyncio.current_task(loop) if loop is not None else None
    return task if task is not None else threading.get_ident()


class Held:
    """One acquisition of a lock: ``held.token`` is its fencing token.

    Falsy when the lock was not acquired (``on_busy="skip"`` or an outage
    with ``on_unavailable="skip"``/``"run"``): a ``with`` body still runs then,
    so check ``if not held:`` when using those policies.
    """

    def __init__(
        self,
        lock: Lock,
        *,
        name: str,
        keys: LockKeys | None,
        manager: ConnectionManager | None,
        owner: str = "",
        grant: Grant | None = None,
        degraded: bool = False,
    ) -> None:
        self.lock = lock
        self.name = name
        self.keys = keys
        self.manager = manager
        #: Set when Redis could not be asked (``on_unavailable`` decided).
        self.degraded = degraded
        self._owner = owner
        self._guard = threading.Lock()
        self._job: Job | None = None
        self._released = False
        self._lost = False
        #: Bumped by every extend: a renewal that overlapped one trusts the lesser end.
        self._generation = 0
        self._who = _who()
        #: Held by a ``with`` block or a decorated call, which ends its record.
        self._scoped = False
        self._granted = grant is not None
        #: Strictly increasing per lock name: pass it to storage that rejects stale writers.
        self.token: int | None = None if grant is None else grant.fence
        self._valid_until = -math.inf if grant is None else grant.sent_at + grant.lease_ms / 1000

    def __repr__(self) -> str:
        state = "lost" if self.lost else "released" if self._released else "held"
        if not self.acquired:
            state = "not acquired"
        return f"<Held {self.name!r} token={self.token} {state}>"

    def __bool__(self) -> bool:
        return self.acquired

    @property
    def acquired(self) -> bool:
        return self._granted

    def fence(self, queryset: Any, *, field: str = "fence") -> Fence:
        """``queryset``'s rows guarded by this acquisition's token: ``.update(**fields)``
        (or ``await .aupdate(...)``) writes them only if no newer holder did, in one
        ``UPDATE``, else raises :class:`StaleFence`. ``field``: the fence column
        (:class:`~django_redis_resilience.fencing.FenceField`)."""
        if self.token is None:
            raise LockNotAcquired(
                f"Lock {self.name!r} was not acquired, so there is no fencing token to write with."
            )
        return Fence(queryset, self.token, field=field)

    @property
    def released(self) -> bool:
        return self._released

    @property
    def lost(self) -> bool:
        """The lease ended (or could not be renewed) while the lock was held."""
        if self._lost:
            return True
        return self.acquired and not self._released and time.monotonic() > self._valid_until

    @property
    def valid_for(self) -> float:
        """Seconds the lease is known to last from now (0 when lost or released)."""
        if not self.acquired or self._released or self._lost:
            return 0.0
        return max(0.0, self._valid_until - time.monotonic())

    def _where(self) -> tuple[ConnectionManager, LockKeys]:
        if self.manager is None or self.keys is None:
            raise LockLost(f"Lock {self.name!r} was not acquired.")
        return self.manager, self.keys

    # --- release ----------------------------------------------------------

    def _end(self) -> bool:
        """Mark released; ``False`` when it already was (or never acquired)."""
        if not self._scoped:  # a ``with`` block still needs to find it on exit
            _forget(self)
        with self._guard:
            if self._released or not self.acquired:
                return False
            self._released = True
            if self._job is not None:
                self._job.cancel()
                self._job = None
            return True

    def _released_reply(self, reply: Any) -> bool:
        """Whether the release found the lock still ours; marks it lost otherwise."""
        if int(reply[0]) == 1:
            return True
        self._mark_lost("the lease had ended and the lock was no longer ours at release")
        return False

    def release(self) -> bool:
        """Release now; ``False`` when the lease had already ended (the lock was lost).

        Raises :class:`RedisUnavailable` when Redis cannot be asked (the lock
        then frees itself when its lease ends).
        """
        return run(self._release_plan())

    async def arelease(self) -> bool:
        """The asyncio twin of :meth:`release`."""
        return await arun(self._release_plan())

    def _release_plan(self) -> Plan[bool]:
        if not self._end():
            return not self._lost
        # Shielded: once marked released, a cancellation here would leave the
        # lock held in Redis for the rest of its lease with no way to retry.
        reply = yield Shield(script_step(*self._where(), self._args("release")))
        return self._released_reply(reply)

    # --- extend -----------------------------------------------------------

    def _args(self, op: str, *extra: Any) -> list[Any]:
        return script_args(op, f"{self._owner}:{self.token}", *extra)

    def _extension(self, seconds: float, replace: bool) -> tuple[int, str]:
        """The script's arguments for ``extend``, after checking it can be extended."""
        _check_seconds("seconds", seconds)
        if not self.acquired or self._released:
            raise LockLost(f"Lock {self.name!r} is not held: it cannot be extended.")
        return max(1, math.ceil(seconds * 1000)), "set" if replace else "add"

    def _extended(self, ok: Any, sent: float, seconds: float, replace: bool, before: float) -> None:
        if not int(ok):
            self._mark_lost("its lease had ended before it could be extended")
            raise LockLost(f"Lock {self.name!r} was lost: its lease ended before the extension.")
        with self._guard:
            self._generation += 1
            # "add" adds to what Redis had left, which is at least what we counted
            # on when it was sent (a renewal applied meanwhile may not be in it).
            base = min(before, self._valid_until)
            self._valid_until = sent + seconds if replace else base + seconds

    def extend(self, seconds: float, *, replace: bool = False) -> None:
        """Add ``seconds`` to the lease (``replace=True``: the lease is ``seconds`` from now).

        Raises :class:`LockLost` when the lock is no longer ours.
        """
        run(self._extend_plan(seconds, replace))

    async def aextend(self, seconds: float, *, replace: bool = False) -> None:
        """The asyncio twin of :meth:`extend`."""
        await arun(self._extend_plan(seconds, replace))

    def _extend_plan(self, seconds: float, replace: bool) -> Plan[None]:
        args = self._args("extend", *self._extension(seconds, replace))
        sent, before = time.monotonic(), self._valid_until
        ok = yield script_step(*self._where(), args)
        self._extended(ok, sent, seconds, replace, before)

    # --- renewal (background thread) ----------------------------------------

    def _schedule(self, delay: float, *, settle_only: bool = False) -> None:
        assert self.manager is not None
        with self._guard:
            if self._released or self._lost:
                return
            self._job = self.manager.scheduler.call_later(
                delay,
                functools.partial(self._renew, settle_only),
                name=f"renew lock {self.name!r}",
            )

    def _renew(self, settle_only: bool) -> None:
        """Reset the lease to its full length; runs on the background thread."""
        if self._released or self._lost:
            return
        lease = self.lock.timeout
        sent = time.monotonic()
        generation = self._generation
        try:
            ok = self._renew_call(lease)
        except Exception as exc:
            if self.released:
                return
            left = self._valid_until - time.monotonic()
            if left <= 0:
                self._mark_lost(f"renewal failed until the lease ended ({exc})")
            else:
                logger.warning(
                    "Lock %r: renewal failed (%s); retrying while %.2fs of its lease remain",
                    self.name,
                    exc,
                    left,
                )
                self._schedule(min(lease / 6, max(0.02, left / 3)), settle_only=settle_only)
            return
        if self.released:  # released meanwhile: "not ours" is no loss
            return
        if not ok:
            self._mark_lost("its lease ended before it was renewed")
            return
        with self._guard:
            if generation == self._generation:
                self._valid_until = max(self._valid_until, sent + lease)
            else:  # an extend crossed this renewal: which reached Redis last is unknown
                self._valid_until = min(self._valid_until, sent + lease)
        if not settle_only:
            self._schedule(lease / 3)

    def _owned_plan(self) -> Plan[bool]:
        """Whether Redis holds this acquisition's value under the lock's key now."""
        manager, keys = self._where()
        value = yield command(manager, "get", keys.lock, key=keys.lock)
        return bool(value == f"{self._owner}:{self.token}".encode())

    def _renew_call(self, lease: float) -> bool:
        """Reset the lease in Redis; ``False`` when the lock is no longer ours.

        Sync only: renewals run on the background thread.
        """
        args = self._args("extend", _ms(lease), "renew")
        return bool(int(run(one(script_step(*self._where(), args)))))

    def _mark_lost(self, why: str) -> None:
        with self._guard:
            if self._lost:
                return
            self._lost = True
            if self._job is not None:
                self._job.cancel()
                self._job = None
        logger.warning("Lock %r (token %s) was lost: %s", self.name, self.token, why)
        for receiver, result in signals.lock_lost.send_robust(
            sender=Lock, name=self.name, token=self.token
        ):
            if isinstance(result, Exception):
                logger.error("A lock_lost receiver (%r) failed", receiver, exc_info=result)


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _check_seconds(what: str, value: Any, *, allow_none: bool = False, zero: bool = False) -> None:
    if value is None and allow_none:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        need = "a number of seconds" + (" >= 0" if zero else " > 0")
        if allow_none:
            need += ", or None to wait forever"
        raise InvalidLock(f"{what}={value!r} is not valid: give {need}.")


def _check_choice(what: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidLock(
            f"{what}={value!r} is not valid: use one of {', '.join(repr(c) for c in choices)}."
        )


def _template_fields(template: str) -> list[str]:
    """The argument names a name template uses; see :func:`_parsed_fields`.

    Remembered for names up to 256 characters: ``lock("name")`` is often built
    per use, and parsing its template again each time costs more than the
    lock object itself.
    """
    if len(template) > 256:
        return _template_fields_of(template)
    return list(_parsed_fields(template))


@functools.lru_cache(maxsize=1024)
def _parsed_fields(template: str) -> tuple[str, ...]:
    return tuple(_template_fields_of(template))


def _template_fields_of(template: str) -> list[str]:
    """The argument names a name template uses (``{user.pk}`` -> ``user``).

    Refuses what no call could fill: positional fields, a conversion other
    than ``!r``, ``!s`` or ``!a``, an empty attribute or index (``{a.}``), and
    fields nested deeper than ``str.format`` allows.
    """
    fields: list[str] = []
    for field, conversion, spec in _parsed(template, template):
        fields.append(_field_head(template, field, conversion))
        for inner, inner_conversion, inner_spec in _parsed(template, spec):
            fields.append(_field_head(template, inner, inner_conversion))
            if "{" in inner_spec:
                raise InvalidLock(
                    f"Lock name {template!r} nests fields too deeply: a field inside a format "
                    "spec cannot have fields in its own spec."
                )
    return fields


def _parsed(template: str, text: str) -> list[tuple[str, str | None, str]]:
    """The fields of ``text`` (the template or one field's format spec): name,
    conversion and format spec of each."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InvalidLock(f"Lock name {template!r} is not a valid template: {exc}.") from exc
    return [
        (field, conversion, spec or "")
        for _, field, spec, conversion in parsed
        if field is not None
    ]


def _field_head(template: str, field: str, conversion: str | None) -> str:
    """The argument a field names, once the field is known to be usable."""
    head = field.split(".", 1)[0].split("[", 1)[0]
    if not head or head.isdigit():
        raise InvalidLock(
            f"Lock name {template!r} uses a positional field {{{field}}}: name the "
            "argument instead, e.g. {invoice_id}."
        )
    try:
        _, rest = _string.formatter_field_name_split(field)
        for _ in rest:  # what str.format reads after the name: .attribute or [index]
            pass
    except ValueError as exc:
        raise InvalidLock(
            f"Lock name {template!r} has an unusable field {{{field}}}: {exc}."
        ) from exc
    if conversion is not None and conversion not in ("r", "s", "a"):
        raise InvalidLock(
            f"Lock name {template!r} uses an unknown conversion !{conversion} on "
            f"{{{field}}}: use !r, !s or !a."
        )
    return head


class Lock:
    """A lock on one name (or a name template), usable in every way a lock is used.

    ``with lock("report", timeout=60) as held:``, ``async with``, ``@lock(...)``
    on sync and async functions, or :meth:`acquire`/:meth:`release` by hand.
    """

    def __init__(
        self,
        name: str | Callable[..., str],
        *,
        timeout: float = 30.0,
        wait: float | None = None,
        renew: bool = True,
        cache: str = "default",
        on_busy: str = "raise",
        on_unavailable: str = "raise",
        on_lost: str = "raise",
        wait_replicas: int | None = None,
    ) -> None:
        #: The name itself when it has no fields (``{{``/``}}`` unescaped, as in templates).
        self._literal: str | None = None
        if callable(name):
            self._fields: list[str] | None = None
        elif isinstance(name, str) and name:
            self._fields = _template_fields(name)
            if not self._fields:
                self._literal = _checked_name(name.format())
        else:
            raise InvalidLock(
                f"Lock name {name!r} is not valid: give a non-empty string, a template such as "
                "'invoice:{invoice_id}', or a callable returning the name."
            )
        _check_seconds("timeout", timeout)
        _check_seconds("wait", wait, allow_none=True, zero=True)
        if not isinstance(renew, bool):
            raise InvalidLock(f"renew={renew!r} is not valid: give True or False.")
        if not isinstance(cache, str) or not cache:
            raise InvalidLock(f"cache={cache!r} is not valid: give a CACHES alias.")
        _check_choice("on_busy", on_busy, ON_BUSY)
        _check_choice("on_unavailable", on_unavailable, ON_UNAVAILABLE)
        _check_choice("on_lost", on_lost, ON_LOST)
        if wait_replicas is not None and (
            not isinstance(wait_replicas, int)
            or isinstance(wait_replicas, bool)
            or wait_replicas < 0
        ):
            raise InvalidLock(
                f"wait_replicas={wait_replicas!r} is not valid: give the number of replicas "
                "(0 or more) that must acknowledge a grant before it counts."
            )
        #: Replicas that must acknowledge a grant (``WAIT``) before it counts; 0: none;
        #: ``None``: ``REDIS_RESILIENCE["WAIT_REPLICAS"]`` (read at each acquisition).
        self.wait_replicas = wait_replicas
        self.name = name
        self.timeout = float(timeout)
        self.wait = wait
        self.renew = renew
        self.cache = cache
        self.on_busy = on_busy
        self.on_unavailable = on_unavailable
        self.on_lost = on_lost

    def __repr__(self) -> str:
        return f"<Lock {self.name!r} timeout={self.timeout:g}s cache={self.cache!r}>"

    # --- names --------------------------------------------------------------

    def _static_name(self) -> str:
        if callable(self.name):
            name = self.name()
        elif self._fields:
            raise InvalidLock(
                f"Lock name {self.name!r} is a template: it is filled from the arguments of a "
                "decorated function. Outside a decorator give the name itself (double the "
                "braces for a literal brace)."
            )
        else:
            assert self._literal is not None
            name = self._literal
        return _checked_name(name)

    def _namer(self, fn: Callable[..., Any]) -> Callable[[tuple[Any, ...], dict[str, Any]], str]:
        """How a call of ``fn`` names the lock; template errors surface here, at decoration."""
        signature = inspect.signature(fn)
        template = self.name
        if callable(template):
            takes_args = _takes_arguments(template)

            def from_callable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
                name = template(*args, **kwargs) if takes_args else template()
                return _checked_name(name)

            return from_callable
        params = signature.parameters
        missing = [f for f in self._fields or () if f not in params]
        if missing:
            raise InvalidLock(
                f"Lock name {template!r} uses {', '.join(missing)}, which "
                f"{fn.__qualname__}() does not take (its arguments: "
                f"{', '.join(params) or 'none'})."
            )
        if self._literal is not None:
            fixed = self._literal
            return lambda args, kwargs: fixed

        def from_template(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            try:
                name = template.format_map(bound.arguments)
            except _FILL_ERRORS as exc:
                raise InvalidLock(
                    f"Lock name {template!r} cannot be filled from the arguments of "
                    f"{fn.__qualname__}(): {_reason(exc)}."
                ) from exc
            if not name:
                raise InvalidLock(
                    f"Lock name {template!r} is empty for these arguments of {fn.__qualname__}()."
                )
            return name

        return from_template

    # --- acquisition (shared by sync and async) ------------------------------

    def _target(self, name: str) -> tuple[ConnectionManager, LockKeys]:
        keys = LockKeys.build(_prefix_of(self.cache), name)
        self._check_reentry(name)
        return get_manager(self.cache), keys

    def _identity(self, name: str) -> tuple[object, str]:
        """What two acquisitions of the same lock have in common."""
        return (self.cache, name)

    def _check_reentry(self, name: str) -> None:
        identity = self._identity(name)
        who = _who()
        for held in _holding.get():
            if (
                held._who == who
                and not held._released
                and held.lock._identity(held.name) == identity
            ):
                raise LockAlreadyHeld(
                    f"Lock {name!r} is already held by this thread or task: locks are not "
                    "reentrant, and waiting for it here would wait for ever."
                )

    def _outcome(
        self,
        name: str,
        manager: ConnectionManager,
        keys: LockKeys,
        owner: str,
        grant: Grant | None,
        wait: float | None,
    ) -> Held:
        if grant is None:
            return self._busy(name, wait)
        held = Held(self, name=name, keys=keys, manager=manager, owner=owner, grant=grant)
        if grant.lease_ms < _ms(self.timeout):
            # Handed on (noticed by BLPOP or by the script) with the short
            # hand-off lease: extend it to the full one in good time, but not at
            # once (most bodies end before that, and a renewal racing the body
            # costs it a thread switch).
            held._schedule(held.valid_for / 3, settle_only=not self.renew)
        elif self.renew:
            held._schedule(self.timeout / 3)
        return held

    def _busy(self, name: str, wait: float | None) -> Held:
        if self.on_busy == "raise":
            waited = "it was busy" if wait == 0 else f"it stayed busy for {wait:g}s"
            raise LockNotAcquired(f"Lock {name!r} was not acquired: {waited}.")
        return Held(self, name=name, keys=None, manager=None)

    def _unavailable(self, name: str, exc: RedisUnavailable) -> Held:
        if self.on_unavailable == "raise":
            raise exc
        if self.on_unavailable == "run":
            logger.error(
                "Lock %r: Redis is unavailable (%s); running WITHOUT the lock "
                "(on_unavailable='run')",
                name,
                exc,
            )
        return Held(self, name=name, keys=None, manager=None, degraded=True)

    def _acquire_plan(self, name: str, wait: float | None) -> Plan[Held]:
        """One acquisition, written once for both drivers (:class:`Redlock` has its own)."""
        manager, keys = self._target(name)
        owner = new_owner()
        started = time.monotonic()
        try:
            steps = acquire_steps(keys, owner=owner, lease=self.timeout, wait=wait)
            grant = yield from bound(steps, manager, keys)
            needed = conf.WAIT_REPLICAS if self.wait_replicas is None else self.wait_replicas
            if grant is not None and needed:
                yield from self._replicated(manager, keys, owner, grant, wait, needed)
        except RedisUnavailable as exc:
            _process.count_lock("unavailable", time.monotonic() - started)
            return self._unavailable(name, exc)
        waited = time.monotonic() - started
        if grant is None:
            _process.count_lock("busy", waited)
        else:
            _process.count_lock("acquired", waited, self.timeout)
        return self._outcome(name, manager, keys, owner, grant, wait)

    def _replicated(
        self,
        manager: ConnectionManager,
        keys: LockKeys,
        owner: str,
        grant: Grant,
        wait: float | None,
        needed: int,
    ) -> Plan[None]:
        """Count the grant only once ``wait_replicas`` replicas acknowledged it, else give
        it back and raise :class:`RedisUnavailable`.

        ``WAIT`` counts the writes of its own connection: a mark written after the grant,
        on the same connection in one pipeline, is acknowledged only with everything
        replicated before it, the grant included. Bounded by ``wait`` (1 s when there is
        none) and by half the socket timeout, so that waiting never reads as a dead server.
        """
        bound_s = 1.0 if wait is None or wait <= 0 else wait

        def acknowledged(client: Any) -> Any:
            socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
            limit = bound_s if socket_timeout is None else min(bound_s, socket_timeout / 2)
            pipe = client.pipeline(transaction=False)
            pipe.set(f"{keys.lock}:replicated", grant.fence, px=max(grant.lease_ms, 1))
            pipe.wait(needed, max(1, int(limit * 1000)))
            return pipe.execute()

        give_back = Shield(
            script_step(manager, keys, script_args("release", f"{owner}:{grant.fence}"))
        )
        try:
            replies = yield Execute(manager, acknowledged, key=keys.lock)
        except RedisUnavailable:
            with contextlib.suppress(Exception):  # given back, or it ends with its lease
                yield give_back
            raise
        acked = int(replies[-1])
        if acked >= needed:
            return
        with contextlib.suppress(Exception):  # given back at once, or it ends with its lease
            yield give_back
        raise translate(
            redis.exceptions.ConnectionError(
                f"the lock's grant reached {acked} of the {needed} replicas asked for in time; "
                "it was given back"
            ),
            ErrorKind.UNREACHABLE,
            endpoint=manager.route(write=True, key=keys.lock)[0].display,
            alias=manager.alias,
        )

    def _runs(self, held: Held) -> bool:
        """Whether the guarded code runs after this acquisition attempt."""
        return held.acquired or (held.degraded and self.on_unavailable == "run")

    # --- leaving (shared) ---------------------------------------------------------

    def _finish(self, held: Held, ok: bool | None, failed: bool) -> None:
        """After release: report a lost lock as ``on_lost`` says.

        Lost means: the release found another holder (``ok`` false), the
        renewal gave up (``lock_lost`` was sent), or the release could not be
        sent and the lease has run out by this process's clock.
        """
        _forget(held)
        if not held.acquired:
            return
        expired = time.monotonic() > held._valid_until
        if not (ok is False or held._lost or (ok is None and expired)):
            return
        if self.on_lost == "raise" and not failed:
            raise LockLost(
                f"Lock {held.name!r} (token {held.token}) was lost before the guarded code "
                "finished: another holder may have run at the same time."
            )
        logger.error(
            "Lock %r (token %s) was lost before the guarded code finished", held.name, held.token
        )

    def _release_failed(self, held: Held, exc: Exception) -> None:
        logger.warning(
            "Lock %r: release failed (%s); it frees itself when its lease ends within %.1fs",
            held.name,
            exc,
            max(0.0, held._valid_until - time.monotonic()),
        )

    def _leave_plan(self, held: Held, failed: bool) -> Plan[None]:
        """Release after a ``with`` block or a decorated call; ``on_lost`` says the rest."""
        ok: bool | None = None
        if held.acquired:
            try:
                ok = yield from held._release_plan()
            except RedisUnavailable as exc:
                self._release_failed(held, exc)
        self._finish(held, ok, failed)

    # --- context managers ---------------------------------------------------

    def _enter_plan(self) -> Plan[Held]:
        held = yield from self._acquire_plan(self._static_name(), self.wait)
        _remember(held, scoped=True)
        return held

    def __enter__(self) -> Held:
        return run(self._enter_plan())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        run(self._leave_plan(self._current(), exc is not None))

    async def __aenter__(self) -> Held:
        return await arun(self._enter_plan())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await arun(self._leave_plan(self._current(), exc is not None))

    def _current(self) -> Held:
        """This thread's or task's latest acquisition through this object."""
        who = _who()
        for held in reversed(_holding.get()):
            if held.lock is self and held._who == who:
                return held
        raise LockLost(f"Lock {self.name!r} is not held by this thread or task.")

    # --- decorator ----------------------------------------------------------

    def __call__(self, fn: F) -> F:
        """Run ``fn`` holding the lock; skipped calls (``"skip"`` policies) return ``None``."""
        namer = self._namer(fn)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                return await arun(self._guarded(namer(args, kwargs), fn, args, kwargs))

            return cast(F, awrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return run(self._guarded(namer(args, kwargs), fn, args, kwargs))

        return cast(F, wrapper)

    def _guarded(
        self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Plan[Any]:
        """A decorated call: acquire, call ``fn`` holding the lock, release whatever happens."""
        held = yield from self._acquire_plan(name, self.wait)
        if not self._runs(held):
            return None
        _remember(held, scoped=True)
        try:
            result = yield Call(functools.partial(fn, *args, **kwargs))
        except BaseException:
            yield from self._leave_plan(held, True)
            raise
        yield from self._leave_plan(held, False)
        return result

    # --- by hand ------------------------------------------------------------

    def acquire(self, wait: float | None = _UNSET) -> Held | None:
        """Acquire; ``None`` when skipped by ``on_busy``/``on_unavailable`` ("skip").

        ``wait``: 0 tries once, ``None`` waits for ever, ``N`` waits up to N
        seconds (then :class:`LockNotAcquired`, or ``None`` with
        ``on_busy="skip"``). The acquisition belongs to this thread or task;
        :meth:`release` ends it.
        """
        return run(self._by_hand(wait))

    async def aacquire(self, wait: float | None = _UNSET) -> Held | None:
        """The asyncio twin of :meth:`acquire`."""
        return await arun(self._by_hand(wait))

    def _by_hand(self, wait: float | None) -> Plan[Held | None]:
        wait = self._wait(wait)
        held = yield from self._acquire_plan(self._static_name(), wait)
        return self._kept(held)

    def _wait(self, wait: float | None) -> float | None:
        if wait is _UNSET:
            return self.wait
        _check_seconds("wait", wait, allow_none=True, zero=True)
        return wait

    def _kept(self, held: Held) -> Held | None:
        if not self._runs(held):
            return None
        _remember(held)  # degraded with "run" too: release() then ends it quietly
        return held

    def release(self) -> None:
        """Release this thread's or task's acquisition; :class:`LockLost` if it had expired."""
        run(self._release_current())

    async def arelease(self) -> None:
        """The asyncio twin of :meth:`release`."""
        await arun(self._release_current())

    def _release_current(self) -> Plan[None]:
        held = self._current()
        if not (yield from held._release_plan()):  # ends its record, unless a ``with`` will
            raise LockLost(f"Lock {held.name!r} had expired before it was released.")

    def extend(self, seconds: float, *, replace: bool = False) -> None:
        """Extend this thread's or task's acquisition (see :meth:`Held.extend`)."""
        self._current().extend(seconds, replace=replace)

    async def aextend(self, seconds: float, *, replace: bool = False) -> None:
        await self._current().aextend(seconds, replace=replace)

    def locked(self) -> bool:
        """Whether anyone holds the lock now."""
        return run(self._locked_plan())

    async def alocked(self) -> bool:
        return await arun(self._locked_plan())

    def _locked_plan(self) -> Plan[bool]:
        manager, keys = self._peek_target()
        return bool((yield command(manager, "exists", keys.lock, key=keys.lock)))

    def owned(self) -> bool:
        """Whether this thread or task holds the lock now (asks Redis)."""
        return run(self._owned_plan())

    async def aowned(self) -> bool:
        return await arun(self._owned_plan())

    def _owned_plan(self) -> Plan[bool]:
        held = self._owned_candidate()
        return held is not None and (yield from held._owned_plan())

    def _owned_candidate(self) -> Held | None:
        try:
            held = self._current()
        except LockLost:
            return None
        return held if held.acquired and not held._released else None

    def _peek_target(self) -> tuple[ConnectionManager, LockKeys]:
        keys = LockKeys.build(_prefix_of(self.cache), self._static_name())
        return get_manager(self.cache), keys


def _prefix_of(cache: str) -> str:
    prefix = key_prefix(cache)
    if prefix is None:
        raise InvalidLock(
            f"cache={cache!r} is not a ResilientRedisCache in CACHES: locks need a "
            "Redis that every process shares."
        )
    return prefix


def _takes_arguments(fn: Callable[..., Any]) -> bool:
    """Whether a name callable takes the decorated function's arguments."""
    try:
        own = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    return bool(own.parameters)


#: What filling a template raises when the arguments do not fit it: a missing
#: attribute, index or key, a format spec for another type, a number too large.
_FILL_ERRORS = (AttributeError, LookupError, TypeError, ValueError, ArithmeticError)


def _reason(exc: BaseException) -> str:
    """``exc`` as a short clause for a message."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # an argument's own error that cannot be written
        text = type(exc).__name__
    return text if len(text) <= 200 else f"{text[:200]}..."


def _checked_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidLock(f"Lock name {name!r} is not valid: it must be a non-empty string.")
    return name


def _remember(held: Held, *, scoped: bool = False) -> None:
    held._scoped = scoped
    _holding.set((*_holding.get(), held))


def _forget(held: Held) -> None:
    current = _holding.get()
    if held in current:
        _holding.set(tuple(h for h in current if h is not held))


#: ``lock("name", ...)``: the public spelling (DESIGN's contract).
lock = Lock
