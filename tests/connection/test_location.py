"""``parse_location``: every LOCATION form a user writes, and errors that never show a password."""

from __future__ import annotations

from typing import Any

import pytest

from django_redis_resilience.connection import (
    NodeAddress,
    Topology,
    TopologyKind,
    mask_url,
    parse_location,
)
from django_redis_resilience.exceptions import ConfigurationError, InvalidLocation

SETTING = "CACHES['default']['LOCATION']"
SECRET = "s3cr3t-Pa55"


def _error(location: Any) -> str:
    with pytest.raises(InvalidLocation) as info:
        parse_location(location, setting=SETTING)
    message = str(info.value)
    assert SETTING in message
    return message


# --- standalone URLs ---------------------------------------------------------


def test_host_port_and_db() -> None:
    topology = parse_location("redis://cache.internal:6380/4")
    assert topology.kind is TopologyKind.STANDALONE
    assert topology.replicas == ()
    node = topology.primary
    assert (node.host, node.port, node.db, node.tls) == ("cache.internal", 6380, 4, False)
    assert (node.username, node.password, node.path) == (None, None, "")
    assert topology.db == 4
    assert node.connection_kwargs() == {"db": 4, "host": "cache.internal", "port": 6380}


@pytest.mark.parametrize("url", ["redis://cache.internal", "redis://cache.internal/"])
def test_default_port_and_db(url: str) -> None:
    node = parse_location(url).primary
    assert (node.host, node.port, node.db) == ("cache.internal", 6379, 0)


def test_rediss_sets_tls() -> None:
    node = parse_location("rediss://cache.internal:6390/1").primary
    assert node.tls is True
    assert (node.port, node.db) == (6390, 1)
    assert node.display == "rediss://cache.internal:6390/1"


def test_unix_socket_with_db_in_query() -> None:
    node = parse_location("unix:///var/run/redis/redis.sock?db=3").primary
    assert node.is_unix
    assert (node.path, node.db) == ("/var/run/redis/redis.sock", 3)
    assert node.display == "unix:///var/run/redis/redis.sock?db=3"
    kwargs = node.connection_kwargs()
    assert kwargs == {"db": 3, "path": "/var/run/redis/redis.sock"}


def test_unix_socket_default_db() -> None:
    node = parse_location("unix:///tmp/redis.sock").primary
    assert (node.path, node.db) == ("/tmp/redis.sock", 0)


@pytest.mark.parametrize(
    ("url", "username", "password"),
    [
        ("redis://:pw@h", None, "pw"),
        ("redis://alice:pw@h", "alice", "pw"),
        ("redis://alice@h", "alice", None),  # as redis-py: a bare name is the user name
        ("redis://alice:@h", "alice", None),
    ],
)
def test_username_and_password(url: str, username: str | None, password: str | None) -> None:
    node = parse_location(url).primary
    assert (node.host, node.username, node.password) == ("h", username, password)
    kwargs = node.connection_kwargs()
    assert kwargs.get("username") == username
    assert kwargs.get("password") == password


def test_percent_encoded_credentials_are_decoded() -> None:
    node = parse_location("redis://us%40er:p%40ss%2Fw%3Ard%25@h:6379/0").primary
    assert node.username == "us@er"
    assert node.password == "p@ss/w:rd%"
    assert (node.host, node.port) == ("h", 6379)


def test_ipv6_host() -> None:
    node = parse_location("redis://[::1]:6380/0").primary
    assert (node.host, node.port, node.db) == ("::1", 6380, 0)
    assert node.display == "redis://[::1]:6380/0"


def test_ipv6_host_default_port() -> None:
    node = parse_location("redis://[fe80::1]/2").primary
    assert (node.host, node.port, node.db) == ("fe80::1", 6379, 2)


def test_list_of_urls_is_primary_then_replicas() -> None:
    topology = parse_location(["redis://p:6379/1", "redis://r1:6379/1", "redis://r2:6380/1"])
    assert topology.kind is TopologyKind.STANDALONE
    assert topology.primary.host == "p"
    assert [(n.host, n.port) for n in topology.replicas] == [("r1", 6379), ("r2", 6380)]
    assert topology.db == 1


