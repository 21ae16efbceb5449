"""``otel-sentry-bridge serve``: an OTLP/HTTP trace receiver feeding the same Sentry leg the middleware uses.

- ``decode``: OTLP protobuf / OTLP JSON bodies → the SDK's ``ReadableSpan`` (one span view for both inputs);
- ``otlpjson``: OTLP JSON (hex ids) → the protobuf message;
- ``routes``: the routing file (``service.name`` → DSN);
- ``sink``: spans → the Sentry leg of their service's DSN; buffer bounds, back-pressure, TTL ticks;
- ``app``: the WSGI application (``POST /v1/traces``, ``GET /health``), status codes per the OTLP spec;
- ``server``: a small threaded HTTP/1.1 server for the CLI (gunicorn runs the same app).
"""
