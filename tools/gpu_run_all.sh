#!/usr/bin/env bash
# On the GPU machine, after the bundle and the big graphs (tools/gpu_unpack_big.sh):
#
#   bash tools/gpu_run_all.sh STAGE...     start the stages, one after another, in the background
#   bash tools/gpu_run_all.sh status       what is built, the last line of each log
#
# Stages (serial: concurrent TensorRT 8.6 builds measured no faster, the tactic timing keeps the
# GPU at 99%):
#   tests      every GPU test (engines cached in $TFOD_TRT_ENGINE_CACHE)
#   trained    the trained-model GPU tests only (precisions, both INT8 paths, mAP)
#   sweep      SSD MobileNet v2 at batch 1 / 8 / 32, FP32 / FP16 / INT8, and batch 16 FP16 (the
#              pipelined-path target): build, latency, profile, pipeline
#   models     FPNLite 320, ResNet50 FPN 640, Faster R-CNN R50 640 at FP32 / FP16 / INT8: build,
#              latency, profile; ONNX Runtime CPU on every graph
# Results in $TFOD_TRT_RESULTS (/tmp/results), engines in /tmp/engines/STAGE.
set -uo pipefail
source tools/gpu_env.sh
IMAGES=$TFOD_TRT_SHARED/data/coco_val2017_64/images
export LEVEL=${LEVEL:-$TFOD_TRT_BUILD_LEVEL}  # benchmark engines too: level 3 takes 4-5 min each
if [ "${1:-}" = status ]; then
  ls -la /tmp/engines/*/*.engine "$TFOD_TRT_ENGINE_CACHE"/*.engine 2>/dev/null | awk '{print "  " $5, $9}'
  for log in "$TFOD_TRT_RESULTS"/*.log "$TFOD_TRT_RESULTS"/*/build.log; do
    [ -f "$log" ] && echo "== $log: $(tail -1 "$log" | cut -c1-200)"
  done
  pgrep -fa "build_engine|pytest|benchmark.py" | cut -c1-160
  exit 0
fi
RECIPE=$(sed -n 's/^RECIPE = "\(.*\)"/\1/p' tests/fixtures.py)
link_graphs() {  # link_graphs DIR NAME... : the graphs to build, one folder per stage
  mkdir -p "$1"
  local dir=$1 name
  shift
  for name in "$@"; do
    for source in "$TFOD_TRT_CACHE/onnx-$RECIPE/$name.onnx" "/tmp/onnx_big/$name.onnx"; do
      [ -f "$source" ] && { ln -sf "$source" "$dir/"; break; }
    done
    [ -e "$dir/$name.onnx" ] || echo "missing graph $name (carry and unpack it first)" >&2
  done
}
run_stage() {
  case $1 in
    tests) bash tools/gpu_tests.sh ;;
    trained) bash tools/gpu_tests.sh -k trained ;;
    sweep)
      link_graphs /tmp/onnx/sweep ssd_mobilenet_v2_b1_nhwc ssd_mobilenet_v2_b8_nhwc ssd_mobilenet_v2_b32_nhwc
      link_graphs /tmp/onnx/sweep16 ssd_mobilenet_v2_b16_nhwc
      ONNX_DIR=/tmp/onnx/sweep PRECISIONS="fp32 fp16 int8" STEPS=build \
        bash tools/gpu_benchmarks.sh /tmp/engines/sweep "$IMAGES" "$TFOD_TRT_RESULTS/sweep"
      ONNX_DIR=/tmp/onnx/sweep16 PRECISIONS=fp16 \
        bash tools/gpu_benchmarks.sh /tmp/engines/sweep "$IMAGES" "$TFOD_TRT_RESULTS/sweep" ;;
    models)
      link_graphs /tmp/onnx/models ssd_fpnlite_320_b1_nhwc ssd_resnet50_fpn_640_b1_nhwc \
        faster_rcnn_r50_640_b1_nhwc
      ONNX_DIR=/tmp/onnx/models PRECISIONS="fp32 fp16 int8" STEPS="build latency profile onnx" \
        BATCHES=1 bash tools/gpu_benchmarks.sh /tmp/engines/models "$IMAGES" "$TFOD_TRT_RESULTS/models" ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}
[ $# -gt 0 ] || { echo "usage: gpu_run_all.sh STAGE... | status" >&2; exit 2; }
export -f run_stage link_graphs
export IMAGES RECIPE
for stage in "$@"; do
  echo "bash -c 'run_stage $stage' > $TFOD_TRT_RESULTS/stage_$stage.log 2>&1"
done | paste -sd';' | { read -r chain; setsid nohup bash -c "$chain" > /dev/null 2>&1 & }
sleep 2
echo "started: $*; progress: bash tools/gpu_run_all.sh status"
