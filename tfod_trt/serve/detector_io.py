"""The detector's inputs and outputs as Triton declares them (names, data types, dims) and the
batch sizes it takes: from an engine's metadata (``<engine>.json``: the ONNX metadata of
create_onnx.py and build_engine.py's "engine" entry) or from an ONNX graph."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from tfod_trt.config.preprocessor import LAYOUTS, Preprocessor
from tfod_trt.graph_names import INPUT_NAME, OUTPUT_NAMES, TRUE_IMAGE_SHAPE

# NumPy dtype -> Triton's data type (model_config.proto's DataType)
# A dynamic-batch ONNX on the CPU stand-in has no profile to bound its batch: Triton batches up
# to this many images (the CPU runtime gains nothing from larger batches).
DYNAMIC_ONNX_MAX_BATCH = 8
TRITON_TYPES = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.float16): "TYPE_FP16",
                np.dtype(np.int32): "TYPE_INT32", np.dtype(np.int64): "TYPE_INT64",
                np.dtype(np.uint8): "TYPE_UINT8", np.dtype(np.bool_): "TYPE_BOOL"}
FP32, INT32 = "TYPE_FP32", "TYPE_INT32"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: ``dims`` are one image's (no batch dimension)."""

    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class DetectorIO:
    """The detector's tensors and batch sizes: a static batch has min_batch == max_batch."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    min_batch: int
    max_batch: int
    dynamic: bool

    def full_dims(self, spec: TensorSpec) -> tuple[int, ...]:
        """A tensor's dims with the batch dimension: -1 where the batch is dynamic."""
        return (-1 if self.dynamic else self.max_batch, *spec.dims)

    @property
    def max_detections(self) -> int:
        """K: the detections each image's outputs have room for."""
        return next(spec.dims[0] for spec in self.outputs if spec.name == OUTPUT_NAMES[2])

    @property
    def takes_true_image_shape(self) -> bool:
        return any(spec.name == TRUE_IMAGE_SHAPE for spec in self.inputs)


def _required(metadata: dict, key: str, source: Path):
    if metadata.get(key) is None:
        raise ValueError(f"{source}: no {key!r} in the metadata: not the metadata of a graph "
                         "of create_onnx.py")
    return metadata[key]


def detection_outputs(max_detections: int) -> tuple[TensorSpec, ...]:
    """The four outputs of create_onnx.py's graphs (EfficientNMS_TRT's), per image."""
    shapes = {"num_detections": (INT32, (1,)), "detection_boxes": (FP32, (max_detections, 4)),
              "detection_scores": (FP32, (max_detections,)),
              "detection_classes": (INT32, (max_detections,))}
    return tuple(TensorSpec(name, *shapes[name]) for name in OUTPUT_NAMES)


def io_from_metadata(metadata: dict, source: Path) -> DetectorIO:
    """What a graph of create_onnx.py takes and gives, from its metadata; the batch from the
    engine's optimization profile where build_engine.py recorded one, else the static
    ``batch_size``."""
    stored = _required(metadata, "preprocessor", source)
    try:
        pre = Preprocessor.from_dict(stored)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: unusable preprocessor in the metadata ({err})") from err
    layout = metadata.get("input_format") or "NHWC"
    if layout not in LAYOUTS:
        raise ValueError(f"{source}: unknown input_format {layout!r} in its metadata")
    image = (pre.height, pre.width, 3) if layout == "NHWC" else (3, pre.height, pre.width)
    inputs = [TensorSpec(INPUT_NAME, FP32, image)]
    if metadata.get("true_image_shape"):
        inputs.append(TensorSpec(TRUE_IMAGE_SHAPE, FP32, (2,)))
    outputs = detection_outputs(int(_required(metadata, "max_detections", source)))
    profile = ((metadata.get("engine") or {}).get("profile") or {}).get(INPUT_NAME)
    if profile:  # (min, opt, max) shapes of the image input
        return DetectorIO(tuple(inputs), outputs, int(profile[0][0]), int(profile[2][0]), True)
    batch = int(_required(metadata, "batch_size", source))
    return DetectorIO(tuple(inputs), outputs, batch, batch, False)


def _spec(value: onnx.ValueInfoProto, source: Path) -> tuple[TensorSpec, int]:
    """(the tensor without its batch dimension, that dimension: -1 where not static)."""
    tensor = value.type.tensor_type
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
    if dtype not in TRITON_TYPES:
        raise ValueError(f"{source}: the tensor {value.name!r} is {dtype}, a type the "
                         "repository's models do not exchange")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
            for d in tensor.shape.dim]
    return TensorSpec(value.name, TRITON_TYPES[dtype], tuple(dims[1:])), dims[0]


def io_from_onnx(model: onnx.ModelProto, source: Path) -> DetectorIO:
    """What an ONNX graph of create_onnx.py takes and gives (its detection outputs; --debug
    ones are left out), read from the graph itself: its static batch, or a dynamic one served
    in batches of 1 to DYNAMIC_ONNX_MAX_BATCH."""
    inputs, batches = zip(*(_spec(value, source) for value in model.graph.input), strict=True)
    graph_outputs = {value.name: value for value in model.graph.output}
    outputs = tuple(_spec(graph_outputs[name], source)[0] for name in OUTPUT_NAMES
                    if name in graph_outputs)
    if INPUT_NAME not in [spec.name for spec in inputs]:
        raise ValueError(f"{source}: has no {INPUT_NAME!r} input: not a graph made by "
                         "create_onnx.py")
    batch = batches[0]
    if all(b == -1 for b in batches):  # create_onnx.py --batch_size -1
        return DetectorIO(tuple(inputs), outputs, 1, DYNAMIC_ONNX_MAX_BATCH, True)
    if batch < 1 or any(b != batch for b in batches):
        raise ValueError(f"{source}: its inputs have no common batch size ({list(batches)}); "
                         "convert it with create_onnx.py --batch_size")
    return DetectorIO(tuple(inputs), outputs, batch, batch, False)
