"""Triton Python model: a request's encoded images -> the detector's inputs (preprocess.py)."""

import sys
from pathlib import Path

# The repository's copy of the package comes first, whatever the server's Python has installed:
# the repository runs the code that wrote it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tfod_trt.serve.interface import IMAGES  # noqa: E402
from tfod_trt.serve.preprocess import PreprocessSettings, preprocess_request  # noqa: E402
from tfod_trt.serve.triton_models.backend import input_array, model_settings, respond  # noqa: E402


class TritonPythonModel:
    """Decodes and resizes each request's images as infer.py does."""

    def initialize(self, args: dict) -> None:
        self.settings = PreprocessSettings.from_dict(model_settings(args))

    def execute(self, requests: list) -> list:
        return respond(requests, lambda request: preprocess_request(
            input_array(request, IMAGES).reshape(-1).tolist(), self.settings))
