#!/usr/bin/env bash
# On the GPU machine: installs the TensorRT 8.6 bundle (../shared/gpu) once and runs the GPU
# tests against the carried fixtures (see dev/gpu/gpu_carry.sh). Arguments go to pytest.
set -o pipefail
source dev/gpu/gpu_env.sh
nvidia-smi -L
$PY -c "import tensorrt; print('TensorRT', tensorrt.__version__)"
$PY -m pytest -m gpu -q -ra -p no:cacheprovider "$@" 2>&1 | tee "$TFOD_TRT_RESULTS/gpu_tests.log"
