#!/usr/bin/env bash
# Prepares .cache/gpu_versus for dev/gpu/gpu_versus_nvidia.sh (NVIDIA's retired sample against
# create_onnx.py, docs/benchmarks.md "Against NVIDIA's sample"), on the development machine:
#   - the graphs of tools/nvidia_sample_onnx.py at batch 1 and 16 (the sample's create_onnx.py,
#     ours, ours with --score_threshold 0.01, both also with --nms single), made once in
#     $GRAPHS, packed with their weights stored once (dev/gpu/onnx_shared_weights.py);
#   - the 64 photos (they also set the random model's BatchNorm statistics, as for the test
#     fixtures) and the sample's folder (its build_engine.py, for SAMPLE_BUILD=1).
# Carry `.cache/gpu_versus` (about 36 MiB) and `.gpu/tools` in the device call.
#
#   [TRT_REPO=LOCAL_TENSORRT_CLONE] bash dev/gpu/gpu_versus_carry.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SHARED=${TFOD_TRT_SHARED:-$ROOT/../shared}
PY=${PY:-$ROOT/.venv/bin/python}
GRAPHS=${GRAPHS:-.cache/nvidia_sample}
CARRY=.cache/gpu_versus
PHOTOS=$SHARED/data/coco_val2017_64/images
calibration=()
[ -d "$PHOTOS" ] && calibration=(--calibration_images "$PHOTOS")
"$PY" tools/nvidia_sample_onnx.py -o "$GRAPHS" ${TRT_REPO:+--trt_repo "$TRT_REPO"} \
  "${calibration[@]}" -b 1 16 --variant "t001=--score_threshold 0.01" \
  --variant "single=--nms single" --variant "single-t001=--nms single --score_threshold 0.01"
rm -rf "$CARRY"
mkdir -p "$CARRY"
"$PY" dev/gpu/onnx_shared_weights.py pack "$CARRY/graphs" "$GRAPHS"/*.onnx
cp "$GRAPHS/graphs.json" "$CARRY/"
if [ -d "$PHOTOS" ]; then
  cp -r "$PHOTOS" "$CARRY/images"
else  # the tests' synthetic stand-in photos
  STAND_IN=$("$PY" -c "import sys; sys.path[:0] = ['tests', '.']; import fixtures; print(fixtures.stand_in_photos())")
  cp -r "$STAND_IN/images" "$CARRY/images"
fi
SAMPLE=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['nvidia_sample']['extracted'])" "$GRAPHS/graphs.json")
cp -r "$SAMPLE/.." "$CARRY/sample"
du -sh "$CARRY" "$CARRY"/*
