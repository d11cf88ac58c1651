"""The config.pbtxt of each model of a served detector (as dicts for pbtxt.to_text): the
detector (a TensorRT plan, or its ONNX on the CPU as a Python model), the Python preprocessing
and postprocessing, and the ensemble joining them.

A static-batch detector takes whole requests (max_batch_size 0: a request's images are one
batch, padded to the engine's); with a dynamic-batch engine every model batches
(max_batch_size = the profile's max, dynamic_batching): Triton puts the requests that arrive
together into one batch, and each tensor's first dimension is the request's images.
"""

from __future__ import annotations

import json

from tfod_trt.serve.detector_io import DetectorIO, TensorSpec
from tfod_trt.serve.interface import (
    DETECTOR_OUTPUT,
    IMAGE_ERROR,
    IMAGE_SCALE,
    IMAGES,
    INT32,
    MAX_IMAGES,
    RESULTS,
    SCALE_FIELDS,
    SETTINGS,
    STRING,
    image_dims,
    result_dims,
)
from tfod_trt.serve.pbtxt import Enum


def tensor(spec: TensorSpec, dims: tuple[int, ...] | None = None) -> dict:
    return {"name": spec.name, "data_type": Enum(spec.data_type),
            "dims": list(spec.dims if dims is None else dims)}


def full_tensors(io: DetectorIO, specs: tuple[TensorSpec, ...]) -> list[dict]:
    """Tensors of a whole request (batch dimension included) that the detector takes or
    gives."""
    return [tensor(spec, io.full_dims(spec)) for spec in specs]


def detector_tensors(io: DetectorIO, specs: tuple[TensorSpec, ...]) -> list[dict]:
    """The detector's tensors as another model of the repository declares them: one image's
    dims where the models batch, else the whole batch's."""
    return [tensor(spec) for spec in specs] if io.dynamic else full_tensors(io, specs)


def request_tensors(io: DetectorIO, specs: list[TensorSpec]) -> list[dict]:
    """Tensors with one row per image of the request: one image's dims where the models batch,
    else with a first dimension of -1."""
    return [tensor(spec, spec.dims if io.dynamic else (-1, *spec.dims)) for spec in specs]


def images_spec() -> TensorSpec:
    return TensorSpec(IMAGES, *image_dims())


def side_specs() -> list[TensorSpec]:
    """What the preprocessing hands the postprocessing: each image's sizes and read error."""
    return [TensorSpec(IMAGE_SCALE, INT32, (SCALE_FIELDS,)), TensorSpec(IMAGE_ERROR, STRING, (1,))]


def result_specs(io: DetectorIO) -> list[TensorSpec]:
    """The answer's tensors (interface.py), K = the detector's max detections."""
    return [TensorSpec(name, *dims) for name, dims in result_dims(io.max_detections).items()]


def renamed_outputs(io: DetectorIO) -> tuple[TensorSpec, ...]:
    """The detector's outputs under the postprocessing's input names."""
    return tuple(TensorSpec(DETECTOR_OUTPUT.format(spec.name), spec.data_type, spec.dims)
                 for spec in io.outputs)


def batching(config: dict, io: DetectorIO, batcher: bool = True) -> dict:
    """``config`` with the batch settings of the detector's models (an ensemble schedules its
    steps: no ``batcher`` of its own)."""
    if not io.dynamic:
        return {**config, "max_batch_size": 0}
    config = {**config, "max_batch_size": io.max_batch}
    return {**config, "dynamic_batching": {}} if batcher else config


def parameter(key: str, value: str) -> dict:
    return {"key": key, "value": {"string_value": value}}


def python_model(name: str, io: DetectorIO, inputs: list[dict], outputs: list[dict],
                 instances: int, settings: dict | None = None) -> dict:
    """A Python model of the repository (its settings, if any, as a JSON parameter)."""
    config = batching({"name": name, "backend": "python", "input": inputs, "output": outputs,
                       "instance_group": [{"count": instances, "kind": Enum("KIND_CPU")}]}, io)
    if settings is not None:
        config["parameters"] = [parameter(SETTINGS, json.dumps(settings, sort_keys=True))]
    return config


def detector_config(name: str, io: DetectorIO, instances: int, plan: bool) -> dict:
    """The engine (``plan``: platform tensorrt_plan, on the GPU), or its CPU stand-in (a
    Python model running the ONNX; static batch only)."""
    inputs, outputs = detector_tensors(io, io.inputs), detector_tensors(io, io.outputs)
    if not plan:
        return python_model(name, io, inputs, outputs, instances)
    return batching({"name": name, "platform": "tensorrt_plan", "input": inputs,
                     "output": outputs,
                     "instance_group": [{"count": instances, "kind": Enum("KIND_GPU")}]}, io)


def preprocess_config(name: str, io: DetectorIO, settings: dict, instances: int) -> dict:
    """Encoded images -> the detector's inputs, image_scale and image_error."""
    return python_model(name, io, request_tensors(io, [images_spec()]),
                        [*detector_tensors(io, io.inputs), *request_tensors(io, side_specs())],
                        instances, settings)


def postprocess_config(name: str, io: DetectorIO, settings: dict, instances: int) -> dict:
    """The detector's outputs, image_scale and image_error -> the answer."""
    return python_model(name, io, [*detector_tensors(io, renamed_outputs(io)),
                                   *request_tensors(io, side_specs())],
                        request_tensors(io, result_specs(io)), instances, settings)


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict:
    """An ensemble step: model tensor name -> ensemble tensor name, for its inputs and
    outputs."""
    return {"model_name": model, "model_version": -1,
            "input_map": [{"key": k, "value": v} for k, v in inputs.items()],
            "output_map": [{"key": k, "value": v} for k, v in outputs.items()]}


def _same(names: list[str]) -> dict[str, str]:
    return {name: name for name in names}


def ensemble_config(name: str, io: DetectorIO, preprocess: str, detector: str,
                    postprocess: str) -> dict:
    """images -> preprocess -> detector -> postprocess -> the answer."""
    detector_inputs = [spec.name for spec in io.inputs]
    side = [spec.name for spec in side_specs()]
    raw = {spec.name: DETECTOR_OUTPUT.format(spec.name) for spec in io.outputs}
    config = batching({
        "name": name, "platform": "ensemble",
        "input": request_tensors(io, [images_spec()]),
        "output": request_tensors(io, result_specs(io)),
        "ensemble_scheduling": {"step": [
            _step(preprocess, _same([IMAGES]), _same([*detector_inputs, *side])),
            _step(detector, _same(detector_inputs), raw),
            _step(postprocess, _same([*raw.values(), *side]), _same(list(RESULTS))),
        ]},
    }, io, batcher=False)
    if not io.dynamic:  # max_batch_size 0 does not tell clients how many images a request takes
        config["parameters"] = [parameter(MAX_IMAGES, str(io.max_batch))]
    return config
