"""pipeline.config reading without the TFOD API, on the zoo configs and on hand-written text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import EFFICIENTDET_ZOO, ConfigSource, config_sources, zoo_config

from tfod_trt.config.pipeline_config import load_pipeline_config
from tfod_trt.config.text_proto import ConfigError, parse_text_proto

SSD_ZOO = {
    # file: (feature extractor, input size); values read off the zoo configs by hand
    "ssd_mobilenet_v2_320x320_coco17_tpu-8.config": ("ssd_mobilenet_v2_keras", 300),
    "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8.config": ("ssd_mobilenet_v1_fpn_keras", 640),
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config": ("ssd_mobilenet_v2_fpn_keras", 320),
    "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8.config": ("ssd_mobilenet_v2_fpn_keras", 640),
    "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config": ("ssd_resnet50_v1_fpn_keras", 640),
    "ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8.config": ("ssd_resnet50_v1_fpn_keras", 1024),
    "ssd_resnet101_v1_fpn_640x640_coco17_tpu-8.config": ("ssd_resnet101_v1_fpn_keras", 640),
    "ssd_resnet101_v1_fpn_1024x1024_coco17_tpu-8.config": ("ssd_resnet101_v1_fpn_keras", 1024),
    "ssd_resnet152_v1_fpn_640x640_coco17_tpu-8.config": ("ssd_resnet152_v1_fpn_keras", 640),
    "ssd_resnet152_v1_fpn_1024x1024_coco17_tpu-8.config": ("ssd_resnet152_v1_fpn_keras", 1024),
}


@pytest.mark.parametrize("source", config_sources(sorted(SSD_ZOO)), ids=str)
def test_ssd_configs(source: ConfigSource) -> None:
    """The zoo's SSD configs (where present) and the configs written for their presets."""
    config = load_pipeline_config(source.path())
    extractor, size = SSD_ZOO[source.zoo_name]
    assert config.meta_arch == "ssd" and config.feature_extractor == extractor
    assert (config.preprocessor.kind, config.preprocessor.height) == ("fixed_shape", size)
    assert config.preprocessor.width == size and config.num_classes == 90
    assert config.score_threshold == pytest.approx(1e-8) and config.iou_threshold == 0.6
    assert config.max_total_detections == 100 and config.max_detections_per_class == 100
    assert config.score_converter == "SIGMOID" and config.add_background_class
    assert config.box_scales == (10.0, 10.0, 5.0, 5.0) and config.two_stage is None
    scale, offset = config.normalization
    if "resnet" in source.zoo_name:
        assert offset == (-123.68, -116.779, -103.939) and scale == (1.0, 1.0, 1.0)
        assert config.preprocessor.pad_value == (123.68, 116.779, 103.939)
    else:
        assert scale[0] == pytest.approx(2 / 255) and offset == (-1.0, -1.0, -1.0)
        assert config.preprocessor.pad_value == (127.5, 127.5, 127.5)


# EfficientDet D0..D7, read off the zoo configs by hand: EfficientNet bN, input side, BiFPN
# iterations and filters (= the box predictor's depth), box predictor layers, BiFPN fusion.
EFFICIENTDET = [
    ("b0", 512, 3, 64, 3, "fast_attention"),
    ("b1", 640, 4, 88, 3, "fast_attention"),
    ("b2", 768, 5, 112, 3, "fast_attention"),
    ("b3", 896, 6, 160, 4, "fast_attention"),
    ("b4", 1024, 7, 224, 4, "fast_attention"),
    ("b5", 1280, 7, 288, 4, "fast_attention"),
    ("b6", 1408, 8, 384, 5, "sum"),
    ("b6", 1536, 8, 384, 5, "sum"),  # D7 keeps D6's backbone
]


