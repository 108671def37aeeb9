"""Headless Chromium for the admin's browser tests (Debian's ``chromium`` + ``chromium-driver``).

``.ci/run`` installs both and sets ``DRR_REQUIRE_BROWSER=1``, so there a missing
browser fails the run; elsewhere the browser tests are skipped with the reason.
Screenshots go to ``test-artifacts/screenshots/`` (or ``$DRR_ARTIFACTS/screenshots``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("DRR_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium() -> Iterator[Any]:
    """A headless Chromium driven by the system's chromedriver (no download)."""
    browser = _find("chromium", "chromium-browser", "google-chrome")
    driver = _find("chromedriver")
    missing = [n for n, p in (("chromium", browser), ("chromedriver", driver)) if p is None]
    webdriver = None
    try:
        from selenium import webdriver
    except ImportError:
        missing.append("selenium")
    if missing:
        reason = (
            f"browser tests need {', '.join(missing)} (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("DRR_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    assert webdriver is not None
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    session = webdriver.Chrome(options=options, service=Service(executable_path=str(driver)))
    session.set_page_load_timeout(30)
    try:
        yield session
    finally:
        session.quit()


def screenshot(session: Any, name: str) -> Path:
    """Save the whole page as ``<name>.png`` among the test artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    height = session.execute_script("return document.documentElement.scrollHeight")
    session.set_window_size(1400, max(1000, min(int(height) + 40, 6000)))
    session.save_screenshot(str(path))
    return path


def wait_until(
    condition: Callable[[], Any],
    failure: str,
    *,
    timeout: float = 15.0,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll ``condition`` until it gives something true; a page being replaced counts as "not yet".

    On timeout, fail with ``failure`` and what ``explain`` says (the page, a screenshot...).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # the element went stale while the panel was replaced
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(failure + (f"\n{explain()}" if explain else ""))
        time.sleep(0.1)
