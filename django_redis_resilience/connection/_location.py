"""Parse a cache ``LOCATION`` into a :class:`Topology`, with secrets masked.

The parsed topology is the single description that every client, probe and
report is built from, so a URL is understood in exactly one place.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django_redis_resilience.exceptions import InvalidLocation

MASK = "***"

_DEFAULT_PORT = 6379
_DEFAULT_SENTINEL_PORT = 26379


def _to_bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


#: Query parameters accepted in a URL and how their text is converted.
_QUERY_PARAMS: dict[str, Callable[[str], Any]] = {
    "db": int,
    "socket_timeout": float,
    "socket_connect_timeout": float,
    "health_check_interval": float,
    "client_name": str,
    "protocol": int,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
    "ssl_ca_path": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_check_hostname": _to_bool,
    "ssl_min_version": str,
}


class TopologyKind(enum.Enum):
    """How the nodes of a location relate to each other."""

    STANDALONE = "standalone"  # one primary, optional read replicas
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


@dataclass(frozen=True)
class NodeAddress:
    """One server address; its password never appears in ``repr`` or ``display``."""

    host: str = ""
    port: int = _DEFAULT_PORT
    path: str = ""
    tls: bool = False
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    @property
    def display(self) -> str:
        """The address as a URL that is safe to log: the password is masked."""
        scheme = "unix" if self.is_unix else ("rediss" if self.tls else "redis")
        auth = ""
        if self.username or self.password:
            auth = (self.username or "") + (f":{MASK}" if self.password else "") + "@"
        if self.is_unix:
            return f"unix://{auth}{self.path}?db={self.db}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{auth}{host}:{self.port}/{self.db}"

    def __str__(self) -> str:
        return self.display

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a redis-py connection to this node."""
        kwargs: dict[str, Any] = {"db": self.db}
        if self.is_unix:
            kwargs["path"] = self.path
        else:
            kwargs["host"] = self.host
            kwargs["port"] = self.port
        if self.username is not None:
            kwargs["username"] = self.username
        if self.password is not None:
            kwargs["password"] = self.password
        kwargs.update(self.params)
        return kwargs


@dataclass(frozen=True)
class Topology:
    """What a ``LOCATION`` describes: the kind of deployment and its nodes."""

    kind: TopologyKind
    #: standalone: primary first, then read replicas; sentinel: the sentinels;
    #: cluster: the seed nodes.
    nodes: tuple[NodeAddress, ...]
    service_name: str | None = None
    db: int = 0

    @property
    def primary(self) -> NodeAddress:
        return self.nodes[0]

    @property
    def replicas(self) -> tuple[NodeAddress, ...]:
        return self.nodes[1:] if self.kind is TopologyKind.STANDALONE else ()

    @property
    def display(self) -> str:
        return ", ".join(node.display for node in self.nodes)


#: What may come right before a URL in a text: a list, a ``repr``, a message.
_DELIMITERS = "\\s,;'\"`([{<="
#: Where a URL may start: its scheme and ``://``, first in a text or after a delimiter.
_URL_START = re.compile(rf"(?i)(?<![^{_DELIMITERS}])[a-z][a-z0-9+.-]*://")
#: An IPv6 address, whose ``:`` are not a password's.
_IPV6 = re.compile(r"\[[\w:.%]*\]")
#: What follows the credentials of a URL: a host name or IPv6 address, or a ``unix://`` path.
_HOST_FIRST = re.compile(rf"\w|{_IPV6.pattern}")
_PATH_FIRST = re.compile(r"/[\w.~-]")
#: What opens a password: a ``:`` that is not a port's, or a ``password=`` query parameter.
_PASSWORD_OPENS = re.compile(r":(?!\d+\b)|[?&]password=", re.I)
#: A ``password=`` query value; it runs up to the next known parameter, as it may hold ``&``.
_QUERY_PASSWORD = re.compile(
    r"[?&]password=(.*?)(?=&(?:" + "|".join(_QUERY_PARAMS) + r")=|[\s,'\"]*\Z)", re.I | re.S
)
_NEEDS_ENCODING = (
    "an '@' comes after the host: the URL does not start with 'scheme://', or its user name "
    "or password holds a '/', '?', '#' or '@' that is not percent-encoded; percent-encode it, "
    "e.g. with urllib.parse.quote(password, safe='')"
)
_STRAY_COMMA = (
    "a ',' is not followed by another URL; percent-encode a ',' in a user name or password, "
    "e.g. with urllib.parse.quote(password, safe='')"
)


