"""Reads a TFOD pipeline.config without the TFOD API: a small protobuf text-format parser and
the few fields the converter needs, gathered in `ModelConfig`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from image_batcher import Preprocessor

TOKEN = re.compile(
    r"""\s+|\#[^\n]*|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<sym>[{}\[\]:,;<>])"""
    r"""|(?P<word>[^\s{}\[\]:,;<>"'#]+)"""
)


class ConfigError(ValueError):
    """A pipeline.config that cannot be read or is not supported."""


class Message(dict):
    """A text-format message: field name -> list of values (messages or scalars)."""

    def get1(self, path: str, default: Any = None) -> Any:
        """The first value at a dotted path (`ssd.image_resizer.fixed_shape_resizer.height`)."""
        node: Any = self
        for key in path.split("."):
            if not isinstance(node, Message) or key not in node:
                return default
            node = node[key][0]
        return node

    def all(self, key: str) -> list:
        return list(self.get(key, []))


def parse_text_proto(text: str, source: str = "<text>") -> Message:
    """Parses protobuf text format without a schema (scalars stay strings, bools, or numbers)."""
    tokens = []
    for match in TOKEN.finditer(text):
        if match.lastgroup:
            tokens.append((match.lastgroup, match.group(match.lastgroup)))
    position = 0

    def fail(reason: str) -> ConfigError:
        return ConfigError(f"{source}: cannot parse the pipeline config: {reason}")

    def scalar(kind: str, value: str) -> Any:
        if kind == "str":
            return bytes(value[1:-1], "utf-8").decode("unicode_escape")
        if value in ("true", "True"):
            return True
        if value in ("false", "False"):
            return False
        try:
            return int(value)
        except ValueError:
            pass
        try:
            return float(value.rstrip("fF")) if value[-1:] in "fF" and value[:-1] else float(value)
        except ValueError:
            return value  # an enum name

    def parse_message(closing: str | None) -> Message:
        nonlocal position
        message = Message()
        while position < len(tokens):
            kind, value = tokens[position]
            if kind == "sym" and value == closing:
                position += 1
                return message
            if kind == "sym" and value in ",;":
                position += 1
                continue
            if kind != "word":
                raise fail(f"expected a field name, found '{value}'")
            name = value
            position += 1
            if position < len(tokens) and tokens[position] == ("sym", ":"):
                position += 1
            if position >= len(tokens):
                raise fail(f"field '{name}' has no value")
            kind, value = tokens[position]
            values = message.setdefault(name, [])
            if kind == "sym" and value in "{<":
                position += 1
                values.append(parse_message("}" if value == "{" else ">"))
            elif kind == "sym" and value == "[":
                position += 1
                while tokens[position] != ("sym", "]"):
                    kind, value = tokens[position]
                    if kind == "sym" and value == ",":
                        position += 1
                        continue
                    values.append(scalar(kind, value))
                    position += 1
                position += 1
            else:
                values.append(scalar(kind, value))
                position += 1
        if closing is not None:
            raise fail(f"missing '{closing}'")
        return message

    try:
        return parse_message(None)
    except IndexError as exc:
        raise fail("unexpected end of file") from exc


