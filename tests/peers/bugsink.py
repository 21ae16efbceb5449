"""A real Bugsink (a Sentry-compatible server: Django + SQLite) for the tests.

Cached per version under ``$BRIDGE_CACHE_DIR`` (default ``~/.cache/otel-sentry-bridge``), guarded by a file
lock: ``bugsink-2.6.1/venv`` (its own venv: Bugsink pins Django) and ``bugsink-2.6.1/template``, both SQLite
databases migrated once (the migrations read nothing from the per-session configuration, so a copy is as good
as a fresh ``migrate`` and saves about 6 s per session). Each session gets a fresh configuration directory,
copies of the databases, a team, a project, a full-access API token, and a gunicorn it stops by PID.

Reading back: the REST API (``Authorization: Bearer``) for issues and stored events; the raw envelopes that
``KEEP_ENVELOPES`` keeps (model ``ingest.models.Envelope``, stored after Content-Encoding was undone) straight
from the SQLite table, which is read-only and needs no Django process.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

from tests.httpserver import unused_port

__all__ = ["VERSION", "Bugsink", "Installation", "install"]

VERSION = "2.6.1"
_DATABASES = ("db.sqlite3", "snappea.sqlite3")
_API = "/api/canonical/0/"
_SETUP_MARK = "BUGSINK-SETUP "
# Variables of the test run that must not leak into Bugsink's processes.
_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "DJANGO_SETTINGS_MODULE", "SENTRY_DSN")

_OVERRIDES = """
# --- overrides by otel-sentry-bridge's tests/peers/bugsink.py ---
DATABASES["default"]["NAME"] = {db!r}
DATABASES["snappea"]["NAME"] = {snappea!r}
SNAPPEA["TASK_ALWAYS_EAGER"] = True
SNAPPEA["WAKEUP_CALLS_DIR"] = {wakeup!r}
BUGSINK["INGEST_STORE_BASE_DIR"] = {ingest!r}
BUGSINK["PHONEHOME"] = False
BUGSINK["KEEP_ENVELOPES"] = 1000
BUGSINK["VALIDATE_ON_DIGEST"] = "strict"
BUGSINK["MAX_EVENTS_PER_5_MINUTES"] = 1_000_000_000
BUGSINK["MAX_EVENTS_PER_HOUR"] = 1_000_000_000
BUGSINK["MAX_EVENTS_PER_MONTH"] = 1_000_000_000
BUGSINK["MAX_EVENTS_PER_PROJECT_PER_5_MINUTES"] = 1_000_000_000
BUGSINK["MAX_EVENTS_PER_PROJECT_PER_HOUR"] = 1_000_000_000
BUGSINK["MAX_EVENTS_PER_PROJECT_PER_MONTH"] = 1_000_000_000
"""

_SETUP = f"""
import json
from bsmain.models import AuthToken
from projects.models import Project
from teams.models import Team
team = Team.objects.create(name="otel-sentry-bridge")
project = Project.objects.create(team=team, name="bridge-tests")
token = AuthToken.create_full_access().token
print({_SETUP_MARK!r} + json.dumps({{"team": str(team.id), "project": project.id, "dsn": project.dsn, "token": token}}))
"""


# ---------------------------------------------------------------------------------------------------------------
# Installation (cached, once per machine and version)


def cache_dir() -> Path:
    root = os.environ.get("BRIDGE_CACHE_DIR") or str(Path.home() / ".cache" / "otel-sentry-bridge")
    return Path(root) / f"bugsink-{VERSION}"


@dataclass(frozen=True)
class Installation:
    venv: Path
    template: Path  # holds the migrated databases

    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if name not in _ENV_DROP}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(self.venv)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def command(self, name: str, *args: str) -> list[str]:
        return [str(self.venv / "bin" / name), *args]

    def run(self, args: list[str], cwd: Path, timeout: float = 120.0) -> str:
        return _run(args, cwd, self.env(), timeout)


def _run(args: list[str], cwd: Path, env: Optional[dict[str, str]] = None, timeout: float = 600.0) -> str:
    """Run a command to its end; its stdout, or RuntimeError carrying everything it said."""
    try:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(args)} did not finish within {timeout}s") from exc
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed with exit code {done.returncode}\n"
            f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
        )
    return done.stdout


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _base_python() -> str:
    """The interpreter behind ``sys.executable`` (the base of the project's venv)."""
    name = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (Path(sys.base_prefix) / "bin" / name, Path(sys.base_prefix) / "bin" / "python3"):
        if candidate.is_file():
            return str(candidate)
    raise RuntimeError(f"no {name} under {sys.base_prefix} to build Bugsink's venv with")


def _venv_works(venv: Path) -> bool:
    if not (venv / ".installed").is_file():
        return False
    probe = "import importlib.metadata as m; print(m.version('bugsink'))"
    try:
        return _run([str(venv / "bin" / "python"), "-c", probe], venv, timeout=60).strip() == VERSION
    except (RuntimeError, OSError):
        return False


def _create_venv(venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    _run([_base_python(), "-m", "venv", str(venv)], venv.parent)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "--no-input", f"bugsink=={VERSION}"], venv.parent)
    (venv / ".installed").write_text(VERSION)


