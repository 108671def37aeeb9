"""``RateLimitMiddleware``: limits from ``REDIS_RESILIENCE["RATELIMIT"]["RULES"]``.

All the rules a request matches are checked in one EVALSHA per cluster slot
(one in all off-cluster), all or nothing. It runs before the view, so it sees
session users (``AuthenticationMiddleware`` must come first), not users that
DRF authenticates by token inside the view: limit those with a DRF throttle.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from django_redis_resilience import _steps
from django_redis_resilience._steps import Call, Plan
from django_redis_resilience.conf import conf
from django_redis_resilience.exceptions import InvalidRateLimit
from django_redis_resilience.ratelimiting._core import Decision, Limit, check_plan, release_plan
from django_redis_resilience.ratelimiting._decorator import _Limit, holding_plan
from django_redis_resilience.ratelimiting._headers import add_headers
from django_redis_resilience.ratelimiting._settings import RATELIMIT, RULES

RULE_KEYS = ("PATH", "METHOD", "KEY", "RATE", "ALGORITHM", "BURST", "COST", "NAME", "BLOCK")


@dataclass(frozen=True)
class Rule:
    """One rule: which requests (path pattern, methods), who they count as, at what rate."""

    name: str
    path: re.Pattern[str]
    limit: _Limit


def load_rules(settings: Mapping[str, Any]) -> list[Rule]:
    """Compile and check every rule; :class:`InvalidRateLimit` names the rule and the key."""
    rules = RATELIMIT.read(settings, "RULES")
    if not isinstance(rules, list | tuple):
        raise InvalidRateLimit("REDIS_RESILIENCE['RATELIMIT']['RULES'] must be a list of dicts.")
    on_unavailable = RATELIMIT.read(settings, "ON_UNAVAILABLE")
    cache = settings.get("CACHE")
    compiled: list[Rule] = []
    for index, rule in enumerate(rules):
        where = f"REDIS_RESILIENCE['RATELIMIT']['RULES'][{index}]"
        if not isinstance(rule, Mapping):
            raise InvalidRateLimit(f"{where} must be a dict, not {rule!r}.")
        unknown = sorted(set(rule) - set(RULE_KEYS))
        if unknown:
            raise InvalidRateLimit(f"{where} has unknown keys {unknown}; known: {RULE_KEYS}.")
        for required in ("PATH", "KEY", "RATE"):
            if required not in rule:
                raise InvalidRateLimit(f"{where} needs {required!r}.")
        try:
            path = re.compile(rule["PATH"])
        except (re.error, TypeError) as exc:
            message = f"{where}['PATH'] = {rule['PATH']!r} is not a regex: {exc}."
            raise InvalidRateLimit(message) from None
        try:
            limit = _Limit(key=rule["KEY"], rate=rule["RATE"],
                           algorithm=RULES.read(rule, "ALGORITHM"), burst=rule.get("BURST"),
                           method=rule.get("METHOD"), group=None,
                           block=RULES.read(rule, "BLOCK"), cost=RULES.read(rule, "COST"),
                           cache=cache, on_unavailable=on_unavailable)  # fmt: skip
        except InvalidRateLimit as exc:
            raise InvalidRateLimit(f"{where}: {exc}") from None
        name = rule["NAME"] if "NAME" in rule else RULES["NAME"].default.format(index=index)
        compiled.append(Rule(str(name), path, limit))
    return compiled


class RateLimitMiddleware:
    """Applies the ``RULES`` to every request, sync or async."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        settings = conf.RATELIMIT
        self.rules = load_rules(settings)
        self.cache: str | None = settings.get("CACHE")
        self.on_unavailable: str = RATELIMIT.read(settings, "ON_UNAVAILABLE")
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def _matching(self, request: HttpRequest) -> list[Rule]:
        return [
            rule
            for rule in self.rules
            if rule.limit.applies(request) and rule.path.search(request.path_info)
        ]

    @staticmethod
    def _limits(
        rules: Sequence[Rule], request: HttpRequest, identities: list[str | None]
    ) -> list[tuple[Rule, Limit]]:
        chosen: list[tuple[Rule, Limit]] = []
        for rule, identity in zip(rules, identities, strict=True):
            if identity is not None:
                chosen.append((rule, rule.limit.limit(rule.name, identity, request)))
        return chosen

    @staticmethod
    def _refusal(
        request: HttpRequest, limits: Sequence[tuple[Rule, Limit]], decisions: list[Decision]
    ) -> HttpResponseBase | None:
        """The response that replaces the view when a rule refuses; ``None`` to go ahead.

        When one refuses, the caller gives back the slots the others took in
        other cluster slots (:func:`release_plan`).
        """
        refusal = None
        for (rule, _), decision in zip(limits, decisions, strict=True):
            refusal = rule.limit.refused(request, decision) or refusal
        return refusal

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        rules = self._matching(request)
        identities = [rule.limit.key.resolve(rule.name, request) for rule in rules]
        return _steps.run(self._plan(request, rules, identities))

    async def __acall__(self, request: HttpRequest) -> Any:
        rules = self._matching(request)
        identities = [await rule.limit.key.aresolve(rule.name, request) for rule in rules]
        return await _steps.arun(self._plan(request, rules, identities))

    def _plan(
        self, request: HttpRequest, rules: Sequence[Rule], identities: list[str | None]
    ) -> Plan[Any]:
        """:meth:`__call__` and :meth:`__acall__` once the identities are known, written
        once: the slots a refused request took are given back by the same driver (never a
        blocking round trip on the event loop)."""
        limits = self._limits(rules, request, identities)
        if not limits:
            return (yield Call(lambda: self.get_response(request)))
        check = check_plan([limit for _, limit in limits], peek=False, cache=self.cache,
                           on_unavailable=self.on_unavailable)  # fmt: skip
        decisions = yield from check
        response = self._refusal(request, limits, decisions)
        if response is not None:
            for decision in decisions:
                yield from release_plan(decision)
        else:
            response = yield from holding_plan(decisions, lambda: self.get_response(request))
        for decision in decisions:
            add_headers(response, decision)
        return response
