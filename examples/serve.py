"""How every example is served: ``bridge.init()`` from the environment, then wsgiref on 127.0.0.1:8000.

``PORT`` changes the port; ``OTEL_*`` and ``SENTRY_*`` configure the bridge (for example
``SENTRY_DSN=...`` and ``OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318``). Stop with Ctrl-C or
SIGTERM: the request in progress finishes, then the bridge flushes what it holds.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any
from wsgiref.simple_server import make_server

import bridge


def serve(application: Any, service_name: str, **options: Any) -> None:
    os.environ.setdefault("OTEL_SERVICE_NAME", service_name)
    bridge.init(**options)
    port = int(os.environ.get("PORT", "8000"))
    with make_server("127.0.0.1", port, application) as server:

        def stop(signum: int, frame: Any) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()  # serve_forever returns

        signal.signal(signal.SIGTERM, stop)
        print(f"{service_name}: http://127.0.0.1:{port}/users/7 /reports/42 /checkout /stream (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    bridge.shutdown()
