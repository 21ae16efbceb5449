#!/usr/bin/env bash
# The whole test suite on a fresh machine: a venv with pinned dependencies, then ruff, mypy and pytest.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/system-deps.sh   # Debian packages and toolchains (Redis, ...), installed when missing
source scripts/venv.sh   # creates/updates .venv from constraints.txt, sets $PY

echo "== ruff"; "$PY" -m ruff check bridge tests examples benchmarks
echo "== mypy"; "$PY" -m mypy bridge
# The OpenTelemetry Collector the collector tests run (built once, then cached by manifest hash).
echo "== collector"; bash scripts/otelcol.sh | tail -n 1
echo "== pytest"
set +e
"$PY" -m pytest "$@"
status=$?
set -e
# pytest's 5 means "no tests ran": that is a failure for us too.
exit "$status"
