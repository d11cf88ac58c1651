#!/usr/bin/env bash
# Prepares .cache/gpu_carry/ for a GPU-machine test run (the device tool sends only the checkout):
# the shared photos and annotations, the converted fixture ONNX, and pure-Python wheels the GPU
# bundle lacks. Carry `.gpu/tools` and `.cache/gpu_carry` there, then run
# `bash tools/gpu_tests.sh [pytest args]` on the device.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${TFOD_TRT_SHARED:-$ROOT/../shared}
CARRY=$ROOT/.cache/gpu_carry
mkdir -p "$CARRY/shared/data" "$CARRY/shared/tfod_configs" "$CARRY/site"
cp -r "$SHARED/data/coco_val2017_64" "$CARRY/shared/data/"
cp "$SHARED/tfod_configs/mscoco_label_map.pbtxt" "$CARRY/shared/tfod_configs/"
python3 -m pip download -q --no-deps --only-binary=:all: -d "$CARRY/wheels" pygments==2.19.2
python3 -c "import zipfile,glob,sys; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in glob.glob(sys.argv[2]+'/*.whl')]" "$CARRY/site" "$CARRY/wheels"
rm -rf "$CARRY/wheels"
# The GPU tests use the SSD MobileNet v2 fixture (built here first: the GPU machine has no TF).
RECIPE=$(sed -n 's/^RECIPE = "\(.*\)"/\1/p' "$ROOT/tests/fixtures.py")
mkdir -p "$CARRY/fixtures/onnx-$RECIPE"
cp "$ROOT/.cache/fixtures/onnx-$RECIPE"/ssd_mobilenet_v2_b1_nhwc.onnx "$CARRY/fixtures/onnx-$RECIPE/"
du -sh "$CARRY"
