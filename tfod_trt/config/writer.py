"""Writes TFOD pipeline.config text from the few facts that make an architecture.

The TF2 zoo configs carry training details (optimizer, losses, samplers) that inference never
reads. `Architecture` holds only what decides the exported graph: the meta-architecture, the
feature extractor and its options, the image resizer, the anchors, the box coder scales, the box
predictor, the score converter, NMS, the class count and, for Faster R-CNN, the first stage and
its crop, and Mask R-CNN's mask head. `pipeline_config_text` writes them as the model block that
TFOD's `config_util` reads and `model_builder` builds (with the few training fields, such as the
losses, that TFOD needs to build a model at all), and `ARCHITECTURES` names the presets the tests
build fixture models from.

    from tfod_trt.config.writer import ARCHITECTURES, pipeline_config_text
    text = pipeline_config_text(dataclasses.replace(ARCHITECTURES["ssd_mobilenet_v2_320"],
                                                    num_classes=3))
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A text-format node: (field, value) pairs; a value is a scalar, a Token (an enum, written
# bare) or a nested node (a list of pairs).
Node = list[tuple[str, object]]


class Token(str):
    """An enum value (RELU_6, SIGMOID, ...): written without quotes."""


@dataclass(frozen=True)
class FixedShape:
    """fixed_shape_resizer: every image is stretched to height x width."""

    height: int
    width: int


@dataclass(frozen=True)
class KeepAspect:
    """keep_aspect_ratio_resizer min:max, padded to max x max (TensorRT needs one size)."""

    min_dimension: int
    max_dimension: int
    pad_to_max_dimension: bool = True


@dataclass(frozen=True)
class SsdAnchors:
    """ssd_anchor_generator: one anchor set per feature map, scales min..max."""

    num_layers: int = 6
    min_scale: float = 0.2
    max_scale: float = 0.95
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5, 3.0, 0.3333)


@dataclass(frozen=True)
class MultiscaleAnchors:
    """multiscale_anchor_generator: anchors on FPN levels min_level..max_level."""

    min_level: int = 3
    max_level: int = 7
    anchor_scale: float = 4.0
    aspect_ratios: tuple[float, ...] = (1.0, 2.0, 0.5)
    scales_per_octave: int = 2


@dataclass(frozen=True)
class GridAnchors:
    """grid_anchor_generator: Faster R-CNN's first-stage anchors, one grid at `stride`."""

    scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    stride: int = 16


@dataclass(frozen=True)
class BiFpn:
    """EfficientDet's BiFPN: `num_iterations` layers of `num_filters` channels on levels
    min_level..max_level; nodes fused by 'fast_attention' (ReLU weights, normalised) or 'sum'."""

    num_iterations: int
    num_filters: int
    min_level: int = 3
    max_level: int = 7
    combine_method: str = "fast_attention"


@dataclass(frozen=True)
class FeatureExtractor:
    """The backbone: its TFOD type and the options it takes (FPN levels where it has an FPN,
    the BiFPN of an EfficientDet)."""

    type: str
    depth_multiplier: float = 1.0
    min_depth: int = 16
    fpn_levels: tuple[int, int] | None = None  # (min_level, max_level)
    additional_layer_depth: int | None = None  # FPN depth (256 when unset)
    use_depthwise: bool = False
    bifpn: BiFpn | None = None


@dataclass(frozen=True)
class BoxPredictor:
    """An SSD box predictor: 'convolutional' (one conv per map) or 'weight_shared_convolutional'
    (a tower of `num_layers` convs of `depth` shared across FPN levels)."""

    kind: str = "convolutional"
    depth: int = 0
    num_layers: int = 0
    kernel_size: int = 1
    use_depthwise: bool = False
    share_prediction_tower: bool = False


@dataclass(frozen=True)
class Nms:
    """batch_non_max_suppression of the (second-stage) post-processing."""

    score_threshold: float = 1e-8
    iou_threshold: float = 0.6
    max_detections_per_class: int = 100
    max_total_detections: int = 100


@dataclass(frozen=True)
class FirstStage:
    """Faster R-CNN's proposals (RPN NMS) and the crop of the feature map per proposal."""

    nms_score_threshold: float = 0.0
    nms_iou_threshold: float = 0.7
    max_proposals: int = 300
    initial_crop_size: int = 14
    maxpool_kernel_size: int = 2
    maxpool_stride: int = 2
    matmul_crop: bool = True  # use_matmul_crop_and_resize
    anchors: GridAnchors = GridAnchors()


