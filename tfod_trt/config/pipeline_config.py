"""Reads a TFOD pipeline.config without the TFOD API: a small protobuf text-format parser and
the few fields the converter needs, gathered in `ModelConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.config.text_proto import ConfigError, Message, parse_text_proto

# Normalisation of each feature extractor, in TFOD's own constants: y = x * scale + offset per
# channel (x in 0..255 RGB). These are the feature extractors' `preprocess` methods.
MOBILENET_NORM = ((2.0 / 255.0,) * 3, (-1.0,) * 3)  # also Inception-ResNet v2's
RESNET_NORM = ((1.0,) * 3, (-123.68, -116.779, -103.939))
# EfficientNet (EfficientDet): (x / 255 - mean) / std with ImageNet's mean and std per channel.
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EFFICIENTNET_NORM = (tuple(1.0 / (255.0 * s) for s in _IMAGENET_STD),
                     tuple(-m / s for m, s in zip(_IMAGENET_MEAN, _IMAGENET_STD, strict=True)))
SUPPORTED_EXTRACTORS = {
    "ssd": {
        "ssd_mobilenet_v1_keras": MOBILENET_NORM,
        "ssd_mobilenet_v1_fpn_keras": MOBILENET_NORM,
        "ssd_mobilenet_v2_keras": MOBILENET_NORM,
        "ssd_mobilenet_v2_fpn_keras": MOBILENET_NORM,
        "ssd_resnet50_v1_fpn_keras": RESNET_NORM,
        "ssd_resnet101_v1_fpn_keras": RESNET_NORM,
        "ssd_resnet152_v1_fpn_keras": RESNET_NORM,
        **{f"ssd_efficientnet-b{n}_bifpn_keras": EFFICIENTNET_NORM for n in range(8)},
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
# TFOD builds Faster R-CNN's box coder itself (target_assigner 'FasterRCNN'), for both stages;
# they are also the faster_rcnn_box_coder proto's defaults.
FASTER_RCNN_BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
MASK_PREDICTOR = "second_stage_box_predictor.mask_rcnn_box_predictor"


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
class MaskConfig:
    """Mask R-CNN's masks (number_of_stages 3): one per detection, height x width, in the box."""

    height: int
    width: int


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
    masks: MaskConfig | None = None  # Mask R-CNN only


def load_pipeline_config(path: str | Path) -> ModelConfig:
    """Reads and checks a pipeline.config; errors name the file and the unsupported part."""
    path = _config_file(path)
    root = parse_text_proto(path.read_text(errors="replace"), str(path))
    arch, body = _meta_architecture(root, path)
    extractor = _feature_extractor(body, arch, path)
    normalization = SUPPORTED_EXTRACTORS[arch][extractor]
    preprocessor = _preprocessor(body.get1("image_resizer", Message()), path)
    if arch == "ssd":
        post = body.get1("post_processing", Message())
        box_scales = _ssd_box_scales(body, path)
        # SSD normalises before resizing, so its padding is 0 after normalisation.
        scale, offset = normalization
        preprocessor = preprocessor.with_pad_value(
            tuple(-o / s for s, o in zip(scale, offset, strict=True)))
        two_stage = masks = None
    else:
        post = body.get1("second_stage_post_processing", Message())
        box_scales = FASTER_RCNN_BOX_SCALES
        two_stage = _two_stage(body, path)
        masks = _masks(body)
    nms = post.get1("batch_non_max_suppression", Message())
    score_converter = _score_converter(post, arch, path)
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
        masks=masks,
    )


def _config_file(path: str | Path) -> Path:
    """The pipeline.config at ``path`` (a file, or a folder holding one), which must exist."""
    path = Path(path)
    if path.is_dir():
        path = path / "pipeline.config"
    if not path.is_file():
        raise ConfigError(f"{path}: pipeline config not found")
    return path


