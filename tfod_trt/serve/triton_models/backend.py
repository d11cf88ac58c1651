"""What the repository's Python models share: their settings (a JSON parameter of their
config.pbtxt), their input tensors, and one response per request, an error response carrying
the one-line message of a request that cannot be served."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import triton_python_backend_utils as pb_utils

from tfod_trt.serve.interface import SETTINGS


def model_settings(args: dict) -> dict:
    """The model's settings, from the ``args`` of its ``initialize``."""
    config = json.loads(args["model_config"])
    return json.loads(config["parameters"][SETTINGS]["string_value"])


def input_array(request, name: str) -> np.ndarray:
    """A request's input tensor as an array (BYTES: an object array of bytes)."""
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy()


def respond(requests: list, work: Callable[[object], dict[str, np.ndarray]]) -> list:
    """``work(request)`` -> its output tensors, for each request; a ValueError (bad input:
    an image that cannot be decoded, too many images) becomes that request's error."""
    responses = []
    for request in requests:
        try:
            outputs = work(request)
        except ValueError as err:
            responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err))))
            continue
        tensors = [pb_utils.Tensor(name, value) for name, value in outputs.items()]
        responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return responses
