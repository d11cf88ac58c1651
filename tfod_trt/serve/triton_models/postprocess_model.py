"""Triton Python model: the detector's outputs -> a request's detections (postprocess.py)."""

import sys
from pathlib import Path

# The repository's copy of the package comes first, whatever the server's Python has installed:
# the repository runs the code that wrote it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tfod_trt.graph_names import OUTPUT_NAMES  # noqa: E402
from tfod_trt.serve.interface import DETECTOR_OUTPUT, IMAGE_ERROR, IMAGE_SCALE  # noqa: E402
from tfod_trt.serve.postprocess import PostprocessSettings, postprocess_request  # noqa: E402
from tfod_trt.serve.triton_models.backend import input_array, model_settings, respond  # noqa: E402


class TritonPythonModel:
    """Maps each request's detections to its images' pixels and names their classes."""

    def initialize(self, args: dict) -> None:
        self.settings = PostprocessSettings.from_dict(model_settings(args))

    def execute(self, requests: list) -> list:
        return respond(requests, lambda request: postprocess_request(
            {name: input_array(request, DETECTOR_OUTPUT.format(name)) for name in OUTPUT_NAMES},
            input_array(request, IMAGE_SCALE), input_array(request, IMAGE_ERROR), self.settings))
