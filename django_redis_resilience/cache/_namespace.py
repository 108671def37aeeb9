"""Which Redis keys are a cache's own: what ``clear()`` and namespace invalidation delete.

Keys in Redis are exactly Django's ``make_key(key, version)``, so the
namespace follows from ``KEY_PREFIX``, ``VERSION`` and ``KEY_FUNCTION``:

* Django's default key function writes ``<prefix>:<version>:<key>``. A version
  is an integer (negative ones too: ``decr_version`` goes below zero) or the
  configured ``VERSION``.
* A custom key function is called with sample keys and versions. When every
  key it makes is one fixed text around the key and the version (such as
  ``f"{version}|{key_prefix}|{key}"``), that text is the pattern; else, when
  every key starts with a non-empty ``KEY_PREFIX``, the namespace is every key
  that starts with it and the separator the function puts after it (a hashing
  function of the form ``key_prefix + ":" + digest``).
* Otherwise no SCAN can find the cache's keys (a digest of the whole key, or
  no ``KEY_PREFIX``): :func:`namespace_of` raises :class:`UnknownNamespace`,
  which the settings report as ``django_redis_resilience.E006``, so that such a
  cache never runs with a ``clear()`` or a recovery that deletes nothing.

SCAN's ``MATCH`` is a glob with neither alternation nor an optional character,
so the glob asked of Redis may match more than the namespace, and each key
found is checked against an exact expression before it is unlinked. The app's
own keys (locks and rate limits, ``<prefix>:drr:...``) never belong to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.cache.backends.base import default_key_func

from django_redis_resilience.connection import untagged

#: What the template slots stand for.
_KEY = object()
_VERSION = object()

#: The sample a custom key function is first called with: neither can be part of the other.
_SAMPLE_KEY = "drrsamplekey"
_SAMPLE_VERSION = 860_129
#: Further samples the template must reproduce exactly.
_CHECK_KEYS = ("drrsamplekey", "k", "a:b-c_d.e", "drrsamplekey" * 20)
_CHECK_VERSIONS = (860_129, 1, 0, -1, -4242, 10**20)

#: Any version Django makes a key with: an integer, negative ones included.
_INT_VERSION = "-?[0-9]+"


class UnknownNamespace(ValueError):
    """The cache's keys cannot be told from other keys; the message says why."""


