"""gunicorn settings giving ``serve`` under gunicorn the same TLS as the built-in server.

    OTEL_SENTRY_BRIDGE_TLS_CERT=server.pem OTEL_SENTRY_BRIDGE_TLS_KEY=server.key \\
    OTEL_SENTRY_BRIDGE_TLS_CLIENT_CA=clients-ca.pem OTEL_SENTRY_BRIDGE_BEARER_TOKEN_FILE=tokens.txt \\
    gunicorn -c python:bridge.receiver.gunicorn_tls --workers 1 --threads 8 --bind 0.0.0.0:4318 \\
        'bridge.receiver.app:create_app()'

The certificate, key and client CA come from the same ``OTEL_SENTRY_BRIDGE_TLS_*`` variables as
``serve``'s; the SSL context is ``serve``'s own (TLS 1.2 or newer; client certificates required when a
client CA is given). The handshake is done on connect and bounded by
``OTEL_SENTRY_BRIDGE_HANDSHAKE_TIMEOUT`` seconds (10): gunicorn's threaded worker would otherwise hold a
thread for as long as a client stalls it. Tokens and per-sender limits apply through ``create_app()``.
On SIGHUP gunicorn starts new workers, which read the token file again.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Callable

from bridge.receiver.tls import server_context

__all__ = ["certfile", "keyfile", "ca_certs", "cert_reqs", "do_handshake_on_connect", "ssl_context"]

certfile = os.environ.get("OTEL_SENTRY_BRIDGE_TLS_CERT") or None
keyfile = os.environ.get("OTEL_SENTRY_BRIDGE_TLS_KEY") or None
ca_certs = os.environ.get("OTEL_SENTRY_BRIDGE_TLS_CLIENT_CA") or None
cert_reqs = ssl.CERT_REQUIRED if ca_certs else ssl.CERT_NONE
do_handshake_on_connect = True  # inside wrap_socket, where the context bounds it
HANDSHAKE_TIMEOUT = float(os.environ.get("OTEL_SENTRY_BRIDGE_HANDSHAKE_TIMEOUT") or 10)


def ssl_context(config: Any, default_ssl_context_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """gunicorn's hook: serve's SSL context instead of gunicorn's default one."""
    return server_context(config.certfile, config.keyfile, config.ca_certs, handshake_timeout=HANDSHAKE_TIMEOUT)
