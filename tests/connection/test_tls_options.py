"""TLS options: verified by default, validated before any handshake, warnings when turned off."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_redis_resilience.checks import check_settings
from django_redis_resilience.conf import conf
from django_redis_resilience.connection import ConnectionOptions, parse_location
from django_redis_resilience.connection._endpoint import pool_kwargs
from django_redis_resilience.exceptions import ConfigurationError, InvalidOption
from django_redis_resilience.testing import TLSMaterial

BACKEND = "django_redis_resilience.cache.ResilientRedisCache"


def _cache(location: str, **options: Any) -> override_settings:
    return override_settings(
        CACHES={"default": {"BACKEND": BACKEND, "LOCATION": location, "OPTIONS": options}}
    )


def _ids() -> list[str]:
    return [m.id or "" for m in check_settings()]


def test_rediss_verifies_certificate_and_host_name_by_default() -> None:
    kwargs = pool_kwargs(
        parse_location("rediss://h:6380/0").primary, ConnectionOptions(), asyncio=False
    )
    assert kwargs["ssl_cert_reqs"] == "required"
    assert kwargs["ssl_check_hostname"] is True
    assert kwargs["connection_class"].__name__ == "SSLConnection"


def test_url_and_options_can_set_tls_files(drr_tls_material: TLSMaterial) -> None:
    ca = drr_tls_material.ca_file
    with _cache(f"rediss://h:6380/0?ssl_ca_certs={ca}", ssl_min_version="TLSv1_2"):
        assert check_settings() == []
        options = conf.connection_options("default")
        kwargs = pool_kwargs(conf.topology("default").primary, options, asyncio=True)
    assert kwargs["ssl_ca_certs"] == str(ca)
    assert kwargs["ssl_min_version"] is ssl.TLSVersion.TLSv1_2
    assert kwargs["connection_class"].__name__ == "AsyncSSLConnection"


def test_unreadable_tls_files_fail_at_startup(tmp_path: Path) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    files = {"ssl_ca_certs": str(garbage), "ssl_certfile": str(garbage)}
    with _cache("rediss://h:6380/0", **files), pytest.raises(ConfigurationError) as info:
        conf.validate()
    assert "ssl_ca_certs" in str(info.value)
    assert "ssl_certfile" in str(info.value)
    assert "cannot be loaded" in str(info.value)


@pytest.mark.parametrize(
    ("location", "options", "text"),
    [
        ("rediss://h:1/0", {"ssl_cert_reqs": "sometimes"}, "ssl_cert_reqs"),
        ("rediss://h:1/0", {"CONNECTION_POOL_KWARGS": {"ssl_ca_certs": "/no/such/ca.pem"}},
         "/no/such/ca.pem"),
        ("rediss://h:1/0?ssl_certfile=/no/cert.pem", {}, "LOCATION"),
        ("rediss://h:1/0", {"ssl_min_version": "TLSv9"}, "ssl_min_version"),
        ("rediss://h:1/0", {"ssl_check_hostname": "no"}, "ssl_check_hostname"),
        ("redis://h:1/0", {"ssl_ca_certs": "/etc/hosts"}, "not rediss://"),
        ("redis://h:1/0?ssl_cert_reqs=none", {}, "not rediss://"),
    ],
)  # fmt: skip
def test_invalid_tls_options_fail_at_startup(
    location: str, options: dict[str, Any], text: str
) -> None:
    with _cache(location, **options):
        assert "django_redis_resilience.E004" in _ids()
        with pytest.raises(ConfigurationError, match="E004") as info:
            conf.validate()
    assert text in str(info.value)


@pytest.mark.parametrize(
    ("location", "options"),
    [
        ("rediss://h:1/0", {"ssl_cert_reqs": "none"}),
        ("rediss://h:1/0", {"CONNECTION_POOL_KWARGS": {"ssl_cert_reqs": None}}),
        ("rediss://h:1/0?ssl_check_hostname=false", {}),
        ("rediss://h:1/0", {"ssl_cert_reqs": "optional"}),
    ],
)
def test_turning_verification_off_is_a_warning_and_a_log_line(
    location: str, options: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with _cache(location, **options):
        assert _ids() == ["django_redis_resilience.W003"]
        conf.validate()  # a warning, not an error
        from django_redis_resilience.connection import ConnectionManager, Scheduler

        scheduler = Scheduler()
        manager = ConnectionManager(
            alias="default",
            topology=conf.topology("default"),
            options=conf.connection_options("default"),
            scheduler=scheduler,
        )
        manager.close()
        scheduler.stop()
    assert "is not verified" in caplog.text


def test_tls_options_on_a_plain_location_are_refused_by_the_core_too() -> None:
    options = ConnectionOptions(pool_kwargs=(("ssl_ca_certs", "/etc/hosts"),))
    with pytest.raises(InvalidOption, match="need a rediss:// location"):
        pool_kwargs(parse_location("redis://h:1/0").primary, options, asyncio=False)
