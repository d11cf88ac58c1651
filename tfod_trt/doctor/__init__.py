"""The doctor: what this machine and a model file need for converting and for TensorRT, each
missing part with the one command that fixes it."""
