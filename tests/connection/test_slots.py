"""Typed per-feature state on a manager or the registry: built once, never shared by name."""

from __future__ import annotations

import threading

from django_redis_resilience.connection import Extensions, Slot, get_registry, reset_registry


class _State:
    built = 0

    def __init__(self) -> None:
        type(self).built += 1


def test_a_slot_is_built_once_whichever_thread_asks_first() -> None:
    extensions = Extensions()
    slot: Slot[_State] = Slot("state")
    assert extensions.get(slot) is None
    start = threading.Barrier(8)
    seen: list[_State] = []

    def ask() -> None:
        start.wait()
        seen.append(extensions.obtain(slot, _State))

    before = _State.built
    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _State.built == before + 1
    assert len({id(state) for state in seen}) == 1
    assert extensions.get(slot) is seen[0]


def test_two_features_choosing_one_name_do_not_share_state() -> None:
    extensions = Extensions()
    mine: Slot[list[int]] = Slot("state")
    theirs: Slot[dict[str, int]] = Slot("state")
    extensions.obtain(mine, list).append(1)
    assert extensions.obtain(theirs, dict) == {}
    assert extensions.get(mine) == [1]


def test_the_registrys_state_starts_empty_with_a_new_registry() -> None:
    slot: Slot[_State] = Slot("process state")
    state = get_registry().extensions.obtain(slot, _State)
    assert get_registry().extensions.get(slot) is state
    reset_registry()
    assert get_registry().extensions.get(slot) is None
