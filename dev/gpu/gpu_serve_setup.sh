#!/usr/bin/env bash
# On the GPU machine, from the checkout, after a call that carries one part of .cache/gpu_serve
# (dev/gpu/gpu_serve_carry.sh) and .cache/gpu_serve/parts: keeps the part in /tmp/serve_parts
# (carried paths are replaced by the next call) and, once all have arrived, installs the wheels
# into /opt/serve-site. Then `export PYTHONPATH=/opt/serve-site:$PYTHONPATH` after env.sh.
set -euo pipefail
mkdir -p /tmp/serve_parts
cp .cache/gpu_serve/part* /tmp/serve_parts/ 2>/dev/null || true
[ -f /opt/serve-site/pytriton/__init__.py ] && { echo "serving wheels installed"; exit 0; }
expected=$(cat /tmp/serve_parts/parts 2>/dev/null || echo "?")
arrived=$(ls /tmp/serve_parts/part[0-9]* 2>/dev/null | wc -l)
[ "$arrived" = "$expected" ] || { echo "serving wheels: $arrived of $expected parts"; exit 0; }
source .gpu/tools/env.sh
rm -rf /tmp/serve_wheels && mkdir -p /tmp/serve_wheels
cat /tmp/serve_parts/part[0-9]* | tar -xf - -C /tmp/serve_wheels
$PY -m pip install -q --no-index --no-deps --target /opt/serve-site /tmp/serve_wheels/*.whl
# PyTriton outside site-packages takes itself for an editable install and looks for the server's
# libraries (libcudart, ...) in pytriton/tritonserver/external_libs, not nvidia_pytriton.libs
ln -sfn /opt/serve-site/nvidia_pytriton.libs /opt/serve-site/pytriton/tritonserver/external_libs
echo "serving wheels installed: $(ls /opt/serve-site | grep -c dist-info) packages"
