# Sourced on the GPU machine: installs the TensorRT 8.6 bundle (../shared/gpu) once, copies the
# checkout and what dev/gpu/gpu_carry.sh prepared to /tmp/work (a device call replaces carried
# paths, and background builds must not see their files change) and works there. Sets $PY;
# logs and results go to $TFOD_TRT_RESULTS (/tmp/results; copy it to the call's $OUT).
bash .gpu/tools/device-setup.sh >/dev/null || { echo "bundle setup failed" >&2; exit 3; }
if [ "$PWD" != /tmp/work ]; then  # copied once per machine (TFOD_TRT_RECOPY=1: again)
  if [ ! -d /tmp/work ] || [ -n "${TFOD_TRT_RECOPY:-}" ]; then
    mkdir -p /tmp/work
    tar --exclude='./.gpu/p[0-9]*' --exclude=./.cache/gpu_big -cf - . | tar -xf - -C /tmp/work
  fi
  cd /tmp/work
fi
export EXTRA_PYTHONPATH=$PWD/.cache/gpu_carry/site
source .gpu/tools/env.sh
export TFOD_TRT_SHARED=$PWD/.cache/gpu_carry/shared TFOD_TRT_ENGINE_CACHE=/tmp/trt_engines
export TFOD_TRT_CACHE=$PWD/.cache/gpu_carry/fixtures TFOD_TRT_SHAPES=$PWD/.cache/gpu_carry/shapes
export TFOD_TRT_RESULTS=${TFOD_TRT_RESULTS:-/tmp/results}
export TFOD_TRT_BUILD_LEVEL=${TFOD_TRT_BUILD_LEVEL:-1}  # test engines: faster builds
mkdir -p "$TFOD_TRT_RESULTS" "$TFOD_TRT_ENGINE_CACHE"
# Large fixture graphs sent in parts (.cache/gpu_big) and unpacked to /tmp/onnx_big by
# dev/gpu/gpu_unpack_big.sh: seen by the tests as cached fixtures.
RECIPE=$(sed -n 's/^ONNX_RECIPE = "\([^"]*\)".*/\1/p' tests/fixtures.py)
mkdir -p "$TFOD_TRT_CACHE/onnx-$RECIPE"
for f in /tmp/onnx_big/*.onnx; do
  if [ -f "$f" ]; then ln -sf "$f" "$TFOD_TRT_CACHE/onnx-$RECIPE/"; fi
done