# Normalisation of each feature extractor, in TFOD's own constants: y = x * scale + offset per
# channel (x in 0..255 RGB). These are the feature extractors' `preprocess` methods.
MOBILENET_NORM = ((2.0 / 255.0,) * 3, (-1.0,) * 3)  # also Inception-ResNet v2's
RESNET_NORM = ((1.0,) * 3, (-123.68, -116.779, -103.939))
SUPPORTED_EXTRACTORS = {
    "ssd": {
        "ssd_mobilenet_v1_keras": MOBILENET_NORM,
        "ssd_mobilenet_v1_fpn_keras": MOBILENET_NORM,
        "ssd_mobilenet_v2_keras": MOBILENET_NORM,
        "ssd_mobilenet_v2_fpn_keras": MOBILENET_NORM,
        "ssd_resnet50_v1_fpn_keras": RESNET_NORM,
        "ssd_resnet101_v1_fpn_keras": RESNET_NORM,
        "ssd_resnet152_v1_fpn_keras": RESNET_NORM,
    },
    "faster_rcnn": {
        "faster_rcnn_resnet50_keras": RESNET_NORM,
        "faster_rcnn_resnet101_keras": RESNET_NORM,
        "faster_rcnn_resnet152_keras": RESNET_NORM,
        "faster_rcnn_inception_resnet_v2_keras": MOBILENET_NORM,
        "faster_rcnn_resnet50_fpn_keras": RESNET_NORM,
        "faster_rcnn_resnet101_fpn_keras": RESNET_NORM,
        "faster_rcnn_resnet152_fpn_keras": RESNET_NORM,
    },
}
# TFOD builds Faster R-CNN's box coder itself (target_assigner 'FasterRCNN'), for both stages.
FASTER_RCNN_BOX_SCALES = (10.0, 10.0, 5.0, 5.0)


@dataclass
class TwoStageConfig:
    """Faster R-CNN's first stage (RPN proposals) and its crop of the feature map."""

    score_threshold: float
    iou_threshold: float
    max_proposals: int
    initial_crop_size: int
    maxpool_kernel_size: int
    maxpool_stride: int
    matmul_crop: bool  # use_matmul_crop_and_resize: TF crops without a cliff at the far edge


@dataclass
class ModelConfig:
    """What the converter needs from pipeline.config."""

    path: Path
    meta_arch: str
    feature_extractor: str
    num_classes: int
    preprocessor: Preprocessor
    score_threshold: float  # post-processing NMS (Faster R-CNN: the second stage's)
    iou_threshold: float
    max_detections_per_class: int
    max_total_detections: int
    score_converter: str
    box_scales: tuple[float, float, float, float]  # y, x, h, w
    add_background_class: bool
    normalization: tuple[tuple[float, ...], tuple[float, ...]] = field(repr=False, default=())
    two_stage: TwoStageConfig | None = None  # Faster R-CNN only


def load_pipeline_config(path: str | Path) -> ModelConfig:
    """Reads and checks a pipeline.config; errors name the file and the unsupported part."""
    path = Path(path)
    if path.is_dir():
        path = path / "pipeline.config"
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline config not found")
    root = parse_text_proto(path.read_text(errors="replace"), str(path))
    model = root.get1("model")
    if not isinstance(model, Message) or not model:
        raise ConfigError(f"{path}: no 'model {{ ... }}' block")
    arch = next(iter(model))
    body = model.get1(arch)
    if arch == "faster_rcnn":
        _check_two_stage_variant(body, path)
    if arch not in SUPPORTED_EXTRACTORS:
        raise ConfigError(
            f"{path}: meta-architecture '{arch}' is not supported; supported: "
            f"{', '.join(SUPPORTED_EXTRACTORS)}"
        )
    extractor = body.get1("feature_extractor.type", "")
    if extractor not in SUPPORTED_EXTRACTORS[arch]:
        raise ConfigError(
            f"{path}: feature extractor '{extractor}' is not supported for {arch}; supported: "
            f"{', '.join(sorted(SUPPORTED_EXTRACTORS[arch]))}"
        )
    normalization = SUPPORTED_EXTRACTORS[arch][extractor]
    preprocessor = _preprocessor(body.get1("image_resizer", Message()), path)
    if arch == "ssd":
        post = body.get1("post_processing", Message())
        coder = body.get1("box_coder.faster_rcnn_box_coder")
        if coder is None:
            raise ConfigError(f"{path}: only the faster_rcnn_box_coder is supported")
        box_scales = tuple(
            float(coder.get1(k, 1.0))
            for k in ("y_scale", "x_scale", "height_scale", "width_scale")
        )
        # SSD normalises before resizing, so its padding is 0 after normalisation.
        scale, offset = normalization
        preprocessor = preprocessor.with_pad_value(
            tuple(-o / s for s, o in zip(scale, offset, strict=True)))
        two_stage = None
    else:
        post = body.get1("second_stage_post_processing", Message())
        box_scales = FASTER_RCNN_BOX_SCALES
        two_stage = _two_stage(body, path)
    nms = post.get1("batch_non_max_suppression", Message())
    score_converter = str(post.get1("score_converter", "IDENTITY"))
    if arch == "faster_rcnn" and score_converter != "SOFTMAX":
        raise ConfigError(
            f"{path}: second_stage_post_processing.score_converter is {score_converter}; "
            "only SOFTMAX is supported for Faster R-CNN"
        )
    return ModelConfig(
        path=path,
        meta_arch=arch,
        feature_extractor=extractor,
        num_classes=int(body.get1("num_classes", 0)),
        preprocessor=preprocessor,
        score_threshold=float(nms.get1("score_threshold", 0.0)),
        iou_threshold=float(nms.get1("iou_threshold", 0.6)),
        max_detections_per_class=int(nms.get1("max_detections_per_class", 100)),
        max_total_detections=int(nms.get1("max_total_detections", 100)),
        score_converter=score_converter,
        box_scales=box_scales,
        add_background_class=bool(body.get1("add_background_class", True)),
        normalization=normalization,
        two_stage=two_stage,
    )


