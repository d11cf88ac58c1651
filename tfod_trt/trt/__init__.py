"""TensorRT: the version layer, engine building and calibration, the runner and its CUDA
back-ends."""
