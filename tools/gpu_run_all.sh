#!/usr/bin/env bash
# On the GPU machine, after the bundle, the big graphs (tools/gpu_unpack_big.sh) and the batch
# variants (/tmp/onnx/ssd_mobilenet_v2_bN) are there: every engine build at once, in the
# background (TensorRT 8.6 builds take minutes each and leave most of the GPU idle):
#   - the GPU test groups (tools/gpu_session.sh), engines cached in $TFOD_TRT_ENGINE_CACHE;
#   - the issue-6 benchmark engines, FP32 / FP16 / INT8 per graph in /tmp/onnx/*/, into
#     /tmp/engines (tools/gpu_benchmarks.sh STEPS=build, one process per graph).
# Logs in /tmp/out; `bash tools/gpu_run_all.sh status` shows progress.
set -uo pipefail
source tools/gpu_env.sh
IMAGES=$TFOD_TRT_SHARED/data/coco_val2017_64/images
if [ "${1:-}" = status ]; then
  ls /tmp/engines/*.engine "$TFOD_TRT_ENGINE_CACHE"/*.engine 2>/dev/null | sed 's/^/  /'
  for log in "$TFOD_TRT_RESULTS"/group_*.log "$TFOD_TRT_RESULTS"/bench_*/build.log; do
    [ -f "$log" ] && echo "== $log: $(tail -1 "$log")"
  done
  pgrep -fa "build_engine|pytest" | cut -c1-160
  exit 0
fi
RECIPE=$(sed -n 's/^RECIPE = "\(.*\)"/\1/p' tests/fixtures.py)
mkdir -p /tmp/onnx/ssd_mobilenet_v2 /tmp/engines
cp "$TFOD_TRT_CACHE/onnx-$RECIPE/ssd_mobilenet_v2_b1_nhwc.onnx" /tmp/onnx/ssd_mobilenet_v2/
for name in ssd_mobilenet_v2_b8 ssd_mobilenet_v2_b16 ssd_mobilenet_v2_b32; do
  mkdir -p "/tmp/onnx/$name" && ln -sf "/tmp/onnx_big/${name}_nhwc.onnx" "/tmp/onnx/$name/"
done
for name in ssd_fpnlite_320 faster_rcnn_r50_640; do
  mkdir -p "/tmp/onnx/$name" && ln -sf "/tmp/onnx_big/${name}_b1_nhwc.onnx" "/tmp/onnx/$name/"
done
for dir in /tmp/onnx/*/; do
  name=$(basename "$dir")
  precisions="fp32 fp16 int8"
  [ "$name" = ssd_mobilenet_v2_b16 ] && precisions=fp16  # the pipelined-path target only
  ONNX_DIR=$dir PRECISIONS=$precisions STEPS=build \
    setsid nohup bash tools/gpu_benchmarks.sh /tmp/engines "$IMAGES" "$TFOD_TRT_RESULTS/bench_$name" \
    > "$TFOD_TRT_RESULTS/bench_$name.log" 2>&1 &
done
setsid nohup bash tools/gpu_session.sh > "$TFOD_TRT_RESULTS/session.log" 2>&1 &
sleep 5
echo "started: $(pgrep -fc build_engine) builds, $(pgrep -fc pytest) pytest groups"
