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
