"""Django without the WSGI wrapper: ``RouteMiddleware`` (in the example project's ``MIDDLEWARE``) makes the
request's span when no WSGI span exists, under Django's test ``Client`` and under a server running Django's
plain WSGI handler (what ``runserver`` does with an unwrapped ``wsgi.py``). With the wrapper as well, one
span per request. Both backends checked each time; the example project (tests/test_examples.py) is reused."""

from __future__ import annotations

from typing import Any

import pytest

import bridge
from tests.examples_driver import send, served
from tests.lifecycle_support import Backends
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver
from tests.test_examples import EXAMPLES


@pytest.fixture
def backends(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> Backends:
    EXAMPLES["django"].application()  # Django set up with the example's settings (its wsgi.py inits once)
    from examples.django_project.observability import init_bridge

    init_bridge(otlp_endpoint=otlp_receiver.endpoint, dsn=sentry_receiver.dsn)
    return Backends(otlp_receiver, sentry_receiver, init=False)


def test_django_test_client_exports_spans_transactions_and_errors(backends: Backends) -> None:
    from django.core.signals import request_finished
    from django.test import Client

    finished: list[object] = []

    def count(sender: object, **kwargs: Any) -> None:
        finished.append(sender)

    client = Client(HTTP_HOST="localhost", raise_request_exception=False)
    request_finished.connect(count)
    try:
        assert client.get("/users/7").content == b"user 7\n"
        assert client.get("/reports/42").status_code == 500
        assert client.get("/checkout").status_code == 402
        assert b"".join(client.get("/stream").streaming_content).count(b"tick") == 3  # type: ignore[attr-defined]
    finally:
        request_finished.disconnect(count)
    assert len(finished) == 4
    delivered = backends.delivered()
    spans = {span.name: span for span in delivered.spans}
    assert sorted(spans) == ["GET /checkout", "GET /reports/{report_id}", "GET /stream", "GET /users/{user_id}"]
    assert {span.kind for span in delivered.spans} == {"SERVER"}
    assert sorted(t["transaction"] for t in delivered.transactions) == sorted(spans)
    report = spans["GET /reports/{report_id}"]
    assert (report.status, report.attributes["http.response.status_code"]) == ("ERROR", 500)
    assert delivered.errors_of(report) == ["RuntimeError: report 42 could not be built"]
    assert delivered.errors_of(spans["GET /checkout"]) == ["ValueError: card declined for 42 EUR"]
    assert spans["GET /users/{user_id}"].attributes["url.path"] == "/users/7"


def test_django_test_client_raising_the_views_exception(backends: Backends) -> None:
    from django.test import Client

    with pytest.raises(RuntimeError, match="could not be built"):  # the test Client's default
        Client(HTTP_HOST="localhost").get("/reports/9")
    delivered = backends.delivered()
    span, _ = delivered.one_request()
    assert span.status == "ERROR"
    assert delivered.errors_of(span) == ["RuntimeError: report 9 could not be built"]


def test_django_plain_wsgi_handler_under_a_server(backends: Backends) -> None:
    """runserver with an unwrapped wsgi.py: Django's own WSGIHandler, served by wsgiref (as runserver does)."""
    from django.core.handlers.wsgi import WSGIHandler

    with served(WSGIHandler()) as port:
        replies = send(port, [("/users/7", {}), ("/reports/42", {}), ("/stream", {})])
    assert [reply.status for reply in replies.values()] == [200, 500, 200]
    delivered = backends.delivered()
    spans = {span.attributes["url.path"]: span for span in delivered.spans}
    assert sorted(spans) == ["/reports/42", "/stream", "/users/7"]
    assert spans["/users/7"].name == "GET /users/{user_id}"
    assert len(delivered.transactions) == 3
    assert delivered.errors_of(spans["/reports/42"]) == ["RuntimeError: report 42 could not be built"]


def test_django_with_the_wsgi_wrapper_too_is_one_span_per_request(backends: Backends) -> None:
    application = EXAMPLES["django"].application()  # instrument_application(get_wsgi_application())
    assert isinstance(application, bridge.BridgeMiddleware)
    with served(application) as port:
        send(port, [("/users/7", {}), ("/reports/42", {})])
    delivered = backends.delivered()
    assert sorted(span.name for span in delivered.spans) == ["GET /reports/{report_id}", "GET /users/{user_id}"]
    assert {span.scope for span in delivered.spans} == {"bridge.wsgi"}
    assert len(delivered.transactions) == 2
    assert len(delivered.events) == 1


def test_django_request_finished_runs_under_a_client_that_never_closes(backends: Backends) -> None:
    """The wrapped WSGI handler under werkzeug's Client, responses read but never closed: the bridge closes
    Django's response when its body is exhausted, so ``request_finished`` still runs for every request."""
    from django.core.signals import request_finished
    from werkzeug.test import Client

    finished: list[object] = []

    def count(sender: object, **kwargs: Any) -> None:
        finished.append(sender)

    client = Client(EXAMPLES["django"].application())
    request_finished.connect(count)
    try:
        responses = [client.get(path, headers={"Host": "localhost"}) for path in ("/users/7", "/stream")]
        assert [response.get_data().count(b"\n") for response in responses] == [1, 3]
        assert len(finished) == 2  # before any close(): none is ever called here
    finally:
        request_finished.disconnect(count)
    delivered = backends.delivered()
    assert sorted(span.name for span in delivered.spans) == ["GET /stream", "GET /users/{user_id}"]
    assert len(delivered.transactions) == 2
