"""Lua scripts shipped as package data, run with EVALSHA (loaded on the first NOSCRIPT).

Every script takes its data as KEYS and ARGV: nothing is ever formatted into
the script's text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any, NoReturn

import redis.exceptions as rex

from django_redis_resilience.connection import script_reply


class LuaScript:
    """One script: its text, its SHA1, and a call that survives a server's empty script cache."""

    def __init__(self, package: str, name: str) -> None:
        self.name = name
        self.source = resources.files(package).joinpath(f"lua/{name}.lua").read_bytes()
        self.sha = hashlib.sha1(self.source).hexdigest()  # noqa: S324 - Redis names scripts by SHA1

    def __repr__(self) -> str:
        return f"<LuaScript {self.name} {self.sha[:8]}>"

    def __call__(self, client: Any, keys: Sequence[Any], args: Sequence[Any] = ()) -> Any:
        """EVALSHA on ``client``; after a restart or failover (NOSCRIPT) load it and run it.

        NOSCRIPT proves the script did not run, so running it again is safe
        even for scripts that are not idempotent. An error the script met
        (``READONLY``, ``OOM``) is raised as for a plain command, whatever the
        server's version (see :func:`~django_redis_resilience.connection._errors.script_reply`).
        """
        try:
            try:
                # execute_command, not evalsha(): the same request, two Python calls fewer
                # on every lock and rate-limit round trip.
                return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                client.script_load(self.source)
                return client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except rex.ResponseError as exc:
            _raise_met(exc)

    async def acall(self, client: Any, keys: Sequence[Any], args: Sequence[Any] = ()) -> Any:
        """The asyncio twin of calling the script."""
        try:
            try:
                return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
            except rex.NoScriptError:
                await client.script_load(self.source)
                return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except rex.ResponseError as exc:
            _raise_met(exc)


def _raise_met(exc: rex.ResponseError) -> NoReturn:
    """Raise the error the script met as redis-py raises it for a plain command, or ``exc``."""
    inner = script_reply(exc)
    if inner is None:
        raise exc
    raise inner from exc
