"""OpenTelemetry's WSGI test suite, downloaded at test time and run against BridgeMiddleware (see
``tests/test_otel_wsgi_suite.py``)."""