def _url_starts(text: str) -> list[re.Match[str]]:
    """Each ``scheme://`` in ``text`` that starts a URL rather than sitting in a password.

    A password may hold ``x://`` (or ``,x://``, ``@x://``) itself, so a ``scheme://``
    starts a new URL only after a host: the previous URL's last ``@``, if it has one, is
    followed by a host (a path in a ``unix://`` URL), and since that ``@`` (or the start
    of its authority) no ``:`` has come but a port's or an IPv6 address's, nor a
    ``password=`` query parameter.
    """
    starts: list[re.Match[str]] = []
    since, host = 0, _HOST_FIRST
    for match in _URL_START.finditer(text):
        _, at, after = text[since : match.start()].rpartition("@")
        if (host.match(after) or not at) and not _PASSWORD_OPENS.search(_IPV6.sub("", after)):
            starts.append(match)
            since = match.end()
            host = _PATH_FIRST if match[0].lower() == "unix://" else _HOST_FIRST
    return starts


def mask_url(text: str) -> str:
    """Mask every password in ``text``, even one that does not parse.

    ``text`` may be a URL, a comma-separated list of them, or a message or ``repr`` that
    holds some. A password may hold any of ``/?#@,`` and ``x://`` unescaped, so when in
    doubt this masks more: from the first ``:`` after the start of a URL's authority (or
    of ``text``, before any recognised ``scheme://``) up to the last ``@`` before the next
    URL is a credential, and so is every ``password=`` query value. A ``unix://`` URL
    has no host, so there a ``:`` before the path opens a credential even without ``@``.
    """
    starts = _url_starts(text)
    schemes = ["", *(match[0].lower() for match in starts)]
    authorities = [0, *(match.end() for match in starts)]
    ends = [*(match.start() for match in starts), len(text)]
    spans: list[tuple[int, int]] = []
    for scheme, authority, end in zip(schemes, authorities, ends, strict=True):
        chunk = text[authority:end]
        userinfo, at, _ = chunk.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if at and colon:
            spans.append((authority + len(user) + 1, authority + len(userinfo)))
        elif scheme == "unix://" and not at and ":" in chunk and not chunk.startswith("/"):
            # A unix:// URL has no host: a ':' before its path opens a password that lost
            # its '@' (or never had one), and all of the rest may be that password.
            opens = authority + chunk.index(":") + 1
            spans.append((opens, authority + len(chunk.rstrip(", "))))
        spans.extend(match.span(1) for match in _QUERY_PASSWORD.finditer(text, authority, end))
    return _hide(text, spans)


