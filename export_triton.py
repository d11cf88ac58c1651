"""Serving a detector with NVIDIA Triton Inference Server: writes its models into a model
repository (docs/serving.md):

    python export_triton.py --engine model.engine --repo model_repository/ --name ssd \
        --labels label_map.pbtxt

``ssd`` is the ensemble a client calls with encoded images (JPEG, PNG; input ``images``); it
answers each image's boxes in pixels, scores, classes and class names. Inside it run
``ssd_preprocess`` (Python: TFOD's exact resize, as infer.py), ``ssd_detector`` (the engine,
platform tensorrt_plan) and ``ssd_postprocess`` (Python). ``--onnx model.onnx`` instead of
``--engine`` runs the ONNX on the CPU in the detector's place (no GPU needed).
"""

import sys

from tfod_trt.commands.export_triton import main, parse_args  # noqa: F401 (this script's interface)

if __name__ == "__main__":
    sys.exit(main())
