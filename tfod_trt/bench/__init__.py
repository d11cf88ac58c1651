"""Benchmarks: latency, per-layer profiles, the folder pipeline's throughput, ONNX Runtime."""
