#!/usr/bin/env bash
# Creates .venv (or $VENV) with everything the project needs on the CPU: the runtime, TensorFlow,
# tf2onnx, the TFOD API (installed --no-deps, its protobuf modules regenerated) and the dev tools.
# Idempotent: a venv whose stamp matches pyproject.toml and the requirement files is reused.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.tfod-trt-stamp"
want=$(cat "$ROOT/pyproject.toml" "$ROOT"/requirements*.txt "$ROOT/tools/install.sh" \
  "$ROOT/tools/regen_tfod_protos.py" | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then exit 0; fi

echo "== creating $VENV (TensorFlow is about 2 GB; a few minutes on a fresh machine)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# the package (editable: the scripts and console commands run this checkout) with its
# conversion and test extras (pyproject.toml)
"${PIP[@]}" -e "$ROOT[tf,dev]"
# The TFOD API: its own dependency list makes pip backtrack for minutes and fail, so --no-deps;
# everything it imports at run time is in the "tf" extra of pyproject.toml.
"${PIP[@]}" --no-deps tf-models-research-object-detection==2.8.0.post1 tf-models-official==2.20.0
"$VENV/bin/python" "$ROOT/tools/regen_tfod_protos.py"
echo "$want" > "$STAMP"
echo "== environment ready: $VENV"