def test_comma_separated_string_is_primary_then_replicas() -> None:
    topology = parse_location("redis://p:6379/2, redis://r1:6380/2 ,redis://r2/2")
    assert topology.primary.host == "p"
    assert [(n.host, n.port) for n in topology.replicas] == [("r1", 6380), ("r2", 6379)]
    assert topology.display == "redis://p:6379/2, redis://r1:6380/2, redis://r2:6379/2"


def test_query_parameters_are_converted_to_their_types() -> None:
    node = parse_location(
        "rediss://h/0?socket_timeout=0.5&ssl_check_hostname=false&protocol=3"
        "&client_name=web&health_check_interval=10"
    ).primary
    params = dict(node.params)
    assert params == {
        "socket_timeout": 0.5,
        "ssl_check_hostname": False,
        "protocol": 3,
        "client_name": "web",
        "health_check_interval": 10.0,
    }
    assert isinstance(params["socket_timeout"], float)
    assert params["ssl_check_hostname"] is False
    assert node.connection_kwargs()["socket_timeout"] == 0.5


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("1", True), ("off", False)])
def test_boolean_query_parameter_spellings(text: str, expected: bool) -> None:
    node = parse_location(f"rediss://h?ssl_check_hostname={text}").primary
    assert dict(node.params)["ssl_check_hostname"] is expected


def test_db_query_parameter_when_path_has_none() -> None:
    node = parse_location("redis://h:6379?db=5").primary
    assert node.db == 5
    assert "db" not in dict(node.params)


# --- Sentinel and Cluster ----------------------------------------------------


def test_sentinel_url() -> None:
    topology = parse_location(f"redis+sentinel://u:{SECRET}@h1:26380,h2/mymaster/2")
    assert topology.kind is TopologyKind.SENTINEL
    assert topology.service_name == "mymaster"
    assert topology.db == 2
    assert [(n.host, n.port) for n in topology.nodes] == [("h1", 26380), ("h2", 26379)]
    assert all(n.username == "u" and n.password == SECRET for n in topology.nodes)
    assert topology.replicas == ()
    assert SECRET not in topology.display


def test_sentinel_url_without_db_uses_db_zero() -> None:
    topology = parse_location("redis+sentinel://h1/mymaster")
    assert (topology.service_name, topology.db) == ("mymaster", 0)
    assert topology.nodes[0].port == 26379


def test_cluster_url() -> None:
    topology = parse_location("redis+cluster://h1:7000,h2:7001")
    assert topology.kind is TopologyKind.CLUSTER
    assert [(n.host, n.port) for n in topology.nodes] == [("h1", 7000), ("h2", 7001)]
    assert topology.service_name is None
    assert topology.db == 0
    assert topology.replicas == ()


def test_cluster_default_port_and_tls() -> None:
    topology = parse_location("rediss+cluster://h1,h2:7001")
    assert [(n.host, n.port, n.tls) for n in topology.nodes] == [
        ("h1", 6379, True),
        ("h2", 7001, True),
    ]


# --- Valkey's schemes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("valkey", "redis"),
    [
        (f"valkey://u:{SECRET}@h:6380/3?socket_timeout=0.5", f"redis://u:{SECRET}@h:6380/3?socket_timeout=0.5"),
        ("valkeys://h/1", "rediss://h/1"),
        ("VALKEY://h", "redis://h"),
        ("valkey://p/0,valkey://r1:6380/0", "redis://p/0,redis://r1:6380/0"),
        (["valkeys://p/0", "valkeys://r1/0"], ["rediss://p/0", "rediss://r1/0"]),
        (f"valkey+sentinel://u:{SECRET}@h1:26380,h2/mymaster/2", f"redis+sentinel://u:{SECRET}@h1:26380,h2/mymaster/2"),
        ("valkeys+sentinel://h1/mymaster", "rediss+sentinel://h1/mymaster"),
        ("valkey+cluster://h1:7000,h2:7001", "redis+cluster://h1:7000,h2:7001"),
        ("valkeys+cluster://h1,h2:7001", "rediss+cluster://h1,h2:7001"),
    ],
)  # fmt: skip
def test_valkey_schemes_mean_what_the_redis_ones_mean(valkey: Any, redis: Any) -> None:
    assert parse_location(valkey) == parse_location(redis)


