from collections.abc import Iterator

import pytest

pytest_plugins = ["django_redis_resilience.testing"]


@pytest.fixture
def fresh_health_report() -> Iterator[None]:
    """No cached health report and no latency history from an earlier test, nor for a later one."""
    from django_redis_resilience import views
    from django_redis_resilience.health._history import history

    views.forget_cached_report()
    history.clear()
    yield
    views.forget_cached_report()
    history.clear()


def pytest_report_header() -> str:
    from tests._versions import describe

    return "versions: " + describe()
