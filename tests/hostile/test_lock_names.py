"""Lock names and templates from anywhere: a working lock, or ``InvalidLock`` saying why.

A template is filled from the decorated call's bound arguments exactly as
``str.format_map`` fills it; when that cannot work (a positional field, an
argument the function does not take, an attribute the argument lacks, an
unknown conversion) the caller gets ``InvalidLock``, never the formatting
machinery's own ``AttributeError`` or ``ValueError``. Whatever the name, a
lock's keys share one cluster slot (one hash tag), and two names never share
keys.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from django.test import override_settings
from hypothesis import example, given
from hypothesis import strategies as st

from django_redis_resilience import lock
from django_redis_resilience.cache import ResilientRedisCache
from django_redis_resilience.connection import slot_of
from django_redis_resilience.exceptions import InvalidLock
from django_redis_resilience.locks._protocol import LockKeys
from django_redis_resilience.testing import ClusterGroup
from tests.cache.conftest import resilient_caches
from tests.hostile._support import ANY_TEXT, examples


@dataclass
class Thing:
    """An argument with attributes, as ``{invoice.pk}`` expects."""

    pk: Any
    name: str = "thing"

    def __str__(self) -> str:
        return f"thing-{self.pk}"


def job(a: Any, b: Any = "dflt", *, c: Any = 7) -> None:
    """The decorated function: positional, defaulted and keyword-only arguments."""


_PIECES = [
    "job:", "-", "{a}", "{b}", "{c}", "{a.pk}", "{a.name}", "{a[0]}", "{a!r}", "{a!s}",
    "{a:>4}", "{b!a}", "{{", "}}", "x", "é", "\x00", " ",
    # Never fillable, whatever the arguments:
    "{d}", "{0}", "{}", "{a!z}", "{a.}", "{a..pk}", "{ a}", "{a:{b}}",
    # Fillable or not depending on the argument:
    "{a.missing}", "{a[9]}", "{a:d}", "{a:%}", "{b[k]}",
    # Not templates at all:
    "{", "}", "{a", "a}", "{a[}", "{a!}", "{a!rr}",
]  # fmt: skip
TEMPLATES = st.one_of(
    st.lists(st.sampled_from(_PIECES), min_size=1, max_size=4).map("".join),
    st.text(st.sampled_from(list("{}!:.[]0abcd_ rs%>é")), min_size=1, max_size=12),
)
ARGUMENTS = st.one_of(
    ANY_TEXT,
    st.integers(),
    st.floats(allow_nan=True),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["k", "pk"]), ANY_TEXT, max_size=2),
    st.builds(Thing, pk=st.one_of(st.integers(), ANY_TEXT)),
)


def expected_name(template: str, arguments: dict[str, Any]) -> str | None:
    """The lock name ``template`` gives for ``arguments``, or ``None`` when there is none.

    The README's rule: a template filled from the call's bound arguments (defaults
    included), fields naming them (``{arg}``, ``{arg.attr}``); an empty name is no name.
    """
    try:
        for _, field, _, _ in string.Formatter().parse(template):
            if field is not None and field.split(".", 1)[0].split("[", 1)[0] not in arguments:
                return None  # positional, empty or unknown field
        name = template.format_map(arguments)
    except Exception:
        return None
    return name or None


@pytest.fixture(scope="module")
def prefix(shared_cache: ResilientRedisCache) -> str:
    return shared_cache.key_prefix


def _held_keys(raw: redis.Redis, prefix: str, name: str) -> bool:
    return bool(raw.exists(LockKeys.build(prefix, name).lock))


# --- templates on decorated functions ------------------------------------------------------------


@examples(150)
@given(template=TEMPLATES, a=ARGUMENTS, b=st.one_of(st.just("default"), ARGUMENTS))
@example(template="job:{a.missing}", a=Thing(pk=1), b="default")  # no such attribute
@example(template="job:{a!z}", a=1, b="default")  # unknown conversion
@example(template="job:{a.}", a=1, b="default")  # empty attribute
@example(template="job:{a[9]}", a="short", b="default")  # index out of range
@example(template="{a:d}", a="text", b="default")  # format spec for another type
def test_a_template_gives_a_lock_or_invalid_lock(
    prefix: str, raw: redis.Redis, template: str, a: Any, b: Any
) -> None:
    call_kwargs = {} if b == "default" else {"b": b}
    bound = {"a": a, "b": "dflt" if b == "default" else b, "c": 7}
    name = expected_name(template, bound)
    seen: list[bool] = []

    def body(a: Any, b: Any = "dflt", *, c: Any = 7) -> str:
        assert name is not None, f"ran under {template!r} with no name for {bound!r}"
        seen.append(_held_keys(raw, prefix, name))
        return "ran"

    refused: InvalidLock | None = None
    try:
        result = lock(template, timeout=5, wait=0, renew=False)(body)(a, **call_kwargs)
    except InvalidLock as exc:
        refused = exc
    if refused is not None:
        assert name is None, f"{template!r} refused although it names {name!r}: {refused}"
        assert "Lock name" in str(refused), str(refused)
        return
    assert result == "ran"
    assert seen == [True], "the lock was not held in Redis under its name while the body ran"
    assert name is not None
    assert not _held_keys(raw, prefix, name)  # released


@pytest.mark.parametrize(
    ("template", "argument"),
    [
        ("invoice:{a.missing}", Thing(pk=1)),
        ("invoice:{a[3]}", "ab"),
        ("invoice:{a[k]}", {"other": 1}),
        ("invoice:{a:d}", "not-a-number"),
    ],
    ids=["missing-attribute", "index-out-of-range", "missing-item", "format-spec-for-another-type"],
)
def test_a_template_the_arguments_cannot_fill_is_invalid_lock_at_call_time(
    prefix: str, template: str, argument: Any
) -> None:
    """Only the call can tell: the error names the template, as the other template errors do."""
    guarded = lock(template, wait=0)(job)
    with pytest.raises(InvalidLock, match=r"Lock name 'invoice:"):
        guarded(argument)


@pytest.mark.parametrize(
    "template",
    ["invoice:{a!z}", "invoice:{a.}", "invoice:{a..pk}"],
    ids=["unknown-conversion", "empty-attribute", "empty-attribute-inside"],
)
def test_a_template_no_call_can_fill_is_refused_when_decorating(template: str) -> None:
    """Like a positional field or an unknown argument, these fail every call: say so at import."""
    with pytest.raises(InvalidLock, match=r"Lock name 'invoice:"):
        lock(template, wait=0)(job)


# --- literal names in ``with`` blocks -----------------------------------------------------------


def expected_literal(name: str) -> str | None:
    """A ``with lock(name)`` name: a template without fields, its doubled braces undone."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(name) if f is not None]
    except ValueError:
        return None
    if fields:
        return None  # a template: only a decorated call can fill it
    return name.format() or None


