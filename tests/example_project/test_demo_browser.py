"""The README's promise, in a real browser: run ``manage.py demo --cluster``, hang a
master from the chaos page, and watch the admin panel show it within one refresh
while the site keeps answering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._browser import chromium, screenshot, wait_until
from tests.example_project._site import Browser, Demo

ADMIN_HEALTH = "/admin/django_redis_resilience/redishealth/"


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from chromium()


def _waiter(browser: Any, demo: Demo) -> Any:
    """Wait for a condition on the page; on failure say what the page and the demo showed."""

    def explain() -> str:
        shot = screenshot(browser, "failed-demo-browser")
        text = browser.execute_script("return document.body.innerText")[:3000]
        return (
            f"at {browser.current_url} (screenshot {shot}); page:\n{text}\n"
            f"demo output:\n{demo.output[-3000:]}"
        )

    def wait(condition: Any, failure: str, timeout: float = 20.0) -> Any:
        return wait_until(condition, failure, timeout=timeout, explain=explain)

    return wait


@pytest.mark.chaos
def test_hanging_a_master_from_the_chaos_page_shows_in_the_admin_panel(
    browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    demo = Demo(tmp_path, "--cluster")
    try:
        demo.wait_until_serving()
        _wait = _waiter(browser, demo)
        base = demo.base
        browser.get(f"{base}/admin/login/?next=/chaos/")
        browser.find_element(By.NAME, "username").send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(demo.password)
        browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        _wait(lambda: browser.current_url.endswith("/chaos/"), "not on the chaos page")

        # The panel, healthy: three masters up, every slot served.
        browser.get(f"{base}{ADMIN_HEALTH}")
        rows = _wait(
            lambda: {
                r.get_attribute("data-address"): r.get_attribute("data-status")
                for r in browser.find_elements(By.CSS_SELECTOR, "tr.drr-node")
            },
            "no node rows",
        )
        assert sorted(rows.values()) == ["ok", "ok", "ok"], rows
        screenshot(browser, "demo-cluster-admin-healthy")

        # Hang one master from the chaos page, as a person would.
        name, (port, _) = next(iter(demo.nodes.items()))
        browser.get(f"{base}/chaos/")
        row = browser.find_element(By.XPATH, f"//tr[td[normalize-space()='{name}']]")
        row.find_element(By.CSS_SELECTOR, "button[value=hang]").click()
        _wait(
            lambda: "is hung now" in browser.find_element(By.CSS_SELECTOR, ".messages").text,
            "no confirmation from the chaos page",
        )
        screenshot(browser, "demo-cluster-chaos-hung")

        # Within one refresh of the panel (no reload), the master shows down.
        browser.get(f"{base}{ADMIN_HEALTH}")
        address = f"127.0.0.1:{port}"
        _wait(
            lambda: (
                browser.find_element(
                    By.CSS_SELECTOR, f"tr.drr-node[data-address='{address}']"
                ).get_attribute("data-status")
                == "down"
            ),
            f"{address} not shown down",
        )
        codes = {
            f.get_attribute("data-code")
            for f in browser.find_elements(By.CSS_SELECTOR, ".drr-finding")
        }
        assert "H001" in codes
        screenshot(browser, "demo-cluster-admin-master-hung")

        # Meanwhile the site answers.
        site = Browser(base)
        for path in ("/", "/cached/", "/expensive/", "/api/"):
            answer = site.get(path)
            assert answer.status in (200, 429), (path, answer.status)
    finally:
        demo.close()
