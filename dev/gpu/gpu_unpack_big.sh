#!/usr/bin/env bash
# On the GPU machine: `bash dev/gpu/gpu_unpack_big.sh` after a call that carries some of
# .cache/gpu_big/ (dev/gpu/gpu_carry.sh): turns NAME.half.onnx back into the float32 graph
# /tmp/onnx_big/NAME.onnx (carried paths do not persist between calls; /tmp does). Split files
# (NAME.half.onnx.partNN, one per call) are kept in /tmp/onnx_parts until all have arrived.
set -euo pipefail
mkdir -p /tmp/onnx_big /tmp/onnx_parts
source .gpu/tools/env.sh
for part in .cache/gpu_big/*.half.onnx.part*; do  # the parts and the count (.parts)
  [ -f "$part" ] && cp "$part" /tmp/onnx_parts/
done
for count in /tmp/onnx_parts/*.half.onnx.parts; do
  [ -f "$count" ] || continue
  packed=/tmp/onnx_parts/$(basename "$count" .parts)
  parts=("$packed".part[0-9]*)
  if [ "${#parts[@]}" -eq "$(cat "$count")" ] && [ ! -f "$packed" ]; then
    cat "${parts[@]}" > "$packed"
  fi
done
for packed in .cache/gpu_big/*.half.onnx /tmp/onnx_parts/*.half.onnx; do
  [ -f "$packed" ] || continue
  name=$(basename "$packed" .half.onnx)
  [ -f "/tmp/onnx_big/$name.onnx" ] || $PY dev/gpu/onnx_half_weights.py unpack "$packed" \
    "/tmp/onnx_big/$name.onnx"
done
ls -la /tmp/onnx_big
