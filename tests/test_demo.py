"""The README's demo command keeps working: it runs the example project's ``demo``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_degrades_and_recovers() -> None:
    result = subprocess.run(
        [sys.executable, "example_project/manage.py", "demo", "--calls", "6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "example_project.settings"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "ok, visits=3" in out
    assert "RedisUnavailable (refused)" in out
    assert "BreakerOpen (breaker_open)" in out
    assert "recovered after" in out
    assert "recovered     " in out
    assert "from the fallback: 'v2 (written during the outage)'" in out
    assert "after recovery get('page') = None" in out
    assert "v1 (before the outage)'" not in out.split("after recovery", 1)[1]
