"""Checks a pipeline config against the SavedModel it should describe, before the slow part of
the conversion: a config of another model (num_classes off by one, another feature extractor,
another input size or box coder) would otherwise give an ONNX graph that runs but detects
nonsense.

What the SavedModel's frozen graph says about itself, read from its constants and names:

- the class head's width: the last dimension of the head's Reshape nearest the class logits
  (SSD: num_classes + 1 with TFOD's background column per anchor, num_classes without one;
  Faster R-CNN: the second stage's num_classes + 1);
- the input size: the shape of each image that the exporter's resize loop stacks;
- the backbone: the layer names of the Keras applications TFOD builds on (MobileNet v1 / v2,
  ResNet-50 / 101 / 152, Inception-ResNet v2, EfficientNet), FPN's `top_down` layers and
  EfficientDet's `bifpn` layers;
- the box coder's scale factors: the constants the box decoder divides the encodings by.

Anchors need no check: the converter evaluates the graph's own anchors at the input size.
What cannot be read (an unusual graph) is not checked; the head-shape check after the
conversion (options.check_head_shapes) remains.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tfod_trt import optional
from tfod_trt.convert.tf_graph import PASS_THROUGH, GraphIndex
from tfod_trt.errors import UsageError

HEAD_OPS = {"Conv2D", "MatMul", "DepthwiseConv2dNative"}  # where the class head's walk stops
SCALE_NAMES = ("y_scale", "x_scale", "height_scale", "width_scale")
RESNET_DEPTHS = {6: 50, 23: 101, 36: 152}  # conv4 blocks -> depth (Keras ResNet v1)
# Keras applications layer names -> backbone family (the first that matches wins)
FAMILY_PATTERNS = [
    ("Inception-ResNet v2", re.compile(r"(^|/)(block35|block17|block8)_\d+")),
    ("ResNet", re.compile(r"(^|/)conv4_block(\d+)_")),
    ("MobileNet v2", re.compile(r"(^|/)block_\d+_(expand|depthwise|project)")),
    ("MobileNet v1", re.compile(r"(^|/)conv_(dw|pw)_\d+")),
    ("EfficientNet", re.compile(r"(^|/)stack_\d+/block_\d+/(expand|depthwise|se_reduce)")),
]
# feature_map_generators.KerasFpnTopDownFeatureMaps; EfficientDet's KerasBiFpnFeatureMaps
FPN_PATTERN = re.compile(r"/top_down/|/bifpn/")


class ConfigMismatch(UsageError):
    """The pipeline config does not describe the SavedModel (exit code 2)."""


@dataclass(frozen=True)
class Backbone:
    """A feature extractor's network family (e.g. "ResNet-50") and whether it has an FPN."""

    family: str
    fpn: bool

    def __str__(self) -> str:
        if not self.fpn:
            return self.family
        return self.family + (" BiFPN" if self.family == "EfficientNet" else " FPN")


@dataclass(frozen=True)
class GraphFacts:
    """What the SavedModel's graph says about the model; None where it could not be read."""

    class_head_width: int | None
    input_size: tuple[int, int] | None
    backbone: Backbone | None
    box_scales: tuple[float, float, float, float] | None


def read_graph_facts(graph_def, image: str, class_logits: str, raw_boxes: str) -> GraphFacts:
    """The facts of a frozen SavedModel graph, given the tensors the converter located: the
    preprocessed image stack, the class logits and the `raw_detection_boxes` output."""
    index = GraphIndex(graph_def)
    return GraphFacts(
        class_head_width=_class_head_width(index, class_logits),
        input_size=_input_size(index, image),
        backbone=graph_backbone(node.name for node in graph_def.node),
        box_scales=_box_scales(index, raw_boxes),
    )


def check_against_graph(config, saved_model: Path, graph_def, image: str, class_logits: str,
                        raw_boxes: str) -> None:
    """check_config on the facts of the frozen graph the converter has loaded."""
    check_config(config, saved_model, read_graph_facts(graph_def, image, class_logits, raw_boxes))


def check_config(config, saved_model: Path, facts: GraphFacts) -> None:
    """Raises ConfigMismatch, one line naming both files and each value they disagree on."""
    disagreements = [found for found in (
        _classes(config, facts), _input(config, facts), _feature_extractor(config, facts),
        _box_coder(config, facts)) if found]
    if disagreements:
        said, found = zip(*disagreements, strict=True)
        raise ConfigMismatch(
            f"{config.path} says {', '.join(said)} but {saved_model} {', '.join(found)}; use "
            "the pipeline.config exported with this SavedModel"
        )


def expected_backbone(extractor: str) -> Backbone | None:
    """The backbone a feature_extractor.type builds (e.g. ssd_resnet50_v1_fpn_keras)."""
    family = None
    if "inception_resnet_v2" in extractor:
        family = "Inception-ResNet v2"
    elif match := re.search(r"resnet(\d+)", extractor):
        family = f"ResNet-{match.group(1)}"
    elif match := re.search(r"mobilenet_v([12])", extractor):
        family = f"MobileNet v{match.group(1)}"
    elif "efficientnet" in extractor:
        family = "EfficientNet"
    return Backbone(family, "fpn" in extractor) if family else None


def graph_backbone(node_names: Iterable[str]) -> Backbone | None:
    """The backbone whose Keras layer names the graph holds; None if none is recognised."""
    names = list(node_names)
    fpn = any(FPN_PATTERN.search(name) for name in names)
    for family, pattern in FAMILY_PATTERNS:
        matches = [m for m in map(pattern.search, names) if m]
        if not matches:
            continue
        if family == "ResNet":
            depth = RESNET_DEPTHS.get(max(int(m.group(2)) for m in matches))
            return Backbone(f"ResNet-{depth}", fpn) if depth else None
        return Backbone(family, fpn)
    return None


