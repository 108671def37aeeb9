"""The one place that decides what a redis-py error means.

Everything else asks :func:`classify` instead of catching exception types:
a connection-class error degrades (and counts towards the circuit breaker),
anything else is the caller's problem and is raised unchanged.
"""

from __future__ import annotations

import enum
import errno
import re
import ssl
from collections.abc import Callable
from typing import Final

import redis.exceptions as rex
from redis.sentinel import MasterNotFoundError

from django_redis_resilience import exceptions as drr

_parse_error: Callable[[str], BaseException]
try:  # redis-py's own reading of an error reply: the same classes as for a plain command
    from redis._parsers import BaseParser

    _parse_error = BaseParser.parse_error
except ImportError:  # pragma: no cover - a redis-py that moved it: plain ResponseError
    _parse_error = rex.ResponseError

_UNSENT_ATTR: Final = "_drr_unsent"


class ErrorKind(enum.Enum):
    """Why a command could not be served, with what that implies for retries."""

    #: ``(counts towards the breaker, may be retried, reply proves nothing ran)``
    REFUSED = ("refused", True, True, True)
    TIMEOUT = ("timeout", True, True, False)
    RESET = ("reset", True, True, False)
    LOADING = ("loading", True, True, True)
    READONLY = ("readonly", True, True, True)
    CLUSTER_DOWN = ("cluster_down", True, True, True)
    TRY_AGAIN = ("try_again", False, True, True)
    MASTER_DOWN = ("master_down", True, True, True)
    MASTER_NOT_FOUND = ("master_not_found", True, True, True)
    UNREACHABLE = ("unreachable", True, True, True)
    AUTH = ("auth", True, False, True)
    TLS = ("tls", True, False, True)
    POOL_EXHAUSTED = ("pool_exhausted", False, False, True)
    BREAKER_OPEN = ("breaker_open", False, False, True)

    def __init__(self, label: str, counts: bool, retryable: bool, rejected: bool) -> None:
        self.label = label
        #: Whether the failure says something about the node (breaker food).
        self.counts = counts
        #: Whether trying again can help (auth and TLS failures are deterministic).
        self.retryable = retryable
        #: Whether the server certainly did not run the command.
        self.rejected = rejected

    @property
    def trips(self) -> bool:
        """Whether one failure opens the breaker: credentials and certificates
        do not fix themselves, and waiting for a burst only hides them."""
        return self.label in {"auth", "tls"}


_REPLY_PREFIXES: Final = (
    ("LOADING", ErrorKind.LOADING),
    ("READONLY", ErrorKind.READONLY),
    ("CLUSTERDOWN", ErrorKind.CLUSTER_DOWN),
    ("TRYAGAIN", ErrorKind.TRY_AGAIN),
    ("MASTERDOWN", ErrorKind.MASTER_DOWN),
    ("NOAUTH", ErrorKind.AUTH),
    ("WRONGPASS", ErrorKind.AUTH),
)

_REFUSED_ERRNOS: Final = frozenset(
    {errno.ECONNREFUSED, errno.ENOENT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}
)


def mark_unsent(exc: BaseException) -> None:
    """Record that ``exc`` happened before the request reached a live server."""
    setattr(exc, _UNSENT_ATTR, True)


def was_unsent(exc: BaseException) -> bool:
    """Whether the command certainly never reached the server."""
    return bool(getattr(exc, _UNSENT_ATTR, False))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _from_chain(exc: BaseException) -> ErrorKind | None:
    """The kind the causes of ``exc`` show; ``None`` when none of them tells."""
    chain = _chain(exc)
    # redis-py's Sentinel connection turns READONLY from a demoted primary
    # into a ConnectionError; the reply still proves the write did not run.
    if any(isinstance(item, rex.ReadOnlyError) for item in chain):
        return ErrorKind.READONLY
    if any(isinstance(item, ssl.SSLError | ssl.CertificateError) for item in chain):
        return ErrorKind.TLS
    for item in chain:
        kind = _from_socket_error(item)
        if kind is not None:
            return kind
    return None


