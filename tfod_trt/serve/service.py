"""serve_triton.py's detector: a batch of requests (encoded images) -> one answer per request
(interface.py), through the preprocessing and postprocessing of the exported repository's
Python models (preprocess.py, postprocess.py), on the engine or on the CPU reference runtime."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor

import numpy as np

from tfod_trt.detect.batch import Runner
from tfod_trt.graph_names import INPUT_NAME, TRUE_IMAGE_SHAPE
from tfod_trt.serve.interface import IMAGE_ERROR, IMAGE_SCALE, IMAGES, RESULTS
from tfod_trt.serve.postprocess import PostprocessSettings, postprocess_request
from tfod_trt.serve.preprocess import PreprocessSettings, preprocess_request

log = logging.getLogger("serve_triton")


class DetectionService:
    """The callable a PyTriton model runs: takes the requests that Triton's batcher put
    together, runs their images through ``runner`` in batches of at most ``pre.max_batch``
    (padded to ``pre.min_batch`` rows: a static engine's batch), and answers each request.
    ``decoder`` decodes the images (decode processes; in the calling thread without one);
    ``log_batches`` logs a line per batch."""

    def __init__(self, runner: Runner, pre: PreprocessSettings, post: PostprocessSettings,
                 log_batches: bool = False, decoder: Executor | None = None) -> None:
        self.runner, self.pre, self.post, self.log_batches = runner, pre, post, log_batches
        self.decoder = decoder

    def __call__(self, requests: Sequence[Mapping[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        start = time.perf_counter()
        images = [np.asarray(request[IMAGES]).reshape(-1).tolist() for request in requests]
        encoded = [data for request in images for data in request]
        size = self.pre.max_batch
        parts = [self.detect(encoded[i:i + size]) for i in range(0, len(encoded), size)]
        answer = {name: np.concatenate([part[name] for part in parts]) for name in RESULTS}
        if self.log_batches:
            log.info("answered %d images of %d requests in %.0f ms", len(encoded), len(requests),
                     1000 * (time.perf_counter() - start))
        ends = np.cumsum([len(request) for request in images]).tolist()
        return [{name: values[end - len(request):end] for name, values in answer.items()}
                for request, end in zip(images, ends, strict=True)]

    def detect(self, encoded: list[bytes]) -> dict[str, np.ndarray]:
        """The answer for up to ``pre.max_batch`` images, as one batch of the runner."""
        inputs = preprocess_request(encoded, self.pre, self.decoder)
        if getattr(self.runner, "needs_true_image_shape", False):
            outputs = self.runner.infer(inputs[INPUT_NAME], inputs[TRUE_IMAGE_SHAPE])
        else:
            outputs = self.runner.infer(inputs[INPUT_NAME])
        return postprocess_request(outputs, inputs[IMAGE_SCALE], inputs[IMAGE_ERROR], self.post)
