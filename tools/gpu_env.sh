# Sourced on the GPU machine: installs the TensorRT 8.6 bundle (../shared/gpu) once and points
# the tests at what tools/gpu_carry.sh prepared (.cache/gpu_carry). Sets $PY.
bash .gpu/tools/device-setup.sh >/dev/null || { echo "bundle setup failed" >&2; exit 3; }
export EXTRA_PYTHONPATH=$PWD/.cache/gpu_carry/site
source .gpu/tools/env.sh
export TFOD_TRT_SHARED=$PWD/.cache/gpu_carry/shared TFOD_TRT_ENGINE_CACHE=/tmp/trt_engines
export TFOD_TRT_CACHE=$PWD/.cache/gpu_carry/fixtures TFOD_TRT_SHAPES=$PWD/.cache/gpu_carry/shapes
export OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" "$TFOD_TRT_ENGINE_CACHE"
# Large fixture graphs sent in parts (tools/gpu_carry.sh, .cache/gpu_big) and unpacked to
# /tmp/onnx_big by tools/gpu_unpack_big.sh: seen by the tests as cached fixtures.
RECIPE=$(sed -n 's/^RECIPE = "\(.*\)"/\1/p' tests/fixtures.py)
mkdir -p "$TFOD_TRT_CACHE/onnx-$RECIPE"
for f in /tmp/onnx_big/*.onnx; do [ -f "$f" ] && ln -sf "$f" "$TFOD_TRT_CACHE/onnx-$RECIPE/"; done
