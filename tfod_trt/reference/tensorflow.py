"""The TFOD SavedModel on TensorFlow: the reference every converted model is judged against."""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import numpy as np

from tfod_trt import optional
from tfod_trt.config.preprocessor import KEEP_ASPECT_RATIO, Preprocessor
from tfod_trt.convert.tf_graph import serving_signature
from tfod_trt.io.images import load_image
from tfod_trt.metadata import MASKS_OUTPUT, OUTPUT_NAMES


class TensorFlowRunner:
    """The SavedModel's serving signature behind the Runner interface (``infer``,
    ``metadata``, ``input_shape``). ``infer`` returns every output of the signature, named as the
    ONNX graph's outputs; its classes are TFOD's 1-based ones (metadata ``class_offset`` 1).
    With ``pre`` it takes the batches made for that resizer, ``layout`` and ``batch_size`` (those
    of another model, if need be).

    For a keep_aspect_ratio ``pre`` it runs as its users run it instead (``takes_photos``:
    detect.batch.run_batch calls :meth:`infer_photos` with each batch's files): the original
    photo, resized and padded by TFOD inside the graph. Fed the padded batch, it would take the
    padding for part of the image. Its boxes are then normalised to ``box_frame``: the true
    image (TFOD's default) or the padded input (an SSD without change_coordinate_frame).
    A SavedModel that is not TFOD's float-input export raises tf_graph.ConversionError."""

    def __init__(self, saved_model: str | Path, pre: Preprocessor | None = None,
                 batch_size: int = 1, layout: str = "NHWC",
                 num_classes: int | None = None, box_frame: str = "true_image") -> None:
        tf = optional.tensorflow()
        for gpu in tf.config.list_physical_devices("GPU"):  # leave GPU memory to TensorRT
            with contextlib.suppress(RuntimeError):  # TensorFlow's GPU already initialised
                tf.config.experimental.set_memory_growth(gpu, True)
        self._tf = tf
        self._saved_model, self.detect = serving_signature(Path(saved_model))
        self.layout = layout
        self.metadata = {"class_offset": 1, "input_format": layout, "num_classes": num_classes,
                         "batch_size": batch_size}
        if MASKS_OUTPUT in self.detect.structured_outputs:  # Mask R-CNN, as the ONNX says it
            self.metadata["masks"] = {"output": MASKS_OUTPUT}
        self.input_shape = None
        self.takes_photos = pre is not None and pre.kind == KEEP_ASPECT_RATIO
        if self.takes_photos:
            self.metadata["box_frame"] = box_frame
        if pre is not None:
            self.metadata["preprocessor"] = pre.to_dict()
            hw = [pre.height, pre.width]
            self.input_shape = [batch_size, 3, *hw] if layout == "NCHW" else [batch_size, *hw, 3]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the signature for a float32 batch in ``layout``."""
        return self._run(batch.transpose(0, 2, 3, 1) if self.layout == "NCHW" else batch)

    def infer_photos(self, paths: list[Path]) -> dict[str, np.ndarray]:
        """The detection outputs (metadata.OUTPUT_NAMES, and a Mask R-CNN's masks) of each
        photo file, decoded as the batches decode it and run alone (photos differ in size),
        stacked as one batch."""
        found = [self._run(load_image(path)[None]) for path in paths]
        return {name: np.concatenate([outputs[name] for outputs in found])
                for name in (*OUTPUT_NAMES, MASKS_OUTPUT) if name in found[0]}

    def _run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        out = self.detect(input_tensor=self._tf.constant(images, self._tf.float32))
        return {key: value.numpy() for key, value in out.items()}


def have_tensorflow() -> bool:
    """Whether TensorFlow is installed in this Python (without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None
