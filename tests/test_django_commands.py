"""Django management commands, opted in with one INSTALLED_APPS line, run as users run them: ``manage.py``
in a subprocess, configured from the environment, against the OTLP and Sentry receivers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.peers.otlp import OtlpReceiver
from tests.peers.sentry import SentryReceiver

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, otlp: OtlpReceiver, sentry: SentryReceiver) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SENTRY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.django_commands_settings",
        PYTHONPATH=str(ROOT),
        SENTRY_DSN=sentry.dsn,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=otlp.endpoint,
        OTEL_SERVICE_NAME="django-commands",
    )
    command = [sys.executable, "-m", "examples.django_project.manage", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_command_is_a_transaction_named_after_it(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    done = manage("check", otlp=otlp_receiver, sentry=sentry_receiver)
    assert done.returncode == 0, done.stderr
    [span] = otlp_receiver.spans()  # sent at exit: bridge.shutdown() flushes before the process ends
    assert span.name == "manage.py check" and span.attributes["django.command"] == "check"
    [transaction] = sentry_receiver.transactions()
    assert transaction["transaction"] == "manage.py check"
    assert transaction["transaction_info"] == {"source": "task"}
    assert transaction["contexts"]["trace"]["op"] == "django.command"
    assert transaction["contexts"]["trace"]["trace_id"] == span.trace_id
    assert sentry_receiver.events() == []


def test_a_failing_command_reports_its_exception_and_exits_as_before(
    otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver
) -> None:
    done = manage("check", "--tag", "no-such-tag", otlp=otlp_receiver, sentry=sentry_receiver)
    assert done.returncode == 1 and "no-such-tag" in done.stderr  # Django's own CommandError output
    [error] = sentry_receiver.events()
    [value] = error["exception"]["values"]
    assert value["type"] == "CommandError" and "no-such-tag" in value["value"]
    assert value["mechanism"]["type"] == "django.command" and value["mechanism"]["handled"] is False
    assert error["transaction"] == "manage.py check"
    [span] = otlp_receiver.spans()
    assert span.status == "ERROR" and error["contexts"]["trace"]["trace_id"] == span.trace_id


def test_commands_that_serve_are_left_alone(otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver) -> None:
    from bridge.frameworks.django_commands import SKIPPED_COMMANDS

    assert {"runserver", "shell", "dbshell"} <= SKIPPED_COMMANDS
    done = manage("shell", "-c", "print('shell ran')", otlp=otlp_receiver, sentry=sentry_receiver)
    assert done.returncode == 0 and "shell ran" in done.stdout, done.stderr
    assert otlp_receiver.spans() == [] and sentry_receiver.transactions() == []
