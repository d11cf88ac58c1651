"""TFOD -> TensorRT: converting TensorFlow Object Detection API models into TensorRT engines,
running, judging and benchmarking them. The scripts at the repository root are thin entry
points over this package; its sub-packages, from the lowest level up: config, io, convert /
reference / trt / quant, detect, evaluate / bench, commands."""
