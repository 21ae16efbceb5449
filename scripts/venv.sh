# Sourced by the other scripts: make .venv (Python >= 3.9) hold exactly what constraints.txt pins.
# Re-installs only when pyproject.toml or constraints.txt changed since the last install.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
PY="$PWD/.venv/bin/python"
# Every extra the tests use.
BRIDGE_EXTRAS="${BRIDGE_EXTRAS:-test,examples,asgi,celery,docs,benchmarks,fuzz}"
stamp=".venv/.installed-$( (cat pyproject.toml constraints.txt; echo "$BRIDGE_EXTRAS") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$PY" -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[$BRIDGE_EXTRAS]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PY