def glob_escape(text: str) -> str:
    """Escape Redis glob characters with a backslash (Redis has no ``[]]`` form)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True)
class Namespace:
    """The keys of one cache: a SCAN glob, and an exact test for each key it returns."""

    #: Asked of SCAN: every key of the cache matches it (other keys may too).
    glob: str
    #: A key belongs to the cache only if this matches it from its start.
    exact: re.Pattern[bytes]
    #: The app's reserved namespace (locks, rate limits): never the cache's.
    reserved: bytes

    def owns(self, key: bytes | str) -> bool:
        raw = key.encode() if isinstance(key, str) else key
        if raw.startswith(self.reserved):
            return False
        return self.exact.match(raw) is not None


def namespace_of(key_func: Callable[..., Any], prefix: str, version: Any) -> Namespace:
    """The namespace of a cache with this key function, ``KEY_PREFIX`` and ``VERSION``.

    Raises :class:`UnknownNamespace` when the key function's keys cannot be
    found by a SCAN; its message says why, following the words "KEY_FUNCTION".
    """
    reserved = f"{untagged(prefix)}:drr:".encode()
    versions = f"(?:{_INT_VERSION}|{re.escape(str(version))})"
    if key_func is default_key_func:
        # Every integer starts with '-' or a digit (escaped: '-' would start a range).
        first = r"[\-0-9]" if re.fullmatch(_INT_VERSION, str(version)) else ""
        glob = f"{glob_escape(prefix)}:{first}*"
        return Namespace(glob, _compile(f"{re.escape(prefix)}:{versions}:"), reserved)
    template = _template(key_func, prefix)
    if template is not None and any(isinstance(p, str) and p for p in template):
        glob = "".join(glob_escape(p) if isinstance(p, str) else "*" for p in template)
        exact = "".join(
            re.escape(p) if isinstance(p, str) else "(?s:.*)" if p is _KEY else versions
            for p in template
        )
        return Namespace(re.sub(r"\*+", "*", glob), _compile(exact + r"\Z"), reserved)
    made = _samples(key_func, prefix)
    problem = _prefix_problem(made, prefix)
    if problem is None:
        anchor = _anchor(made, prefix)
        return Namespace(f"{glob_escape(anchor)}*", _compile(re.escape(anchor)), reserved)
    raise UnknownNamespace(f"makes keys that clear() cannot find: {problem}")


def _compile(pattern: str) -> re.Pattern[bytes]:
    return re.compile(pattern.encode())


def _template(key_func: Callable[..., Any], prefix: str) -> list[Any] | None:
    """The fixed text around the key and the version in every key ``key_func`` makes,
    with :data:`_KEY` and :data:`_VERSION` in their places; ``None`` if there is none."""
    try:
        made = str(key_func(_SAMPLE_KEY, prefix, _SAMPLE_VERSION))
    except Exception:
        return None
    version = str(_SAMPLE_VERSION)
    if made.count(_SAMPLE_KEY) != 1 or made.count(version) > 1:
        return None
    slots = [(made.index(_SAMPLE_KEY), len(_SAMPLE_KEY), _KEY)]
    if version in made:
        slots.append((made.index(version), len(version), _VERSION))
    slots.sort(key=lambda slot: slot[0])
    template: list[Any] = []
    end = 0
    for start, length, slot in slots:
        if start < end:
            return None  # the key and the version overlap
        template += [made[end:start], slot]
        end = start + length
    template.append(made[end:])
    for key in _CHECK_KEYS:
        for sample in _CHECK_VERSIONS:
            try:
                if str(key_func(key, prefix, sample)) != _render(template, key, sample):
                    return None
            except Exception:
                return None
    return template


def _render(template: list[Any], key: str, version: int) -> str:
    return "".join(
        p if isinstance(p, str) else key if p is _KEY else str(version) for p in template
    )


def _samples(key_func: Callable[..., Any], prefix: str) -> dict[tuple[str, int], str | Exception]:
    """The key ``key_func`` makes (or the error it raises) for each sample key and version."""
    made: dict[tuple[str, int], str | Exception] = {}
    for key in _CHECK_KEYS:
        for version in _CHECK_VERSIONS:
            try:
                made[key, version] = str(key_func(key, prefix, version))
            except Exception as exc:
                made[key, version] = exc
    return made


def _prefix_problem(made: dict[tuple[str, int], str | Exception], prefix: str) -> str | None:
    """Why "the keys starting with ``KEY_PREFIX``" is not this cache's namespace, if not."""
    if not prefix:
        return (
            "its keys follow no fixed pattern around the key and the version, and "
            "KEY_PREFIX is empty, so they cannot be told from any other key in the database"
        )
    for (key, version), result in made.items():
        if isinstance(result, Exception):
            return f"it raised {type(result).__name__} for the key {key!r}, version {version}"
        if not result.startswith(prefix):
            return (
                "its keys follow no fixed pattern around the key and the version, and "
                f"do not all start with KEY_PREFIX (it made {result!r} for the key "
                f"{key!r}, version {version})"
            )
    return None


def _anchor(made: dict[tuple[str, int], str | Exception], prefix: str) -> str:
    """What every key starts with: ``KEY_PREFIX`` and the separator after it, if any.

    The text all samples share after the prefix counts up to its last character
    that is no letter or digit (``prefix:`` of ``prefix:<digest>``): so the keys
    of a cache whose prefix merely starts with this one (``site2``, ``site``) are
    not this cache's; letters or digits shared by chance (a digest's) are left out.
    """
    keys = [m for m in made.values() if isinstance(m, str)]
    tail = keys[0][len(prefix) :]
    for key in keys[1:]:
        while not key.startswith(prefix + tail):
            tail = tail[:-1]
    cut = max((i + 1 for i, c in enumerate(tail) if not c.isalnum()), default=0)
    return prefix + tail[:cut]
