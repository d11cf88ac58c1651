#!/usr/bin/env bash
# On the GPU machine: `bash tools/gpu_unpack_big.sh` after a call that carries some of
# .cache/gpu_big/*.half.onnx (tools/gpu_carry.sh): turns them back into float32 graphs in
# /tmp/onnx_big (carried paths do not persist between calls; /tmp does).
set -euo pipefail
mkdir -p /tmp/onnx_big
source .gpu/tools/env.sh
for packed in .cache/gpu_big/*.half.onnx; do
  [ -f "$packed" ] || continue
  name=$(basename "$packed" .half.onnx)
  [ -f "/tmp/onnx_big/$name.onnx" ] || $PY tools/onnx_half_weights.py unpack "$packed" \
    "/tmp/onnx_big/$name.onnx"
done
ls -la /tmp/onnx_big
