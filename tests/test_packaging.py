"""The released artifacts hold the whole package.

An editable install reads files from the checkout, so a Lua script, template,
static file or migration missing from the wheel would pass every other test and
break every user. This builds the sdist, then the wheel from that sdist (as pip
does from PyPI), and compares both with the package's files in the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "django_redis_resilience"


def _project_files() -> list[str]:
    """Files git would ship from this checkout: tracked, or new and not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(sdist, wheel, build output), built from a copy of the project's files."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("this test needs git and a git checkout to know the project's files")
    source = tmp_path_factory.mktemp("source")
    for name in _project_files():
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    dist = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    completed = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    return sdist, wheel, output


def _package_files() -> set[str]:
    return {
        name
        for name in _project_files()
        if name.startswith(PACKAGE + "/") and "__pycache__" not in name
    }


def test_the_wheel_built_from_the_sdist_holds_every_package_file(
    built: tuple[Path, Path, str],
) -> None:
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.startswith(PACKAGE + "/")}
    expected = _package_files()
    assert expected - shipped == set(), "missing from the wheel"
    assert shipped - expected == set(), "in the wheel but not in the checkout"
    for kind in (".lua", ".html", ".css", ".js", "py.typed", "/migrations/0001_initial.py"):
        assert any(name.endswith(kind) for name in shipped), kind


def test_the_sdist_holds_every_package_file_and_the_readme(
    built: tuple[Path, Path, str],
) -> None:
    sdist, _, _ = built
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert _package_files() <= names
    assert {"README.md", "LICENSE", "setup.cfg", "pyproject.toml"} <= names


def test_the_build_gives_no_warning(built: tuple[Path, Path, str]) -> None:
    _, _, output = built
    warnings = [line for line in output.splitlines() if "warn" in line.lower()]
    assert warnings == [], "\n".join(warnings)