def _from_socket_error(exc: BaseException) -> ErrorKind | None:
    """What one link of a chain says of the socket: a timeout, or an ``errno``."""
    if isinstance(exc, TimeoutError | rex.TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(exc, OSError) and exc.errno is not None:
        return _from_errno(exc.errno)
    return None


def _from_errno(number: int) -> ErrorKind:
    if number in _REFUSED_ERRNOS:
        return ErrorKind.REFUSED
    if number == errno.ETIMEDOUT:
        return ErrorKind.TIMEOUT
    return ErrorKind.RESET


def _from_message(message: str) -> ErrorKind:
    text = message.lower()
    if "ssl" in text or "certificate" in text or "tls" in text:
        return ErrorKind.TLS
    if "timeout" in text or "timed out" in text:
        return ErrorKind.TIMEOUT
    if "refused" in text or "no such file" in text or "name or service" in text:
        return ErrorKind.REFUSED
    return ErrorKind.RESET


#: What redis-py puts before the server's reply when a pipeline's command failed.
PIPELINE_MARK: Final = " of pipeline caused error: "


#: How Redis 6 (and 7, for some scripts) reports an error reply that a script's
#: ``redis.call`` got: ``Error running script (call to f_<sha>): @user_script:<line>:
#: ... : -READONLY You can't write against a read only replica.``
_SCRIPT_ENVELOPE: Final = re.compile(r"(?:ERR )?Error running script .*?: -(?=[A-Z])", re.S)


def reply_text(exc: BaseException) -> str:
    """The server's reply in ``exc``, without redis-py's pipeline annotation and
    without the envelope of a script error.

    A script that met ``READONLY``, ``OOM`` or ``MISCONF`` stopped at its first
    write, which the server refused, so it wrote nothing: what it met decides,
    as for a plain command. Without unwrapping, a demoted primary's ``READONLY``
    would reach the lock's and the rate limits' callers as a script error.
    """
    text = str(exc).rpartition(PIPELINE_MARK)[2]
    return _inside_script(text) or text


def _inside_script(text: str) -> str | None:
    """The reply a script met, out of its envelope; ``None`` when ``text`` has none."""
    envelope = _SCRIPT_ENVELOPE.match(text)
    return None if envelope is None else text[envelope.end() :].rstrip()


def script_reply(exc: rex.ResponseError) -> rex.ResponseError | None:
    """The error a script met, as redis-py raises it for a plain command (``ReadOnlyError``,
    ``OutOfMemoryError``...), when ``exc`` wraps it; ``None`` when it does not.

    Redis 7 replies with the inner error itself, Redis 6 inside "Error running
    script": unwrapped, callers get the same exception from both.
    """
    inner = _inside_script(str(exc))
    error = None if inner is None else _parse_error(inner)
    return error if isinstance(error, rex.ResponseError) else None


#: Replies of a server that is up but will not take a write now: memory full under
#: ``noeviction``, a script running too long, persistence failing, too few replicas.
REJECTIONS: Final = ("OOM", "BUSY", "MISCONF", "NOREPLICAS")


def rejected(exc: BaseException) -> bool:
    """The server answered, and rejected the command for a reason of its own (``REJECTIONS``).

    Not to be confused with :attr:`ErrorKind.REFUSED`, a connection the server
    refused: here the server is up.

    Nothing was applied, yet the server is up: this is neither the caller's
    error nor an outage for the breaker, so callers decide (the cache stores
    nothing and says so, rate limits degrade).
    """
    if not isinstance(exc, rex.ResponseError) or classify(exc) is not None:
        return False
    return isinstance(exc, rex.OutOfMemoryError) or reply_text(exc).startswith(REJECTIONS)


def classify(exc: BaseException) -> ErrorKind | None:
    """Return the kind of a connection-class error, or ``None`` for an error to raise.

    ``None`` means the server answered and the answer is the caller's business:
    ``WRONGTYPE``, syntax errors, script errors, ``NOPERM`` (an ACL that forbids
    the command is a configuration error that degrading would hide forever).
    """
    for classes, kind_of in _KINDS:
        if isinstance(exc, classes):
            return kind_of(exc)
    return None


def _always(kind: ErrorKind) -> Callable[[BaseException], ErrorKind]:
    return lambda _exc: kind


def _own_kind(exc: BaseException) -> ErrorKind:
    """One of this project's errors: the kind it carries."""
    assert isinstance(exc, drr.RedisUnavailable)
    return exc.kind or ErrorKind.UNREACHABLE


def _from_reply(exc: BaseException) -> ErrorKind | None:
    """An error reply: a state of the server (``LOADING``, ``READONLY``...) or the caller's."""
    message = reply_text(exc)
    return next((kind for prefix, kind in _REPLY_PREFIXES if message.startswith(prefix)), None)


def _from_connection(exc: BaseException) -> ErrorKind:
    return _from_chain(exc) or _from_message(str(exc))


def _from_cluster_client(exc: BaseException) -> ErrorKind | None:
    """redis-py's cluster client: no node to talk to, or a misuse of it (raised)."""
    text = str(exc).lower()
    if "cannot be connected" in text or "no alive" in text or "connection" in text:
        return ErrorKind.UNREACHABLE
    return None


def _from_os_error(exc: BaseException) -> ErrorKind:
    return _from_chain(exc) or ErrorKind.RESET


_Classes = type[BaseException] | tuple[type[BaseException], ...]

#: ``(exception classes, their kind)``, tried in this order: a class comes before
#: its bases (``ReadOnlyError`` is a ``ResponseError``, ``AuthenticationError`` a
#: ``ConnectionError``, redis-py's ``TimeoutError`` is neither's). An error of none
#: of them is the caller's.
_KINDS: Final[tuple[tuple[_Classes, Callable[[BaseException], ErrorKind | None]], ...]] = (
    (drr.RedisUnavailable, _own_kind),
    (
        (rex.AuthenticationError, rex.AuthenticationWrongNumberOfArgsError),
        _always(ErrorKind.AUTH),
    ),
    (
        (rex.MaxConnectionsError,) if hasattr(rex, "MaxConnectionsError") else (),
        _always(ErrorKind.POOL_EXHAUSTED),
    ),
    (rex.BusyLoadingError, _always(ErrorKind.LOADING)),
    (rex.ReadOnlyError, _always(ErrorKind.READONLY)),
    ((rex.ClusterDownError, rex.SlotNotCoveredError), _always(ErrorKind.CLUSTER_DOWN)),
    (rex.TryAgainError, _always(ErrorKind.TRY_AGAIN)),
    (MasterNotFoundError, _always(ErrorKind.MASTER_NOT_FOUND)),
    (rex.ResponseError, _from_reply),
    (rex.TimeoutError, _always(ErrorKind.TIMEOUT)),
    (rex.ConnectionError, _from_connection),
    (rex.RedisClusterException, _from_cluster_client),
    (ssl.SSLError, _always(ErrorKind.TLS)),
    (OSError, _from_os_error),
)


def translate(
    exc: BaseException, kind: ErrorKind, *, endpoint: str, alias: str
) -> drr.RedisUnavailable:
    """Build the project's exception for a connection-class ``exc``.

    The message names the endpoint by its masked display form only: redis-py's
    own message is kept as the ``__cause__`` and never formatted with secrets.
    """
    cls: type[drr.RedisUnavailable] = drr.RedisUnavailable
    if kind is ErrorKind.AUTH:
        cls = drr.RedisAuthenticationError
    elif kind is ErrorKind.TLS:
        cls = drr.RedisTLSError
    elif kind is ErrorKind.BREAKER_OPEN:
        cls = drr.BreakerOpen
    where = f" ({alias})" if alias else ""
    detail = str(exc)[:200] or type(exc).__name__
    message = f"Redis at {endpoint}{where} is unavailable ({kind.label}): {detail}"
    return cls(message, kind=kind, endpoint=endpoint, alias=alias)


def redirect_of(exc: Exception) -> tuple[bool, str, int] | None:
    """``(asking, host, port)`` of a ``MOVED``/``ASK`` reply, else ``None``.

    redis-py 8 parses these replies into ``MovedError``/``AskError`` on any
    client; redis-py 5 only on its cluster client, so a node's plain client
    raises a ``ResponseError("MOVED <slot> <host>:<port>")``.
    """
    if isinstance(exc, rex.AskError):
        return not isinstance(exc, rex.MovedError), str(exc.host), int(exc.port)
    if isinstance(exc, rex.ResponseError):
        words = reply_text(exc).split()
        if len(words) == 3 and words[0] in ("MOVED", "ASK"):
            host, _, port = words[2].rpartition(":")
            if port.isdigit():
                return words[0] == "ASK", host.strip("[]"), int(port)
    return None
