#!/usr/bin/env bash
# Installs everything into .venv (tools/install.sh) and runs the test suite. Arguments go to
# pytest, e.g. `bash run_tests.sh --run-slow` or `bash run_tests.sh -m gpu`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
cd "$ROOT"
bash tools/install.sh
set +e
"${VENV:-$ROOT/.venv}/bin/python" -m pytest -q "$@"
code=$?
set -e
if [ $code -eq 5 ]; then
  echo "run_tests.sh: pytest collected no test: the suite is broken" >&2
  exit 1
fi
exit $code
