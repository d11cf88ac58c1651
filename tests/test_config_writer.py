"""tfod_trt.config.writer: each preset's text is read by TFOD's own config_util and builds with its
model_builder; tools/write_pipeline_config.py writes and lists them. That a preset says what its
zoo config says is checked fact by fact in test_pipeline_config.py / test_faster_rcnn.py, on the
written config and, where the data folder has it, on the zoo file."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures import ROOT, WRITTEN_PRESETS, ZOO_PRESETS, have_tensorflow

from tfod_trt.config.pipeline_config import load_pipeline_config
from tfod_trt.config.writer import (
    ARCHITECTURES,
    Architecture,
    FeatureExtractor,
    FixedShape,
    KeepAspect,
    pipeline_config_text,
)

ZOO_OF = {preset: zoo for zoo, preset in ZOO_PRESETS.items()}


def write(arch: Architecture, folder: Path) -> Path:
    path = folder / "pipeline.config"
    path.write_text(pipeline_config_text(arch))
    return path


def test_every_preset_has_a_zoo_counterpart() -> None:
    """... except the presets sized for CPU tests, which have no zoo config to match."""
    assert set(ARCHITECTURES) == set(ZOO_OF) | set(WRITTEN_PRESETS.values())
    assert not set(ZOO_OF) & set(WRITTEN_PRESETS.values())


# TFOD builds EfficientDet D3-D7 in 3-7 s each: --run-slow, as their parity tests.
SLOW_PRESETS = {f"ssd_efficientdet_d{d}" for d in range(3, 8)}


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW_PRESETS else name
    for name in sorted(ARCHITECTURES)])
def test_tfod_reads_and_builds_the_written_config(name: str, tmp_path: Path) -> None:
    if not have_tensorflow():
        pytest.skip("TensorFlow and the TFOD API are absent")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from object_detection.builders import model_builder
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(
        str(write(replace(ARCHITECTURES[name], num_classes=3), tmp_path)))
    arch = configs["model"].WhichOneof("model")
    assert arch == ARCHITECTURES[name].meta_arch
    assert getattr(configs["model"], arch).num_classes == 3
    model = model_builder.build(configs["model"], is_training=False)
    assert model.num_classes == 3


def test_written_text_is_what_load_pipeline_config_reads(tmp_path: Path) -> None:
    """Without TFOD: the facts come back through the project's own reader."""
    arch = Architecture("ssd", FeatureExtractor("ssd_mobilenet_v2_keras", depth_multiplier=0.5),
                        KeepAspect(256, 384), num_classes=4,
                        anchors=ARCHITECTURES["ssd_mobilenet_v2_320"].anchors,
                        box_coder_scales=(8.0, 8.0, 4.0, 4.0))
    config = load_pipeline_config(write(arch, tmp_path))
    assert (config.meta_arch, config.num_classes, config.score_converter) == ("ssd", 4, "SIGMOID")
    pre = config.preprocessor
    assert (pre.kind, pre.min_dimension, pre.max_dimension) == ("keep_aspect_ratio", 256, 384)
    assert config.box_scales == (8.0, 8.0, 4.0, 4.0)
    text = pipeline_config_text(replace(arch, image_resizer=FixedShape(200, 100)))
    assert "fixed_shape_resizer {\n        height: 200\n        width: 100\n      }" in text
    with pytest.raises(ValueError, match="center_net"):
        pipeline_config_text(replace(arch, meta_arch="center_net"))


def test_cli_lists_and_writes(tmp_path: Path) -> None:
    tool = [sys.executable, str(ROOT / "tools" / "write_pipeline_config.py")]
    listed = subprocess.run([*tool, "--list"], capture_output=True, text=True, check=True)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(ARCHITECTURES)
    out = tmp_path / "fpnlite.config"
    subprocess.run([*tool, "ssd_mobilenet_v2_fpnlite_320", "--num_classes", "5", "-o", str(out)],
                   check=True, capture_output=True, text=True)
    config = load_pipeline_config(out)
    assert config.num_classes == 5 and config.feature_extractor == "ssd_mobilenet_v2_fpn_keras"
    bad = subprocess.run([*tool, "nope", "-o", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope" in bad.stderr