def _classes(config, facts: GraphFacts) -> tuple[str, str] | None:
    width = facts.class_head_width
    background = int(config.add_background_class)
    if width is None or width == config.num_classes + background:
        return None
    if background:
        return (f"num_classes: {config.num_classes}",
                f"predicts {width - 1} classes (class head width {width} incl. background)")
    return (f"num_classes: {config.num_classes} with add_background_class: false",
            f"has a class head of width {width}")


def _input(config, facts: GraphFacts) -> tuple[str, str] | None:
    pre = config.preprocessor
    if facts.input_size is None or facts.input_size == (pre.height, pre.width):
        return None
    height, width = facts.input_size
    return (f"input size {pre.height}x{pre.width} ({pre.kind}_resizer)",
            f"resizes its images to {height}x{width}")


def _feature_extractor(config, facts: GraphFacts) -> tuple[str, str] | None:
    expected = expected_backbone(config.feature_extractor)
    if facts.backbone is None or expected is None or facts.backbone == expected:
        return None
    article = "an" if str(facts.backbone)[0] in "AEIOU" else "a"  # an EfficientNet
    return (f"feature_extractor {config.feature_extractor} ({expected})",
            f"has {article} {facts.backbone} backbone")


def _box_coder(config, facts: GraphFacts) -> tuple[str, str] | None:
    if facts.box_scales is None:
        return None
    differ = [i for i, (ours, theirs) in enumerate(zip(config.box_scales, facts.box_scales,
                                                       strict=True))
              if not math.isclose(ours, theirs, rel_tol=1e-6)]  # the graph's are float32
    if not differ:
        return None
    return (", ".join(f"box_coder {SCALE_NAMES[i]}: {config.box_scales[i]:g}" for i in differ),
            "decodes boxes with " + ", ".join(
                f"{SCALE_NAMES[i]} {facts.box_scales[i]:g}" for i in differ))


def _constant(index: GraphIndex, tensor: str):
    """The value of a Const (behind Identity ops) as a NumPy array; None if not a constant."""
    node = index.node(index.walk_up(tensor, {"Identity"}))
    if node.op != "Const":
        return None
    return optional.tensorflow().make_ndarray(node.attr["value"].tensor)


def _class_head_width(index: GraphIndex, class_logits: str) -> int | None:
    """The last dimension of the nearest Reshape above the logits whose target shape ends in a
    constant: the head's [batch, -1, classes] (SSD) or [-1, proposals, classes]."""
    for node in index.ancestors(class_logits, stop=lambda node: node.op in HEAD_OPS):
        if node.op != "Reshape":
            continue
        shape = index.node(index.inputs(node)[1])
        last = (index.inputs(shape)[-1] if shape.op == "Pack" and index.inputs(shape)
                else index.inputs(node)[1])
        value = _constant(index, last)
        if value is not None and value.size and int(value.reshape(-1)[-1]) > 0:
            return int(value.reshape(-1)[-1])
    return None


def _input_size(index: GraphIndex, image: str) -> tuple[int, int] | None:
    """The element shape [H, W, 3] of the resize loop's image stack, where it is static."""
    stack = index.node(image)
    inputs = index.inputs(stack)
    shape = _constant(index, inputs[1]) if stack.op == "TensorListStack" else None
    if shape is None or shape.shape != (3,) or (shape[:2] <= 0).any():
        return None
    return int(shape[0]), int(shape[1])


def _box_scales(index: GraphIndex, raw_boxes: str) -> tuple[float, ...] | None:
    """The box decoder nearest the output (TFOD's FasterRcnnBoxCoder._decode) divides the
    unstacked encodings ty, tx, th, tw by constant scale factors; None if not all are found."""
    exp = next((node for node in index.ancestors(raw_boxes) if node.op == "Exp"), None)
    if exp is None:
        return None
    unstack = index.node(index.walk_up(index.inputs(exp)[0], {"RealDiv"} | PASS_THROUGH))
    if unstack.op != "Unpack":
        return None
    scales: dict[int, float] = {}
    for node in index.nodes.values():
        inputs = index.inputs(node)
        if node.op != "RealDiv" or inputs[0].split(":")[0] != unstack.name:
            continue
        value = _constant(index, inputs[1])
        if value is not None and value.size == 1:
            output = int(inputs[0].split(":")[1]) if ":" in inputs[0] else 0
            scales[output] = float(value)
    return tuple(scales[i] for i in range(4)) if len(scales) == 4 else None


def check_masks(config, saved_model: Path, mask_size: tuple[int, int] | None) -> None:
    """Raises ConfigMismatch when Mask R-CNN's masks are on one side only, or of another size:
    `mask_size` is the (height, width) of the masks the SavedModel predicts, None for none."""
    masks = config.masks
    if masks is None and mask_size is None:
        return
    if masks is None:
        said, found = "number_of_stages 2 (no masks)", "outputs detection_masks (Mask R-CNN)"
    elif mask_size is None:
        said, found = "number_of_stages: 3 (Mask R-CNN)", "has no detection_masks output"
    elif tuple(mask_size) != (masks.height, masks.width):
        said = f"mask_height: {masks.height}, mask_width: {masks.width}"
        found = f"predicts masks of {mask_size[0]}x{mask_size[1]}"
    else:
        return
    raise ConfigMismatch(f"{config.path} says {said} but {saved_model} {found}; use the "
                         "pipeline.config exported with this SavedModel")