def test_a_valkey_location_with_a_mistake_names_the_valkey_forms() -> None:
    with pytest.raises(InvalidLocation, match="valkey forms"):
        parse_location("valkey+redis://h:6379")


# --- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("http://h:7000/0", "scheme 'http'"),
        ("h:6379", "scheme"),
        ("redis://h:port/0", "port 'port'"),
        ("redis://h:0/0", "port '0'"),
        ("redis://h:70000/0", "port '70000'"),
        ("redis://h:6379/zero", "database 'zero'"),
        ("redis://h/0?sockettimeout=1", "unknown query parameter 'sockettimeout'"),
        ("redis://h/0?socket_timeout=fast", "socket_timeout='fast'"),
        ("redis://h/0?ssl_check_hostname=maybe", "ssl_check_hostname='maybe'"),
        ("", "empty"),
        ("  ", "empty"),
        (" , ", "empty"),
        ([], "empty"),
        ("redis+sentinel://h1:26379,h2", "service name"),
        ("redis+cluster://h1:7000/1", "database path"),
        ("redis+cluster://h1:7000?db=1", "only has database 0"),
        (["redis://p/0", "redis+sentinel://h/mymaster"], "cannot be mixed"),
        ("redis://p/0,redis+cluster://h:7000", "cannot be mixed"),
        ("unix://", "socket path"),
        ("redis://:6379/0", "host is missing"),
    ],
)
def test_invalid_location(location: Any, reason: str) -> None:
    message = _error(location)
    assert "is not a valid Redis location" in message
    assert reason in message


def test_invalid_location_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        parse_location("http://h")


@pytest.mark.parametrize("location", [42, None, {"host": "h"}, ["redis://h", 42], b"redis://h"])
def test_non_string_location(location: Any) -> None:
    message = _error(location)
    assert "expected a URL string or a list of URL strings" in message
    assert f"{SETTING} = {location!r} is not" in message


def test_setting_name_defaults_to_location() -> None:
    with pytest.raises(InvalidLocation, match=r"^LOCATION = 'http://h' is not"):
        parse_location("http://h")


@pytest.mark.parametrize(
    "location",
    [
        f"redis://:{SECRET}@h:port/0",
        f"redis://user:{SECRET}@h:6379/zero",
        f"redis://user:{SECRET}@h/0?bogus=1",
        f"rediss://:{SECRET}@h:70000",
        f"ftp://user:{SECRET}@h",
        f"redis+sentinel://u:{SECRET}@h1:26379,h2",
        f"redis+cluster://u:{SECRET}@h1:7000/1",
        f"redis://u:{SECRET}@[::1:6380/0",
        ["redis://p/0", f"redis+sentinel://:{SECRET}@h/mymaster"],
        [f"redis://:{SECRET}@p/0", f"redis://:{SECRET}@r:x/0"],
        f"redis://u:{SECRET}@p/0,redis://u:{SECRET}@r:x/0",
        f"redis://u:{SECRET}@p/0?password={SECRET}",
        [f"redis://:{SECRET}@p/0", 42],
        [f"redis://:{SECRET}@p/0", None],
        (f"redis://:{SECRET}@p/0", f"redis://:{SECRET}@r/0", 1.5),
        f"redis://:{SECRET}@p/0".encode(),
    ],
)
def test_error_masks_the_password(location: Any) -> None:
    message = _error(location)
    assert SECRET not in message
    assert "***" in message


