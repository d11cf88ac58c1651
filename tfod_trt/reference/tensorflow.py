"""The TFOD SavedModel on TensorFlow: the reference every converted model is judged against."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import numpy as np

from tfod_trt import optional
from tfod_trt.config.preprocessor import Preprocessor


class TensorFlowRunner:
    """The SavedModel's serving signature behind the Runner interface (``infer``,
    ``metadata``, ``input_shape``). ``infer`` returns every output of the signature, named as the
    ONNX graph's outputs; its classes are TFOD's 1-based ones (metadata ``class_offset`` 1).
    With ``pre`` it takes the batches made for that resizer, ``layout`` and ``batch_size`` (those
    of another model, if need be)."""

    def __init__(self, saved_model: str | Path, pre: Preprocessor | None = None,
                 batch_size: int = 1, layout: str = "NHWC",
                 num_classes: int | None = None) -> None:
        tf = optional.tensorflow()
        for gpu in tf.config.list_physical_devices("GPU"):  # leave GPU memory to TensorRT
            with contextlib.suppress(RuntimeError):  # TensorFlow's GPU already initialised
                tf.config.experimental.set_memory_growth(gpu, True)
        self._tf = tf
        self.detect = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
        self.layout = layout
        self.metadata = {"class_offset": 1, "input_format": layout, "num_classes": num_classes,
                         "batch_size": batch_size}
        self.input_shape = None
        if pre is not None:
            self.metadata["preprocessor"] = pre.to_dict()
            hw = [pre.height, pre.width]
            self.input_shape = [batch_size, 3, *hw] if layout == "NCHW" else [batch_size, *hw, 3]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the signature for a float32 batch in ``layout``."""
        images = batch.transpose(0, 2, 3, 1) if self.layout == "NCHW" else batch
        out = self.detect(input_tensor=self._tf.constant(images, self._tf.float32))
        return {key: value.numpy() for key, value in out.items()}


def have_tensorflow() -> bool:
    """Whether TensorFlow is installed in this Python (without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None
