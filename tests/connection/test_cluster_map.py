"""The pure parts of cluster routing: ``CLUSTER SLOTS`` parsing, the slot map, key slots.

No Redis server and no mocks: raw replies are written as redis-py returns
them without decoding (bytes hosts, int slots and ports).
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.crc import key_slot

from django_redis_resilience.connection._cluster import (
    SLOTS,
    Address,
    ShardView,
    SlotMap,
    SlotRange,
    parse_cluster_slots,
    ranges_display,
    slot_of,
)
from django_redis_resilience.connection._manager import command_key

A: Address = ("10.0.0.1", 7000)
B: Address = ("10.0.0.2", 7001)
C: Address = ("10.0.0.3", 7002)
A2: Address = ("10.0.0.4", 7003)
B2: Address = ("10.0.0.5", 7004)
C2: Address = ("10.0.0.6", 7005)
ASKED: Address = ("10.9.9.9", 7100)

#: Three masters, one replica each, every slot served (the usual 3+3 layout).
THREE: list[SlotRange] = [
    (0, 5460, A, (A2,)),
    (5461, 10922, B, (B2,)),
    (10923, 16383, C, (C2,)),
]


def _build(entries: list[SlotRange], previous: SlotMap | None = None) -> SlotMap:
    return SlotMap.build(entries, previous=previous, source=ASKED)


def _assert_consistent(slot_map: SlotMap) -> None:
    """Every slot has exactly one shard, and each shard owns exactly its ranges."""
    ids = [s.id for s in slot_map.shards]
    assert len(ids) == len(set(ids))
    assert len(slot_map.owner) == SLOTS
    assert sum(s.slot_count for s in slot_map.shards) == SLOTS
    for shard in slot_map.shards:
        for first, last in shard.ranges:
            assert {slot_map.owner[slot] for slot in range(first, last + 1)} == {shard.id}


# --- parse_cluster_slots ----------------------------------------------------------


def test_parse_raw_reply_with_bytes_hosts() -> None:
    reply = [
        [0, 5460, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.4", 7003, b"id4"]],
        [5461, 10922, [b"10.0.0.2", 7001, b"id2"], [b"10.0.0.5", 7004, b"id5"]],
        [10923, 16383, [b"10.0.0.3", 7002, b"id3"], [b"10.0.0.6", 7005, b"id6"]],
    ]
    entries = parse_cluster_slots(reply, ASKED)
    assert entries == THREE
    for _, _, master, replicas in entries:
        assert isinstance(master[0], str)
        assert isinstance(master[1], int)
        assert all(isinstance(host, str) for host, _ in replicas)


def test_parse_decoded_reply_and_redis7_metadata() -> None:
    # decode_responses=True gives str; Redis 7 adds a fourth element per node.
    reply = [[0, 16383, ["10.0.0.1", "7000", "id1", ["hostname", "a.example"]]]]
    assert parse_cluster_slots(reply, ASKED) == [(0, 16383, A, ())]


def test_parse_empty_reply() -> None:
    assert parse_cluster_slots([], ASKED) == []


def test_parse_empty_host_means_the_asked_node() -> None:
    reply = [
        [0, 8191, [b"", 7000, b"id1"], [b"", 7003, b"id4"]],
        [8192, 16383, [b"10.0.0.2", 7001, b"id2"]],
    ]
    assert parse_cluster_slots(reply, ASKED) == [
        (0, 8191, (ASKED[0], 7000), ((ASKED[0], 7003),)),
        (8192, 16383, B, ()),
    ]


def test_parse_null_endpoint_means_the_asked_node() -> None:
    """Redis 7 ``cluster-preferred-endpoint-type unknown-endpoint`` replies a NULL
    endpoint, which redis-py gives as ``None``: the docs say to connect to the
    endpoint that was asked, with the port of the reply."""
    reply = [[0, 16383, [None, 7000, b"id1"], [None, 7003, b"id4"]]]
    assert parse_cluster_slots(reply, ASKED) == [
        (0, 16383, (ASKED[0], 7000), ((ASKED[0], 7003),)),
    ]


def test_parse_skips_unknown_endpoint_and_keeps_replica_order() -> None:
    reply = [
        [
            0,
            16383,
            [b"10.0.0.1", 7000, b"id1"],
            [b"10.0.0.6", 7005, b"id6"],
            [b"?", 7009, b"id9"],
            [b"10.0.0.4", 7003, b"id4"],
            [b"10.0.0.5", 7004, b"id5"],
        ]
    ]
    assert parse_cluster_slots(reply, ASKED) == [(0, 16383, A, (C2, A2, B2))]


def test_parse_drops_entries_without_a_usable_node() -> None:
    reply = [
        [0, 5460, [b"?", 7000, b"id1"]],
        [5461, 10922, [b"10.0.0.2", 7001, b"id2"]],
        [10923, 16383],
    ]
    assert parse_cluster_slots(reply, ASKED) == [(5461, 10922, B, ())]


def test_parse_unknown_master_leaves_its_slots_unserved_instead_of_promoting_a_replica() -> None:
    reply = [
        [0, 5460, [b"?", 7000, b"id1"], [b"10.0.0.4", 7003, b"id4"]],
        [5461, 16383, [b"10.0.0.2", 7001, b"id2"]],
    ]
    assert parse_cluster_slots(reply, ASKED) == [(5461, 16383, B, ())]


# --- SlotMap.build: every slot served -------------------------------------------------


def test_three_masters_make_three_shards_named_by_first_slot() -> None:
    slot_map = _build(THREE)
    assert [s.id for s in slot_map.shards] == [0, 5461, 10923]
    assert [s.master for s in slot_map.shards] == [A, B, C]
    assert [s.replicas for s in slot_map.shards] == [(A2,), (B2,), (C2,)]
    assert [s.ranges for s in slot_map.shards] == [
        ((0, 5460),),
        ((5461, 10922),),
        ((10923, 16383),),
    ]
    assert not any(s.orphaned for s in slot_map.shards)
    assert slot_map.covered == SLOTS
    assert slot_map.source == ASKED
    assert slot_map.shard(5461).master == B
    _assert_consistent(slot_map)


@pytest.mark.parametrize(
    ("slot", "shard_id"),
    [(0, 0), (5460, 0), (5461, 5461), (10922, 5461), (10923, 10923), (16383, 10923)],
)
def test_owner_at_range_boundaries(slot: int, shard_id: int) -> None:
    assert _build(THREE).owner[slot] == shard_id


def test_entry_order_does_not_matter() -> None:
    assert _build(list(reversed(THREE))).shards == _build(THREE).shards


def test_addresses_lists_masters_then_replicas_once() -> None:
    entries: list[SlotRange] = [
        (0, 5460, A, (A2, B2)),
        (5461, 10922, B, (B2, A2)),
        (10923, 16383, C, (C2,)),
    ]
    assert _build(entries).addresses() == [A, B, C, A2, B2, C2]


def test_master_with_two_ranges_is_one_shard_named_by_lowest_slot() -> None:
    entries: list[SlotRange] = [
        (10923, 16383, A, (A2,)),
        (100, 5460, B, (B2,)),
        (5461, 10922, C, ()),
        (0, 99, A, (A2, C2)),
    ]
    slot_map = _build(entries)
    shard = slot_map.shard(0)
    assert shard.master == A
    assert shard.ranges == ((0, 99), (10923, 16383))
    assert shard.replicas == (A2, C2)
    assert shard.slot_count == 100 + 5461
    assert [s.id for s in slot_map.shards] == [0, 100, 5461]
    assert slot_map.owner[99] == 0
    assert slot_map.owner[100] == 100
    assert slot_map.owner[10923] == 0
    assert slot_map.owner[16383] == 0
    assert slot_map.covered == SLOTS
    _assert_consistent(slot_map)


# --- SlotMap.build: slots no node serves --------------------------------------------


def test_uncovered_slots_without_previous_map_become_masterless_orphans() -> None:
    entries: list[SlotRange] = [(0, 5460, A, (A2,)), (10923, 15999, C, ())]
    slot_map = _build(entries)
    orphans = [s for s in slot_map.shards if s.orphaned]
    assert orphans == [
        ShardView(5461, ((5461, 10922),), None, (), orphaned=True),
        ShardView(16000, ((16000, 16383),), None, (), orphaned=True),
    ]
    assert [s.id for s in slot_map.shards] == [0, 5461, 10923, 16000]
    assert slot_map.covered == 5461 + (16000 - 10923)
    assert slot_map.owner[5461] == 5461
    assert slot_map.owner[10922] == 5461
    assert slot_map.owner[16000] == 16000
    assert slot_map.owner[16383] == 16000
    assert slot_map.addresses() == [A, C, A2]
    _assert_consistent(slot_map)


def test_empty_reply_makes_one_orphan_for_every_slot() -> None:
    slot_map = SlotMap.build([], previous=None, source=None)
    assert slot_map.shards == (ShardView(0, ((0, SLOTS - 1),), None, (), orphaned=True),)
    assert slot_map.covered == 0
    assert slot_map.source is None
    assert slot_map.addresses() == []
    _assert_consistent(slot_map)


def test_vanished_master_keeps_its_shard_id_and_address() -> None:
    previous = _build(THREE)
    slot_map = _build([THREE[0], THREE[2]], previous=previous)
    orphan = slot_map.shard(5461)
    assert orphan.orphaned is True
    assert orphan.master == B
    assert orphan.ranges == ((5461, 10922),)
    assert orphan.replicas == ()
    assert [s.id for s in slot_map.shards] == [0, 5461, 10923]
    assert slot_map.covered == SLOTS - (10922 - 5461 + 1)
    assert not slot_map.shard(0).orphaned
    assert not slot_map.shard(10923).orphaned
    _assert_consistent(slot_map)


def test_orphan_whose_old_id_is_taken_gets_its_first_slot() -> None:
    # A's first 100 slots moved to a new master; the rest of A's slots are not served.
    previous = _build(THREE)
    slot_map = _build([(0, 99, C2, ()), THREE[1], THREE[2]], previous=previous)
    assert slot_map.shard(0).master == C2
    assert not slot_map.shard(0).orphaned
    orphan = slot_map.shard(100)
    assert (orphan.ranges, orphan.master, orphan.orphaned) == (((100, 5460),), A, True)
    assert slot_map.covered == SLOTS - (5460 - 100 + 1)
    _assert_consistent(slot_map)


def test_orphan_served_again_is_no_longer_orphaned() -> None:
    first = _build(THREE)
    lost = _build([THREE[0], THREE[2]], previous=first)
    back = _build(THREE, previous=lost)
    assert back.shard(5461) == ShardView(5461, ((5461, 10922),), B, (B2,), orphaned=False)
    assert back.covered == SLOTS


def test_addresses_has_no_duplicates_when_an_orphan_keeps_a_serving_master() -> None:
    # A still serves 0-99, its other slots are not served: the orphan keeps A.
    previous = _build(THREE)
    slot_map = _build([(0, 99, A, (A2,)), THREE[1], THREE[2]], previous=previous)
    assert slot_map.shard(100).master == A
    addresses = slot_map.addresses()
    assert len(addresses) == len(set(addresses)), addresses
    assert addresses == [A, B, C, A2, B2, C2]


# --- SlotMap.build: failover --------------------------------------------------------------


def test_failover_keeps_the_shard_id_with_the_new_master() -> None:
    previous = _build(THREE)
    slot_map = _build([(0, 5460, A2, ()), THREE[1], THREE[2]], previous=previous)
    shard = slot_map.shard(0)
    assert shard.master == A2
    assert shard.ranges == ((0, 5460),)
    assert shard.orphaned is False
    assert [s.id for s in slot_map.shards] == [s.id for s in previous.shards]
    assert slot_map.owner[0] == slot_map.owner[5460] == 0
    assert slot_map.covered == SLOTS
    assert A not in slot_map.addresses()


def test_failover_with_old_master_back_as_replica() -> None:
    previous = _build(THREE)
    slot_map = _build([(0, 5460, A2, (A,)), THREE[1], THREE[2]], previous=previous)
    assert slot_map.shard(0) == ShardView(0, ((0, 5460),), A2, (A,))
    assert slot_map.addresses() == [A2, B, C, A, B2, C2]


# --- slot_of ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        ("foo", 12182),
        (b"foo", 12182),
        (memoryview(b"foo"), 12182),
        ("bar", 5061),
        ("{user1000}.following", 3443),
        ("{user1000}.followers", 3443),
        ("", 0),
    ],
)
def test_slot_of_known_slots(key: Any, slot: int) -> None:
    assert slot_of(key) == slot


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("foo", b"foo"),
        ("{user1000}.following", b"{user1000}.following"),
        ("{}foo", b"{}foo"),
        ("foo{}{bar}", b"foo{}{bar}"),
        ("caf\u00e9", "caf\u00e9".encode()),
        (123, b"123"),
    ],
)
def test_slot_of_matches_redis_py(key: Any, raw: bytes) -> None:
    assert slot_of(key) == key_slot(raw)


def test_slot_of_honours_hash_tags() -> None:
    assert slot_of("{user1000}.following") == slot_of("{user1000}.followers")
    assert slot_of("{user1000}.following") == slot_of("user1000")
    assert slot_of("foo") != slot_of("bar")


# --- ranges_display and slot_count -----------------------------------------------


@pytest.mark.parametrize(
    ("ranges", "text"),
    [
        ([], ""),
        ([(0, 5460)], "0-5460"),
        ([(7, 7)], "7"),
        ([(0, 99), (7000, 7000), (10923, 16383)], "0-99,7000,10923-16383"),
    ],
)
def test_ranges_display(ranges: list[tuple[int, int]], text: str) -> None:
    assert ranges_display(ranges) == text
    assert ranges_display(iter(ranges)) == text


@pytest.mark.parametrize(
    ("ranges", "count"),
    [
        ((), 0),
        (((7, 7),), 1),
        (((0, 5460),), 5461),
        (((0, 99), (10923, 16383)), 100 + 5461),
        (((0, SLOTS - 1),), SLOTS),
    ],
)
def test_shard_view_slot_count(ranges: tuple[tuple[int, int], ...], count: int) -> None:
    assert ShardView(0, ranges, None).slot_count == count


# --- command_key --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (("GET", "k"), "k"),
        (("get", "k"), "k"),
        (("SET", "k", "v"), "k"),
        (("DEL", b"k1", b"k2"), b"k1"),
        (("PING",), None),
        (("PING", "hello"), None),
        (("CLUSTER", "INFO"), None),
        (("SCRIPT", "LOAD", "return 1"), None),
        (("EVALSHA", "sha", 1, "k", "arg"), "k"),
        (("EVALSHA", "sha", 0, "arg"), None),
        (("EVAL", "return 1", "2", "k1", "k2"), "k1"),
        (("FCALL", "fn", 1, "k"), "k"),
        (("evalsha_ro", "sha", 1, "k"), "k"),
        ((b"EVALSHA", b"sha", b"1", b"k"), b"k"),
        ((b"PING",), None),
    ],
)
def test_command_key(args: tuple[Any, ...], key: Any) -> None:
    assert command_key(args) == key