@dataclass(frozen=True)
class MaskHead:
    """Mask R-CNN's mask head (mask_rcnn_box_predictor, run on the final detections): the box
    classifier's features of each detection resized to height x width, `num_conv_layers` - 1
    3x3 convs of `conv_depth` channels (0: TFOD derives it from the feature depth and the class
    count), then one mask per class."""

    height: int = 33
    width: int = 33
    conv_depth: int = 0
    num_conv_layers: int = 4


@dataclass(frozen=True)
class Architecture:
    """The facts of one detection architecture; `pipeline_config_text` writes the config."""

    meta_arch: str  # "ssd" or "faster_rcnn"
    feature_extractor: FeatureExtractor
    image_resizer: FixedShape | KeepAspect
    nms: Nms = Nms()
    num_classes: int = 90
    score_converter: str = "SIGMOID"
    anchors: SsdAnchors | MultiscaleAnchors | None = None  # SSD only
    box_predictor: BoxPredictor = BoxPredictor()  # SSD only
    box_coder_scales: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w
    activation: str = "RELU_6"  # SSD conv layers
    batch_norm_decay: float = 0.997
    force_use_bias: bool = False  # SSD conv layers keep a bias before their BatchNorm
    add_background_class: bool = True  # SSD: False when the class head has no background
    first_stage: FirstStage | None = None  # Faster R-CNN only
    share_box_across_classes: bool = True  # Faster R-CNN's second stage
    masks: MaskHead | None = None  # Mask R-CNN: Faster R-CNN with number_of_stages 3
    notes: tuple[str, ...] = field(default=(), compare=False)  # header comment lines


def pipeline_config_text(arch: Architecture) -> str:
    """The pipeline.config text of `arch`: a header comment and the model block (config_util
    needs no train / eval sections: it fills them with their defaults)."""
    if arch.meta_arch == "ssd":
        body = _ssd(arch)
    elif arch.meta_arch == "faster_rcnn":
        body = _faster_rcnn(arch)
    else:
        raise ValueError(f"meta-architecture {arch.meta_arch!r}: only ssd and faster_rcnn")
    header = ["# Written by tfod_trt.config.writer from the architecture's facts (no weights,",
              "# no training data).", *(f"# {note}" for note in arch.notes)]
    root: Node = [("model", [(arch.meta_arch, body)])]
    return "\n".join([*header, *_lines(root, 0)]) + "\n"


def _lines(node: Node, depth: int) -> list[str]:
    """Text format, one field a line, two spaces per level (as TFOD's own configs)."""
    pad, out = "  " * depth, []
    for name, value in node:
        if isinstance(value, list):
            out.append(f"{pad}{name} {{")
            out.extend(_lines(value, depth + 1))
            out.append(f"{pad}}}")
        else:
            out.append(f"{pad}{name}: {_scalar(value)}")
    return out


def _scalar(value: object) -> str:
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    return str(int(value))


def _repeated(name: str, values: tuple) -> Node:
    return [(name, v) for v in values]


def _resizer(resizer: FixedShape | KeepAspect) -> Node:
    if isinstance(resizer, FixedShape):
        return [("fixed_shape_resizer", [("height", resizer.height), ("width", resizer.width)])]
    return [("keep_aspect_ratio_resizer", [
        ("min_dimension", resizer.min_dimension), ("max_dimension", resizer.max_dimension),
        ("pad_to_max_dimension", resizer.pad_to_max_dimension)])]


def _hyperparams(arch: Architecture, stddev: float, batch_norm: bool = True) -> Node:
    """Conv hyperparams: the activation and BatchNorm shape the graph; the regularizer and
    initializer are required fields that inference never uses."""
    node: Node = [("force_use_bias", True)] if arch.force_use_bias else []
    node += [("activation", Token(arch.activation)),
             ("regularizer", [("l2_regularizer", [("weight", 0.00004)])]),
             ("initializer", [("truncated_normal_initializer", [("stddev", stddev)])])]
    if batch_norm:
        node.append(("batch_norm", [("scale", True), ("center", True),
                                    ("decay", arch.batch_norm_decay), ("epsilon", 0.001)]))
    return node


