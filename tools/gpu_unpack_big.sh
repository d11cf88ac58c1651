#!/usr/bin/env bash
# On the GPU machine: `bash tools/gpu_unpack_big.sh` keeps the carried .cache/gpu_big parts in
# /tmp/big (carried paths do not persist between calls); once every part of a graph is there, it
# is joined and unpacked to /tmp/onnx_big/NAME.onnx (float32 again, tools/onnx_half_weights.py).
set -euo pipefail
mkdir -p /tmp/big /tmp/onnx_big
[ -d .cache/gpu_big ] && cp .cache/gpu_big/* /tmp/big/ 2>/dev/null || true
source .gpu/tools/env.sh
for first in /tmp/big/*.half.onnx.part00; do
  [ -f "$first" ] || continue
  base=${first%.part00}
  name=$(basename "$base" .half.onnx)
  parts=("$base".part*)
  expected=$(cat "$base.parts" 2>/dev/null || echo "")
  if [ -n "$expected" ] && [ "${#parts[@]}" != "$expected" ]; then
    echo "$name: ${#parts[@]} of $expected parts"; continue
  fi
  [ -f "/tmp/onnx_big/$name.onnx" ] && continue
  cat "${parts[@]}" > "$base"
  $PY tools/onnx_half_weights.py unpack "$base" "/tmp/onnx_big/$name.onnx"
done
ls -la /tmp/onnx_big
