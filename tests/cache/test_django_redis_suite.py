"""django-redis's own test suite, run against ``ResilientRedisCache``.

The tests are django-redis's (https://github.com/jazzband/django-redis, BSD-3-Clause,
Jazzband): ``tests/test_backend.py`` and ``tests/test_backend_sorted_sets.py`` of the
sdist of the installed django-redis. They are fetched at test time (``pip download``, once
per machine, kept in pytest's cache directory ``.pytest_cache/d/django-redis-sdist``) and
never copied into this repository; ``DRR_DJANGO_REDIS_SDIST=/path/to/sdist.tar.gz`` gives
the file instead (offline). Without it, a failed download fails these tests.

They run in a pytest subprocess, on a throwaway server of the harness per configuration
(pickle; JSON with zlib), with this repository's ``conftest.py`` and settings
(``django_redis_suite/``) in place of django-redis's, whose settings all point at port 6379.
Each django-redis test becomes one test here, named after it. Those that reach into
django-redis's private client are listed in :data:`EXPECTED_FAILURES`: any other failure
fails, and so does a listed test that passes (the list must stay true).
"""

from __future__ import annotations

import ast
import email.parser
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest

from django_redis_resilience.testing import RedisServer

DISTRIBUTION = "django-redis"
#: The django-redis major version whose suite :data:`EXPECTED_FAILURES` describes.
MAJOR = "7"
SDIST_ENV = "DRR_DJANGO_REDIS_SDIST"
CACHE_NAME = "django-redis-sdist"
#: The sdist's files the run needs, under its ``tests/``.
SUITE_FILES = (
    "__init__.py",
    "settings_wrapper.py",
    "test_backend.py",
    "test_backend_sorted_sets.py",
)
TEST_FILES = ("test_backend.py", "test_backend_sorted_sets.py")
OURS = Path(__file__).with_name("django_redis_suite")
GUIDE = Path(__file__).parents[2] / "docs" / "migrating.md"
GUIDE_SECTION = "django-redis's own tests"
#: django-redis's settings modules these stand for: ``sqlite``, and ``sqlite_json`` with
#: ``sqlite_zlib`` (the serializer- and compressor-dependent branches of the tests).
CONFIGS: dict[str, dict[str, str]] = {
    "pickle": {},
    "json-zlib": {
        "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
        "COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor",
    },
}
#: Per configuration; both run side by side, and take ~25 s (mostly the tests' sleeps).
RUN_TIMEOUT = 100.0
DOWNLOAD_TIMEOUT = 120.0

#: django-redis tests that use django-redis's private internals, which this backend does not
#: have (docs/migrating.md, "django-redis's own tests", gives the public way for each).
EXPECTED_FAILURES: dict[str, str] = {
    "test_backend.py::TestDjangoRedisCache::test_delete_pattern_with_custom_count": (
        "It patches django_redis.cache.RedisCache.client, a class this backend does not use, "
        "and expects delete_pattern to be delegated to that mock."
    ),
    "test_backend.py::TestDjangoRedisCache::test_delete_pattern_with_settings_default_scan_count": (
        "It patches django_redis.cache.RedisCache.client, a class this backend does not use, "
        "and expects that mock to get DJANGO_REDIS_SCAN_ITERSIZE."
    ),
    "test_backend.py::TestDjangoRedisCache::test_close_with_signal_parameter": (
        "It patches django_redis.cache.RedisCache.client, a class this backend does not use, "
        "and expects close() to be delegated to that mock."
    ),
    "test_backend.py::TestDjangoRedisCache::test_close_client": (
        "It patches close on cache.client, which is django-redis's private client object there "
        "and a compatibility shim without close() here."
    ),
    "test_backend.py::TestDjangoRedisCache::test_primary_replica_switching": (
        "It overwrites cache.client._server and cache.client._clients, django-redis's private "
        "client state, and expects get_client to return them."
    ),
    "test_backend.py::TestDjangoRedisCache::test_primary_replica_switching_with_index": (
        "It overwrites cache.client._server and cache.client._clients and calls "
        "cache.client.get_client_with_index, django-redis's private client API."
    ),
}


# --- the sdist ------------------------------------------------------------------------------


class SuiteUnavailable(Exception):
    """The sdist could not be had: the tests fail with this message."""


@dataclass(frozen=True)
class Problem:
    """Why the suite does not run: a skip (another django-redis major) or a failure."""

    message: str
    skip: bool = False

    def raise_(self, *, brief: bool = False) -> None:
        """Skip or fail; ``brief``: with the first line only (test_django_redis has it all)."""
        message = self.message.partition("\n")[0] if brief else self.message
        if self.skip:
            pytest.skip(message)
        pytest.fail(message, pytrace=False)


