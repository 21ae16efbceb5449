"""The README's demo: an example app wrapped by the bridge, a real Sentry-compatible server (Bugsink) and a
local OTLP/HTTP receiver on port 4318, some traffic with an error, and a report of what arrived where.

    bash scripts/demo.sh                    # the Flask example; stops everything it started
    bash scripts/demo.sh --example django   # wsgi, flask, django, bottle, pyramid or falcon
    bash scripts/demo.sh --keep             # keep Bugsink running afterwards to browse its web UI

Bugsink comes from PyPI into its own venv (cached under ~/.cache/otel-sentry-bridge: the first run takes
about 20 s, later ones a few seconds). Everything listens on 127.0.0.1 only; no account is needed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import secrets
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import bridge
from tests.examples_driver import REQUESTS, send, served
from tests.httpserver import unused_port
from tests.peers.bugsink import Bugsink
from tests.peers.otlp import OtlpReceiver, SpanView

EXAMPLES = {
    "wsgi": ("examples.wsgi_app", "application"),
    "flask": ("examples.flask_app", "app"),
    "django": ("examples.django_project.wsgi", "application"),
    "bottle": ("examples.bottle_app", "application"),
    "pyramid": ("examples.pyramid_app", "application"),
    "falcon": ("examples.falcon_app", "application"),
}
OTLP_PORT = 4318


def load(example: str) -> Any:
    module, name = EXAMPLES[example]
    return getattr(importlib.import_module(module), name)


def otlp_receiver() -> OtlpReceiver:
    """The collector's usual port when it is free, else any free one (said so)."""
    try:
        return OtlpReceiver(port=OTLP_PORT)
    except OSError:
        port = unused_port()
        print(f"(port {OTLP_PORT} is busy; the OTLP receiver listens on {port} instead)")
        return OtlpReceiver(port=port)


def span_tree(spans: list[SpanView]) -> list[str]:
    """Each trace as an indented tree: kind, name, status, and the span's events."""
    children: dict[str, list[SpanView]] = defaultdict(list)
    ids = {span.span_id for span in spans}
    roots = []
    for span in sorted(spans, key=lambda s: s.start_time_unix_nano):
        if span.parent_span_id and span.parent_span_id in ids:
            children[span.parent_span_id].append(span)
        else:
            roots.append(span)
    lines: list[str] = []

    def show(span: SpanView, depth: int) -> None:
        status = span.attributes.get("http.response.status_code", "")
        lines.append(f"{'  ' * depth}{span.kind:8} {span.name:32} {status!s:4} {span.status}")
        for name, attributes in span.events:
            detail = attributes.get("exception.type") or attributes.get("sentry.message.text") or ""
            escaped = " (escaped)" if attributes.get("exception.escaped") == "True" else ""
            lines.append(f"{'  ' * depth}  event {name}: {detail}{escaped}")
        for child in children[span.span_id]:
            show(child, depth + 1)

    for root in roots:
        lines.append(f"trace {root.trace_id}")
        show(root, 1)
    return lines


def stack_summary(data: dict[str, Any]) -> list[str]:
    """The stored event's exception chain, oldest first, with its in-app frames."""
    lines = []
    for value in data.get("exception", {}).get("values", []):
        lines.append(f"    {value.get('type')}: {value.get('value')}")
        for frame in value.get("stacktrace", {}).get("frames", []):
            if frame.get("in_app"):
                where = f"{frame.get('filename')}:{frame.get('lineno')} in {frame.get('function')}"
                lines.append(f"      {where:55} | {(frame.get('context_line') or '').strip()}")
    return lines


def add_login(bugsink: Bugsink) -> tuple[str, str]:
    password = secrets.token_urlsafe(9)
    code = (
        "from django.contrib.auth import get_user_model\n"
        f"get_user_model().objects.create_superuser('demo', 'demo@example.invalid', {password!r})\n"
    )
    assert bugsink.installation is not None
    bugsink.installation.run(bugsink.installation.command("bugsink-manage", "shell", "-c", code), bugsink.workdir)
    return "demo", password


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="scripts/demo.sh")
    parser.add_argument("--example", choices=sorted(EXAMPLES), default="flask", help="which example app to run")
    parser.add_argument("--keep", action="store_true", help="keep Bugsink running until Ctrl-C, with a login")
    args = parser.parse_args(argv)

    print("Starting Bugsink, a Sentry-compatible server (the first run installs it: ~20 s)...", flush=True)
    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as workdir, Bugsink(Path(workdir)) as bugsink:
        with otlp_receiver() as receiver:
            print(f"  Bugsink at {bugsink.url}, DSN {bugsink.dsn}")
            print(f"  OTLP/HTTP receiver at {receiver.endpoint}\n")
            # Configured the way a deployment is: by the standard variables of both ecosystems.
            os.environ.update(
                {
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
                    "SENTRY_DSN": bugsink.dsn,
                    "OTEL_SERVICE_NAME": f"demo-{args.example}",
                    "SENTRY_ENVIRONMENT": "demo",
                    "SENTRY_RELEASE": "demo@1.0",
                }
            )
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
            application = load(args.example)  # the Django example calls bridge.init() itself (its before_send)
            if bridge.setup.active() is None:
                bridge.init()
            # The frameworks log each 500's traceback themselves; the report below shows what reached Sentry.
            for name in ("examples", "django.request", "bottle", "falcon", "pyramid"):
                logging.getLogger(name).disabled = True
            print(f"The {args.example} example, wrapped by the bridge, served by wsgiref; requests:")
            with served(application) as port:
                replies = send(port, REQUESTS)
            for path, reply in replies.items():
                print(f"  GET {path:14} -> {reply.status}")
            delivered = bridge.flush(10)
            bridge.shutdown()

            spans = receiver.spans()
            print(f"\nOTLP: the receiver decoded {len(spans)} spans:")
            for line in span_tree(spans):
                print(f"  {line}")

            stored = bugsink.wait_for_events(2, timeout=15)
            print(f"\nSentry side: Bugsink stored {len(stored)} error events (it keeps errors only, and says so")
            print("with a rate limit on transactions, which the bridge honours after the first one):")
            trace_of_span = {span.span_id: span.trace_id for span in spans}
            for issue in bugsink.issues():
                for summary in bugsink.events(issue["id"]):
                    data = bugsink.stored_event(summary["id"])["data"]
                    trace = data.get("contexts", {}).get("trace", {})
                    same = trace_of_span.get(trace.get("span_id", "")) == trace.get("trace_id")
                    print(f"  {data.get('transaction')}: {bugsink.url}/issues/issue/{issue['id']}/event/last/")
                    print(f"    trace id {trace.get('trace_id')} (the OTLP span's too: {'yes' if same else 'NO'})")
                    for line in stack_summary(data):
                        print(line)

            if args.keep:
                user, password = add_login(bugsink)
                print(f"\nBugsink keeps running at {bugsink.url} (user {user}, password {password}); Ctrl-C stops it.")
                try:
                    while True:
                        input()
                except (KeyboardInterrupt, EOFError):
                    pass
    ok = delivered and len(stored) >= 2 and any(span.status == "ERROR" for span in spans)
    print("\nEverything stopped." if ok else "\nSomething did not arrive: see above.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
