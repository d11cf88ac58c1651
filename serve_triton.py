"""Serving a detector with a Triton Inference Server started from Python (PyTriton, in the
serving environment), without writing a model repository (docs/serving.md):

    .venv-serve/bin/python serve_triton.py --onnx model.onnx --name ssd --http_port 8000

The model ``ssd`` takes encoded images (input ``images``, one file per row) and answers each
image's boxes in pixels, scores, classes and class names, as export_triton.py's ensemble does;
Triton's dynamic batcher puts requests that arrive together into one batch. ``--engine
model.engine`` runs the TensorRT engine (TensorRT and a GPU) instead of the ONNX on the CPU.
Ctrl-C (SIGINT) or SIGTERM stops the server and its processes.
"""

import sys

from tfod_trt.commands.serve_triton import main, parse_args  # noqa: F401 (this script's interface)

if __name__ == "__main__":
    sys.exit(main())