def _meta_architecture(root: Message, path: Path) -> tuple[str, Message]:
    """The model block's meta-architecture and its body, a supported one."""
    model = root.get1("model")
    if not isinstance(model, Message) or not model:
        raise ConfigError(f"{path}: no 'model {{ ... }}' block")
    arch = next(iter(model))
    body = model.get1(arch)
    if arch == "faster_rcnn":
        _check_two_stage_variant(body, path)
    if arch == "center_net":
        raise ConfigError(
            f"{path}: CenterNet models (meta-architecture 'center_net') are not supported: they "
            "find objects as heatmap peaks, without the anchors and per-class NMS that the "
            "TensorRT graph is built on; supported: SSD (incl. EfficientDet) and Faster R-CNN "
            "(incl. Mask R-CNN)"
        )
    if arch not in SUPPORTED_EXTRACTORS:
        raise ConfigError(
            f"{path}: meta-architecture '{arch}' is not supported; supported: "
            f"{', '.join(SUPPORTED_EXTRACTORS)}"
        )
    return arch, body


def _feature_extractor(body: Message, arch: str, path: Path) -> str:
    """The feature extractor's type, one supported for ``arch``."""
    extractor = body.get1("feature_extractor.type", "")
    if extractor not in SUPPORTED_EXTRACTORS[arch]:
        raise ConfigError(
            f"{path}: feature extractor '{extractor}' is not supported for {arch}; supported: "
            f"{', '.join(sorted(SUPPORTED_EXTRACTORS[arch]))}"
        )
    return extractor


def _ssd_box_scales(body: Message, path: Path) -> tuple[float, ...]:
    """An SSD's box coder scale factors (y, x, h, w); only the faster_rcnn_box_coder."""
    coder = body.get1("box_coder.faster_rcnn_box_coder")
    if coder is None:
        raise ConfigError(f"{path}: only the faster_rcnn_box_coder is supported")
    return tuple(  # a scale left out takes the proto's default, as TFOD's
        float(coder.get1(k, default)) for k, default in zip(
            ("y_scale", "x_scale", "height_scale", "width_scale"), FASTER_RCNN_BOX_SCALES,
            strict=True)
    )


def _score_converter(post: Message, arch: str, path: Path) -> str:
    """The post-processing's score converter (Faster R-CNN: SOFTMAX only)."""
    score_converter = str(post.get1("score_converter", "IDENTITY"))
    if arch == "faster_rcnn" and score_converter != "SOFTMAX":
        raise ConfigError(
            f"{path}: second_stage_post_processing.score_converter is {score_converter}; "
            "only SOFTMAX is supported for Faster R-CNN"
        )
    return score_converter


def _check_two_stage_variant(body: Message, path: Path) -> None:
    """Context R-CNN and RPN-only models get a clear refusal, so does a third stage without
    the mask head it would run."""
    stages = body.get1("number_of_stages", 2)
    kind = None
    if "context_config" in body:
        kind = "Context R-CNN"
    elif stages == 3 and not body.get1(f"{MASK_PREDICTOR}.predict_instance_masks", False):
        raise ConfigError(
            f"{path}: number_of_stages: 3 (Mask R-CNN) needs the mask head: set "
            f"{MASK_PREDICTOR}.predict_instance_masks: true")
    elif stages not in (2, 3):
        kind = f"Faster R-CNN with number_of_stages {stages} (RPN only)"
    if kind:
        raise ConfigError(f"{path}: {kind} models are not supported yet by create_onnx.py")


def _masks(body: Message) -> MaskConfig | None:
    """Mask R-CNN's mask size; None for two stages (TFOD predicts no masks then, whatever the
    box predictor says)."""
    if body.get1("number_of_stages", 2) != 3:
        return None
    predictor = body.get1(MASK_PREDICTOR, Message())
    return MaskConfig(height=int(predictor.get1("mask_height", 15)),
                      width=int(predictor.get1("mask_width", 15)))


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
