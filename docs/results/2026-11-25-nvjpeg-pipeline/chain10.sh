#!/usr/bin/env bash
# The measurement chain of 2026-11-25 (copied from tools/experiments, which is not committed;
# the GPU scripts now live in dev/gpu/, as the paths below say).
# Place it in tools/experiments/ of the checkout, then on the GPU machine:
#   STEPS="build bench1 tests bench2 gcoff" bash tools/experiments/chain10.sh
cd "$(dirname "$0")/../.."
source dev/gpu/gpu_env.sh   # -> /tmp/work
R=$TFOD_TRT_RESULTS
IMAGES=$PWD/.cache/gpu_carry/shared/data/coco_val2017_64/images
ENG=/tmp/engines/pipeline
ENGINE=$ENG/ssd_mobilenet_v2_b16_nhwc_fp16.engine
log() { echo "== $(date -u +%H:%M:%S) $*"; }
for step in ${STEPS:-build bench tests}; do
  log "step $step"
  case $step in
    build)
      mkdir -p /tmp/onnx_b16/b16 && ln -sf /tmp/onnx_big/ssd_mobilenet_v2_b16_nhwc.onnx /tmp/onnx_b16/b16/
      ONNX_DIR=/tmp/onnx_b16 PRECISIONS=fp16 LEVEL=1 STEPS=build bash dev/gpu/gpu_benchmarks.sh $ENG $IMAGES $R/build ;;
    bench*)
      PIPELINE_ENGINE=$ENGINE STEPS=pipeline bash dev/gpu/gpu_benchmarks.sh $ENG $IMAGES $R/$step ;;
    passes6)
      $PY benchmark.py -e $ENGINE --skip_latency --pipeline $IMAGES --pipeline_images 8192 --duration 3 --pipeline_passes 6 --json $R/passes6.json 2>&1 | tail -4 ;;
    gcoff)
      $PY -c "import gc, sys; gc.disable(); import benchmark; sys.exit(benchmark.main(sys.argv[1:]))" -e $ENGINE --skip_latency --pipeline $IMAGES --pipeline_images 8192 --duration 3 --pipeline_passes 4 --json $R/gcoff.json 2>&1 | tail -4 ;;
    tests)
      bash dev/gpu/gpu_tests.sh tests/test_gpu_decode.py tests/test_trt_gpu.py -k "not trained" 2>&1 | tail -8 ;;
  esac
done
log "chain done"