@pytest.mark.parametrize(
    "location",
    [
        # Unescaped '/', '?', '#' or '@' in a password: the URL parser cuts the password
        # there, so no piece of it may show up in the reason either.
        "redis://user:Qz7/Kx9@h:6379/0",
        "redis://:Qz7/Kx9@h",
        "redis://user:Qz7?Kx9@h/0",
        "redis://user:Qz7?socket_timeout=Kx9@h/0",
        "redis://user:Qz7#Kx9@h/0",
        "redis://user:Qz7@h/Kx9@h/0",
        "redis+sentinel://user:Qz7/Kx9@h1,h2/mymaster",
    ],
)
def test_error_masks_a_password_that_needs_percent_encoding(location: str) -> None:
    message = _error(location)
    assert "Qz7" not in message
    assert "Kx9" not in message
    assert "***" in message
    assert "percent-encode" in message


def test_at_sign_in_a_query_value_of_a_valid_url_is_accepted() -> None:
    node = parse_location("redis://h:6379/0?client_name=web@eu").primary
    assert (node.host, node.port, dict(node.params)) == ("h", 6379, {"client_name": "web@eu"})


def test_at_sign_in_a_unix_path_keeps_the_real_reason() -> None:
    message = _error("unix:///run/redis@6379.sock?bogus=1")
    assert "unknown query parameter 'bogus'" in message


# --- what is safe to show ------------------------------------------------------


def test_node_address_never_shows_its_password() -> None:
    node = parse_location(f"redis://alice:{SECRET}@h:6380/3").primary
    assert node.password == SECRET
    for text in (node.display, str(node), repr(node), f"{node}"):
        assert SECRET not in text
    assert node.display == "redis://alice:***@h:6380/3"
    assert str(node) == node.display
    assert "alice" in repr(node)


@pytest.mark.parametrize(
    ("url", "display"),
    [
        (f"redis://:{SECRET}@h", "redis://:***@h:6379/0"),
        ("redis://alice@h", "redis://alice@h:6379/0"),
        ("redis://h", "redis://h:6379/0"),
        (f"unix://:{SECRET}@/tmp/r.sock?db=2", "unix://:***@/tmp/r.sock?db=2"),
        (f"rediss://u:{SECRET}@[::1]:6390/1", "rediss://u:***@[::1]:6390/1"),
    ],
)
def test_node_display(url: str, display: str) -> None:
    node = parse_location(url).primary
    assert node.display == display
    assert SECRET not in repr(node)


def test_topology_never_shows_passwords() -> None:
    topology = parse_location([f"redis://:{SECRET}@p/0", f"redis://u:{SECRET}@r/0"])
    assert topology.display == "redis://:***@p:6379/0, redis://u:***@r:6379/0"
    assert SECRET not in repr(topology)
    assert SECRET not in str(topology)


