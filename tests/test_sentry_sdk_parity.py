"""The same program under sentry-sdk (its default integrations) and under the bridge, against one kind of
Sentry receiver (every envelope judged by Relay's normalizer): what arrives is compared field by field.

The program (``tests/programs/billing.py``) logs, sets scope data, captures handled errors and a scoped
message, calls an HTTP server, runs a thread that raises, and ends on an uncaught exception.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.peers.bugsink import Bugsink
from tests.peers.sentry import SentryReceiver

ROOT = Path(__file__).resolve().parent.parent
# What each side adds of its own (docs/migrating-from-sentry-sdk.md): sentry-sdk's argv integration, the
# bridge's service tag, and the HTTP reason phrase OpenTelemetry's instrumentations do not record.
OWN_EXTRAS = {"sys.argv"}
OWN_TAGS = {"service.name"}


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/invoices"
    server.shutdown()
    server.server_close()


def run_program(
    sdk: str, dsn: str, url: str, program: str = "billing", shutdown_timeout: float = 2.0
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    env.update(PROGRAM_SDK=sdk, PROGRAM_DSN=dsn, PROGRAM_HTTP_URL=url, PYTHONPATH=str(ROOT))
    env["PROGRAM_SHUTDOWN_TIMEOUT"] = str(shutdown_timeout)
    return subprocess.run(
        [sys.executable, "-m", f"tests.programs.{program}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _crumb(crumb: dict[str, Any]) -> dict[str, Any]:
    out = {key: value for key, value in crumb.items() if key != "timestamp"}
    out.setdefault("type", "default")
    if isinstance(out.get("data"), dict):
        out["data"] = {key: value for key, value in out["data"].items() if key != "reason"}
    return out


def _own_or_frozen(frame: dict[str, Any]) -> bool:
    """The bridge's thread wrapper frame (in-app here only because the bridge is installed from this
    checkout), and runpy's frozen frames, which sentry-sdk counts in-app (their made-up path is under the
    working directory) and the bridge does not."""
    return str(frame.get("module") or "").startswith("bridge") or str(frame.get("filename", "")).startswith("<frozen")


def summary(event: dict[str, Any]) -> dict[str, Any]:
    """The fields a user sees, in comparable form."""
    exceptions = event.get("exception", {}).get("values", [])
    logentry = event.get("logentry") or {}
    return {
        "level": event.get("level"),
        "logger": event.get("logger"),
        "message": logentry.get("formatted") or event.get("message"),
        "logentry": {k: v for k, v in logentry.items() if k != "formatted"} or None,
        "exceptions": [
            (
                value["type"],
                value["value"],
                value["mechanism"]["type"],
                value["mechanism"]["handled"],
                [
                    frame["function"]
                    for frame in value.get("stacktrace", {}).get("frames", [])
                    if frame.get("in_app") and not _own_or_frozen(frame)
                ],
            )
            for value in exceptions
        ],
        "threads": [
            [
                frame["function"]
                for frame in thread["stacktrace"]["frames"]
                if frame.get("in_app") and not _own_or_frozen(frame)
            ]
            for thread in (event.get("threads") or {}).get("values", [])
        ],
        "breadcrumbs": [_crumb(crumb) for crumb in event.get("breadcrumbs", {}).get("values", [])],
        "tags": {k: v for k, v in (event.get("tags") or {}).items() if k not in OWN_TAGS},
        "contexts": {k: v for k, v in event.get("contexts", {}).items() if k in ("invoice", "order")},
        "request": {k: v for k, v in (event.get("request") or {}).items() if k in ("method", "url")} or None,
        "extra": {k: v for k, v in (event.get("extra") or {}).items() if k not in OWN_EXTRAS},
        "user": event.get("user"),
        "fingerprint": event.get("fingerprint"),
        "environment": event.get("environment"),
        "release": event.get("release"),
    }


def _key(summary: dict[str, Any]) -> str:
    if summary["exceptions"]:
        return f"{summary['exceptions'][-1][0]}: {summary['exceptions'][-1][1]}"
    return str(summary["message"])


def test_the_billing_job_arrives_as_under_sentry_sdk(http_server: str) -> None:
    runs = {}
    for sdk in ("sentry_sdk", "bridge"):
        with SentryReceiver() as receiver:
            process = run_program(sdk, receiver.dsn, http_server)
            receiver.assert_all_valid()  # Relay finds no problem in either
            runs[sdk] = (process, {_key(s): s for s in map(summary, receiver.events())})
    (sdk_process, expected), (bridge_process, got) = runs["sentry_sdk"], runs["bridge"]
    # The uncaught exception: printed as before, exit status unchanged.
    assert sdk_process.returncode == bridge_process.returncode == 1
    assert "SystemError: billing run failed" in bridge_process.stderr
    assert "RuntimeError: worker crashed" in bridge_process.stderr
    assert len(expected) == 6, sorted(expected)
    assert sorted(got) == sorted(expected)
    for key, want in expected.items():
        assert got[key] == want, key
    # What the six are, so that a change in both at once cannot pass unnoticed.
    assert got["payment declined for acme"]["logger"] == "billing.run"
    assert got["payment declined for acme"]["logentry"] == {"message": "payment declined for %s", "params": ["acme"]}
    logged, handled = (got[f"ValueError: invalid literal for int() with base 10: {v!r}"] for v in ("12,50", "n/a"))
    assert logged["exceptions"][-1][2:4] == ("logging", True)
    assert got["report is late"]["fingerprint"] == ["billing", "report-late"]
    assert got["report is late"]["tags"] == {"job": "billing", "phase": "report"}
    assert handled["extra"] == {"batch": ["a", "b"], "attempt": 2}
    assert got["RuntimeError: worker crashed"]["exceptions"][-1][2:] == ("threading", False, ["worker"])
    crash = got["SystemError: billing run failed"]
    assert crash["exceptions"][-1][2:4] == ("excepthook", False)
    assert [c.get("category") for c in crash["breadcrumbs"]][:3] == ["billing.run", "billing", "httplib"]
    assert crash["breadcrumbs"][2]["data"]["http.response.status_code"] == 404


def test_requests_keep_their_scopes_apart_as_under_sentry_sdk() -> None:
    """Per-request isolation: each request's tags, user, context and breadcrumbs stay in its own events; the
    process's tags go into every request (forked at its start), its breadcrumbs do not (sentry-sdk's WSGI
    middleware clears them); nothing of a request leaks out."""
    runs = {}
    for sdk in ("sentry_sdk", "bridge"):
        with SentryReceiver() as receiver:
            process = run_program(sdk, receiver.dsn, "", program="shop")
            assert process.returncode == 0, process.stderr
            receiver.assert_all_valid()
            events = receiver.events()
            runs[sdk] = ({_key(s): s for s in map(summary, events)}, {_key(summary(e)): e for e in events})
    (expected, _), (got, raw) = runs["sentry_sdk"], runs["bridge"]
    assert (
        sorted(expected)
        == sorted(got)
        == ["LookupError: no such order", "after requests", "slow order", "stock low for sku-1"]
    )
    for key, want in expected.items():
        assert got[key] == want, key
    assert got["slow order"]["tags"] == {"process": "shop", "path": "/warn"}
    assert [c["message"] for c in got["slow order"]["breadcrumbs"]] == ["handling /warn"]
    assert got["LookupError: no such order"]["exceptions"][-1][2:4] == ("wsgi", False)
    assert got["after requests"]["tags"] == {"process": "shop"} and got["after requests"]["user"] is None
    # Deliberately different: sentry-sdk without tracing names every request "generic WSGI request".
    assert raw["slow order"]["transaction"] == "GET /warn"
    assert got["stock low for sku-1"]["threads"] == [["<module>", "main", "serve", "app"]]  # stack_info=True
    # A log record inside a request's span carries that request's trace and name.
    assert raw["stock low for sku-1"]["transaction"] == "GET /log"
    logged, warned = (raw[key]["contexts"]["trace"]["trace_id"] for key in ("stock low for sku-1", "slow order"))
    assert len(logged) == 32 and logged != warned  # each request its own trace


def test_bugsink_stores_what_the_bridge_sends(bugsink: Bugsink, http_server: str) -> None:
    dsn, project_id = bugsink.new_project("billing-parity")
    # Bugsink digests each event inside its request: on a busy machine six take longer than the default 2 s
    process = run_program("bridge", dsn, http_server, shutdown_timeout=30.0)
    assert process.returncode == 1
    events = bugsink.wait_for_events(6, project_id=project_id)
    assert len(events) == 6


def test_local_variables_are_collected_as_sentry_sdk_collects_them() -> None:
    frames = {}
    for sdk in ("sentry_sdk", "bridge"):
        with SentryReceiver() as receiver:
            process = run_program(sdk, receiver.dsn, "", program="locals")
            assert process.returncode == 0, process.stderr
            receiver.assert_all_valid()
            [event] = receiver.events()
            stack = event["exception"]["values"][-1]["stacktrace"]["frames"]
            frames[sdk] = {frame["function"]: frame.get("vars") for frame in stack}
    assert frames["bridge"] == frames["sentry_sdk"]
    checkout = frames["bridge"]["checkout"]
    assert checkout["password"] == checkout["remote_addr"] == "[Filtered]"
    assert checkout["name"] == "'ann'" and checkout["loop"] == ["1", "<cyclic>"] and len(checkout["items"]) == 10
    assert "price" not in checkout  # ten variables per frame
