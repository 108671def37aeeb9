"""The console walkthrough keeps working: the example project's ``demo_outage`` command.

``manage.py demo`` (the example site) is tested in ``tests/example_project``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_outage_degrades_and_recovers(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "example_project/manage.py", "demo_outage", "--calls", "6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "example_project.settings",
            # Degradation events are written to the database: not the developer's.
            "SQLITE_PATH": str(tmp_path / "db.sqlite3"),
        },
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
