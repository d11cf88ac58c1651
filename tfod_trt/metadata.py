"""What travels inside the ONNX file: the converter's metadata, the graph's fixed names."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

# the graph's fixed names, here for the modules that import them from this one
from tfod_trt.graph_names import (  # noqa: F401
    BATCH_DIM,
    INPUT_NAME,
    MASKS_OUTPUT,
    OUTPUT_NAMES,
    TRUE_IMAGE_SHAPE,
)

METADATA_KEY = "tfod_trt"
DYNAMIC_BATCH = -1  # create_onnx.py --batch_size: a graph that takes any batch
NMS_PLUGIN = "EfficientNMS_TRT"

PLUGIN_OPS = {NMS_PLUGIN, "CropAndResize", "CropAndResizeDynamic"}


def set_metadata(model: onnx.ModelProto, metadata: dict) -> None:
    """Stores what inference needs later (preprocessing, classes, ...) in the ONNX file."""
    entry = next((p for p in model.metadata_props if p.key == METADATA_KEY), None)
    if entry is None:
        entry = model.metadata_props.add()
        entry.key = METADATA_KEY
    entry.value = json.dumps(metadata, sort_keys=True)


def read_metadata(model: onnx.ModelProto | str | Path) -> dict:
    """The converter's metadata of an ONNX file, or {} when it has none."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return {}


def static_batch_size(metadata: dict) -> int | None:
    """The graph's fixed batch size, or None for a dynamic-batch graph (metadata
    ``"dynamic_batch": true``, ``"batch_size": null``) or metadata that does not say."""
    if metadata.get("dynamic_batch"):
        return None
    size = metadata.get("batch_size")
    return int(size) if isinstance(size, int) and size > 0 else None
