"""A configuration problem in the shape of a Django system check, and how values are shown.

Features' problem finders build :class:`Problem` objects here, without importing
:mod:`django_redis_resilience.conf`; every message shows values with secrets masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django_redis_resilience import _schema
from django_redis_resilience.exceptions import InvalidLocation, InvalidOption

PREFIX = "django_redis_resilience."
MASK = "***"


@dataclass(frozen=True)
class Problem:
    """One finding about the configuration, in the shape of a Django system check."""

    id: str
    level: Literal["error", "warning"]
    setting: str
    value: object
    message: str
    hint: str | None = None

    @classmethod
    def of(
        cls, code: str, setting: str, value: object, message: str, hint: str | None = None
    ) -> Problem:
        """``code`` is the ID without the app's prefix; ``W...`` IDs are warnings."""
        level: Literal["error", "warning"] = "warning" if code.startswith("W") else "error"
        return cls(PREFIX + code, level, setting, value, message, hint)

    @property
    def text(self) -> str:
        return f"{self.setting} = {shown(self.value, self.setting)}: {self.message}"

    def error(self) -> InvalidOption | InvalidLocation:
        cls = InvalidLocation if self.id.endswith("E003") else InvalidOption
        hint = f" Hint: {self.hint}" if self.hint else ""
        return cls(f"{self.id}: {self.text}.{hint}")


@dataclass(frozen=True)
class CacheScope:
    """One resilient cache, as the features' problem finders see it."""

    alias: str
    #: Its entry in ``CACHES``.
    cfg: Mapping[str, Any]
    #: Its ``OPTIONS`` (a dict: that is checked before any finder runs).
    options: Mapping[str, Any]
    #: Its parsed ``LOCATION``, or ``None`` when that is invalid (E003).
    topology: Any
    #: Every cache in ``CACHES``.
    caches: Mapping[str, Any]

    @property
    def base(self) -> str:
        return f"CACHES[{self.alias!r}]"

    @property
    def where(self) -> str:
        return f"{self.base}['OPTIONS']"


def shown(value: object, setting: str = "") -> str:
    """``value`` as a message shows it: secrets masked by their names (the setting's own and
    those inside it), then any URL's password (also inside a list's or bytes' ``repr``)."""
    mask_url = _schema.provided("mask_url")
    value = _redacted(value, _last_name(setting))
    return repr(mask_url(value)) if isinstance(value, str) else str(mask_url(repr(value)))


#: Words in a setting's or key's name that say its value is a secret (``REDIS_PASSWORD``,
#: ``ssl_password``, ``TOKEN``, ``sentinel_auth``...).
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "auth", "credential")
#: A name that says its value holds secrets (``SENTINEL_KWARGS``, ``CLIENT_KWARGS``): a dict
#: is shown with its secrets masked; anything else (a string, a list) is masked whole.
_HOLDS_SECRETS = "kwargs"
_MAX_DEPTH = 8


def _last_name(setting: str) -> str:
    """The last name in a setting's path: ``REDIS_PASSWORD`` in
    ``CACHES['default']['OPTIONS']['REDIS_PASSWORD']``, ``ssl_password`` in
    ``CACHES['default']['OPTIONS']: ssl_password``."""
    names = re.findall(r"\w+", setting)
    return names[-1] if names else ""


def _is_secret(name: object) -> bool:
    return isinstance(name, str) and any(word in name.lower() for word in _SECRET_WORDS)


def _redacted(value: object, name: object = "", depth: int = 0) -> object:
    """``value`` with each secret in it masked: the whole of it if ``name`` is a secret's,
    and each entry of a dict, list or ``(name, value)`` pair whose name is one."""
    if _is_secret(name) or depth > _MAX_DEPTH:
        return MASK
    if isinstance(value, Mapping):
        return {key: _redacted(item, key, depth + 1) for key, item in value.items()}
    if isinstance(name, str) and _HOLDS_SECRETS in name.lower():
        return MASK
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return (value[0], _redacted(value[1], value[0], depth + 1))  # a (name, value) pair
    if isinstance(value, list | tuple):
        items = [_redacted(item, "", depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value