@dataclass(frozen=True)
class Suite:
    sdist: Path
    version: str
    tests: tuple[str, ...]  # "test_backend.py::TestDjangoRedisCache::test_setnx", ...


SUITE = pytest.StashKey["Suite | Problem"]()


def suite_of(config: pytest.Config) -> Suite | Problem:
    """The installed django-redis's suite (found once per session), or why there is none."""
    if SUITE not in config.stash:
        config.stash[SUITE] = _find_suite(config)
    return config.stash[SUITE]


def _find_suite(config: pytest.Config) -> Suite | Problem:
    version = metadata.version(DISTRIBUTION)
    if version.split(".")[0] != MAJOR:
        return Problem(
            f"django-redis {version} is installed: this runs django-redis {MAJOR}'s own tests, "
            f"which EXPECTED_FAILURES describes; other majors are covered by "
            f"test_django_redis_compat.py",
            skip=True,
        )
    try:
        sdist = _sdist(config, version)
        with tarfile.open(sdist, "r:gz") as tar:
            tests = tuple(
                name for file in TEST_FILES for name in _test_ids(file, _read(tar, f"tests/{file}"))
            )
    except SuiteUnavailable as exc:
        return Problem(str(exc))
    return Suite(sdist, version, tests)


def _sdist(config: pytest.Config, version: str) -> Path:
    given = os.environ.get(SDIST_ENV)
    if given:
        path = Path(given)
        _verify(path, version, source=f"{SDIST_ENV}={given}")
        return path
    directory = _cache_dir(config)
    target = directory / f"django_redis-{version}.tar.gz"
    if target.is_file():
        try:
            _verify(target, version, source=str(target))
        except SuiteUnavailable:
            target.unlink()  # a damaged download: fetch it again
        else:
            return target
    with tempfile.TemporaryDirectory(dir=directory, prefix="download-") as scratch:
        downloaded = _download(version, Path(scratch))
        _verify(downloaded, version, source=f"pip download into {scratch}")
        os.replace(downloaded, target)  # atomic: side-by-side runs may download it too
    return target


def _cache_dir(config: pytest.Config) -> Path:
    """pytest's cache directory for the sdist; where pytest's cache would keep it when the
    cache plugin is off (``-p no:cacheprovider``, as in this repository's ``addopts``)."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir(CACHE_NAME))
    directory = config.rootpath / ".pytest_cache" / "d" / CACHE_NAME
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _download(version: str, into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{DISTRIBUTION}=={version}",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--disable-pip-version-check",
        "--retries",
        "1",
        "--timeout",
        "15",
        "--dest",
        str(into),
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # pip is no subject
    hint = (
        f"Without network, download it elsewhere (pip download {DISTRIBUTION}=={version} "
        f"--no-deps --no-binary :all:) and set {SDIST_ENV}=/path/to/django_redis-{version}.tar.gz."
    )
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=DOWNLOAD_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SuiteUnavailable(
            f"could not download django-redis {version}'s sdist: {exc}. {hint}"
        ) from exc
    found = sorted(into.glob("*.tar.gz"))
    if done.returncode != 0 or len(found) != 1:
        output = (done.stdout + done.stderr).strip()[-2000:]
        raise SuiteUnavailable(
            f"could not download django-redis {version}'s sdist ({' '.join(command[2:])} "
            f"exited {done.returncode}):\n{output}\n{hint}"
        )
    return found[0]


def _verify(path: Path, version: str, *, source: str) -> None:
    """``path`` is django-redis ``version``'s sdist, with the suite's files."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            info = email.parser.HeaderParser().parsestr(_read(tar, "PKG-INFO"))
            name = re.sub(r"[-_.]+", "-", str(info.get("Name", ""))).lower()
            if name != DISTRIBUTION or info.get("Version") != version:
                raise SuiteUnavailable(
                    f"{source}: the sdist of {info.get('Name')} {info.get('Version')}, not of "
                    f"{DISTRIBUTION} {version} (the installed version, whose tests must run)"
                )
            for file in SUITE_FILES:
                _read(tar, f"tests/{file}")
    except (OSError, tarfile.TarError) as exc:
        raise SuiteUnavailable(f"{source}: cannot read it as an sdist: {exc}") from exc
    except SuiteUnavailable as exc:
        if str(exc).startswith(source):
            raise
        raise SuiteUnavailable(f"{source}: not django-redis {version}'s sdist: {exc}") from exc


