"""TLS options: verification on by default, checked before any handshake.

redis-py 5 does not check host names unless asked, and a ``rediss://`` URL
alone does not say which CA to trust; here every TLS connection verifies the
certificate and the host name unless the user turns that off, and turning it
off is reported (system check W003 and one WARNING log line per endpoint).
"""

from __future__ import annotations

import inspect
import logging
import ssl
from collections.abc import Mapping
from functools import cache
from typing import Any

import redis.asyncio.connection as aconn

logger = logging.getLogger("django_redis_resilience")

#: Applied to every TLS connection before URL and OPTIONS values.
TLS_DEFAULTS: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}

_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
}
_FILE_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def is_tls_option(name: str) -> bool:
    return name.startswith("ssl_") or name == "ssl"


def cert_reqs(value: object) -> ssl.VerifyMode | None:
    """The verify mode meant by ``value``, or ``None`` when it means nothing valid."""
    if value is None:
        return ssl.CERT_NONE  # django-redis users write ``ssl_cert_reqs=None``
    if isinstance(value, ssl.VerifyMode):
        return value
    if isinstance(value, str):
        return _CERT_REQS.get(value.lower())
    return None


def problems(kwargs: Mapping[str, Any]) -> list[tuple[str, object, str]]:
    """``(option, value, what is wrong)`` for every invalid TLS option; no I/O but stat."""
    import os

    found: list[tuple[str, object, str]] = []
    if "ssl_cert_reqs" in kwargs and cert_reqs(kwargs["ssl_cert_reqs"]) is None:
        found.append(
            ("ssl_cert_reqs", kwargs["ssl_cert_reqs"], "must be 'required', 'optional' or 'none'")
        )
    if "ssl_check_hostname" in kwargs and not isinstance(kwargs["ssl_check_hostname"], bool):
        found.append(("ssl_check_hostname", kwargs["ssl_check_hostname"], "must be True or False"))
    missing = False
    for name in _FILE_OPTIONS:
        value = kwargs.get(name)
        if value is not None and not (isinstance(value, str) and os.path.isfile(value)):
            found.append((name, value, "must be the path of a readable PEM file"))
            missing = True
    if not missing:
        found += _load_problems(kwargs)
    version = kwargs.get("ssl_min_version")
    if isinstance(version, str) and version not in ssl.TLSVersion.__members__:
        names = ", ".join(ssl.TLSVersion.__members__)
        found.append(("ssl_min_version", version, f"must be one of {names}"))
    return found


def _load_problems(kwargs: Mapping[str, Any]) -> list[tuple[str, object, str]]:
    """Load the CA and client certificate now, so a bad file fails at startup."""
    probe = ssl.create_default_context()
    found: list[tuple[str, object, str]] = []
    if kwargs.get("ssl_ca_certs"):
        try:
            probe.load_verify_locations(cafile=kwargs["ssl_ca_certs"])
        except (ssl.SSLError, OSError) as exc:
            found.append(("ssl_ca_certs", kwargs["ssl_ca_certs"], f"cannot be loaded: {exc}"))
    if kwargs.get("ssl_certfile"):
        try:
            probe.load_cert_chain(
                certfile=kwargs["ssl_certfile"],
                keyfile=kwargs.get("ssl_keyfile"),
                password=kwargs.get("ssl_password"),
            )
        except (ssl.SSLError, OSError) as exc:
            found.append(("ssl_certfile", kwargs["ssl_certfile"], f"cannot be loaded: {exc}"))
    return found


def verification_disabled(kwargs: Mapping[str, Any]) -> str | None:
    """Why these options would accept a server they should not, or ``None``."""
    mode = cert_reqs(kwargs.get("ssl_cert_reqs", "required"))
    if mode is not ssl.CERT_REQUIRED:
        return "certificate verification is off (ssl_cert_reqs is not 'required')"
    if kwargs.get("ssl_check_hostname") is False:
        return "host name verification is off (ssl_check_hostname=False)"
    return None


@cache
def _async_tls_parameters() -> frozenset[str]:
    return frozenset(inspect.signature(aconn.SSLConnection.__init__).parameters)


def normalize(kwargs: dict[str, Any], *, asyncio: bool, display: str) -> None:
    """Turn text values into what redis-py expects; drop what the asyncio client lacks."""
    if isinstance(kwargs.get("ssl_min_version"), str):
        kwargs["ssl_min_version"] = ssl.TLSVersion[kwargs["ssl_min_version"]]
    if kwargs.get("ssl_cert_reqs", "required") is None:
        kwargs["ssl_cert_reqs"] = "none"
    if cert_reqs(kwargs.get("ssl_cert_reqs")) is ssl.CERT_NONE:
        kwargs["ssl_check_hostname"] = False  # no certificate, no name to check
    if asyncio:
        accepted = _async_tls_parameters()
        for name in [n for n in kwargs if is_tls_option(n) and n not in accepted]:
            logger.warning(
                "TLS option %s is not supported by redis-py's asyncio client; "
                "async connections to %s are made without it",
                name,
                display,
            )
            del kwargs[name]


_OCSP_OPTIONS = ("ssl_validate_ocsp", "ssl_validate_ocsp_stapled", "ssl_ocsp_context")


def build_context(kwargs: Mapping[str, Any]) -> ssl.SSLContext | None:
    """One SSL context for every connection of an endpoint.

    redis-py builds a new context per connection, which loads the system CA
    bundle each time: about 40 ms of CPU per TLS connect here, so reconnecting
    a pool of 20 after a mass disconnect took close to a second and ran into
    sub-second connect timeouts. Built once, a connect costs the handshake only.
    Returns ``None`` (redis-py's own per-connection path) when OCSP is asked for.
    """
    if any(kwargs.get(name) for name in _OCSP_OPTIONS):
        return None
    mode = cert_reqs(kwargs.get("ssl_cert_reqs", "required")) or ssl.CERT_REQUIRED
    context = ssl.create_default_context()
    context.check_hostname = bool(kwargs.get("ssl_check_hostname", True)) and (
        mode is not ssl.CERT_NONE
    )
    context.verify_mode = mode
    if kwargs.get("ssl_certfile"):
        context.load_cert_chain(
            certfile=kwargs["ssl_certfile"],
            keyfile=kwargs.get("ssl_keyfile"),
            password=kwargs.get("ssl_password"),
        )
    if kwargs.get("ssl_ca_certs") or kwargs.get("ssl_ca_path") or kwargs.get("ssl_ca_data"):
        context.load_verify_locations(
            cafile=kwargs.get("ssl_ca_certs"),
            capath=kwargs.get("ssl_ca_path"),
            cadata=kwargs.get("ssl_ca_data"),
        )
    version = kwargs.get("ssl_min_version")
    if version is not None:
        context.minimum_version = version
    if kwargs.get("ssl_ciphers"):
        context.set_ciphers(kwargs["ssl_ciphers"])
    return context
