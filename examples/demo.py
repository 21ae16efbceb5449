"""The README's demo: a raw WSGI app wrapped by the bridge, a local OTLP receiver, traffic, a report."""
from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any, Callable

from werkzeug.test import Client

import bridge
from tests.peers.otlp import OtlpReceiver


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/users/"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"user {path.rsplit('/', 1)[1]}\n".encode()]
    if path == "/fail":
        try:
            {}["settings"]
        except KeyError as exc:
            raise RuntimeError("could not load settings") from exc
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def view_name(environ: dict[str, Any]) -> str | None:
    return "/users/{id}" if environ.get("PATH_INFO", "").startswith("/users/") else None


def main() -> int:
    with OtlpReceiver() as receiver:
        bridge.init(otlp_endpoint=receiver.endpoint, service_name="demo")
        client = Client(bridge.BridgeMiddleware(app, view_name=view_name))
        for path in ("/users/1", "/users/2", "/nope", "/fail"):
            try:
                response = client.get(path, buffered=True)
                print(f"GET {path} -> {response.status}")
            except RuntimeError as exc:
                print(f"GET {path} -> raised {exc!r} (the server sees it unchanged)")
        bridge.flush(5)
        spans = receiver.spans()
        print(f"\nThe local OTLP receiver at {receiver.endpoint} decoded {len(spans)} spans:")
        for span in spans:
            status = span.attributes.get("http.response.status_code")
            print(f"  {span.kind:6} {span.name:22} trace {span.trace_id} status {status} {span.status}")
            for name, attributes in span.events:
                kind, message = attributes.get("exception.type"), attributes.get("exception.message")
                print(f"         event {name}: {kind}: {message}")
        bridge.shutdown()
    return 0 if len(spans) == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
