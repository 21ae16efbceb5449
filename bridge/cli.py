"""The ``otel-sentry-bridge`` command.

    otel-sentry-bridge check [--dsn DSN] [--no-send] ...       (bridge.check)
    otel-sentry-bridge serve [--listen HOST:PORT] [--routes FILE] [--max-body SIZE] ...

``serve`` receives OTLP/HTTP traces and sends them to Sentry (``bridge.receiver``). Exit status: 0 after a
clean stop (SIGTERM or SIGINT: stop accepting, finish requests in progress, send everything buffered
within ``--shutdown-timeout``), 2 for a configuration error, 1 when the address cannot be bound.
SIGHUP re-reads the bearer token files (a file that cannot be read then keeps the tokens in use).
``serve --check`` loads every setting and file as ``serve`` would and warns about an exposed listener
(beyond loopback without a token file or TLS), then exits (docs/security.md).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, Callable, Optional

from bridge.errors import ConfigError
from bridge.version import __version__

__all__ = ["main", "serve"]

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-sentry-bridge",
        description="OpenTelemetry traces to Sentry: the bridge's command-line tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    from bridge.check import add_parser as add_check  # each command sets ``run`` (namespace -> exit status)

    add_check(commands)
    _add_serve(commands)
    return parser


def _add_serve(commands: Any) -> None:
    serve_parser = commands.add_parser(
        "serve",
        help="receive OTLP/HTTP traces and send them to Sentry as transactions and errors",
        description=(
            "Receive OTLP/HTTP traces (POST /v1/traces, protobuf or JSON, gzip or not) and send them to Sentry: "
            "each local root span with its children becomes a transaction, each exception event an error. "
            "Spans go to SENTRY_DSN, or to the DSN the routing file gives their service.name. Run one receiver "
            "per trace-id shard: replicas must sit behind a load-balancing exporter keyed by trace id, so that "
            "every span of a trace reaches the same receiver. Every option also reads "
            "OTEL_SENTRY_BRIDGE_<OPTION> (e.g. OTEL_SENTRY_BRIDGE_LISTEN); SENTRY_ENVIRONMENT, SENTRY_RELEASE, "
            "SENTRY_SEND_DEFAULT_PII and SENTRY_SAMPLE_RATE apply to every service."
        ),
    )
    add = serve_parser.add_argument
    add("--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:4318)")
    add("--routes", metavar="FILE", help="routing file: lines 'service.name = DSN' ('*' for the rest)")
    add("--max-body", metavar="SIZE", help="largest request body, as sent and decompressed (default 20MiB)")
    add("--buffer-ttl", metavar="SECONDS", help="how long children wait for their root span (default 60)")
    add("--root-delay", metavar="SECONDS", help="how long a root span waits for late children (default 2)")
    add("--buffer-spans", metavar="N", help="most spans waiting for their root, in all (default 100000)")
    add("--buffer-size", metavar="SIZE", help="estimated memory for waiting spans, in all (default 256MiB)")
    add("--threads", metavar="N", help="connections served at once (default 16)")
    add("--shutdown-timeout", metavar="SECONDS", help="time to send what is buffered when stopping (default 10)")
    add("--bearer-token-file", metavar="FILE", help="tokens senders must present, one a line (re-read on SIGHUP)")
    add("--health-token", metavar="FILE", help="token file for GET /health (default: /health is open)")
    add("--tls-cert", metavar="FILE", help="PEM certificate (chain): serve HTTPS, TLS 1.2 or newer")
    add("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    add("--tls-client-ca", metavar="FILE", help="PEM CA bundle: require client certificates it signed (mTLS)")
    add("--sender-limit-at", metavar="FRACTION", help="queue fill where senders over their share get 429 (0.5)")
    add("--request-timeout", metavar="SECONDS", help="time for a request to arrive whole (default 60)")
    add("--check", action="store_true", help="check the settings and files, warn about exposure, then exit")
    add("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default INFO")
    serve_parser.set_defaults(run=_run_serve)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    run: Optional[Callable[[argparse.Namespace], int]] = getattr(arguments, "run", None)
    if run is None:
        parser.print_help()
        return 2
    return run(arguments)


def _run_serve(arguments: argparse.Namespace) -> int:
    logging.basicConfig(level=arguments.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    given = {
        name: getattr(arguments, name)
        for name in (
            "listen",
            "routes",
            "max_body",
            "buffer_ttl",
            "root_delay",
            "buffer_spans",
            "buffer_size",
            "threads",
            "shutdown_timeout",
            "bearer_token_file",
            "health_token",
            "tls_cert",
            "tls_key",
            "tls_client_ca",
            "sender_limit_at",
            "request_timeout",
        )
    }
    if arguments.check:
        return check_serve(given)
    stop = threading.Event()
    reload = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda number, frame: stop.set())
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda number, frame: reload.set())
    return serve(given, stop, reload=reload)


def check_serve(given: dict[str, Any], environ: Optional[dict[str, str]] = None) -> int:
    """``serve --check``: load every setting and file as ``serve`` would, warn about exposure; 0, or 2."""
    from bridge.receiver.app import ReceiverApp
    from bridge.receiver.settings import ServeSettings, build_sink, exposure_warnings, guarded, tls_context

    try:
        settings = ServeSettings.from_environ(environ, **given)
        sink = build_sink(settings, environ=environ)
        guarded(ReceiverApp(sink), settings)
        tls_context(settings)
    except ConfigError as exc:
        print(f"otel-sentry-bridge serve: {exc}", file=sys.stderr)
        return 2
    sink.shutdown(0)
    for warning in exposure_warnings(settings):
        print(f"otel-sentry-bridge serve: WARNING: {warning}", file=sys.stderr)
    print("otel-sentry-bridge serve: settings OK", file=sys.stderr)
    return 0


def serve(
    given: dict[str, Any],
    stop: threading.Event,
    *,
    environ: Optional[dict[str, str]] = None,
    ready: Optional[Callable[[str], None]] = None,
    reload: Optional[threading.Event] = None,
) -> int:
    """Run the receiver until ``stop`` is set; ``ready(url)`` is called once it listens; each time
    ``reload`` is set (SIGHUP), the bearer token files are read again."""
    from bridge.receiver.app import ReceiverApp
    from bridge.receiver.guard import Guard
    from bridge.receiver.server import WsgiServer
    from bridge.receiver.settings import ServeSettings, build_sink, exposure_warnings, guarded, tls_context

    try:
        settings = ServeSettings.from_environ(environ, **given)
        context = tls_context(settings)
        sink = build_sink(settings, environ=environ)
    except ConfigError as exc:
        print(f"otel-sentry-bridge serve: {exc}", file=sys.stderr)
        return 2
    try:
        app = guarded(ReceiverApp(sink, max_body=settings.max_body), settings)
    except ConfigError as exc:
        print(f"otel-sentry-bridge serve: {exc}", file=sys.stderr)
        sink.shutdown(0)
        return 2
    for warning in exposure_warnings(settings):
        logger.warning("otel-sentry-bridge serve: %s", warning)
    host, port = settings.listen
    try:
        server = WsgiServer(
            app,
            host,
            port,
            threads=settings.threads,
            ssl_context=context,
            request_timeout=settings.request_timeout,
        )
    except OSError as exc:
        print(f"otel-sentry-bridge serve: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        sink.shutdown(0)
        return 1
    thread = threading.Thread(target=server.serve_forever, name="otel-sentry-bridge-serve", daemon=True)
    thread.start()
    logger.info("otel-sentry-bridge serve: listening on %s/v1/traces", server.url)
    if ready is not None:
        ready(server.url)
    while not stop.wait(0.2 if reload is not None else None):
        if reload is not None and reload.is_set():
            reload.clear()
            if isinstance(app, Guard):
                for tokens in (app.tokens, app.health_tokens):
                    if tokens is not None:
                        tokens.reload()
    logger.info("otel-sentry-bridge serve: stopping; sending what is buffered (up to %ss)", settings.shutdown_timeout)
    server.stop(settings.shutdown_timeout / 2)
    thread.join(settings.shutdown_timeout)
    sink.shutdown(settings.shutdown_timeout / 2)
    logger.info("otel-sentry-bridge serve: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