def _feature_extractor(arch: Architecture) -> Node:
    fe = arch.feature_extractor
    node: Node = [("type", fe.type)]
    if fe.use_depthwise:
        node.append(("use_depthwise", True))
    if fe.fpn_levels:
        fpn: Node = [("min_level", fe.fpn_levels[0]), ("max_level", fe.fpn_levels[1])]
        if fe.additional_layer_depth:
            fpn.append(("additional_layer_depth", fe.additional_layer_depth))
        node.append(("fpn", fpn))
    if fe.bifpn:  # EfficientNet takes no depth options (it refuses a depth_multiplier)
        return [*node, ("bifpn", _bifpn(fe.bifpn)), ("conv_hyperparams", _hyperparams(arch, 0.03))]
    if arch.meta_arch == "faster_rcnn":
        return node
    return [*node, ("min_depth", fe.min_depth), ("depth_multiplier", fe.depth_multiplier),
            ("conv_hyperparams", _hyperparams(arch, 0.03)),
            ("override_base_feature_extractor_hyperparams", True)]


def _bifpn(bifpn: BiFpn) -> Node:
    node: Node = [("min_level", bifpn.min_level), ("max_level", bifpn.max_level),
                  ("num_iterations", bifpn.num_iterations), ("num_filters", bifpn.num_filters)]
    if bifpn.combine_method != "fast_attention":  # the proto's default
        node.append(("combine_method", bifpn.combine_method))
    return node


def _ssd_anchors(anchors: SsdAnchors | MultiscaleAnchors) -> Node:
    if isinstance(anchors, SsdAnchors):
        return [("ssd_anchor_generator", [
            ("num_layers", anchors.num_layers), ("min_scale", anchors.min_scale),
            ("max_scale", anchors.max_scale), *_repeated("aspect_ratios", anchors.aspect_ratios)])]
    return [("multiscale_anchor_generator", [
        ("min_level", anchors.min_level), ("max_level", anchors.max_level),
        ("anchor_scale", anchors.anchor_scale), *_repeated("aspect_ratios", anchors.aspect_ratios),
        ("scales_per_octave", anchors.scales_per_octave)])]


def _box_predictor(arch: Architecture) -> Node:
    bp = arch.box_predictor
    common: Node = [("kernel_size", bp.kernel_size), ("class_prediction_bias_init", -4.6),
                    ("conv_hyperparams", _hyperparams(arch, 0.01))]
    if bp.kind == "convolutional":
        return [("convolutional_box_predictor", [
            ("num_layers_before_predictor", bp.num_layers), ("box_code_size", 4), *common])]
    if bp.kind != "weight_shared_convolutional":
        raise ValueError(f"box predictor {bp.kind!r}: convolutional or "
                         "weight_shared_convolutional")
    node: Node = [("depth", bp.depth), ("num_layers_before_predictor", bp.num_layers), *common]
    if bp.use_depthwise:
        node.append(("use_depthwise", True))
    if bp.share_prediction_tower:
        node.append(("share_prediction_tower", True))
    return [("weight_shared_convolutional_box_predictor", node)]


def _post_processing(arch: Architecture) -> Node:
    nms = arch.nms
    return [("batch_non_max_suppression", [
        ("score_threshold", nms.score_threshold), ("iou_threshold", nms.iou_threshold),
        ("max_detections_per_class", nms.max_detections_per_class),
        ("max_total_detections", nms.max_total_detections)]),
        ("score_converter", Token(arch.score_converter))]


def _ssd(arch: Architecture) -> Node:
    y, x, h, w = arch.box_coder_scales
    if arch.anchors is None:
        raise ValueError("an SSD needs an anchor generator")
    background: Node = [] if arch.add_background_class else [("add_background_class", False)]
    return [
        ("num_classes", arch.num_classes),
        *background,
        ("image_resizer", _resizer(arch.image_resizer)),
        ("feature_extractor", _feature_extractor(arch)),
        ("box_coder", [("faster_rcnn_box_coder", [
            ("y_scale", y), ("x_scale", x), ("height_scale", h), ("width_scale", w)])]),
        ("matcher", [("argmax_matcher", [("matched_threshold", 0.5),
                                         ("unmatched_threshold", 0.5)])]),
        ("similarity_calculator", [("iou_similarity", [])]),
        ("encode_background_as_zeros", True),
        ("anchor_generator", _ssd_anchors(arch.anchors)),
        ("box_predictor", _box_predictor(arch)),
        ("loss", _ssd_loss()),
        ("post_processing", _post_processing(arch)),
    ]


