"""The Redis health panel in a real browser (headless Chromium) against real Redis.

Each test logs in through the admin's login form, as a person would, and reads
what the page shows; screenshots are saved among the test artifacts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings

from django_redis_resilience.testing import ClusterGroupFactory, RedisServerFactory
from tests._browser import chromium, screenshot, wait_until
from tests.cache.conftest import FAST_BREAKER, resilient_caches

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_health_report"),
]

PASSWORD = "browser-test-password"
PANEL = "/admin/django_redis_resilience/redishealth/"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def _user(name: str, *perms: str, superuser: bool = False) -> Any:
    model = get_user_model()
    if superuser:
        return model.objects.create_superuser(name, f"{name}@example.com", PASSWORD)
    user = model.objects.create_user(name, f"{name}@example.com", PASSWORD, is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def _login(browser: Any, base: str, username: str) -> None:
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{base}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    _wait(lambda: "/admin/login/" not in browser.current_url, "login did not succeed")


def _wait(condition: Callable[[], Any], failure: str, timeout: float = 15.0) -> Any:
    return wait_until(condition, failure, timeout=timeout)


def _rows(browser: Any) -> dict[str, str]:
    """Node address -> the status the panel shows for it."""
    from selenium.webdriver.common.by import By

    return {
        row.get_attribute("data-address"): row.get_attribute("data-status")
        for row in browser.find_elements(By.CSS_SELECTOR, "tr.drr-node")
    }


def _codes(browser: Any) -> set[str]:
    from selenium.webdriver.common.by import By

    return {
        li.get_attribute("data-code")
        for li in browser.find_elements(By.CSS_SELECTOR, ".drr-finding")
    }


def _messages(browser: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [m.text for m in browser.find_elements(By.CSS_SELECTOR, "ul.messagelist li")]


def _settings(caches: dict[str, Any], **health: Any) -> Any:
    return override_settings(
        CACHES=caches,
        REDIS_RESILIENCE={"HEALTH": {"TIMEOUT": 0.5, "CACHE_SECONDS": 1, **health}},
    )


@pytest.mark.chaos
def test_staff_sees_the_nodes_then_a_dead_master_and_its_finding(
    browser: Any, live_server: Any, drr_cluster_factory: ClusterGroupFactory
) -> None:
    from selenium.webdriver.common.by import By

    cluster = drr_cluster_factory(require_full_coverage=False)
    caches = resilient_caches(cluster.location, BREAKER=FAST_BREAKER, SOCKET_TIMEOUT=0.3)
    _user("ops", superuser=True)
    with _settings(caches):
        _login(browser, live_server.url, "ops")
        browser.get(f"{live_server.url}/admin/")
        link = browser.find_element(By.LINK_TEXT, "Redis health")
        link.click()
        addresses = {f"{n.host}:{n.port}" for n in cluster.masters}
        rows = _wait(lambda: _rows(browser), "no node rows on the panel")
        assert rows == dict.fromkeys(addresses, "ok")
        segments = browser.find_elements(By.CSS_SELECTOR, ".drr-slotbar .drr-seg-served")
        assert len(segments) == 3
        screenshot(browser, "admin-health-cluster-healthy")

        victim = cluster.masters[0]
        victim.kill()
        time.sleep(1.1)  # the report is cached for CACHE_SECONDS
        browser.find_element(By.LINK_TEXT, "Reload").click()
        address = f"{victim.host}:{victim.port}"
        _wait(lambda: _rows(browser).get(address) == "down", f"{address} not shown down")
        assert {a: s for a, s in _rows(browser).items() if a != address} == dict.fromkeys(
            addresses - {address}, "ok"
        )
        assert "H001" in _codes(browser)  # the node does not answer
        assert browser.find_elements(By.CSS_SELECTOR, ".drr-slotbar .drr-seg-down")
        summary = browser.find_element(By.CSS_SELECTOR, ".drr-summary .drr-badge")
        assert summary.get_attribute("data-status") == "critical"
        screenshot(browser, "admin-health-cluster-master-down")


@pytest.mark.chaos
def test_auto_refresh_shows_an_outage_without_reloading_and_can_be_paused(
    browser: Any, live_server: Any, drr_redis_factory: RedisServerFactory
) -> None:
    from selenium.webdriver.common.by import By

    server = drr_redis_factory()
    caches = resilient_caches(server.url, BREAKER=FAST_BREAKER, SOCKET_TIMEOUT=0.3)
    _user("ops", superuser=True)
    with _settings(caches):
        _login(browser, live_server.url, "ops")
        browser.get(f"{live_server.url}{PANEL}")
        browser.execute_script("localStorage.removeItem('drr-health-paused')")
        browser.refresh()
        address = f"{server.host}:{server.port}"
        _wait(lambda: _rows(browser).get(address) == "ok", "node not shown up")
        # Let a few refreshes land, so the sparkline has a history to draw.
        _wait(
            lambda: browser.find_elements(By.CSS_SELECTOR, "svg.drr-spark polyline"),
            "no latency sparkline after several refreshes",
            timeout=20,
        )
        server.hang()  # SIGSTOP: the probe times out rather than being refused
        try:
            _wait(lambda: _rows(browser).get(address) == "down", "outage not shown by auto-refresh")
            panel = browser.find_element(By.ID, "drr-panel")
            assert int(panel.get_attribute("data-refreshes")) >= 1
            screenshot(browser, "admin-health-standalone-hung")

            browser.find_element(By.ID, "drr-pause").click()
            assert panel.get_attribute("data-paused") == "1"
            assert browser.find_element(By.ID, "drr-pause").text == "Resume auto-refresh"
            paused_at = int(panel.get_attribute("data-refreshes"))
        finally:
            server.resume()
        time.sleep(5)  # two refresh intervals: a refresh would have shown the node back up
        panel = browser.find_element(By.ID, "drr-panel")
        assert int(panel.get_attribute("data-refreshes")) == paused_at
        assert _rows(browser)[address] == "down"
        # The pause survives a reload; resuming brings the node back.
        browser.refresh()
        assert browser.find_element(By.ID, "drr-pause").text == "Resume auto-refresh"
        browser.find_element(By.ID, "drr-pause").click()
        _wait(lambda: _rows(browser).get(address) == "ok", "node not shown back up after resume")


@pytest.mark.chaos
def test_actions_confirm_with_a_message_and_are_recorded(
    browser: Any, live_server: Any, drr_redis_factory: RedisServerFactory
) -> None:
    from django.core.cache import caches as django_caches
    from selenium.webdriver.common.by import By

    from django_redis_resilience.models import DegradationEvent

    server = drr_redis_factory()
    breaker = {**FAST_BREAKER, "RECOVERY_TIMEOUT": 60, "MAX_RECOVERY_TIMEOUT": 60}  # until reset
    caches = resilient_caches(server.url, BREAKER=breaker, SOCKET_TIMEOUT=0.3)
    _user("ops", superuser=True)
    with _settings(caches):
        _login(browser, live_server.url, "ops")
        browser.get(f"{live_server.url}{PANEL}")
        browser.find_element(By.CSS_SELECTOR, "button[name=probe-now]").click()
        _wait(lambda: any("Probed 1 node" in m for m in _messages(browser)), "no probe message")

        server.hang()
        try:
            cache = django_caches["default"]
            for _ in range(5):  # the breaker opens; the fallback answers
                cache.get("some-key")
        finally:
            server.resume()
        browser.get(f"{live_server.url}{PANEL}")
        row = browser.find_element(By.CSS_SELECTOR, "table.drr-endpoints tr[data-breaker=open]")
        screenshot(browser, "admin-health-breaker-open")
        row.find_element(By.XPATH, ".//button[text()='Reset breaker']").click()
        _wait(lambda: any("reset in process" in m for m in _messages(browser)), "no reset message")
        assert browser.find_elements(By.CSS_SELECTOR, "table.drr-endpoints tr[data-breaker=closed]")
        actions = DegradationEvent.objects.filter(kind="admin_action")
        assert {e.message.split(":", 1)[0] for e in actions} == {"ops"}
        assert any("reset" in e.message for e in actions)
        assert any("Probed" in e.message for e in actions)
        screenshot(browser, "admin-health-breaker-reset")


def test_a_user_without_the_permission_neither_sees_nor_opens_the_panel(
    browser: Any, live_server: Any, drr_redis_server: Any
) -> None:
    from selenium.webdriver.common.by import By

    caches = resilient_caches(drr_redis_server.url, BREAKER=FAST_BREAKER)
    _user("clerk", "view_user")
    _user("watcher", "view_redishealth")
    with _settings(caches):
        _login(browser, live_server.url, "clerk")
        browser.get(f"{live_server.url}/admin/")
        assert not browser.find_elements(By.LINK_TEXT, "Redis health")
        browser.get(f"{live_server.url}{PANEL}")
        assert "403" in browser.title or "Forbidden" in browser.page_source
        assert not browser.find_elements(By.ID, "drr-panel")

        # View permission: the panel, but no action buttons.
        _login(browser, live_server.url, "watcher")
        browser.get(f"{live_server.url}/admin/")
        browser.find_element(By.LINK_TEXT, "Redis health").click()
        _wait(lambda: _rows(browser), "no node rows for a viewer")
        assert not browser.find_elements(By.CSS_SELECTOR, "button[name=probe-now]")
        assert not browser.find_elements(By.CSS_SELECTOR, "form[action$='action/']")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_panel_follows_the_admin_theme(
    browser: Any, live_server: Any, drr_redis_server: Any, theme: str
) -> None:
    from selenium.webdriver.common.by import By

    caches = resilient_caches(drr_redis_server.url, BREAKER=FAST_BREAKER)
    _user("ops", superuser=True)
    with _settings(caches):
        _login(browser, live_server.url, "ops")
        browser.get(f"{live_server.url}/admin/")
        browser.execute_script("localStorage.setItem('theme', arguments[0])", theme)
        browser.execute_script("localStorage.setItem('drr-health-paused', '1')")
        browser.get(f"{live_server.url}{PANEL}")
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("data-theme") == theme
        badge = browser.find_element(By.CSS_SELECTOR, ".drr-summary .drr-badge")

        def color(element: Any, prop: str) -> str:
            return str(
                browser.execute_script(
                    "return getComputedStyle(arguments[0]).getPropertyValue(arguments[1])",
                    element,
                    prop,
                )
            )

        body_bg = color(browser.find_element(By.TAG_NAME, "body"), "background-color")
        expected_ok = {"light": "rgb(30, 123, 52)", "dark": "rgb(127, 214, 143)"}[theme]
        assert color(badge, "color") == expected_ok
        dark_body = body_bg not in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)")
        assert dark_body == (theme == "dark")
        browser.execute_script("localStorage.removeItem('drr-health-paused')")
        screenshot(browser, f"admin-health-{theme}")
