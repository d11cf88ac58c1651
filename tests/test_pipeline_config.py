"""pipeline.config reading without the TFOD API, on the zoo configs and on hand-written text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import ConfigSource, config_sources, zoo_config

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
    path.write_text(text.replace("ssd_mobilenet_v2_keras", "ssd_efficientnet-b0_bifpn_keras"))
    with pytest.raises(ConfigError, match="ssd_efficientnet-b0_bifpn_keras"):
        load_pipeline_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_pipeline_config(tmp_path / "none.config")
