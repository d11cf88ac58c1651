"""Triton Python model: the detector's ONNX graph on the CPU reference runtime (ONNX Runtime
and the NumPy plugins), a stand-in for the TensorRT engine where there is no GPU."""

import sys
from pathlib import Path

# The repository's copy of the package comes first, whatever the server's Python has installed:
# the repository runs the code that wrote it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tfod_trt.graph_names import INPUT_NAME, OUTPUT_NAMES, TRUE_IMAGE_SHAPE  # noqa: E402
from tfod_trt.reference.runner import ReferenceRunner  # noqa: E402
from tfod_trt.serve.interface import ONNX_FILE  # noqa: E402
from tfod_trt.serve.triton_models.backend import input_array, respond  # noqa: E402


class TritonPythonModel:
    """Runs each request's batch through the ONNX graph beside this file."""

    def initialize(self, args: dict) -> None:
        self.runner = ReferenceRunner(Path(__file__).resolve().parent / ONNX_FILE)

    def execute(self, requests: list) -> list:
        return respond(requests, self.detect)

    def detect(self, request) -> dict:
        feed = (input_array(request, TRUE_IMAGE_SHAPE) if self.runner.needs_true_image_shape
                else None)
        outputs = self.runner.infer(input_array(request, INPUT_NAME), feed)
        return {name: outputs[name] for name in OUTPUT_NAMES}
