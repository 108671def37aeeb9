"""The ``conftest.py`` django-redis's tests run with here, in place of their own.

Not a conftest of this repository's suite: ``tests/cache/test_django_redis_suite.py``
copies it, as ``tests/conftest.py``, next to the test files it extracts from
django-redis's sdist. django-redis's own conftest runs every test on twelve settings
modules, all on 127.0.0.1:6379; this one provides the same ``settings`` and ``cache``
fixtures on a single configuration, ``drr_settings`` (copied beside it), whose
caches are ``ResilientRedisCache`` on a throwaway server of this repository's harness.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.settings_wrapper import SettingsWrapper


def pytest_configure(config: pytest.Config) -> None:
    sys.path.insert(0, str(Path(__file__).absolute().parent))
    os.environ["DJANGO_SETTINGS_MODULE"] = "drr_settings"


@pytest.fixture
def settings() -> Iterator[SettingsWrapper]:
    """A Django settings object which restores changes after the test (as django-redis's)."""
    wrapper = SettingsWrapper()
    yield wrapper
    wrapper.finalize()


@pytest.fixture
def cache() -> Iterator[Any]:
    """``caches["default"]``, cleared after the test (as django-redis's)."""
    from django import setup

    setup()

    from django.core.cache import cache as default_cache

    yield default_cache
    default_cache.clear()
