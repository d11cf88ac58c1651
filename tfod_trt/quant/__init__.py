"""Explicitly typed ONNX graphs (Q/DQ INT8, FP16) for TensorRT's strongly typed builds."""