def _check_two_stage_variant(body: Message, path: Path) -> None:
    """Mask R-CNN, Context R-CNN and RPN-only models get a clear refusal."""
    stages = body.get1("number_of_stages", 2)
    masks = body.get1("second_stage_box_predictor.mask_rcnn_box_predictor."
                      "predict_instance_masks", False)
    kind = None
    if stages == 3 or masks:
        kind = "Mask R-CNN"
    elif "context_config" in body:
        kind = "Context R-CNN"
    elif stages != 2:
        kind = f"Faster R-CNN with number_of_stages {stages} (RPN only)"
    if kind:
        raise ConfigError(f"{path}: {kind} models are not supported yet by create_onnx.py")


def _two_stage(body: Message, path: Path) -> TwoStageConfig:
    crop = int(body.get1("initial_crop_size", 0))
    if crop < 1:
        raise ConfigError(f"{path}: initial_crop_size must be set for Faster R-CNN")
    return TwoStageConfig(
        score_threshold=float(body.get1("first_stage_nms_score_threshold", 0.0)),
        iou_threshold=float(body.get1("first_stage_nms_iou_threshold", 0.7)),
        max_proposals=int(body.get1("first_stage_max_proposals", 300)),
        initial_crop_size=crop,
        maxpool_kernel_size=int(body.get1("maxpool_kernel_size", 0)),
        maxpool_stride=int(body.get1("maxpool_stride", 0)),
        matmul_crop=bool(body.get1("use_matmul_crop_and_resize", False)),
    )


def _preprocessor(resizer: Message, path: Path) -> Preprocessor:
    fixed = resizer.get1("fixed_shape_resizer")
    if fixed is not None:
        return Preprocessor(
            kind="fixed_shape", height=int(fixed.get1("height")), width=int(fixed.get1("width"))
        )
    keep = resizer.get1("keep_aspect_ratio_resizer")
    if keep is not None:
        if not keep.get1("pad_to_max_dimension", False):
            raise ConfigError(
                f"{path}: keep_aspect_ratio_resizer without pad_to_max_dimension gives every "
                "image its own size; TensorRT needs one input size. Set pad_to_max_dimension: "
                "true and re-export"
            )
        low, high = int(keep.get1("min_dimension", 600)), int(keep.get1("max_dimension", 1024))
        return Preprocessor(
            kind="keep_aspect_ratio", height=high, width=high, min_dimension=low,
            max_dimension=high,
        )
    raise ConfigError(
        f"{path}: image_resizer must be fixed_shape_resizer or keep_aspect_ratio_resizer"
    )
