"""One settings object over ``REDIS_RESILIENCE`` and each resilient cache's ``OPTIONS``.

Values are read from Django settings on every access (so ``override_settings``
works) and validated without any network I/O. Every problem names the setting
and shows its value with secrets masked.

Defaults, rules and check IDs come from the settings schema
(:mod:`django_redis_resilience._schema`), whose sections each feature declares in
its own ``_settings`` module; this module imports no feature package. Checks that
only a feature can judge (TLS, ``FALLBACK``, ``KEY_FUNCTION``, rule compilation)
are that feature's problem finders, run here in a fixed order.

Precedence for connection settings: the URL's query string, then the cache's
``OPTIONS``, then ``REDIS_RESILIENCE``, then the built-in defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings

from django_redis_resilience import _schema
from django_redis_resilience._problems import MASK, PREFIX, CacheScope, Problem
from django_redis_resilience._schema import Section, Setting
from django_redis_resilience.exceptions import InvalidLocation, InvalidOption

if TYPE_CHECKING:
    from django_redis_resilience.connection import ConnectionOptions, Topology

__all__ = ["BACKEND", "PREFIX", "Problem", "Settings", "conf"]

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"

#: The sections whose settings ``REDIS_RESILIENCE`` holds, and a cache's ``OPTIONS``.
SHARED_SECTIONS = ("connection", "global")
OPTIONS_SECTIONS = ("connection", "options")

#: The dicts ``REDIS_RESILIENCE`` holds besides the connection settings; their keys are
#: the sections the rate-limit and health features declare.
GLOBAL = _schema.register(Section("global", (
    Setting(
        "RATELIMIT",
        default={},
        keys="RATELIMIT",
        kind="dict",
        doc=(
            "the rate-limit middleware's rules and the client-address settings; keys "
            "[below](#ratelimit)"
        ),
        ids="E002",
    ),
    Setting(
        "HEALTH",
        default={},
        keys="HEALTH",
        kind="dict",
        doc="the health report, endpoints and degradation events; keys [below](#health)",
        ids="E002",
    ),
    Setting(
        "WAIT_REPLICAS",
        default=0,
        test=lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        need="an integer >= 0",
        kind="integer ≥ 0",
        doc=(
            "the default of every lock's `wait_replicas`: replicas that must acknowledge a "
            "grant before it counts ([Locks](locks.md#grants-that-survive-a-failover))"
        ),
        ids="E002",
    ),
)))  # fmt: skip


def _names(section_names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for s in section_names for name in _schema.section(s).names)


def _setting(section_names: tuple[str, ...], name: str) -> Setting | None:
    for section_name in section_names:
        section = _schema.section(section_name)
        if name in section:
            return section[name]
    return None


class Settings:
    """Typed access to every setting of the app; each property reads settings afresh."""

    # --- global -------------------------------------------------------------

    @property
    def user(self) -> Mapping[str, Any]:
        value = getattr(settings, "REDIS_RESILIENCE", {})
        return value if isinstance(value, Mapping) else {}

    @property
    def SOCKET_CONNECT_TIMEOUT(self) -> float | None:
        return self._global("SOCKET_CONNECT_TIMEOUT")  # type: ignore[no-any-return]

    @property
    def SOCKET_TIMEOUT(self) -> float | None:
        return self._global("SOCKET_TIMEOUT")  # type: ignore[no-any-return]

    @property
    def HEALTH_CHECK_INTERVAL(self) -> float:
        return self._global("HEALTH_CHECK_INTERVAL")  # type: ignore[no-any-return]

    @property
    def MAX_CONNECTIONS(self) -> int | None:
        return self._global("MAX_CONNECTIONS")  # type: ignore[no-any-return]

    @property
    def PROBE_TIMEOUT(self) -> float:
        return self._global("PROBE_TIMEOUT")  # type: ignore[no-any-return]

    @property
    def WAIT_REPLICAS(self) -> int:
        return self._global("WAIT_REPLICAS")  # type: ignore[no-any-return]

    @property
    def BREAKER(self) -> Mapping[str, Any]:
        return self._global("BREAKER")  # type: ignore[no-any-return]

    @property
    def RETRY(self) -> Mapping[str, Any]:
        return self._global("RETRY")  # type: ignore[no-any-return]

    @property
    def RATELIMIT(self) -> Mapping[str, Any]:
        """The given keys only; readers take a missing key's default from the schema's
        ``RATELIMIT`` section (``TRUSTED_PROXY_HOPS`` 0, ``IPV6_PREFIX`` 64, ...)."""
        return self._global("RATELIMIT")  # type: ignore[no-any-return]

    @property
    def HEALTH(self) -> Mapping[str, Any]:
        """Every key of the schema's ``HEALTH`` section, the given ones merged over the
        defaults (``TIMEOUT`` 1 s per probe, ``CACHE_SECONDS`` 5, ...)."""
        return {**_schema.section("HEALTH").defaults(), **self._global("HEALTH")}

    @property
    def CLUSTER(self) -> Mapping[str, Any]:
        return self._global("CLUSTER")  # type: ignore[no-any-return]

    def _global(self, name: str) -> Any:
        """A ``REDIS_RESILIENCE`` value, or its default (validated by problems() at startup)."""
        setting = _setting(SHARED_SECTIONS, name)
        assert setting is not None, name
        return self.user[name] if name in self.user else setting.default_value()

    # --- caches -------------------------------------------------------------

    def cache_settings(self, alias: str) -> Mapping[str, Any]:
        caches: Mapping[str, Any] = getattr(settings, "CACHES", {})
        return caches[alias]  # type: ignore[no-any-return]

    def resilient_aliases(self) -> list[str]:
        """Aliases in ``CACHES`` served by this app's backend."""
        caches: Mapping[str, Any] = getattr(settings, "CACHES", {})
        return [
            alias
            for alias, cfg in caches.items()
            if isinstance(cfg, Mapping) and cfg.get("BACKEND") == BACKEND
        ]

    def options(self, alias: str) -> Mapping[str, Any]:
        options = self.cache_settings(alias).get("OPTIONS") or {}
        return options if isinstance(options, Mapping) else {}

    def topology(self, alias: str) -> Topology:
        """The nodes of ``alias``; raises :class:`InvalidLocation` naming the setting."""
        build = _schema.provided("topology")
        return build(  # type: ignore[no-any-return]
            location=self.cache_settings(alias).get("LOCATION", ""),
            sentinels=self.options(alias).get("SENTINELS"),
            alias=alias,
        )

    def connection_options(self, alias: str) -> ConnectionOptions:
        """The validated connection options of ``alias``; raises on a bad value."""
        found = self._global_problems() + self._alias_problems(alias)
        errors = [p for p in found if p.level == "error"]
        if errors:
            raise errors[0].error()
        build = _schema.provided("connection_options")
        return build(options=self.options(alias), shared=self.user)  # type: ignore[no-any-return]

    # --- validation ---------------------------------------------------------

    def problems(self) -> list[Problem]:
        """Every configuration problem, errors and warnings; no network I/O."""
        aliases = self.resilient_aliases()
        found = self._global_problems()
        for alias in aliases:
            found += self._alias_problems(alias)
        caches: Mapping[str, Any] = getattr(settings, "CACHES", {})
        for finder in _schema.finders("project"):
            found += finder(aliases, caches)
        return found

    def _global_problems(self) -> list[Problem]:
        raw = getattr(settings, "REDIS_RESILIENCE", {})
        if not isinstance(raw, Mapping):
            return [Problem.of("E001", "REDIS_RESILIENCE", raw, "must be a dict")]
        known = _names(SHARED_SECTIONS)
        found = [
            Problem.of("E001", f"REDIS_RESILIENCE[{key!r}]", raw[key], "is not a known setting",
                       hint="known settings: " + ", ".join(known))
            for key in raw
            if key not in known
        ]  # fmt: skip
        found += _section_problems(raw, "REDIS_RESILIENCE", SHARED_SECTIONS, code="E002")
        for finder in _schema.finders("global"):
            found += finder(raw, self.resilient_aliases())
        return found

    def _alias_problems(self, alias: str) -> list[Problem]:
        base = f"CACHES[{alias!r}]"
        cfg = self.cache_settings(alias)
        found, topology = self._location_problems(alias)
        options = cfg.get("OPTIONS") or {}
        if not isinstance(options, Mapping):
            return [*found, Problem.of("E004", f"{base}['OPTIONS']", options, "must be a dict")]
        found += _option_name_problems(options, f"{base}['OPTIONS']")
        found += _section_problems(options, f"{base}['OPTIONS']", OPTIONS_SECTIONS, code="E004")
        caches: Mapping[str, Any] = getattr(settings, "CACHES", {})
        scope = CacheScope(alias=alias, cfg=cfg, options=options, topology=topology, caches=caches)
        for finder in _schema.finders("cache"):
            found += finder(scope)
        return found

    def _location_problems(self, alias: str) -> tuple[list[Problem], Topology | None]:
        """E003 for a ``LOCATION`` (or ``SENTINELS``) that cannot be parsed; else its nodes."""
        try:
            return [], self.topology(alias)
        except InvalidLocation as exc:
            reason = str(exc).rpartition(" is not a valid Redis location: ")[2].rstrip(".")
            location = self.cache_settings(alias).get("LOCATION", "")
            return [Problem.of("E003", f"CACHES[{alias!r}]['LOCATION']", location, reason)], None

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` naming every invalid setting."""
        errors = [p for p in self.problems() if p.level == "error"]
        if len(errors) == 1:
            raise errors[0].error()
        if errors:
            lines = "\n".join(f"  - {p.id}: {p.text}" for p in errors)
            raise InvalidOption(
                f"{len(errors)} invalid settings for django_redis_resilience:\n{lines}"
            )


def _option_name_problems(options: Mapping[str, Any], where: str) -> list[Problem]:
    """W001 for a django-redis option without effect here, E004 for an unknown uppercase one
    (lowercase options go to redis-py's connections and are checked by the connection layer)."""
    ignored = _schema.section("ignored")
    known = _names(OPTIONS_SECTIONS)
    found = []
    for key, value in options.items():
        if key in ignored:
            found.append(Problem.of("W001", f"{where}[{key!r}]", value,
                                    "has no effect with django_redis_resilience's backend",
                                    hint="remove it; the backend manages its own clients and "
                                         "pools"))  # fmt: skip
        elif key not in known and not key.islower():
            found.append(Problem.of("E004", f"{where}[{key!r}]", value, "is not a known option",
                                    hint="known options: " + ", ".join(known)))  # fmt: skip
    return found


def _section_problems(
    given: Mapping[str, Any], where: str, section_names: tuple[str, ...], *, code: str
) -> list[Problem]:
    """Each given setting of these sections against its own rule, in the schema's order."""
    found: list[Problem] = []
    for section_name in section_names:
        for setting in _schema.section(section_name):
            if setting.name in given:
                found += _value_problems(setting, given[setting.name], where, code=code)
    return found


def _value_problems(setting: Setting, value: object, where: str, *, code: str) -> list[Problem]:
    where = f"{where}[{setting.name!r}]"
    if setting.keys is not None:
        return _keyed_problems(value, where, _schema.section(setting.keys), code=code)
    message = setting.problem(value)
    if message is None:
        return []
    return [Problem.of(code, where, MASK if setting.secret else value, message)]


def _keyed_problems(value: object, where: str, section: Section, *, code: str) -> list[Problem]:
    """A dict setting whose keys are a section's settings, each with its own rule."""
    hint = "keys: " + ", ".join(section.names)
    if not isinstance(value, Mapping):
        return [Problem.of(code, where, value, "must be a dict", hint=hint)]
    found: list[Problem] = []
    for key, sub in value.items():
        if key not in section:
            found.append(Problem.of(code, f"{where}[{key!r}]", sub, "is not a known key",
                                    hint=hint))  # fmt: skip
        else:
            found += _value_problems(section[key], sub, where, code=code)
    return found


conf = Settings()
