#!/usr/bin/env bash
# On the GPU machine: installs the TensorRT 8.6 bundle (../shared/gpu) once and runs the GPU
# tests against the carried fixtures (see tools/gpu_carry.sh). Arguments go to pytest.
set -o pipefail
bash .gpu/tools/device-setup.sh >/dev/null || exit 3
export EXTRA_PYTHONPATH=$PWD/.cache/gpu_carry/site
source .gpu/tools/env.sh
export TFOD_TRT_SHARED=$PWD/.cache/gpu_carry/shared TFOD_TRT_ENGINE_CACHE=/tmp/trt_engines
export TFOD_TRT_CACHE=$PWD/.cache/gpu_carry/fixtures
nvidia-smi -L
$PY -c "import tensorrt; print('TensorRT', tensorrt.__version__)"
$PY -m pytest -m gpu -q -ra -p no:cacheprovider "$@" 2>&1 | tee "${OUT:-/tmp}/gpu_tests.log"