def _ssd_loss() -> Node:
    """TFOD builds the losses even for inference; their values do not matter there."""
    return [("classification_loss", [("weighted_sigmoid_focal", [("alpha", 0.25),
                                                                 ("gamma", 2.0)])]),
            ("localization_loss", [("weighted_smooth_l1", [])]),
            ("classification_weight", 1.0), ("localization_weight", 1.0)]


def _faster_rcnn(arch: Architecture) -> Node:
    first = arch.first_stage or FirstStage()
    grid = first.anchors
    return [
        *([("number_of_stages", 3)] if arch.masks else []),
        ("num_classes", arch.num_classes),
        ("image_resizer", _resizer(arch.image_resizer)),
        ("feature_extractor", _feature_extractor(arch)),
        ("first_stage_anchor_generator", [("grid_anchor_generator", [
            *_repeated("scales", grid.scales), *_repeated("aspect_ratios", grid.aspect_ratios),
            ("height_stride", grid.stride), ("width_stride", grid.stride)])]),
        ("first_stage_box_predictor_conv_hyperparams", _plain_conv_hyperparams()),
        ("first_stage_nms_score_threshold", first.nms_score_threshold),
        ("first_stage_nms_iou_threshold", first.nms_iou_threshold),
        ("first_stage_max_proposals", first.max_proposals),
        ("initial_crop_size", first.initial_crop_size),
        ("maxpool_kernel_size", first.maxpool_kernel_size),
        ("maxpool_stride", first.maxpool_stride),
        ("second_stage_box_predictor", [("mask_rcnn_box_predictor", _second_stage_predictor(
            arch))]),
        ("second_stage_post_processing", _post_processing(arch)),
        ("use_matmul_crop_and_resize", first.matmul_crop),
        ("clip_anchors_to_image", True),
    ]


# EfficientDet D0-D7 as TFOD's TF2 zoo configs state them: D -> (EfficientNet bN, input side,
# BiFPN iterations and filters (also the box predictor's depth), box predictor layers, BiFPN
# node fusion). D7 keeps D6's b6 backbone and, in the zoo's config, anchor_scale 4.0.
_EFFICIENTDETS = {
    0: (0, 512, 3, 64, 3, "fast_attention"),
    1: (1, 640, 4, 88, 3, "fast_attention"),
    2: (2, 768, 5, 112, 3, "fast_attention"),
    3: (3, 896, 6, 160, 4, "fast_attention"),
    4: (4, 1024, 7, 224, 4, "fast_attention"),
    5: (5, 1280, 7, 288, 4, "fast_attention"),
    6: (6, 1408, 8, 384, 5, "sum"),
    7: (6, 1536, 8, 384, 5, "sum"),
}


def _efficientdet(d: int) -> Architecture:
    """EfficientDet-D`d`: TFOD's SSD with an EfficientNet + BiFPN and a depthwise head."""
    backbone, side, iterations, filters, head_layers, combine = _EFFICIENTDETS[d]
    return Architecture(
        "ssd", FeatureExtractor(f"ssd_efficientnet-b{backbone}_bifpn_keras",
                                bifpn=BiFpn(iterations, filters, combine_method=combine)),
        KeepAspect(side, side), nms=Nms(iou_threshold=0.5),
        anchors=MultiscaleAnchors(anchor_scale=4.0, scales_per_octave=3),
        box_predictor=BoxPredictor("weight_shared_convolutional", depth=filters,
                                   num_layers=head_layers, kernel_size=3, use_depthwise=True),
        activation="SWISH", batch_norm_decay=0.99, force_use_bias=True,
        add_background_class=False)


def _plain_conv_hyperparams() -> Node:
    """Conv hyperparams of Faster R-CNN's heads as the zoo writes them: no BatchNorm, the
    default activation (RELU); the regularizer and initializer are required, never used."""
    return [("op", Token("CONV")), ("regularizer", [("l2_regularizer", [("weight", 0.0)])]),
            ("initializer", [("truncated_normal_initializer", [("stddev", 0.01)])])]


