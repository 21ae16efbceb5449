"""The OTLP/HTTP exporters' wire: OpenTelemetry's exporter logic over the bridge's own keep-alive client.

OpenTelemetry's OTLP/HTTP exporters (SDK 1.45) keep their retry policy, backoff, ``Retry-After``,
compression, headers and size limit in one client, and take the HTTP request itself from a pluggable
*transport* (``requests`` by default). :class:`SocketTransport` is such a transport built on
:class:`bridge.sentry.http.HttpClient`: one kept-alive connection, the request written with one
``sendall`` and the answer read with as few ``recv`` calls as it needs.

Why: every blocking call of the exporting thread hands the GIL over, and in a process whose request
thread never waits, taking it back can cost that thread a switch interval (5 ms). ``requests`` makes
many such calls per POST (a pool check, the head and the body written apart, the status line, headers
and body read line by line); this client makes two or three. At saturation (a tight logging loop, 2
shared cores) that was the difference between a logs leg that dropped 0.7-2 % of its records from run
to run and one that dropped none, for less CPU per POST (docs/performance.md). The traces leg keeps
``requests`` (``bridge.otlp``): there the Sentry leg's worker needs those hand-overs to get the GIL.

It is used only where it does what ``requests`` would: no proxy configured for the endpoint
(``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``, which ``requests`` honours and this client does not) and no
credential-provider session (``OTEL_PYTHON_EXPORTER_OTLP_HTTP_*CREDENTIAL_PROVIDER``); TLS settings are
read from the same variables OpenTelemetry's exporters read (``OTEL_EXPORTER_OTLP[_<SIGNAL>]_CERTIFICATE``,
``_CLIENT_KEY``, ``_CLIENT_CERTIFICATE``). :func:`socket_transport` returns ``None`` otherwise, and the
exporter keeps its own.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar
from urllib.parse import urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

from bridge.batch import call_in_fork_child
from bridge.sentry.http import AnswerTimeout, HttpClient, ProtocolError

__all__ = ["SocketTransport", "SocketResult", "socket_transport", "otlp_http_exporter"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_CREDENTIAL_PROVIDER = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER"


@dataclass(frozen=True)
class SocketResult(BaseHTTPResult):
    """One answer (or the error that stood for it); headers have lower-cased names."""

    response_headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        return _LowerCaseView(self.response_headers)


class _LowerCaseView(dict[str, str]):
    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


class SocketTransport(BaseHTTPTransport):
    """POSTs to one endpoint over one kept-alive connection (``HttpClient``); safe to close from any thread."""

    def __init__(self, url: str, ssl_context: Optional[ssl.SSLContext] = None) -> None:
        self.url = url
        self._client = HttpClient(url, ssl_context=ssl_context)
        self._lock = threading.Lock()
        self._closed = False
        call_in_fork_child(self._after_fork)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Optional[dict[str, str]] = None,
        timeout: Optional[float] = None,
        data: Optional[bytes] = None,
    ) -> BaseHTTPResult:
        if method != "POST" or url != self.url:  # the exporters only ever POST to their endpoint
            return SocketResult(error=ValueError(f"SocketTransport posts to {self.url} only, not {method} {url}"))
        with self._lock:
            if self._closed:
                return SocketResult(error=ConnectionError("the transport is closed"))
            self._client.timeout = max(0.001, timeout if timeout is not None else 10.0)
            try:
                response = self._client.send(data or b"", headers or {})
            except OSError as error:
                self._client.close()
                return SocketResult(error=error)
            finally:
                if self._closed:  # closed meanwhile (close() did not wait for this request)
                    self._client.close()
        return SocketResult(
            status_code=response.status, reason=None, response_headers=response.headers, body=response.body
        )

    def is_connection_error(self, exception: Optional[Exception]) -> bool:
        """Worth one more try (the OTLP exporters retry these with backoff): the request did not get through
        (refused, reset, closed before an answer, not written in time). Not: an answer that did not come in
        time (the collector may have the data: ``requests``' read timeout is not retried either), a server
        that spoke something that is not HTTP, a TLS failure."""
        if isinstance(exception, (AnswerTimeout, ProtocolError, ssl.SSLError)):
            return False
        return isinstance(exception, OSError)

    def close(self) -> None:
        """Stop. Never waits for a request in flight to a hung collector: that one closes the connection
        itself when its timeout ends."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                self._client.close()
            finally:
                self._lock.release()

    def _after_fork(self) -> None:
        # The parent's connection is not the child's to use; the child's first request opens its own.
        self._lock = threading.Lock()
        self._client.close()


def socket_transport(endpoint: str, signal: str) -> Optional[SocketTransport]:
    """A :class:`SocketTransport` for ``endpoint`` configured as OpenTelemetry's exporter for ``signal``
    (``TRACES``, ``LOGS``) would configure ``requests``; ``None`` where only ``requests`` does the job
    (a proxy, a credential provider) or the endpoint is not a plain http(s) URL."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if os.environ.get(_CREDENTIAL_PROVIDER) or os.environ.get(
        f"OTEL_PYTHON_EXPORTER_OTLP_HTTP_{signal}_CREDENTIAL_PROVIDER"
    ):
        return None
    proxies = urllib.request.getproxies()
    if proxies.get(parts.scheme) and not urllib.request.proxy_bypass(parts.hostname):
        return None
    context = None
    if parts.scheme == "https":
        try:
            context = _ssl_context(signal)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            logger.warning(
                "otel-sentry-bridge: the TLS settings for OTLP %s could not be loaded (%s: %s); "
                "OpenTelemetry's own HTTP client exports instead (and will report the same problem)",
                signal.lower(),
                type(error).__name__,
                error,
            )
            return None
    return SocketTransport(endpoint, context)


def otlp_http_exporter(exporter_class: Callable[..., T], signal: str, *, endpoint: str, **settings: Any) -> T:
    """``exporter_class(endpoint=endpoint, **settings)`` (one of OpenTelemetry's OTLP/HTTP exporters) over a
    :class:`SocketTransport` where :func:`socket_transport` gives one, else over its own client."""
    transport = socket_transport(endpoint, signal)
    if transport is not None:
        return exporter_class(endpoint=endpoint, _transport=transport, **settings)
    return exporter_class(endpoint=endpoint, **settings)


def _setting(signal: str, name: str) -> Optional[str]:
    return os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_{name}") or os.environ.get(f"OTEL_EXPORTER_OTLP_{name}")


def _ssl_context(signal: str) -> ssl.SSLContext:
    """What ``requests`` would verify with: the CA file of ``..._CERTIFICATE`` (else the system's), and the
    client certificate and key of ``..._CLIENT_CERTIFICATE`` / ``..._CLIENT_KEY`` for mutual TLS."""
    context = ssl.create_default_context(cafile=_setting(signal, "CERTIFICATE"))
    certificate, key = _setting(signal, "CLIENT_CERTIFICATE"), _setting(signal, "CLIENT_KEY")
    if certificate:
        context.load_cert_chain(certificate, key or None)
    return context
