#!/usr/bin/env bash
# On the GPU machine: the GPU tests with their engine builds run side by side in independent
# groups (a TensorRT 8.6 build takes minutes and leaves most of an H100 idle), each group's log in
# $TFOD_TRT_RESULTS/group_N.log. Engines land in $TFOD_TRT_ENGINE_CACHE, so running the whole suite afterwards
# (`bash tools/gpu_tests.sh`) only runs tests. Extra arguments go to every pytest call.
set -uo pipefail
source tools/gpu_env.sh
GROUPS_K=(
  "not trained and not faster_rcnn"  # the random SSD fixture: FP32, runner, benchmark, eval
  "faster_rcnn"
  "trained_fp32"
  "trained_fp16 and not onnx"
  "fp16_onnx"
  "trained_int8 and not qdq"
  "qdq"
)
# calibration images made once, before the groups that share them start
$PY -c "import sys; sys.path[:0] = ['tests', '.']; import fixtures, os, pathlib; \
fixtures.shapes_dataset('train', 256, pathlib.Path(os.environ['TFOD_TRT_ENGINE_CACHE'], 'shapes_calib'))"
for i in "${!GROUPS_K[@]}"; do
  $PY -m pytest -m gpu -q -ra -p no:cacheprovider -k "${GROUPS_K[$i]}" "$@" \
    > "$TFOD_TRT_RESULTS/group_$i.log" 2>&1 &
done
wait
for i in "${!GROUPS_K[@]}"; do echo "== group $i (${GROUPS_K[$i]}): $(tail -1 "$TFOD_TRT_RESULTS/group_$i.log")"; done