def _hide(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each run of overlapping ``spans`` replaced by one :data:`MASK`."""
    parts: list[str] = []
    shown = 0
    for start, end in sorted(spans):
        if parts and start <= shown:
            shown = max(shown, end)
        else:
            parts += [text[shown:start], MASK]
            shown = end
    return "".join(parts) + text[shown:]


def _fail(setting: str, location: object, reason: str) -> InvalidLocation:
    shown = repr(mask_url(location)) if isinstance(location, str) else mask_url(repr(location))
    return InvalidLocation(f"{setting} = {shown} is not a valid Redis location: {reason}.")


def _reason(url: str, exc: ValueError) -> str:
    """Why ``url`` failed, without echoing a piece of a badly escaped password.

    An ``@`` after the end of the authority (which starts after ``scheme://``, or at the
    start of a value without one) means the user info was cut short by an unescaped
    ``/``, ``?`` or ``#``, or the scheme is misspelt, so parts of the password ended up in
    the port, path or query that the plain reason would quote. A ``unix://`` path may hold
    an ``@``; its query may not.
    """
    scheme = _URL_START.match(url)
    start = scheme.end() if scheme else 0
    stops = "?#" if url[:5].lower() == "unix:" else "/?#"
    end = min((i for i in (url.find(stop, start) for stop in stops) if i >= 0), default=len(url))
    return _NEEDS_ENCODING if "@" in url[end:] else str(exc)


def _split_urls(text: str) -> list[str] | None:
    """The URLs of a comma-separated string, or ``None`` if a comma is inside one.

    Each comma must be followed by a URL that :func:`mask_url` sees as one too: a comma
    anywhere else is inside a password, whose pieces must be neither parsed as URLs nor
    quoted in a reason.
    """
    starts = {match.start() for match in _url_starts(text)}
    pieces = list(re.finditer(r"[^,\s][^,]*", text))
    if any(piece.start() not in starts for piece in pieces[1:]):
        return None
    return [piece[0].rstrip() for piece in pieces]


def _split_auth(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    if not colon:
        return unquote(user) or None, None  # as redis-py: ``user@host`` names a user
    return (unquote(user) or None), (unquote(password) or None)


def _parse_hostport(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError("a host is missing")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number between 1 and 65535")
    return host, int(port_text)


def _parse_params(query: str) -> tuple[int | None, tuple[tuple[str, Any], ...]]:
    db: int | None = None
    params: list[tuple[str, Any]] = []
    for name, raw in parse_qsl(query, keep_blank_values=True):
        convert = _QUERY_PARAMS.get(name)
        if convert is None:
            known = ", ".join(sorted(_QUERY_PARAMS))
            raise ValueError(f"unknown query parameter {name!r} (known: {known})")
        try:
            value = convert(raw)
        except ValueError:
            raise ValueError(f"query parameter {name}={raw!r} has the wrong type") from None
        if name == "db":
            db = value
        else:
            params.append((name, value))
    return db, tuple(params)


def _parse_db(path: str) -> int | None:
    text = path.strip("/")
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"database {text!r} is not a number")
    return int(text)


#: The schemes of one server, and whether each speaks TLS. Valkey's spellings
#: mean exactly what Redis's do; ``+sentinel`` and ``+cluster`` may follow any.
_TLS_BY_SCHEME = {"redis": False, "rediss": True, "valkey": False, "valkeys": True}


def _schemes(suffix: str) -> tuple[str, ...]:
    return tuple(scheme + suffix for scheme in _TLS_BY_SCHEME)


_UNIX_AUTHORITY = (
    "a unix:// URL names no host, only an optional user name and password before '@/' "
    "(unix://[user:password@]/path/to/redis.sock): percent-encode a '/', '?', '#' or '@' in "
    "the user name or password, e.g. with urllib.parse.quote(password, safe=''), and an '@' "
    "in the socket path as %40"
)


def _check_unix_authority(netloc: str, path: str) -> None:
    """Refuse a ``unix://`` URL whose credentials may have run into its socket path.

    Its authority is empty or ends with ``@``: anything else between ``unix://`` and the
    path is a password cut short by an unencoded ``/`` or ``?``, whose tail would become
    the socket path (shown in breaker names, logs, the health report and metric labels).
    An ``@`` in the path may end a password too when credentials come first or a ``:``
    comes before it (``unix:/:password@...``): it must then be percent-encoded.
    """
    _, at, host = netloc.rpartition("@")
    before_at = path.rpartition("@")[0]
    if host or (before_at and (at or ":" in before_at)):
        raise ValueError(_UNIX_AUTHORITY)


_BRACKET_OUTSIDE_HOST = (
    "a '[' or ']' does not enclose an IPv6 address; percent-encode one in a user name "
    "or password, e.g. with urllib.parse.quote(password, safe='')"
)


def _parse_single(url: str) -> NodeAddress:
    _reject_fragment(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # its message quotes what is in brackets: maybe a password
        raise ValueError(_BRACKET_OUTSIDE_HOST) from None
    if any(c in parts.netloc.rpartition("@")[0] for c in "[]"):
        # Python 3.11.4+ refuses these in urlsplit, older ones accept them: one rule for all.
        raise ValueError(_BRACKET_OUTSIDE_HOST)
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if scheme == "unix":
        _check_unix_authority(netloc, parts.path)
    userinfo, _, hostport = netloc.rpartition("@")
    username, password = _split_auth(userinfo)
    query_db, params = _parse_params(parts.query)
    if scheme == "unix":
        if not parts.path.startswith("/"):
            raise ValueError(
                "a unix:// URL needs an absolute socket path (unix:///path/to/redis.sock)"
            )
        db = query_db if query_db is not None else 0
        return NodeAddress(
            path=unquote(parts.path), db=db, username=username, password=password, params=params
        )
    if scheme not in _TLS_BY_SCHEME:
        raise ValueError(
            f"scheme {scheme or '(none)'!r} is not one of redis://, rediss://, unix://, "
            "redis+sentinel://, redis+cluster:// (or the valkey forms of these)"
        )
    host, port = _parse_hostport(hostport, _DEFAULT_PORT)
    path_db = _parse_db(parts.path)
    if path_db is not None and query_db is not None and path_db != query_db:
        raise ValueError(f"the database is given twice (/{path_db} and ?db={query_db})")
    db = path_db if path_db is not None else (query_db if query_db is not None else 0)
    return NodeAddress(
        host=unquote(host),
        port=port,
        tls=_TLS_BY_SCHEME[scheme],
        db=db,
        username=username,
        password=password,
        params=params,
    )


def _reject_fragment(url: str) -> None:
    if "#" in url:
        raise ValueError(
            "it contains '#', which ends a URL; percent-encode it in a user name or "
            "password (urllib.parse.quote(password, safe=''))"
        )


def _parse_multi(url: str, kind: TopologyKind) -> Topology:
    _reject_fragment(url)
    scheme, _, rest = url.partition("://")
    tls = _TLS_BY_SCHEME[scheme.lower().partition("+")[0]]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    if "@" in path:  # a password's tail, cut off by a '/', would be the service name
        raise ValueError(_NEEDS_ENCODING)
    userinfo, _, hosts = netloc.rpartition("@")
    username, password = _split_auth(userinfo)
    query_db, params = _parse_params(query)
    default_port = _DEFAULT_SENTINEL_PORT if kind is TopologyKind.SENTINEL else _DEFAULT_PORT
    if not hosts:
        raise ValueError("at least one host:port is needed")
    addresses = [_parse_hostport(item.strip(), default_port) for item in hosts.split(",")]
    segments = [s for s in path.split("/") if s]
    service: str | None = None
    db_text: str | None = None
    if kind is TopologyKind.SENTINEL:
        if not segments:
            raise ValueError("the Sentinel service name is missing (…/<service_name>[/db])")
        service, db_text = unquote(segments[0]), (segments[1] if len(segments) > 1 else None)
        if len(segments) > 2:
            raise ValueError("expected …/<service_name>[/db]")
    elif segments:
        raise ValueError("a cluster URL has no database path (Redis Cluster only has db 0)")
    db = _parse_db(db_text or "")
    if db is None:
        db = query_db if query_db is not None else 0
    if kind is TopologyKind.CLUSTER and db != 0:
        raise ValueError(f"Redis Cluster only has database 0, not {db}")
    nodes = tuple(
        NodeAddress(
            host=host,
            port=port,
            tls=tls,
            db=db,
            username=username,
            password=password,
            params=params,
        )
        for host, port in addresses
    )
    return Topology(kind=kind, nodes=nodes, service_name=service, db=db)


def parse_location(location: str | Sequence[str], *, setting: str = "LOCATION") -> Topology:
    """Parse ``location`` (one URL, a list of URLs, or a comma-separated string).

    Errors name ``setting`` and show the whole value with its passwords masked, never the
    piece that failed: a piece may be cut from the middle of a password.
    """
    if isinstance(location, str):
        several = _parse_multi_host(location, setting)
        if several is not None:
            return several
    nodes = tuple(_parse_listed(url, location, setting) for url in _listed(location, setting))
    return Topology(kind=TopologyKind.STANDALONE, nodes=nodes, db=nodes[0].db)


#: The schemes of a URL that names several hosts, and what it names.
_MULTI_HOST = (
    ("+sentinel://", TopologyKind.SENTINEL),
    ("+cluster://", TopologyKind.CLUSTER),
)


def _parse_multi_host(location: str, setting: str) -> Topology | None:
    """A Sentinel or a cluster URL (several hosts in one); ``None`` for anything else."""
    text = location.strip()
    lowered = text.lower()
    for suffix, kind in _MULTI_HOST:
        if lowered.startswith(_schemes(suffix)):
            try:
                return _parse_multi(text, kind)
            except ValueError as exc:
                raise _fail(setting, location, _reason(text, exc)) from None
    return None


def _listed(location: str | Sequence[str], setting: str) -> list[str]:
    """The URLs of the servers of a standalone location, from a list or a
    comma-separated string; never none."""
    if isinstance(location, str):
        urls = _split_urls(location.strip())
        if urls is None:
            raise _fail(setting, location, _STRAY_COMMA)
    elif isinstance(location, Sequence) and all(isinstance(u, str) for u in location):
        urls = [u.strip() for u in location]
    else:
        raise _fail(setting, location, "expected a URL string or a list of URL strings")
    if not urls:
        raise _fail(setting, location, "it is empty")
    return urls


def _parse_listed(url: str, location: str | Sequence[str], setting: str) -> NodeAddress:
    """One server of a list; a Sentinel or cluster URL has no place there."""
    try:
        if "+sentinel://" in url.lower() or "+cluster://" in url.lower():
            raise ValueError("Sentinel and cluster URLs cannot be mixed into a list")
        return _parse_single(url)
    except ValueError as exc:
        raise _fail(setting, location, _reason(url, exc)) from None