@pytest.mark.parametrize("source", config_sources(EFFICIENTDET_ZOO), ids=str)
def test_efficientdet_configs(source: ConfigSource) -> None:
    """The zoo's EfficientDet configs (where present) and the configs written for D0..D7."""
    backbone, side, iterations, filters, head_layers, fusion = EFFICIENTDET[
        EFFICIENTDET_ZOO.index(source.zoo_name)]
    config = load_pipeline_config(source.path())
    assert config.meta_arch == "ssd"
    assert config.feature_extractor == f"ssd_efficientnet-{backbone}_bifpn_keras"
    pre = config.preprocessor
    assert (pre.kind, pre.min_dimension, pre.max_dimension, pre.height, pre.width) == (
        "keep_aspect_ratio", side, side, side, side)
    assert config.num_classes == 90 and not config.add_background_class
    assert config.score_threshold == pytest.approx(1e-8) and config.iou_threshold == 0.5
    assert config.max_total_detections == 100 and config.max_detections_per_class == 100
    assert config.score_converter == "SIGMOID" and config.box_scales == (10.0, 10.0, 5.0, 5.0)
    scale, offset = config.normalization  # (x / 255 - ImageNet mean) / ImageNet std
    assert scale == pytest.approx((1 / 58.395, 1 / 57.12, 1 / 57.375))
    assert offset == pytest.approx((-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225))
    assert pre.pad_value == pytest.approx((123.675, 116.28, 103.53))  # 0 after normalising
    ssd = parse_text_proto(source.path().read_text()).get1("model.ssd")
    extractor, bifpn = ssd.get1("feature_extractor"), ssd.get1("feature_extractor.bifpn")
    assert [bifpn.get1(k) for k in ("min_level", "max_level", "num_iterations",
                                    "num_filters")] == [3, 7, iterations, filters]
    assert bifpn.get1("combine_method", "fast_attention") == fusion
    anchors = ssd.get1("anchor_generator.multiscale_anchor_generator")
    assert [anchors.get1(k) for k in ("min_level", "max_level", "anchor_scale",
                                      "scales_per_octave")] == [3, 7, 4.0, 3]
    assert anchors.all("aspect_ratios") == [1.0, 2.0, 0.5]
    head = ssd.get1("box_predictor.weight_shared_convolutional_box_predictor")
    assert [head.get1(k) for k in ("depth", "num_layers_before_predictor", "kernel_size",
                                   "use_depthwise")] == [filters, head_layers, 3, True]
    for hyperparams in (extractor.get1("conv_hyperparams"), head.get1("conv_hyperparams")):
        assert hyperparams.get1("activation") == "SWISH" and hyperparams.get1("force_use_bias")
        norm = hyperparams.get1("batch_norm")
        assert (norm.get1("decay"), norm.get1("epsilon"), norm.get1("scale")) == (
            0.99, 0.001, True)


def test_text_format_syntax() -> None:
    text = """
    # comment
    model { ssd {
      num_classes: 3   # trailing comment
      list: [0.5, 1.0, 2.0]
      repeated: 1 repeated: 2,
      nested: { flag: true, name: 'a\\'b' }
      angle < x: -1.5e-3 >
      enum_value: SIGMOID;
    } }
    """
    root = parse_text_proto(text)
    ssd = root.get1("model.ssd")
    assert ssd.get1("num_classes") == 3
    assert ssd.all("list") == [0.5, 1.0, 2.0]
    assert ssd.all("repeated") == [1, 2]
    assert ssd.get1("nested.flag") is True and ssd.get1("nested.name") == "a'b"
    assert ssd.get1("angle.x") == pytest.approx(-1.5e-3)
    assert ssd.get1("enum_value") == "SIGMOID"
    assert root.get1("model.missing.deep", "default") == "default"


@pytest.mark.parametrize("text,words", [
    ("model { ssd { num_classes: 3 }", "missing '}'"),
    ("model { ssd { : 3 } }", "expected a field name"),
    ("model { ssd { num_classes:", "has no value"),
])
def test_syntax_errors_name_the_file(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "bad.config"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as info:
        load_pipeline_config(path)
    assert str(path) in str(info.value)


def test_keep_aspect_ratio_without_padding_is_refused(tmp_path: Path) -> None:
    text = zoo_config("ssd_mobilenet_v2_320x320_coco17_tpu-8.config").read_text()
    text = text.replace(
        "fixed_shape_resizer {\n        height: 300\n        width: 300\n      }",
        "keep_aspect_ratio_resizer { min_dimension: 300 max_dimension: 600 }",
    )
    path = tmp_path / "pipeline.config"
    path.write_text(text)
    with pytest.raises(ConfigError, match="pad_to_max_dimension"):
        load_pipeline_config(path)
    path.write_text(text.replace("max_dimension: 600", "max_dimension: 600 "
                                 "pad_to_max_dimension: true"))
    pre = load_pipeline_config(path).preprocessor
    assert (pre.kind, pre.min_dimension, pre.height) == ("keep_aspect_ratio", 300, 600)
    assert pre.pad_value == pytest.approx((127.5, 127.5, 127.5))  # 0 after x*2/255-1


def test_unsupported_feature_extractor(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.config"
    text = zoo_config("ssd_mobilenet_v2_320x320_coco17_tpu-8.config").read_text()
    path.write_text(text.replace("ssd_mobilenet_v2_keras", "ssd_mobilenet_v3_large"))
    with pytest.raises(ConfigError, match="feature extractor 'ssd_mobilenet_v3_large' is not"):
        load_pipeline_config(path)


def test_center_net_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.config"
    path.write_text("model { center_net { num_classes: 3 } }\n")
    with pytest.raises(ConfigError) as caught:
        load_pipeline_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: CenterNet models (meta-architecture 'center_net') are "
                              "not supported: ")
    assert message.endswith(
        "supported: SSD (incl. EfficientDet) and Faster R-CNN (incl. Mask R-CNN)")
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_pipeline_config(tmp_path / "none.config")
