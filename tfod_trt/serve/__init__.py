"""Serving detectors with NVIDIA Triton Inference Server: the model repository (engine, Python
preprocessing and postprocessing, ensemble) and the request-level pre- and postprocessing that
the repository's Python models run."""