NAMES = st.one_of(
    ANY_TEXT,
    st.text(st.sampled_from(list("{}{}ab:/ \x00é")), min_size=1, max_size=10),
    st.text(min_size=300, max_size=1200),
)


@examples(120)
@given(name=NAMES)
@example(name="{{x}}")
@example(name="}}{{")
@example(name="{x}")
@example(name="a}")
@example(name="")
def test_a_literal_name_gives_a_lock_or_invalid_lock(
    prefix: str, raw: redis.Redis, name: str
) -> None:
    literal = expected_literal(name)
    refused: InvalidLock | None = None
    try:
        with lock(name, timeout=5, wait=0, renew=False) as held:
            assert literal is not None, f"{name!r} was taken as a lock name"
            assert held.name == literal
            assert isinstance(held.token, int)
            assert _held_keys(raw, prefix, literal)
    except InvalidLock as exc:
        refused = exc
    if refused is not None:
        assert literal is None, f"{name!r} refused: {refused}"
        assert "Lock name" in str(refused), str(refused)
        return
    assert not _held_keys(raw, prefix, literal)


# --- keys -----------------------------------------------------------------------------------


PREFIXES = st.one_of(
    st.sampled_from(["", "app", "a{b", "}x{", "{}", "{p}", "x}"]),
    ANY_TEXT,
)


@examples(300)
@given(prefix=PREFIXES, name=ANY_TEXT.filter(bool), owner=st.text("0123456789abcdef", min_size=1))
@example(prefix="", name="}", owner="0")
@example(prefix="", name="{", owner="0")
@example(prefix="", name="{}", owner="0")
@example(prefix="app{", name="x", owner="0")
def test_every_key_of_a_lock_is_in_one_cluster_slot(prefix: str, name: str, owner: str) -> None:
    keys = LockKeys.build(prefix, name)
    slots = {slot_of(key) for key in (*keys.all, keys.wake(owner))}
    assert len(slots) == 1, (keys, slots)


@examples(300)
@given(first=ANY_TEXT.filter(bool), second=ANY_TEXT.filter(bool))
@example(first="{", second="}")
@example(first="a{", second="a}")
def test_two_names_never_share_keys(first: str, second: str) -> None:
    if first == second:
        return
    assert LockKeys.build("p", first).lock != LockKeys.build("p", second).lock


def _tag(keys: LockKeys) -> str:
    """The hash tag of a lock's keys: what is between its braces."""
    return keys.lock.rpartition("{")[2].partition("}")[0]


def test_a_name_spelling_another_names_digest_does_not_share_its_lock(
    prefix: str, raw: redis.Redis
) -> None:
    """A name with a brace is tagged by a digest; a plain name equal to that digest text is
    another lock, so holding one must not make the other busy."""
    braced = "report{2024}"
    lookalike = _tag(LockKeys.build(prefix, braced))
    assert lookalike != braced
    with lock("report{{2024}}", timeout=5, wait=0, renew=False) as first:
        assert first
        with lock(lookalike, timeout=5, wait=0, on_busy="skip", renew=False) as second:
            assert second, f"{lookalike!r} was busy while only {braced!r} was held"


# --- on a real cluster --------------------------------------------------------------------------


@examples(30)
@given(name=st.one_of(ANY_TEXT, st.text(st.sampled_from(list("{}ab")), max_size=8)))
@example(name="{{user}}:1")
@example(name="a}}b{{c")
def test_any_literal_name_locks_on_a_cluster_without_crossslot(
    drr_cluster: ClusterGroup, name: str
) -> None:
    """The lock script touches all of a lock's keys at once: a cluster refuses that
    (CROSSSLOT) unless they share a slot, so every name must work there too."""
    literal = expected_literal(name)
    if literal is None:
        return
    caches = resilient_caches(drr_cluster.location, KEY_PREFIX="hostile-cluster")
    with override_settings(CACHES=caches), lock(name, timeout=5, wait=0, renew=False) as held:
        assert held.acquired
        assert held.name == literal
