# Sourced by scripts/test.sh: the Debian packages and toolchains the tests need, installed when missing.
# Each block checks first, so a machine that already has them (CI's second run, a developer's) pays nothing.
set -euo pipefail
_apt_updated=""
_apt_install() {  # _apt_install PACKAGE...: install with apt-get when running as root, else say what is missing
  if [ "$(id -u)" != "0" ]; then
    echo "system-deps: missing $*; install them (apt-get install $*)" >&2
    return 1
  fi
  if [ -z "$_apt_updated" ]; then
    apt-get update -qq >/dev/null
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Redis: the broker of the Celery tests (started per test session on a free port, nothing on disk).
if ! command -v redis-server >/dev/null 2>&1; then
  _apt_install redis-server
fi

# A JDK (java + javac) for the OpenTelemetry Java agent test of serve's /v1/logs
# (tests/test_serve_logs_runtimes.py compiles a small service and runs it under the agent from Maven Central).
if ! command -v javac >/dev/null 2>&1; then
  _apt_install default-jdk-headless
fi

# uWSGI (a test server) is compiled by pip from its sdist: a C compiler and the interpreter's headers.
if ! command -v gcc >/dev/null 2>&1; then
  _apt_install gcc libc6-dev
fi
if ! "${PYTHON:-python3}" -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  _apt_install python3-dev
fi

# Go, to build the OpenTelemetry Collector of collector-config/ (scripts/otelcol.sh). The machine's own Go is
# preferred; Debian's golang-go is the fallback when there is none. Debian 12's is Go 1.19, older than the
# collector's modules want (1.26): scripts/otelcol.sh then fetches that toolchain as a module from the Go
# module proxy (as any Go from 1.21 on does by itself).
if ! command -v go >/dev/null 2>&1; then
  _apt_install golang-go
fi