def test_node_address_constructed_directly_hides_password() -> None:
    node = NodeAddress(host="h", password=SECRET)
    assert SECRET not in repr(node)
    assert SECRET not in node.display
    topology = Topology(kind=TopologyKind.STANDALONE, nodes=(node,))
    assert SECRET not in repr(topology)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"redis://user:{SECRET}@h:6379/0", "redis://user:***@h:6379/0"),
        (f"redis://:{SECRET}@h", "redis://:***@h"),
        (
            f"rediss://user:{SECRET}@h/0?ssl_cert_reqs=none",
            "rediss://user:***@h/0?ssl_cert_reqs=none",
        ),
        (f"unix://:{SECRET}@/tmp/r.sock?db=1", "unix://:***@/tmp/r.sock?db=1"),
        (f"redis+sentinel://u:{SECRET}@h1,h2/m/1", "redis+sentinel://u:***@h1,h2/m/1"),
        ("redis://user@h:6379/0", "redis://user@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("unix:///run/redis@6379.sock", "unix:///run/redis@6379.sock"),
        ("not a url", "not a url"),
        ("", ""),
        ("django_redis.client.DefaultClient", "django_redis.client.DefaultClient"),
        (f"valkey://u:{SECRET}@h", "valkey://u:***@h"),
        (f"[b'redis://:{SECRET}@h', 1]", "[b'redis://:***@h', 1]"),
        # not parseable, still masked: a port that is not a number, an unescaped '/'
        (f"redis://u:{SECRET}@h:port", "redis://u:***@h:port"),
        (f"redis://u:ab/{SECRET}@h/0", "redis://u:***@h/0"),
        # several URLs in one string, and a password in the query string
        (
            f"redis://u:{SECRET}@p/0,redis://:{SECRET}@r/0",
            "redis://u:***@p/0,redis://:***@r/0",
        ),
        (f"redis://h/0?password={SECRET}&db=1", "redis://h/0?password=***&db=1"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_unencoded_hash_in_password_is_rejected_without_showing_it() -> None:
    with pytest.raises(InvalidLocation) as info:
        parse_location("redis://user:se#cret@h:1/0", setting="LOC")
    assert "se#cret" not in str(info.value)
    assert "percent-encode" in str(info.value)


def test_conflicting_databases_are_rejected() -> None:
    with pytest.raises(InvalidLocation, match="database is given twice"):
        parse_location("redis://h:1/1?db=2", setting="LOC")
    assert parse_location("redis://h:1/2?db=2", setting="LOC").db == 2


# --- malformed values never show a password ------------------------------------------


@pytest.mark.parametrize(
    ("location", "shown"),
    [
        (f":{SECRET}@h:6379/0", "':***@h:6379/0'"),
        (f"default:{SECRET}@h:6379/0", "'default:***@h:6379/0'"),
        (f"redis:/:{SECRET}@h:6379/0", "'redis:***@h:6379/0'"),
        (f"redis//:{SECRET}@h:6379/0", "'redis//:***@h:6379/0'"),
        (f"redis ://:{SECRET}@h:6379/0", "'redis :***@h:6379/0'"),
        (f"://:{SECRET}@h:6379/0", "':***@h:6379/0'"),
    ],
)
def test_a_value_without_a_recognised_scheme_is_masked_from_its_start(
    location: str, shown: str
) -> None:
    message = _error(location)
    assert SECRET not in message
    assert f"{SETTING} = {shown} is not" in message


@pytest.mark.parametrize(
    "location",
    [
        "redis://:s3cr3t,Pa55@h:6379/0",
        "redis://user:s3cr3t,Pa55@h:6379/0",
        "redis://:s3cr3t,redis://Pa55@h:6379/0",
    ],
)
def test_a_comma_in_a_password_is_reported_on_the_whole_masked_value(location: str) -> None:
    message = _error(location)
    assert "s3cr3t" not in message
    assert "Pa55" not in message
    assert "@h:6379/0' is not" in message
    assert "is not followed by another URL" in message


def test_a_failing_url_of_a_list_is_reported_with_the_whole_masked_value() -> None:
    message = _error(f"redis://u:{SECRET}@p/0, redis://u:{SECRET}@r:x/0")
    assert f"{SETTING} = 'redis://u:***@p/0, redis://u:***@r:x/0' is not" in message
    assert "port 'x'" in message


def test_a_comma_must_be_followed_by_another_url() -> None:
    assert "is not followed by another URL" in _error("redis://h1, h2")


@pytest.mark.parametrize(
    "location",
    [
        f"unix://:?{SECRET}@/tmp/redis.sock",
        f"unix://:/tmp?{SECRET}@/redis.sock",
        f"unix://:?socket_timeout={SECRET}@/tmp/redis.sock",
    ],
)
def test_the_query_of_a_unix_url_with_an_at_sign_is_not_quoted(location: str) -> None:
    message = _error(location)
    assert SECRET not in message
    assert "percent-encode" in message


@pytest.mark.parametrize(
    ("location", "masked"),
    [
        (f"redis://:{SECRET}://x@h:6379/0", "redis://:***@h:6379/0"),
        (f"redis://: {SECRET}://@h:6379/0", "redis://:***@h:6379/0"),
        (f"redis://:@{SECRET}://@h:6379/0", "redis://:***@h:6379/0"),
        (f"redis://:@[{SECRET}://@h:6379/0", "redis://:***@h:6379/0"),
        (
            f"redis://:{SECRET}://x@h/0,redis://:{SECRET}@r/0",
            "redis://:***@h/0,redis://:***@r/0",
        ),
        (f"redis://h/0?password={SECRET}://x", "redis://h/0?password=***"),
    ],
)
def test_a_scheme_separator_in_a_password_does_not_start_a_url(location: str, masked: str) -> None:
    assert mask_url(location) == masked
    message = _error(location)
    assert SECRET not in message
    assert repr(masked) in message


@pytest.mark.parametrize(
    "location",
    [
        f"redis://:@{SECRET}@h:6379/0?password=@{SECRET}",
        f"redis://:{SECRET}@h/0?password=@{SECRET}&db=1",
        f"redis://:a?password={SECRET}@h:6379/0",
        f"redis://h/0?password=&{SECRET}",
    ],
)
def test_an_at_sign_or_ampersand_in_a_query_password_is_masked(location: str) -> None:
    assert SECRET not in mask_url(location)
    assert SECRET not in _error(location)


def test_a_bracket_in_a_password_is_not_quoted() -> None:
    message = _error(f"redis://:][{SECRET}@h:6379/0")
    assert SECRET not in message
    assert "IPv6" in message


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            f"Error connecting to redis://:{SECRET}@h:6379.",
            "Error connecting to redis://:***@h:6379.",
        ),
        (f"unix://:@/{SECRET}://@h", "unix://:***@h"),
        (
            f"unix://:{SECRET}@/tmp/r.sock,redis://:{SECRET}@r",
            "unix://:***@/tmp/r.sock,redis://:***@r",
        ),
        (
            f"redis://u:{SECRET}@[::1]:1/0,redis://:{SECRET}@r",
            "redis://u:***@[::1]:1/0,redis://:***@r",
        ),
    ],
)
def test_mask_url_in_messages_and_lists(text: str, masked: str) -> None:
    assert mask_url(text) == masked


