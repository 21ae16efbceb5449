#!/usr/bin/env bash
# The demo: a raw WSGI app wrapped by the bridge, sending to a local OTLP receiver; prints what arrived.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec "$PY" -m examples.demo "$@"
