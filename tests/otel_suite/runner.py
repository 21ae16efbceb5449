"""Fetch the pinned ``opentelemetry-instrumentation-wsgi`` sdist (its tests are not in the wheel) and run its
test suite in a pytest subprocess, stock or with ``BridgeMiddleware`` substituted.

The sdist goes to ``~/.cache/otel-sentry-bridge/otel-wsgi-suite/<version>/`` (``pip download``, once); nothing
of it is committed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

__all__ = ["SuiteRun", "fetch_suite", "run_suite", "PACKAGE"]

PACKAGE = "opentelemetry-instrumentation-wsgi"
PLUGIN_DIR = Path(__file__).parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "otel-sentry-bridge" / "otel-wsgi-suite"


@dataclass(frozen=True)
class SuiteRun:
    passed: frozenset[str]
    failed: dict[str, str]  # test id -> the first line of its failure
    output: str


def fetch_suite() -> Path:
    """The extracted sdist of the installed (pinned) version; downloaded on first use."""
    pinned = version(PACKAGE)
    where = CACHE / pinned
    tests = where / f"{PACKAGE.replace('-', '_')}-{pinned}" / "tests"
    if tests.is_dir():
        return tests.parent
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps"]
        + ["--no-binary", ":all:", f"{PACKAGE}=={pinned}", "-d", str(where)],
        check=True,
        timeout=300,
    )
    [archive] = where.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: no path may leave ``where``
            tar.extractall(where, filter="data")
        else:  # pragma: no cover - the pinned sdist, from PyPI
            tar.extractall(where)  # noqa: S202
    if not tests.is_dir():
        raise FileNotFoundError(f"{archive} has no tests/ directory")
    return tests.parent


def run_suite(root: Path, substituted: bool, junit: Path) -> SuiteRun:
    """Run ``root/tests`` in a pytest subprocess; with ``substituted``, BridgeMiddleware stands in."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "SENTRY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_DIR), str(PLUGIN_DIR.parent.parent)])
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    command += ["--rootdir", str(root), "-o", "addopts=", f"--junitxml={junit}"]
    if substituted:
        command += ["-p", "bridge_substitute"]
    result = subprocess.run(
        command + ["tests"], cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    passed: set[str] = set()
    failed: dict[str, str] = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}.{case.get('name')}"
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if problem is None:
            passed.add(test_id)
        else:
            failed[test_id] = f"{problem.tag}: {(problem.get('message') or '').splitlines()[0][:300]}"
    return SuiteRun(frozenset(passed), failed, result.stdout + result.stderr)
