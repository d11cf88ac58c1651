#!/usr/bin/env bash
# Creates the project's environments (idempotent: a venv whose stamp matches its inputs is
# reused):
#   .venv (or $VENV): everything the project needs on the CPU: the runtime, TensorFlow,
#     tf2onnx, the TFOD API (installed --no-deps, its protobuf modules regenerated), dev tools;
#   .venv-serve (or $VENV_SERVE): the serving environment, the "serve" extra (Triton Inference
#     Server from the nvidia-pytriton wheel, tritonclient): it needs NumPy 1.x and protobuf 6,
#     which TensorFlow's environment cannot take, hence a venv of its own.
# `bash tools/install.sh main` or `... serve` makes only one of them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
VENV_SERVE=${VENV_SERVE:-$ROOT/.venv-serve}
PYTHON=${PYTHON:-python3}

# fresh VENV FILE...: true when the venv's stamp matches the files' digest (nothing to do);
# sets $want to that digest, which the caller stamps once the venv is made
fresh() {
  local venv=$1
  shift
  want=$(cat "$@" | sha256sum | cut -c1-16)
  [ -f "$venv/.tfod-trt-stamp" ] && [ "$(cat "$venv/.tfod-trt-stamp")" = "$want" ]
}

new_venv() {
  [ -x "$1/bin/python" ] || "$PYTHON" -m venv "$1"
  "$1/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
}

install_main() {
  if fresh "$VENV" "$ROOT/pyproject.toml" "$ROOT"/requirements*.txt "$ROOT/tools/install.sh" \
      "$ROOT/tools/regen_tfod_protos.py"; then return 0; fi
  echo "== creating $VENV (TensorFlow is about 2 GB; a few minutes on a fresh machine)"
  new_venv "$VENV"
  PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
  # the package (editable: the scripts and console commands run this checkout) with its
  # conversion and test extras (pyproject.toml)
  "${PIP[@]}" -e "$ROOT[tf,dev]"
  # The TFOD API: its own dependency list makes pip backtrack for minutes and fail, so
  # --no-deps; everything it imports at run time is in the "tf" extra of pyproject.toml.
  "${PIP[@]}" --no-deps tf-models-research-object-detection==2.8.0.post1 tf-models-official==2.20.0
  "$VENV/bin/python" "$ROOT/tools/regen_tfod_protos.py"
  echo "$want" > "$VENV/.tfod-trt-stamp"
  echo "== environment ready: $VENV"
}

install_serve() {
  if fresh "$VENV_SERVE" "$ROOT/pyproject.toml" "$ROOT/tools/install.sh"; then return 0; fi
  echo "== creating $VENV_SERVE (Triton Inference Server and its client; under a minute)"
  # The wheel's Python backend stubs (3.10-3.12) link the interpreter's shared libpython.
  "$PYTHON" - <<'PY'
import os, sys, sysconfig
version = "%d.%d" % sys.version_info[:2]
lib = os.path.join(sysconfig.get_config_var("LIBDIR") or "",
                   sysconfig.get_config_var("INSTSONAME") or "libpython")
if version not in ("3.10", "3.11", "3.12"):
    sys.exit(f"install.sh: {sys.executable} is Python {version}; the serving environment needs "
             "3.10, 3.11 or 3.12 (the server's Python models): set PYTHON=python3.X")
if not os.path.isfile(lib):
    sys.exit(f"install.sh: {sys.executable} has no shared libpython ({lib}), which the server's "
             "Python models load: use a Python built with --enable-shared (set PYTHON=...)")
PY
  new_venv "$VENV_SERVE"
  "$VENV_SERVE/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[serve]"
  echo "$want" > "$VENV_SERVE/.tfod-trt-stamp"
  echo "== serving environment ready: $VENV_SERVE"
}

case "${1:-all}" in
  main) install_main ;;
  serve) install_serve ;;
  all) install_main; install_serve ;;
  *) echo "usage: $0 [main|serve|all]" >&2; exit 2 ;;
esac
