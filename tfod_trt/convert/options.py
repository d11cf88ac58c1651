"""What every converted graph shares: the conversion options, NMS settings, the metadata stored
in the ONNX file, the head-shape check against the config, and the final export."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import onnx_graphsurgeon as gs

from tfod_trt.config.text_proto import parse_text_proto
from tfod_trt.convert.graph_edits import check_model
from tfod_trt.metadata import BATCH_DIM, DYNAMIC_BATCH, TRUE_IMAGE_SHAPE, set_metadata

DEFAULT_OPSET = 17  # the newest opset TensorRT 8.6's parser reads


@dataclass
class ConversionOptions:
    """Overrides of the pipeline config and output choices (None keeps the config's value)."""

    batch_size: int = 1  # DYNAMIC_BATCH (-1): any batch, the dimension named BATCH_DIM
    input_format: str = "NHWC"
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    opset: int = DEFAULT_OPSET
    debug: tuple[str, ...] = ()
    tf2onnx_path: Path | None = None
    # the `true_image_shape` input (None: present for keep_aspect_ratio models)
    true_image_shape: bool | None = None
    # SSD: "per_class", one EfficientNMS_TRT segment per image and class (convert/class_nms.py),
    # or "single", one per image over all classes (NVIDIA's sample's form)
    nms: str = "per_class"

    @property
    def dynamic_batch(self) -> bool:
        return self.batch_size == DYNAMIC_BATCH

    @property
    def static_batch(self) -> int | None:
        """The fixed batch size, None for a dynamic batch (TensorFlow's unknown dimension)."""
        return None if self.dynamic_batch else self.batch_size

    @property
    def batch_dim(self) -> int | str:
        """The batch dimension of the graph's tensors: the static size, or BATCH_DIM."""
        return BATCH_DIM if self.dynamic_batch else self.batch_size


def check_thresholds(score: float, iou: float, max_detections: int) -> None:
    """Refuses values EfficientNMS_TRT cannot honour (never silently changed)."""
    if not 0.0 <= score <= 1.0 or math.isnan(score):
        raise ValueError(f"score threshold {score} must lie in [0, 1]")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"IoU threshold {iou} must lie in (0, 1]")
    if max_detections < 1:
        raise ValueError(f"max detections {max_detections} must be at least 1")


def nms_settings(config, options: ConversionOptions) -> tuple[float, float, int]:
    """(score threshold, IoU threshold, detections per image): the options over the config's."""
    score = config.score_threshold if options.score_threshold is None else options.score_threshold
    iou = config.iou_threshold if options.iou_threshold is None else options.iou_threshold
    top_k = config.max_total_detections if options.max_detections is None else (
        options.max_detections)
    check_thresholds(score, iou, top_k)
    return score, iou, top_k


def wants_true_image_shape(config, options: ConversionOptions) -> bool:
    """Whether the graph gets the `true_image_shape` input: TFOD clips the detections (Faster
    R-CNN also the proposals) to the unpadded image given by its true_image_shapes. By default
    for keep_aspect_ratio (padded) models; fixed_shape images fill the whole input."""
    if options.true_image_shape is None:
        return config.preprocessor.kind == "keep_aspect_ratio"
    return options.true_image_shape


def ssd_change_coordinate_frame(config) -> bool:
    """SSD's batch_non_max_suppression.change_coordinate_frame (TFOD's default: true): whether
    TFOD normalises its detections to the clip window (the true image) or leaves them
    normalised to the padded input."""

    root = parse_text_proto(Path(config.path).read_text(errors="replace"), str(config.path))
    value = root.get1("model.ssd.post_processing.batch_non_max_suppression."
                      "change_coordinate_frame", True)
    return value not in (False, "false", "False", 0)


def tensorflow_box_frame(config) -> str:
    """What the SavedModel's detection boxes are normalised to ("true_image" or "input", as
    the metadata's box_frame): the true image inside the padded input (Faster R-CNN, SSD with
    change_coordinate_frame), or the padded input (SSD without)."""
    if config.meta_arch == "ssd" and not ssd_change_coordinate_frame(config):
        return "input"
    return "true_image"


def metadata(config, saved_model: Path, options: ConversionOptions, score: float, iou: float,
             top_k: int, true_image_shape: bool = False) -> dict:
    """What inference needs later, stored in the ONNX file (see onnx_utils.set_metadata).
    `true_image_shape`: the graph takes that input, and its detection boxes are normalised to
    the true (unpadded) image instead of the network input."""

    scale, offset = config.normalization
    return {
        "true_image_shape": TRUE_IMAGE_SHAPE if true_image_shape else None,
        "box_frame": "true_image" if true_image_shape else "input",
        "format_version": 1,
        "meta_arch": config.meta_arch,
        "feature_extractor": config.feature_extractor,
        "num_classes": config.num_classes,
        "preprocessor": config.preprocessor.to_dict(),
        "input_format": options.input_format,
        "batch_size": options.static_batch,
        "dynamic_batch": options.dynamic_batch,
        "normalization": {"scale": list(scale), "offset": list(offset)},
        "score_threshold": score,
        "iou_threshold": iou,
        "max_detections": top_k,
        "class_offset": 0,
        "source": {"pipeline_config": str(config.path), "saved_model": str(saved_model)},
    }


def finish(graph, outputs: list, options: ConversionOptions, meta: dict):
    """Sets the outputs (plus --debug ones), exports, stamps opset and metadata, checks."""


    graph.outputs = outputs + debug_outputs(graph, options.debug)
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    model.opset_import[0].version = options.opset
    set_metadata(model, meta)
    check_model(model)
    return model


def check_head_shapes(config, logits_shape, encodings_shape, num_anchors: int) -> None:
    """Catches a pipeline config that does not belong to the SavedModel."""
    columns = logits_shape[-1]
    if columns != config.num_classes + int(config.add_background_class):
        raise ValueError(
            f"{config.path}: num_classes is {config.num_classes}, but the SavedModel predicts "
            f"{columns} class columns; use the pipeline.config exported with this SavedModel"
        )
    if logits_shape[1] != num_anchors or encodings_shape[1] != num_anchors:
        raise ValueError(
            f"{config.path}: at {config.preprocessor.height}x{config.preprocessor.width} the "
            f"model has {num_anchors} anchors but its heads give {logits_shape[1]} predictions; "
            "the config's input size does not match the SavedModel"
        )


def debug_outputs(graph, names: tuple[str, ...]) -> list:
    """Extra graph outputs for `--debug NODE` (a node name or a tensor name)."""
    tensors = graph.tensors()
    extra = []
    for name in names:
        node = next((n for n in graph.nodes if n.name == name), None)
        found = list(node.outputs) if node else ([tensors[name]] if name in tensors else [])
        if not found:
            raise ValueError(f"--debug {name}: no such node or tensor in the converted graph")
        extra.extend(found)
    return extra
