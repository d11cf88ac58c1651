"""The config.pbtxt of each model of a served detector (as dicts for pbtxt.to_text): the
detector (a TensorRT plan, or its ONNX on the CPU as a Python model), the Python preprocessing
and postprocessing, and the ensemble joining them.

The ensemble, preprocessing and postprocessing take whole requests (max_batch_size 0: a
request's images are one batch); a dynamic-batch engine batches requests together itself.
"""

from __future__ import annotations

import json

from tfod_trt.graph_names import OUTPUT_NAMES
from tfod_trt.serve.detector_io import FP32, INT32, DetectorIO, TensorSpec
from tfod_trt.serve.interface import (
    BOXES,
    CLASSES,
    IMAGE_INDEX,
    IMAGE_SCALE,
    IMAGES,
    LABELS,
    SCALE_FIELDS,
    SCORES,
    SETTINGS,
)
from tfod_trt.serve.pbtxt import Enum

STRING = "TYPE_STRING"
IMAGES_SPEC = TensorSpec(IMAGES, STRING, (-1,))
SCALE_SPEC = TensorSpec(IMAGE_SCALE, INT32, (-1, SCALE_FIELDS))
RESULT_SPECS = (TensorSpec(BOXES, FP32, (-1, 4)), TensorSpec(SCORES, FP32, (-1,)),
                TensorSpec(CLASSES, INT32, (-1,)), TensorSpec(LABELS, STRING, (-1,)),
                TensorSpec(IMAGE_INDEX, INT32, (-1,)))


def tensor(spec: TensorSpec, dims: tuple[int, ...] | None = None) -> dict:
    return {"name": spec.name, "data_type": Enum(spec.data_type),
            "dims": list(spec.dims if dims is None else dims)}


def full_tensors(io: DetectorIO, specs: tuple[TensorSpec, ...]) -> list[dict]:
    """Tensors of a whole request (batch dimension included) that the detector takes or
    gives."""
    return [tensor(spec, io.full_dims(spec)) for spec in specs]


def python_model(name: str, inputs: list[dict], outputs: list[dict], instances: int,
                 settings: dict | None = None) -> dict:
    """A Python model of the repository (its settings, if any, as a JSON parameter)."""
    config = {"name": name, "backend": "python", "max_batch_size": 0, "input": inputs,
              "output": outputs,
              "instance_group": [{"count": instances, "kind": Enum("KIND_CPU")}]}
    if settings is not None:
        config["parameters"] = [{"key": SETTINGS, "value": {
            "string_value": json.dumps(settings, sort_keys=True)}}]
    return config


def detector_config(name: str, io: DetectorIO, instances: int, plan: bool) -> dict:
    """The engine (``plan``: platform tensorrt_plan, on the GPU), or its CPU stand-in (a
    Python model running the ONNX; static batch only)."""
    if not plan:
        return python_model(name, full_tensors(io, io.inputs), full_tensors(io, io.outputs),
                            instances)
    config: dict = {"name": name, "platform": "tensorrt_plan"}
    if io.dynamic:
        config["max_batch_size"] = io.max_batch
        config["input"] = [tensor(spec) for spec in io.inputs]
        config["output"] = [tensor(spec) for spec in io.outputs]
        config["dynamic_batching"] = {}
    else:
        config["max_batch_size"] = 0
        config["input"] = full_tensors(io, io.inputs)
        config["output"] = full_tensors(io, io.outputs)
    config["instance_group"] = [{"count": instances, "kind": Enum("KIND_GPU")}]
    return config


def preprocess_config(name: str, io: DetectorIO, settings: dict, instances: int) -> dict:
    """Encoded images -> the detector's inputs and image_scale."""
    return python_model(name, [tensor(IMAGES_SPEC)],
                        [*full_tensors(io, io.inputs), tensor(SCALE_SPEC)], instances, settings)


def postprocess_config(name: str, io: DetectorIO, settings: dict, instances: int) -> dict:
    """The detector's outputs and image_scale -> the request's detections."""
    return python_model(name, [*full_tensors(io, io.outputs), tensor(SCALE_SPEC)],
                        [tensor(spec) for spec in RESULT_SPECS], instances, settings)


def _step(model: str, inputs: list[str], outputs: list[str]) -> dict:
    """An ensemble step; each model tensor maps to the ensemble tensor of the same name."""
    return {"model_name": model, "model_version": -1,
            "input_map": [{"key": n, "value": n} for n in inputs],
            "output_map": [{"key": n, "value": n} for n in outputs]}


def ensemble_config(name: str, io: DetectorIO, preprocess: str, detector: str,
                    postprocess: str) -> dict:
    """images -> preprocess -> detector -> postprocess -> detections."""
    detector_inputs = [spec.name for spec in io.inputs]
    return {
        "name": name, "platform": "ensemble", "max_batch_size": 0,
        "input": [tensor(IMAGES_SPEC)],
        "output": [tensor(spec) for spec in RESULT_SPECS],
        "ensemble_scheduling": {"step": [
            _step(preprocess, [IMAGES], [*detector_inputs, IMAGE_SCALE]),
            _step(detector, detector_inputs, list(OUTPUT_NAMES)),
            _step(postprocess, [*OUTPUT_NAMES, IMAGE_SCALE], [spec.name for spec in RESULT_SPECS]),
        ]},
    }
