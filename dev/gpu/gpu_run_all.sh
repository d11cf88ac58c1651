#!/usr/bin/env bash
# On the GPU machine, after the bundle and the big graphs (dev/gpu/gpu_unpack_big.sh):
#
#   bash dev/gpu/gpu_run_all.sh STAGE...     start the stages, one after another, in the background
#   bash dev/gpu/gpu_run_all.sh status       what is built, the last line of each log
#
# Stages (serial: concurrent TensorRT 8.6 builds measured no faster, the tactic timing keeps the
# GPU at 99%):
#   tests      every GPU test (engines cached in $TFOD_TRT_ENGINE_CACHE)
#   trained    the trained-model GPU tests only (precisions, both INT8 paths, mAP)
#   pipeline   SSD MobileNet v2 batch 16 FP16 (the pipelined-path target): build, latency,
#              profile, pipeline, ONNX Runtime CPU
#   sweep      SSD MobileNet v2 at batch 1 and 32 in FP32 / FP16 / INT8, batch 8 in FP16
#   models     FPNLite 320, ResNet50 FPN 640, Faster R-CNN R50 640 at FP32 / FP16 / INT8; ONNX
#              Runtime CPU on each graph
#   sweep8     SSD MobileNet v2 at batch 8 in FP32 / INT8
#   frcnn      Faster R-CNN R50 640 at FP16 / FP32 / INT8 only
#   versus     NVIDIA's retired sample against create_onnx.py (dev/gpu/gpu_versus_nvidia.sh;
#              carry .cache/gpu_versus from dev/gpu/gpu_versus_carry.sh)
# Each engine is measured (latency, profile) right after its build, in its own results folder:
# a machine taken back mid-stage loses only the engine being built.
# Results in $TFOD_TRT_RESULTS (/tmp/results), engines in /tmp/engines/STAGE.
set -uo pipefail
source dev/gpu/gpu_env.sh
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
RECIPE=$(sed -n 's/^ONNX_RECIPE = "\([^"]*\)".*/\1/p' tests/fixtures.py)
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
bench() {  # bench NAME PRECISION STEPS GRAPH: build GRAPH at PRECISION, then measure it
  link_graphs "/tmp/onnx/$1" "$4"
  ONNX_DIR=/tmp/onnx/$1 PRECISIONS=$2 STEPS="build $3" BATCHES=1 TIMING_CACHE=/tmp/engines/timing.cache \
    bash dev/gpu/gpu_benchmarks.sh "/tmp/engines/$1" "$IMAGES" "$TFOD_TRT_RESULTS/$1"
}
bench_each() {  # bench_each STAGE GRAPH PRECISION...: latency and profile, one engine each
  local stage=$1 graph=$2 precision
  shift 2
  for precision in "$@"; do
    bench "${stage}_${graph}_$precision" "$precision" "latency profile" "$graph"
  done
}
run_stage() {
  case $1 in
    tests) bash dev/gpu/gpu_tests.sh ;;
    trained) bash dev/gpu/gpu_tests.sh -k trained ;;
    pipeline)
      bench pipeline fp16 "latency profile pipeline onnx" ssd_mobilenet_v2_b16_nhwc ;;
    sweep)
      bench_each sweep ssd_mobilenet_v2_b1_nhwc fp32 fp16 int8
      bench_each sweep ssd_mobilenet_v2_b32_nhwc fp32 fp16 int8
      bench_each sweep ssd_mobilenet_v2_b8_nhwc fp16 ;;
    sweep8)  # batch 8 in FP32 and INT8 (the sweep has FP16)
      bench_each sweep ssd_mobilenet_v2_b8_nhwc fp32 int8 ;;
    versus) bash dev/gpu/gpu_versus_nvidia.sh "$TFOD_TRT_RESULTS/versus" ;;
    frcnn)  # Faster R-CNN R50 640 alone (re-measured after a change to its graph)
      bench_each models faster_rcnn_r50_640_b1_nhwc fp16 fp32 int8 ;;
    models)  # FP16 first (what most deploy), the CPU baseline last
      for precision in fp16 fp32 int8; do
        for graph in ssd_resnet50_fpn_640_b1_nhwc faster_rcnn_r50_640_b1_nhwc ssd_fpnlite_320_b1_nhwc; do
          bench_each models $graph $precision
        done
      done
      link_graphs /tmp/onnx/models_cpu ssd_fpnlite_320_b1_nhwc ssd_resnet50_fpn_640_b1_nhwc \
        faster_rcnn_r50_640_b1_nhwc
      ONNX_DIR=/tmp/onnx/models_cpu STEPS=onnx \
        bash dev/gpu/gpu_benchmarks.sh /tmp/engines/models_cpu "$IMAGES" "$TFOD_TRT_RESULTS/models_cpu" ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}
[ $# -gt 0 ] || { echo "usage: gpu_run_all.sh STAGE... | status" >&2; exit 2; }
export -f run_stage link_graphs bench bench_each
export IMAGES RECIPE
# A chain started while another runs waits for it (the lock): measurements must not share the
# GPU with a build.
for stage in "$@"; do
  echo "bash -c 'run_stage $stage' > $TFOD_TRT_RESULTS/stage_$stage.log 2>&1"
done | paste -sd';' | {
  read -r chain
  setsid nohup flock /tmp/gpu_run_all.lock bash -c "$chain" > /dev/null 2>&1 &
}
sleep 2
echo "started: $*; progress: bash dev/gpu/gpu_run_all.sh status"