def _second_stage_predictor(arch: Architecture) -> Node:
    """mask_rcnn_box_predictor: the box classifier's heads, and Mask R-CNN's mask head."""
    fc = [("op", Token("FC")), ("regularizer", [("l2_regularizer", [("weight", 0.0)])]),
          ("initializer", [("variance_scaling_initializer", [
              ("factor", 1.0), ("uniform", True), ("mode", Token("FAN_AVG"))])])]
    node: Node = [("use_dropout", False), ("fc_hyperparams", fc),
                  ("share_box_across_classes", arch.share_box_across_classes)]
    masks = arch.masks
    if masks:
        node += [("mask_height", masks.height), ("mask_width", masks.width),
                 ("mask_prediction_conv_depth", masks.conv_depth),
                 ("mask_prediction_num_conv_layers", masks.num_conv_layers),
                 ("conv_hyperparams", _plain_conv_hyperparams()),
                 ("predict_instance_masks", True)]
    return node


_MOBILENET_FPNLITE = FeatureExtractor("ssd_mobilenet_v2_fpn_keras", fpn_levels=(3, 7),
                                      additional_layer_depth=128, use_depthwise=True)

ARCHITECTURES: dict[str, Architecture] = {
    # The zoo's "320x320" SSD MobileNet v2 runs at 300x300.
    "ssd_mobilenet_v2_320": Architecture(
        "ssd", FeatureExtractor("ssd_mobilenet_v2_keras"), FixedShape(300, 300),
        anchors=SsdAnchors(), batch_norm_decay=0.97),
    "ssd_mobilenet_v2_fpnlite_320": Architecture(
        "ssd", _MOBILENET_FPNLITE, FixedShape(320, 320), anchors=MultiscaleAnchors(),
        box_predictor=BoxPredictor("weight_shared_convolutional", depth=128, num_layers=4,
                                   kernel_size=3, use_depthwise=True,
                                   share_prediction_tower=True)),
    # RetinaNet: ResNet-50 FPN with a weight-shared head.
    "ssd_resnet50_v1_fpn_640": Architecture(
        "ssd", FeatureExtractor("ssd_resnet50_v1_fpn_keras", fpn_levels=(3, 7)),
        FixedShape(640, 640), anchors=MultiscaleAnchors(),
        box_predictor=BoxPredictor("weight_shared_convolutional", depth=256, num_layers=4,
                                   kernel_size=3)),
    "faster_rcnn_resnet50_v1_640": Architecture(
        "faster_rcnn", FeatureExtractor("faster_rcnn_resnet50_keras"), KeepAspect(640, 640),
        nms=Nms(score_threshold=0.0, max_total_detections=300), score_converter="SOFTMAX",
        first_stage=FirstStage()),
    **{f"ssd_efficientdet_d{d}": _efficientdet(d) for d in _EFFICIENTDETS},
    # The zoo's only Mask R-CNN: a native (not matmul) crop of 17, no pooling after it.
    "mask_rcnn_inception_resnet_v2_1024": Architecture(
        "faster_rcnn", FeatureExtractor("faster_rcnn_inception_resnet_v2_keras"),
        FixedShape(1024, 1024), nms=Nms(score_threshold=0.0), score_converter="SOFTMAX",
        first_stage=FirstStage(initial_crop_size=17, maxpool_kernel_size=1, maxpool_stride=1,
                               matmul_crop=False),
        share_box_across_classes=False, masks=MaskHead()),
    # No zoo counterpart: a ResNet-50 Mask R-CNN small enough for tests on a CPU (the R50
    # Faster R-CNN at 320, 64 proposals, 32 detections, 21x21 masks from one conv of 32).
    "mask_rcnn_r50_320": Architecture(
        "faster_rcnn", FeatureExtractor("faster_rcnn_resnet50_keras"), KeepAspect(320, 320),
        nms=Nms(score_threshold=0.0, max_detections_per_class=32, max_total_detections=32),
        score_converter="SOFTMAX", first_stage=FirstStage(max_proposals=64),
        masks=MaskHead(height=21, width=21, conv_depth=32, num_conv_layers=2)),
}
