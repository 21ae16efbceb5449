"""The Sentry request URL from HTTP attributes: a port already in ``server.address`` is not added twice."""
from __future__ import annotations

from typing import Any

import pytest

from bridge.sentry.context import request_context


@pytest.mark.parametrize(
    ("address", "port", "url"),
    [
        ("127.0.0.1:8000", 8000, "http://127.0.0.1:8000/users/7"),  # Host header with its port
        ("127.0.0.1", 8000, "http://127.0.0.1:8000/users/7"),
        ("example.com", 80, "http://example.com/users/7"),
        ("[::1]:8000", 8000, "http://[::1]:8000/users/7"),
        ("[::1]", 8000, "http://[::1]:8000/users/7"),
    ],
)
def test_request_url(address: str, port: int, url: str) -> None:
    attributes: dict[str, Any] = {
        "http.request.method": "GET",
        "url.scheme": "http",
        "url.path": "/users/7",
        "server.address": address,
        "server.port": port,
    }
    request = request_context(attributes, send_default_pii=False)
    assert request is not None
    assert request["url"] == url
