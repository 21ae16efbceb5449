"""The bridge under real gunicorn: 2 sync workers forked from a master that ran ``bridge.init()`` (``--preload``),
then SIGTERM.

- Spans and errors from both workers arrive (each names its worker's pid): the batch processor's thread and
  the Sentry transport's worker restart in each forked worker.
- SIGTERM: every worker flushes what it still holds as it exits (the spans wait in the batch queue until
  then: a 60 s schedule delay), and the whole server is gone well within its graceful timeout.
- With both backends hung, shutdown keeps its deadline (``shutdown_timeout``, 1 s here): gunicorn exits in
  about that, instead of waiting for exports that never finish (30 s, then SIGKILL, before).
"""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

from tests.httpserver import RecordingServer, Reply
from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver
from tests.zero_code_support import BIN, Program, program_env

ROOT = Path(__file__).resolve().parents[1]
GRACEFUL = 10  # gunicorn's --graceful-timeout: after it, the master kills what is left


def gunicorn(**variables: str) -> Program:
    argv = [str(BIN / "gunicorn"), "--no-control-socket", "--workers", "2", "--preload"]
    argv += ["--bind", "127.0.0.1:0", "--graceful-timeout", str(GRACEFUL), "--chdir", str(ROOT)]
    argv += ["--log-level", "info", "tests.gunicorn_app:application"]
    env = program_env(OTEL_SERVICE_NAME="preloaded", **variables)
    return Program(argv, env, r"Listening at: http://127\.0\.0\.1:(\d+)", cwd=ROOT)


def get(port: int, target: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def stopped(server: Program) -> tuple[float, str]:
    """SIGTERM, wait for the master to exit: (seconds it took, everything it printed)."""
    started = time.monotonic()
    output = server.stop(timeout=GRACEFUL + 20)
    return time.monotonic() - started, output


def test_preloaded_workers_both_deliver_and_flush_on_sigterm(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    arrived, release = threading.Event(), threading.Event()

    def gate_answer(request: object) -> Reply:
        arrived.set()
        return Reply() if release.wait(30) else Reply(503)

    with RecordingServer(gate_answer) as gate:
        server = gunicorn(
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp_receiver.endpoint,
            OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=otlp_receiver.url + "/v1/metrics",
            OTEL_BSP_SCHEDULE_DELAY="60000",  # spans stay queued until the worker exits
            SENTRY_DSN=sentry_receiver.dsn,
        )
        try:
            port = int(server.match.group(1))
            held: list[tuple[int, bytes]] = []
            holder = threading.Thread(target=lambda: held.append(get(port, f"/hold?{gate.url}/gate")))
            holder.start()
            assert arrived.wait(30), "".join(server.output)  # one worker is held: the other serves the rest
            pids = {get(port, "/pid")[1] for _ in range(4)}
            assert len(pids) == 1, pids
            assert get(port, "/boom")[0] == 500
            release.set()
            holder.join(30)
            assert held and held[0][0] == 500
            assert otlp_receiver.spans() == []  # still queued in the workers
        finally:
            release.set()
            seconds, output = stopped(server)
    assert seconds < GRACEFUL, output
    assert server.process.returncode == 0, output

    spans = otlp_receiver.spans()
    assert len(spans) == 6, output
    workers = {span.attributes["sentry.tag.worker"] for span in spans}
    assert len(workers) == 2 and pids < {worker.encode() for worker in workers}
    errors = {event["exception"]["values"][-1]["value"] for event in sentry_receiver.events()}
    held_pid, served_pid = sorted(workers, key=lambda pid: pid.encode() in pids)
    assert errors == {f"held in worker {held_pid}", f"boom in worker {served_pid}"}
    transactions = sentry_receiver.transactions()
    assert len(transactions) == 6 and {t["tags"]["worker"] for t in transactions} == workers
    # The metrics leg, forked too: each worker exported its own requests' durations at exit (1 and 5).
    totals = {
        sum(point.count or 0 for point in points if point.name == "http.server.request.duration")
        for _, points, _ in otlp_receiver.metric_batches
    }
    assert totals - {0} == {1, 5}, totals


def test_sigterm_with_both_backends_hung_keeps_the_shutdown_deadline(tmp_path: Path) -> None:
    with RecordingServer(lambda request: Reply(hang=True)) as hung:
        server = gunicorn(
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{hung.url}/v1/traces",
            OTEL_BSP_SCHEDULE_DELAY="60000",
            SENTRY_DSN=f"http://key@127.0.0.1:{hung.port}/1",
            TEST_SHUTDOWN_TIMEOUT="1",
        )
        try:
            port = int(server.match.group(1))
            for _ in range(5):
                assert get(port, "/pid")[0] == 200  # requests are not held up by the hung backends
            assert get(port, "/boom")[0] == 500
            hung.wait_for(1)  # the Sentry transport is stuck on its first envelope
        finally:
            seconds, output = stopped(server)
    # Each worker's shutdown takes at most its 1 s (both backends' legs at once); the margin is for the
    # interpreters to exit.
    assert seconds < 1 + 3, output
    assert server.process.returncode == 0, output
    assert "unsent" in output  # what could not go out is said (and counted)
