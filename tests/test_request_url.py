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


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        # an empty or non-text value of the stable key: the old key (or the number as text) answers
        (
            {"http.request.method": "", "http.method": "post", "url.full": "", "http.url": "http://h/p?q=1"},
            {"method": "POST", "url": "http://h/p", "query_string": "q=1"},
        ),
        (
            {"http.request.method": "GET", "url.scheme": "", "http.scheme": "https", "server.address": "",
             "net.host.name": "h", "server.port": 8443, "url.path": "", "http.target": "/t?a=b",
             "user_agent.original": "", "http.user_agent": "ua"},
            {"method": "GET", "url": "https://h:8443/t", "query_string": "a=b", "headers": {"User-Agent": "ua"},
             "env": {"SERVER_NAME": "h", "SERVER_PORT": "8443"}},
        ),
        (
            {"http.request.method": "GET", "url.full": 7, "url.query": ""},
            {"method": "GET", "url": "7"},
        ),
        ({"http.request.method": 5, "url.path": "/x"}, {"url": "/x"}),  # not a method Relay takes: data only
        ({"http.request.method": True}, None),  # no method: not an HTTP request
        ({"http.request.method": "_OTHER", "http.request.method_original": "PURGE"}, {"method": "PURGE"}),
    ],
)
def test_request_context_reads_each_attribute_as_first_str_does(attributes: dict[str, Any], expected: Any) -> None:
    assert request_context(attributes, send_default_pii=False) == expected