def _read(tar: tarfile.TarFile, name: str) -> str:
    """The text of ``<top>/name`` in the sdist."""
    for member in tar.getmembers():
        top, _, rest = member.name.partition("/")
        if rest == name and member.isfile() and "/" not in top:
            extracted = tar.extractfile(member)
            if extracted is not None:
                return extracted.read().decode("utf-8")
    raise SuiteUnavailable(f"it has no {name}")


def _test_ids(file: str, source: str) -> list[str]:
    """The tests pytest collects from ``source``: ``file::Class::test_x``, ``file::test_y``."""
    found: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            found.append(f"{file}::{node.name}")
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found.extend(
                f"{file}::{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test")
            )
    return found


def _extract(sdist: Path, into: Path) -> None:
    """The suite's files (and nothing else: no conftest, no settings) under ``into/tests``."""
    tests = into / "tests"
    tests.mkdir(parents=True)
    with tarfile.open(sdist, "r:gz") as tar:
        for name in SUITE_FILES:
            (tests / name).write_text(_read(tar, f"tests/{name}"), encoding="utf-8")
    (tests / "conftest.py").write_text(
        (OURS / "suite_conftest.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (tests / "drr_settings.py").write_text(
        (OURS / "suite_settings.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (into / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # rootdir, no outside ini


# --- the runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str  # "passed", "failed" or "skipped"
    detail: str = ""


@dataclass
class Run:
    config: str
    outcomes: dict[str, list[Outcome]] = field(default_factory=dict)  # test id -> its cases
    problem: str | None = None  # the run itself went wrong: every test fails with this

    def add(self, test: str, outcome: Outcome) -> None:
        self.outcomes.setdefault(re.sub(r"\[.*\]$", "", test), []).append(outcome)


def _environment(url: str, options: dict[str, str]) -> dict[str, str]:
    # Not this session's settings, nor its PYTEST_ADDOPTS or plugins: the run is the same
    # wherever it starts.
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DJANGO_SETTINGS_MODULE" and not k.startswith("PYTEST_")
    }
    env.update(
        DRR_SUITE_URL=url.rsplit("/", 1)[0] + "/1",
        DRR_SUITE_OPTIONS=json.dumps(options),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@pytest.fixture(scope="module")
def suite_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Run]:
    """config -> :class:`Run`: each configuration's run of the suite, side by side."""
    suite = suite_of(request.config)
    if isinstance(suite, Problem):
        suite.raise_()
    assert isinstance(suite, Suite)
    root = tmp_path_factory.mktemp("django-redis-suite")
    _extract(suite.sdist, root)
    runs: dict[str, Run] = {}
    with ExitStack() as stack:
        started: list[tuple[Run, subprocess.Popen[bytes], Path, Path]] = []
        for config, options in CONFIGS.items():
            server = stack.enter_context(RedisServer())
            junit, output = root / f"{config}.xml", root / f"{config}.log"
            command = [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:django",
                "-p",
                "no:cacheprovider",
                "-q",
                "--tb=short",
                "-o",
                "junit_family=xunit2",
                f"--junitxml={junit}",
                *(f"tests/{file}" for file in TEST_FILES),
            ]
            log = stack.enter_context(output.open("wb"))
            process = subprocess.Popen(
                command,
                cwd=root,
                env=_environment(server.url, options),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_reap, process)
            started.append((Run(config), process, junit, output))
        deadline = time.monotonic() + RUN_TIMEOUT
        for run, process, junit, output in started:
            try:
                code = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                run.problem = f"the {run.config} run took over {RUN_TIMEOUT:.0f} s (log: {output})"
            else:
                _read_report(run, code, junit, output)
            runs[run.config] = run
    return runs


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


def _read_report(run: Run, code: int, junit: Path, output: Path) -> None:
    """``run``'s outcomes from its JUnit XML (pytest exits 0 or 1 when the tests ran)."""
    tail = output.read_text(encoding="utf-8", errors="replace")[-3000:]
    if code not in (0, 1) or not junit.is_file():
        run.problem = (
            f"the {run.config} run of django-redis's suite exited {code} (log: {output}):\n{tail}"
        )
        return
    for case in ET.parse(junit).getroot().iter("testcase"):
        run.add(_test_id(case.get("classname", ""), case.get("name", "")), _outcome(case))


def _test_id(classname: str, name: str) -> str:
    """``tests.test_backend.TestDjangoRedisCache`` + ``test_setnx`` in the ids of
    :func:`_test_ids`."""
    parts = classname.split(".")
    module = next((i for i, part in enumerate(parts) if part.startswith("test_")), None)
    if module is None:
        return f"{classname}::{name}"  # not a test of TEST_FILES: reported as unknown
    return "::".join([f"{parts[module]}.py", *parts[module + 1 :], name])


def _outcome(case: ET.Element) -> Outcome:
    problems = [e for e in case if e.tag in ("failure", "error")]
    if problems:
        detail = "\n".join(
            f"{e.tag}: {e.get('message', '')}\n{(e.text or '').strip()[-4000:]}" for e in problems
        )
        return Outcome("failed", detail)
    skipped = case.find("skipped")
    if skipped is not None:
        return Outcome("skipped", skipped.get("message", ""))
    return Outcome("passed")


# --- the tests --------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per django-redis test and configuration (the sdist's tests, read at collection)."""
    wanted = {"case", "suite_config"} & set(metafunc.fixturenames)
    if not wanted:
        return
    suite = suite_of(metafunc.config)
    name = wanted.pop()
    if isinstance(suite, Problem):
        metafunc.parametrize(
            name, [pytest.param(suite, id="skipped" if suite.skip else "no-sdist")]
        )
        return
    if name == "suite_config":
        metafunc.parametrize(name, list(CONFIGS))
        return
    metafunc.parametrize(
        name, [pytest.param((c, t), id=f"{c}:{t}") for c in CONFIGS for t in suite.tests]
    )


def test_django_redis(case: tuple[str, str] | Problem, request: pytest.FixtureRequest) -> None:
    """django-redis's test passes here, or fails and is in EXPECTED_FAILURES."""
    if isinstance(case, Problem):
        case.raise_()
        return
    config, test = case
    run: Run = request.getfixturevalue("suite_runs")[config]
    if run.problem:
        pytest.fail(run.problem, pytrace=False)
    outcomes = run.outcomes.get(test)
    if not outcomes:
        pytest.fail(f"{test} did not run: it is not in the {config} run's report", pytrace=False)
    failed = [o for o in outcomes if o.status == "failed"]
    expected = EXPECTED_FAILURES.get(test)
    if expected is not None:
        if failed:
            pytest.xfail(expected)
        if all(o.status == "skipped" for o in outcomes):
            pytest.skip(f"django-redis skips it: {outcomes[0].detail}")
        pytest.fail(f"{test} now passes: remove it from EXPECTED_FAILURES", pytrace=False)
    if failed:
        options = json.dumps(CONFIGS[config]) if CONFIGS[config] else "default OPTIONS"
        details = "\n\n".join(o.detail for o in failed)
        pytest.fail(
            f"django-redis's {test} fails against ResilientRedisCache ({config}: {options}):\n"
            f"{details}",
            pytrace=False,
        )
    if all(o.status == "skipped" for o in outcomes):
        pytest.skip(f"django-redis skips it: {outcomes[0].detail}")


def test_each_run_reports_the_tests_of_the_suite(
    suite_config: str | Problem, request: pytest.FixtureRequest
) -> None:
    """No test of the run escapes :func:`test_django_redis` (one it could not name)."""
    if isinstance(suite_config, Problem):
        suite_config.raise_(brief=True)
        return
    suite = suite_of(request.config)
    assert isinstance(suite, Suite)
    run: Run = request.getfixturevalue("suite_runs")[suite_config]
    if run.problem:
        pytest.fail(run.problem, pytrace=False)
    assert set(run.outcomes) == set(suite.tests)


def test_every_expected_failure_is_a_test_of_the_suite(request: pytest.FixtureRequest) -> None:
    suite = suite_of(request.config)
    if isinstance(suite, Problem):
        suite.raise_(brief=True)
        return
    assert set(EXPECTED_FAILURES) <= set(suite.tests), "stale names in EXPECTED_FAILURES"


def test_the_migration_guide_names_every_expected_failure() -> None:
    """docs/migrating.md gives the public way for each test that uses private internals."""
    guide = GUIDE.read_text(encoding="utf-8")
    section = re.split(r"\n#{1,3} ", guide.partition(f"\n### {GUIDE_SECTION}\n")[2])[0]
    assert section, f"docs/migrating.md has no section {GUIDE_SECTION!r}"
    missing = [t for t in EXPECTED_FAILURES if f"`{t.rpartition('::')[2]}`" not in section]
    assert not missing, f"not in docs/migrating.md: {missing}"