def _write_conf(installation: Installation, directory: Path, port: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    create = installation.command("bugsink-create-conf", "--template=local", "--host=127.0.0.1", f"--port={port}")
    installation.run(create, directory)
    overrides = _OVERRIDES.format(
        db=str(directory / _DATABASES[0]),
        snappea=str(directory / _DATABASES[1]),
        wakeup=str(directory / "wakeup"),
        ingest=str(directory / "ingestion"),
    )
    with (directory / "bugsink_conf.py").open("a") as conf:
        conf.write(overrides)


def _create_template(installation: Installation) -> None:
    template = installation.template
    staging = template.with_name(template.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    _write_conf(installation, staging, port=8000)
    installation.run(installation.command("bugsink-manage", "migrate"), staging)
    installation.run(installation.command("bugsink-manage", "migrate", "--database=snappea"), staging)
    for name in _DATABASES:  # fold any write-ahead log into the database file before it is copied around
        connection = sqlite3.connect(staging / name)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
    for path in staging.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name not in _DATABASES:
            path.unlink()
    (staging / ".migrated").write_text(VERSION)
    shutil.rmtree(template, ignore_errors=True)
    staging.rename(template)


def install(root: Optional[Path] = None) -> Installation:
    """Bugsink's venv and migrated databases, created on first use and reused while they work."""
    root = root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    installation = Installation(venv=root / "venv", template=root / "template")
    with _locked(root / ".lock"):
        if not _venv_works(installation.venv):
            _create_venv(installation.venv)
            shutil.rmtree(installation.template, ignore_errors=True)
        if not (installation.template / ".migrated").is_file():
            _create_template(installation)
    return installation


# ---------------------------------------------------------------------------------------------------------------
# One server per session


class Bugsink:
    """A running Bugsink: ``start()`` (or ``with``), read back through its API, ``stop()``.

    ``dsn`` and ``project_id`` name the default project; ``new_project`` makes more for isolation. Every reader
    takes ``project_id`` (default: the default project).
    """

    def __init__(self, workdir: Path, installation: Optional[Installation] = None) -> None:
        self.workdir = workdir
        self.installation = installation
        self.port = 0
        self.url = ""
        self.dsn = ""
        self.project_id = 0
        self.team_id = ""
        self.token = ""
        self.install_seconds = 0.0  # spent in install() (near zero when cached)
        self.start_seconds = 0.0  # from configuration to ready, without install()
        self._process: Optional[subprocess.Popen[bytes]] = None

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(self, ready_timeout: float = 60.0) -> Bugsink:
        began = time.monotonic()
        installation = self.installation = self.installation or install()
        configured = time.monotonic()
        self.install_seconds = configured - began
        self.port = unused_port()
        self.url = f"http://127.0.0.1:{self.port}"
        _write_conf(installation, self.workdir, self.port)
        for name in _DATABASES:
            shutil.copyfile(installation.template / name, self.workdir / name)
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                installation.command(
                    "gunicorn",
                    "--no-control-socket",
                    "--bind",
                    f"127.0.0.1:{self.port}",
                    "--workers",
                    "1",
                    "bugsink.wsgi",
                ),
                cwd=self.workdir,
                env=installation.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._setup()  # while gunicorn boots
            self._wait_ready(time.monotonic() + ready_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - configured
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def __enter__(self) -> Bugsink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def log_path(self) -> Path:
        return self.workdir / "gunicorn.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _setup(self) -> None:
        assert self.installation is not None
        out = self.installation.run(self.installation.command("bugsink-manage", "shell", "-c", _SETUP), self.workdir)
        [line] = [line for line in out.splitlines() if line.startswith(_SETUP_MARK)]
        made = json.loads(line[len(_SETUP_MARK) :])
        self.team_id, self.project_id, self.dsn, self.token = made["team"], made["project"], made["dsn"], made["token"]

    def _wait_ready(self, deadline: float) -> None:
        assert self._process is not None
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = self._http("GET", "/health/ready", auth=False)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Bugsink not ready at {self.url}/health/ready in time:\n{self.log_tail()}")
            time.sleep(0.05)  # polling a health endpoint: there is nothing to wait on

    # -- REST API ---------------------------------------------------------------------------------------------

    def _http(self, method: str, path: str, body: Any = None, auth: bool = True) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One call to ``/api/canonical/0/<path>``; the decoded JSON; AssertionError unless 2xx."""
        full = path if path.startswith("/") else _API + path
        status, raw = self._http(method, full, body)
        assert 200 <= status < 300, f"Bugsink {method} {full}: {status} {raw[:500]!r}"
        return json.loads(raw) if raw else None

    def _all_pages(self, path: str) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        next_path: Optional[str] = path
        while next_path:
            page = self.api("GET", next_path)
            results.extend(page["results"])
            link = page.get("next")
            next_path = f"{urlsplit(link).path}?{urlsplit(link).query}" if link else None
        return results

    def project(self, project_id: Optional[int] = None) -> dict[str, Any]:
        """The project as the API shows it (``dsn``, ``digested_event_count``, ``stored_event_count``...)."""
        result: dict[str, Any] = self.api("GET", f"projects/{project_id or self.project_id}/")
        return result

    def new_project(self, name: str) -> tuple[str, int]:
        """A new project in the session's team, for a test that wants to be alone: ``(dsn, project_id)``."""
        made = self.api("POST", "projects/", {"team": self.team_id, "name": name})
        project_id = int(made["id"])
        return str(self.project(project_id)["dsn"]), project_id

    def issues(self, project_id: Optional[int] = None) -> list[dict[str, Any]]:
        """The project's issues, oldest first (``id``, ``calculated_type``, ``calculated_value``, counts...)."""
        return self._all_pages(f"issues/?project={project_id or self.project_id}&order=asc")

    def events(self, issue_id: str) -> list[dict[str, Any]]:
        """The issue's events, oldest first, without their data (``id`` is Bugsink's, ``event_id`` the sender's)."""
        return self._all_pages(f"events/?issue={issue_id}&order=asc")

    def stored_event(self, bugsink_id: str) -> dict[str, Any]:
        """One stored event by Bugsink's own id, with the full event JSON under ``data``."""
        result: dict[str, Any] = self.api("GET", f"events/{bugsink_id}/")
        return result

    def stored_events(self, project_id: Optional[int] = None) -> list[dict[str, Any]]:
        """Every stored event of the project, in full (JSON under ``data``), issue by issue, oldest first."""
        return [self.stored_event(e["id"]) for i in self.issues(project_id) for e in self.events(i["id"])]

    def event(self, event_id: str, project_id: Optional[int] = None) -> dict[str, Any]:
        """The stored event the sender called ``event_id`` (hex, dashes or not); AssertionError if none."""
        wanted = uuid.UUID(event_id)
        for issue in self.issues(project_id):
            for summary in self.events(issue["id"]):
                if uuid.UUID(summary["event_id"]) == wanted:
                    return self.stored_event(summary["id"])
        raise AssertionError(f"Bugsink stored no event {event_id}; {self._diagnosis(project_id)}")

    def wait_for_events(
        self, count: int, timeout: float = 10.0, project_id: Optional[int] = None
    ) -> list[dict[str, Any]]:
        """Block until the project holds at least ``count`` events; all of them in full.

        Digestion is eager (inside the ingest request), so this normally returns on the first look; it polls
        the project's counter with a deadline for senders that have not flushed yet.
        """
        deadline = time.monotonic() + timeout
        while True:
            digested = int(self.project(project_id)["digested_event_count"])
            if digested >= count:
                return self.stored_events(project_id)
            if time.monotonic() > deadline:
                why = self._diagnosis(project_id)
                raise AssertionError(f"expected {count} events in Bugsink within {timeout}s, got {digested}; {why}")
            time.sleep(0.05)

    def _diagnosis(self, project_id: Optional[int]) -> str:
        refused = [line for line in self.log_tail(400).splitlines() if line.startswith("django.core.exceptions.")]
        return (
            f"{len(self.raw_envelopes(project_id))} raw envelopes arrived for the project; "
            f"digest refusals in the log: {refused[-5:]}"
        )

    # -- raw envelopes ----------------------------------------------------------------------------------------

    def raw_envelopes(self, project_id: Optional[int] = None) -> list[bytes]:
        """Every envelope body that arrived for the project (by URL), oldest first, after Content-Encoding.

        Bugsink keeps them whatever happened next (thrown-away transactions, refusals, 4xx), and stores them
        before it answers, so once a client has its response the envelope is here.
        """
        uri = f"file:{self.workdir / _DATABASES[0]}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=10)
        try:
            rows = connection.execute(
                "SELECT data FROM ingest_envelope WHERE project_pk = ? ORDER BY id", (project_id or self.project_id,)
            ).fetchall()
        finally:
            connection.close()
        return [bytes(row[0]) for row in rows]