# --- ambiguous URLs are refused: a password's tail must not become a path or a name ------------


@pytest.mark.parametrize(
    ("location", "masked"),
    [
        # A '/' in the password ends the authority: its tail was the socket path.
        (f"unix://:Ab3/{SECRET}@/run/redis.sock", "'unix://:***@/run/redis.sock'"),
        (f"unix://app:Ab3/{SECRET}@/run/redis.sock?db=1", "'unix://app:***@/run/redis.sock?db=1'"),
        # An '@' and a '/' in it: what came between was taken for a host, and dropped.
        (f"unix://:Ab3@{SECRET}/x@/run/redis.sock", "'unix://:***@/run/redis.sock'"),
        # With credentials, an '@' in the path may as well be the password's.
        (f"unix://:Ab3@/{SECRET}@/run/redis.sock", "'unix://:***@/run/redis.sock'"),
        # No '@' at all: a unix:// URL has no host, so what stands there is a credential.
        (f"unix://:Ab3/{SECRET}", "'unix://:***'"),
        # A password starting with digits and a '/': the rest was taken for the service.
        (f"redis+sentinel://app:2024/{SECRET}@h1:26379/0", "'redis+sentinel://app:***@h1:26379/0'"),
        (f"redis+sentinel://app:2024/{SECRET}@h1", "'redis+sentinel://app:***@h1'"),
    ],
)
def test_a_url_whose_password_would_become_a_path_or_a_name_is_refused(
    location: str, masked: str
) -> None:
    message = _error(location)
    assert SECRET not in message
    assert f"{SETTING} = {masked} is not a valid Redis location" in message
    assert "percent-encode" in message


def test_an_at_sign_in_a_socket_path_without_credentials_is_still_accepted() -> None:
    assert parse_location("unix:///run/redis@6379.sock").primary.path == "/run/redis@6379.sock"
    node = parse_location(f"unix://:{SECRET}@/run/redis%406379.sock").primary
    assert (node.path, node.password) == ("/run/redis@6379.sock", SECRET)
    encoded = parse_location("unix://:Ab3%2Fxyz@/run/redis.sock").primary
    assert (encoded.path, encoded.password) == ("/run/redis.sock", "Ab3/xyz")
