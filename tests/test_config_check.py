"""The pipeline config checked against the SavedModel's own graph before converting
(tfod_trt/convert/config_check.py): the facts read from the real fixture graphs, and edited
configs that must be refused with one line naming both files and the disagreeing value."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import FIXTURE_MODELS, exported_model

from tfod_trt.config.pipeline_config import SUPPORTED_EXTRACTORS, load_pipeline_config
from tfod_trt.convert import faster_rcnn, tf_graph
from tfod_trt.convert.config_check import (
    Backbone,
    ConfigMismatch,
    GraphFacts,
    check_config,
    expected_backbone,
    graph_backbone,
    read_graph_facts,
)
from tfod_trt.errors import UsageError

SSD, FASTER_RCNN, EFFICIENTDET = "ssd_mobilenet_v2", "faster_rcnn_r50_640", "ssd_efficientdet_d0"


def fixture_classes(name: str) -> int:
    """The number of classes the fixture model was built with (its recipe's --num_classes)."""
    extra = FIXTURE_MODELS[name][1]
    return int(extra[extra.index("--num_classes") + 1])


def graph_facts(name: str) -> GraphFacts:
    """The facts of fixture `name`'s frozen graph, at the tensors the converter locates."""
    saved_model = exported_model(name) / "saved_model"
    graph_def, outputs = tf_graph.load_frozen_graph(saved_model)
    if name == FASTER_RCNN:
        two_stage = faster_rcnn.find_two_stage_cut(graph_def, outputs, name)
        image, logits = two_stage.image, two_stage.box_logits
    else:
        cut = tf_graph.find_network_cut(graph_def, outputs, name)
        image, logits = cut.image, cut.class_logits
    return read_graph_facts(graph_def, image, logits, outputs["raw_detection_boxes"])


@pytest.fixture(scope="module")
def ssd_facts() -> GraphFacts:
    return graph_facts(SSD)


@pytest.fixture(scope="module")
def faster_rcnn_facts() -> GraphFacts:
    return graph_facts(FASTER_RCNN)


def edited_config(name: str, folder: Path, old: str, new: str) -> Path:
    """Fixture `name`'s exported pipeline.config with `old` replaced by `new`, in `folder`."""
    text = (exported_model(name) / "pipeline.config").read_text()
    assert old in text
    path = folder / "pipeline.config"
    path.write_text(text.replace(old, new))
    return path


def assert_refused(name: str, folder: Path, facts: GraphFacts, edit: tuple[str, str], said: str,
                   found: str) -> None:
    """Fixture `name`'s config with `edit` (old, new) is refused with exit code 2 and one line
    naming both files, what the config says and what the SavedModel has."""
    config = edited_config(name, folder, *edit)
    saved_model = exported_model(name) / "saved_model"
    with pytest.raises(ConfigMismatch) as caught:
        check_config(load_pipeline_config(config), saved_model, facts)
    message = str(caught.value)
    assert isinstance(caught.value, UsageError)  # exit code 2
    assert message.startswith(f"{config} says {said} but {saved_model} {found};")
    assert "\n" not in message


def test_facts_of_the_ssd_graph(ssd_facts: GraphFacts) -> None:
    # the fixture recipe: SSD MobileNet v2, 300x300, the zoo's box coder, classes + background
    assert ssd_facts == GraphFacts(
        class_head_width=fixture_classes(SSD) + 1, input_size=(300, 300),
        backbone=Backbone("MobileNet v2", fpn=False), box_scales=(10.0, 10.0, 5.0, 5.0))


def test_facts_of_the_faster_rcnn_graph(faster_rcnn_facts: GraphFacts) -> None:
    assert faster_rcnn_facts == GraphFacts(
        class_head_width=fixture_classes(FASTER_RCNN) + 1, input_size=(640, 640),
        backbone=Backbone("ResNet-50", fpn=False), box_scales=(10.0, 10.0, 5.0, 5.0))


@pytest.fixture(scope="module")
def efficientdet_facts() -> GraphFacts:
    return graph_facts(EFFICIENTDET)


def test_facts_of_the_efficientdet_graph(efficientdet_facts: GraphFacts) -> None:
    # D0: EfficientNet-b0 + BiFPN, keep_aspect_ratio 512, no background column
    assert efficientdet_facts == GraphFacts(
        class_head_width=fixture_classes(EFFICIENTDET), input_size=(512, 512),
        backbone=Backbone("EfficientNet", fpn=True), box_scales=(10.0, 10.0, 5.0, 5.0))
    model = exported_model(EFFICIENTDET)
    check_config(load_pipeline_config(model / "pipeline.config"), model / "saved_model",
                 efficientdet_facts)


EFFICIENTDET_EDITS = [
    (("num_classes: 5", "num_classes: 90"), "num_classes: 90 with add_background_class: false",
     "has a class head of width 5"),
    (("ssd_efficientnet-b0_bifpn_keras", "ssd_mobilenet_v2_fpn_keras"),
     "feature_extractor ssd_mobilenet_v2_fpn_keras (MobileNet v2 FPN)",
     "has an EfficientNet BiFPN backbone"),
    (("max_dimension: 512", "max_dimension: 640"),
     "input size 640x640 (keep_aspect_ratio_resizer)", "resizes its images to 512x512"),
]


@pytest.mark.parametrize("edit,said,found", EFFICIENTDET_EDITS, ids=lambda v: str(v)[:24])
def test_efficientdet_config_of_another_model(tmp_path: Path, efficientdet_facts: GraphFacts,
                                              edit, said: str, found: str) -> None:
    assert_refused(EFFICIENTDET, tmp_path, efficientdet_facts, edit, said, found)


def test_the_exported_configs_pass(ssd_facts: GraphFacts, faster_rcnn_facts: GraphFacts) -> None:
    for name, facts in ((SSD, ssd_facts), (FASTER_RCNN, faster_rcnn_facts)):
        model = exported_model(name)
        check_config(load_pipeline_config(model / "pipeline.config"), model / "saved_model",
                     facts)


SSD_EDITS = [  # (old, new), the config's words, the SavedModel's words
    (("num_classes: 6", "num_classes: 7"), "num_classes: 7",
     "predicts 6 classes (class head width 7 incl. background)"),
    (('type: "ssd_mobilenet_v2_keras"', 'type: "ssd_resnet50_v1_fpn_keras"'),
     "feature_extractor ssd_resnet50_v1_fpn_keras (ResNet-50 FPN)",
     "has a MobileNet v2 backbone"),
    (("y_scale: 10.0", "y_scale: 5.0"), "box_coder y_scale: 5", "decodes boxes with y_scale 10"),
    (("height: 300\n        width: 300", "height: 320\n        width: 320"),
     "input size 320x320 (fixed_shape_resizer)", "resizes its images to 300x300"),
    (("num_classes: 6", "num_classes: 6\n    add_background_class: false"),
     "num_classes: 6 with add_background_class: false", "has a class head of width 7"),
]


@pytest.mark.parametrize("edit,said,found", SSD_EDITS, ids=lambda v: str(v)[:24])
def test_ssd_config_of_another_model(tmp_path: Path, ssd_facts: GraphFacts, edit, said: str,
                                     found: str) -> None:
    assert_refused(SSD, tmp_path, ssd_facts, edit, said, found)


FASTER_RCNN_EDITS = [
    (("num_classes: 4", "num_classes: 5"), "num_classes: 5",
     "predicts 4 classes (class head width 5 incl. background)"),
    (("faster_rcnn_resnet50_keras", "faster_rcnn_resnet101_keras"),
     "feature_extractor faster_rcnn_resnet101_keras (ResNet-101)", "has a ResNet-50 backbone"),
    (("faster_rcnn_resnet50_keras", "faster_rcnn_inception_resnet_v2_keras"),
     "feature_extractor faster_rcnn_inception_resnet_v2_keras (Inception-ResNet v2)",
     "has a ResNet-50 backbone"),
    (("max_dimension: 640", "max_dimension: 1024"),
     "input size 1024x1024 (keep_aspect_ratio_resizer)", "resizes its images to 640x640"),
]


@pytest.mark.parametrize("edit,said,found", FASTER_RCNN_EDITS, ids=lambda v: str(v)[:24])
def test_faster_rcnn_config_of_another_model(tmp_path: Path, faster_rcnn_facts: GraphFacts,
                                             edit, said: str, found: str) -> None:
    assert_refused(FASTER_RCNN, tmp_path, faster_rcnn_facts, edit, said, found)


def test_every_disagreement_in_one_line(tmp_path: Path, ssd_facts: GraphFacts) -> None:
    """The FPNLite model's config given with the MobileNet v2 SavedModel."""
    other = load_pipeline_config(exported_model("ssd_fpnlite_320") / "pipeline.config")
    saved_model = exported_model(SSD) / "saved_model"
    with pytest.raises(ConfigMismatch) as caught:
        check_config(other, saved_model, ssd_facts)
    message = str(caught.value)
    assert message.startswith(
        f"{other.path} says num_classes: 5, input size 320x320 (fixed_shape_resizer), "
        "feature_extractor ssd_mobilenet_v2_fpn_keras (MobileNet v2 FPN) but "
        f"{saved_model} predicts 6 classes (class head width 7 incl. background), resizes its "
        "images to 300x300, has a MobileNet v2 backbone;")


def test_unreadable_facts_are_not_checked(tmp_path: Path) -> None:
    config = load_pipeline_config(edited_config(SSD, tmp_path, "num_classes: 6", "num_classes: 9"))
    check_config(config, exported_model(SSD) / "saved_model", GraphFacts(None, None, None, None))


def test_every_supported_extractor_names_its_backbone() -> None:
    backbones = {name: expected_backbone(name)
                 for arch in SUPPORTED_EXTRACTORS.values() for name in arch}
    assert None not in backbones.values()
    assert backbones["ssd_mobilenet_v1_fpn_keras"] == Backbone("MobileNet v1", fpn=True)
    assert backbones["ssd_mobilenet_v2_keras"] == Backbone("MobileNet v2", fpn=False)
    assert backbones["ssd_resnet152_v1_fpn_keras"] == Backbone("ResNet-152", fpn=True)
    assert backbones["faster_rcnn_resnet101_fpn_keras"] == Backbone("ResNet-101", fpn=True)
    assert backbones["faster_rcnn_inception_resnet_v2_keras"] == Backbone(
        "Inception-ResNet v2", fpn=False)
    assert backbones["ssd_efficientnet-b7_bifpn_keras"] == Backbone("EfficientNet", fpn=True)
    assert str(backbones["ssd_efficientnet-b0_bifpn_keras"]) == "EfficientNet BiFPN"


@pytest.mark.parametrize("names,backbone", [
    # the Keras applications' layer names of the backbones the fixtures do not build
    ([f"model/conv_dw_{i}/depthwise" for i in range(1, 14)], Backbone("MobileNet v1", False)),
    ([f"ResNet101V1_FPN/conv4_block{i}_out/Relu" for i in range(1, 24)]
     + ["ResNet101V1_FPN/FeatureMaps/top_down/smoothing_1/Conv2D"], Backbone("ResNet-101", True)),
    ([f"model/conv4_block{i}_2_conv/Conv2D" for i in range(1, 37)], Backbone("ResNet-152", False)),
    (["model/block35_10_conv/Conv2D", "model/mixed_6a/concat", "model_1/block8_9/add"],
     Backbone("Inception-ResNet v2", False)),
    (["EfficientDet-D7/model/stack_6/block_3/se_reduce_conv2d/Conv2D",
      "EfficientDet-D7/bifpn/node_00/0_up_lvl_6/post_combine/separable_conv/separable_conv2d"],
     Backbone("EfficientNet", True)),
    (["model/stack_0/block_0/depthwise_conv2d/depthwise"], Backbone("EfficientNet", False)),
    (["model/conv4_block7_out/Relu"], None),  # no ResNet has 7 conv4 blocks
    (["Postprocessor/Decode/truediv"], None),
])
def test_backbone_from_layer_names(names: list[str], backbone: Backbone | None) -> None:
    assert graph_backbone(["StatefulPartitionedCall/" + name for name in names]) == backbone
