"""The references: TensorFlow itself, and the ONNX graph on the CPU with NumPy plugins."""
