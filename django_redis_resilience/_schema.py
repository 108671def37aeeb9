"""The settings schema: each setting's default, rule, check ID and documentation, in one table.

Framework-free on purpose: it imports neither Django nor any feature package. Each feature
declares its own sections in its ``_settings`` module, which the feature package's
``__init__`` imports, so a rule that needs a feature's internals lives with that feature
and :mod:`django_redis_resilience.conf` reads the schema without importing any feature.
:mod:`django_redis_resilience.checks` imports the features when Django starts; a process
that reads settings without ``django.setup()`` (a script that builds a cache) has them
imported on its first read of the registry, so validation is never silently shorter.

A section is one table of ``docs/configuration.md`` (``connection``, ``options``,
``BREAKER``, ...); each setting carries that table's cells (type, meaning, check IDs), and
the docs test compares the page with this schema.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The default of a setting that must be given (a rate-limit rule's ``PATH``).
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()

#: Why a value is invalid (the message after ``<setting> = <value>: ``), or ``None``.
Check = Callable[[Any], "str | None"]


def is_int(value: object) -> bool:
    """An integer that is not a bool (``True`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: object) -> bool:
    """A number that is not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def importable(path: object) -> bool:
    """A class, or a dotted path that imports (as Django's ``import_string`` reads it)."""
    if isinstance(path, type):
        return True
    if not isinstance(path, str):
        return False
    module, dot, name = path.rpartition(".")
    if not dot:
        return False
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


@dataclass(frozen=True)
class Setting:
    """One setting: its default, its rule, and its row in the configuration reference.

    A rule is either ``test`` with ``need`` (the message is ``must be <need>``) or
    ``check``, which words its own message; neither means the value is checked elsewhere
    (by a feature's problem finder) or not at all.
    """

    name: str
    default: Any = None
    test: Callable[[Any], bool] | None = None
    need: str = ""
    check: Check | None = None
    #: The section a dict setting's keys belong to (``BREAKER``'s keys, ...).
    keys: str | None = None
    #: Shown as ``***`` in messages, whatever its value.
    secret: bool = False
    #: The keyword of the configuration object the value becomes (``failure_threshold``).
    field: str | None = None
    # --- the row in docs/configuration.md ---
    kind: str = "—"
    doc: str = ""
    #: The check column: IDs a bad value is reported with (``—``: none).
    ids: str = "—"
    #: The default cell when the default is no literal (``required``, a described store).
    shown: str | None = None

    def problem(self, value: object) -> str | None:
        """Why ``value`` breaks this setting's own rule, or ``None``."""
        if self.check is not None:
            return self.check(value)
        if self.test is not None and not self.test(value):
            return f"must be {self.need}"
        return None

    def default_value(self) -> Any:
        """The default, a fresh copy when it is a container (callers may change it)."""
        default = self.default
        return type(default)(default) if isinstance(default, dict | list | set) else default


@dataclass(frozen=True)
class Section:
    """The settings of one dict (or one table of the reference), in documented order."""

    name: str
    settings: tuple[Setting, ...]
    _index: dict[str, Setting] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {s.name: s for s in self.settings}
        if len(index) != len(self.settings):
            raise ValueError(f"section {self.name} declares a setting twice")
        object.__setattr__(self, "_index", index)

    def __getitem__(self, name: str) -> Setting:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[Setting]:
        return iter(self.settings)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._index)

    def defaults(self) -> dict[str, Any]:
        """Every setting's default (fresh containers), required ones left out."""
        return {s.name: s.default_value() for s in self.settings if s.default is not REQUIRED}

    def read(self, given: Mapping[str, Any], name: str) -> Any:
        """``given[name]``, or the schema's default when it is not given."""
        return given[name] if name in given else self._index[name].default_value()


_SECTIONS: dict[str, Section] = {}

#: The packages that declare settings (their ``__init__`` imports their ``_settings``).
FEATURES = ("connection", "cache", "ratelimiting", "health")
_features_loaded = False


def _load_features() -> None:
    """Import every feature once, so each section and finder is registered."""
    global _features_loaded
    if not _features_loaded:
        _features_loaded = True
        for name in FEATURES:
            importlib.import_module(f"django_redis_resilience.{name}")


def register(section: Section) -> Section:
    """Add a feature's section; registering the same section again is a no-op."""
    known = _SECTIONS.get(section.name)
    if known is not None and known != section:
        raise ValueError(f"two different settings sections are named {section.name!r}")
    _SECTIONS[section.name] = section
    return section


def section(name: str) -> Section:
    """A registered section; an unknown one is an error, never an empty section."""
    if name not in _SECTIONS:
        _load_features()
    try:
        return _SECTIONS[name]
    except KeyError:
        raise LookupError(f"no feature declares the settings section {name!r}") from None


def sections() -> Mapping[str, Section]:
    """Every section by name."""
    _load_features()
    return dict(_SECTIONS)


# --- what features give conf without conf importing them --------------------------------

_HOOKS: dict[str, Callable[..., Any]] = {}
_FINDERS: dict[str, dict[Callable[..., list[Any]], int]] = {}


def provide(name: str, function: Callable[..., Any]) -> None:
    """A feature's function that conf calls by name (``topology``, ``mask_url``, ...)."""
    _HOOKS[name] = function


def provided(name: str) -> Callable[..., Any]:
    if name not in _HOOKS:
        _load_features()
    try:
        return _HOOKS[name]
    except KeyError:
        raise LookupError(f"no feature provides the settings hook {name!r}") from None


def add_finder(scope: str, finder: Callable[..., list[Any]], *, order: int) -> None:
    """A feature's problem finder for ``scope``: ``"global"`` (``REDIS_RESILIENCE``),
    ``"cache"`` (one resilient cache) or ``"project"`` (after every cache). ``order``
    places its problems among the others', whatever order the features were imported in."""
    _FINDERS.setdefault(scope, {})[finder] = order


def finders(scope: str) -> tuple[Callable[..., list[Any]], ...]:
    """Every feature's finders for ``scope``, in their order."""
    _load_features()
    found = _FINDERS.get(scope, {})
    return tuple(sorted(found, key=found.__getitem__))
