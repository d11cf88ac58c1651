"""Real TFOD fixture models, built from the TF2 zoo configs of the reference data folder
(conftest.py: --data), exported and converted once, and cached under .cache/fixtures (or
$TFOD_TRT_CACHE) across test runs.

Where TensorFlow is absent (a TensorRT machine), only converted ONNX files already in the cache
are used; copy `.cache/fixtures/onnx` there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TFOD_TRT_SHARED", ROOT.parent / "shared"))
CACHE = Path(os.environ.get("TFOD_TRT_CACHE", ROOT / ".cache" / "fixtures"))
PHOTOS = SHARED / "data" / "coco_val2017_64" / "images"
# Bump when the fixture recipe (tools/make_tfod_model.py) changes: old cached models go stale.
RECIPE = "v3"
MODELS = CACHE / f"models-{RECIPE}"
# Faster R-CNN heads are calibrated on photos: on smooth noise their logits saturate on photos.
# Two photos (600 crops in the second stage) keep a build under ~6 GB of memory.
ON_PHOTOS = ["--num_classes", "4", "--calibration_images", str(PHOTOS),
             "--calibration_count", "2"]

# name -> (zoo config, extra make_tfod_model.py arguments); few classes keep them small.
FIXTURE_MODELS = {
    "ssd_mobilenet_v2": ("ssd_mobilenet_v2_320x320_coco17_tpu-8.config", ["--num_classes", "6"]),
    "ssd_mobilenet_v2_keep_aspect": (
        "ssd_mobilenet_v2_320x320_coco17_tpu-8.config",
        ["--num_classes", "4", "--keep_aspect_ratio", "320:320"],
    ),
    "ssd_fpnlite_320": ("ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config",
                        ["--num_classes", "5"]),
    "ssd_resnet50_fpn_640": ("ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
                             ["--num_classes", "3"]),
    "faster_rcnn_r50_640": ("faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config", ON_PHOTOS),
    "faster_rcnn_r50_1024": ("faster_rcnn_resnet50_v1_1024x1024_coco17_tpu-8.config",
                             ON_PHOTOS),
    "faster_rcnn_r50_800x1333": ("faster_rcnn_resnet50_v1_800x1333_coco17_gpu-8.config",
                                 ON_PHOTOS),
    "faster_rcnn_irv2_640": ("faster_rcnn_inception_resnet_v2_640.config",
                             [*ON_PHOTOS, "--keep_aspect_ratio", "640:640"]),
    "faster_rcnn_r50_fpn_640": ("faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
                                ON_PHOTOS),
}
# Configs that the zoo lacks, derived from a zoo config by text edits: name -> (zoo config,
# [(old, new)]). Faster R-CNN Inception-ResNet v2 exists only as Mask R-CNN: drop the mask head.
DERIVED_CONFIGS = {
    "faster_rcnn_inception_resnet_v2_640.config": (
        "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config",
        [("number_of_stages: 3", "number_of_stages: 2"),
         ("predict_instance_masks: true", "predict_instance_masks: false")],
    ),
}
SLOW_SSD_CONFIGS = [
    "ssd_mobilenet_v2_320x320_coco17_tpu-8.config",
    "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8.config",
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config",
    "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8.config",
    "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
    "ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8.config",
    "ssd_resnet101_v1_fpn_640x640_coco17_tpu-8.config",
    "ssd_resnet101_v1_fpn_1024x1024_coco17_tpu-8.config",
    "ssd_resnet152_v1_fpn_640x640_coco17_tpu-8.config",
    "ssd_resnet152_v1_fpn_1024x1024_coco17_tpu-8.config",
]


def have_tensorflow() -> bool:
    return all(importlib.util.find_spec(m) for m in ("tensorflow", "tf2onnx", "object_detection"))


def build_model(config: Path, output: Path, extra: list[str]) -> Path:
    """Runs tools/make_tfod_model.py once; later calls reuse the exported model."""
    if (output / "saved_model" / "saved_model.pb").is_file():
        return output
    if not have_tensorflow():
        pytest.skip("TensorFlow and the TFOD API are needed to build fixture models")
    if not config.is_file():
        pytest.skip(f"{config} is absent")
    tmp = output.with_name(f"{output.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    calibration = ["--calibration_images", str(PHOTOS)] if PHOTOS.is_dir() else []
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_tfod_model.py"), "--pipeline_config",
         str(config), "--output", str(tmp), *calibration, *extra],
        check=True, capture_output=True, text=True,
    )
    if (output / "saved_model").is_dir():  # another process finished first
        shutil.rmtree(tmp)
    else:
        tmp.rename(output)
    return output


def zoo_config(name: str) -> Path:
    """A zoo config of the reference data folder, or one of DERIVED_CONFIGS (written to the
    cache)."""
    if name not in DERIVED_CONFIGS:
        return SHARED / "tfod_configs" / name
    source, edits = DERIVED_CONFIGS[name]
    if not (SHARED / "tfod_configs" / source).is_file():
        pytest.skip(f"{source} is absent")
    text = (SHARED / "tfod_configs" / source).read_text()
    for old, new in edits:
        assert old in text, f"{source} has no '{old}'"
        text = text.replace(old, new)
    path = CACHE / "configs" / name
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def exported_model(name: str, input_type: str = "float_image_tensor") -> Path:
    """The exported fixture model folder (pipeline.config, saved_model/)."""
    config, extra = FIXTURE_MODELS[name]
    suffix = "" if input_type == "float_image_tensor" else f"_{input_type}"
    output = MODELS / (name + suffix)
    if (output / "saved_model" / "saved_model.pb").is_file():
        return output
    return build_model(zoo_config(config), output, [*extra, "--input_type", input_type])


def converted_onnx(name: str, batch_size: int = 1, input_format: str = "NHWC") -> Path:
    """The fixture model converted by create_onnx.py (cached)."""
    path = CACHE / f"onnx-{RECIPE}" / f"{name}_b{batch_size}_{input_format.lower()}.onnx"
    if path.is_file():
        return path
    if not have_tensorflow():
        pytest.skip(f"{path} is not cached and TensorFlow is absent")
    model = exported_model(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    import create_onnx

    code = create_onnx.main([
        "--pipeline_config", str(model / "pipeline.config"),
        "--saved_model", str(model / "saved_model"), "--onnx", str(path),
        "--batch_size", str(batch_size), "--input_format", input_format,
    ])
    assert code == 0, f"create_onnx.py failed for {name}"
    return path


# The trained model of issue 7 (models/shapes_ssd, committed) and its synthetic data.
SHAPES_MODEL = ROOT / "models" / "shapes_ssd"
SHAPES_DATA = Path(os.environ.get("TFOD_TRT_SHAPES", ROOT / ".cache" / "shapes"))


def shapes_dataset(split: str, count: int | None = None, output: Path | None = None) -> Path:
    """A split of the synthetic shapes data (tools/make_shapes_dataset.py: NumPy and Pillow
    only, so a machine without TensorFlow makes it too); `count` takes a prefix of the split."""
    output = output or SHAPES_DATA / split
    if (output / "annotations.json").is_file():
        return output
    command = [sys.executable, str(ROOT / "tools" / "make_shapes_dataset.py"), "--split", split,
               "--output", str(output), *(["--count", str(count)] if count else [])]
    subprocess.run(command, check=True, capture_output=True, encoding="utf-8",
                   errors="replace")  # its progress bar is UTF-8 whatever the locale
    return output


def trained_onnx() -> Path:
    """models/shapes_ssd converted by create_onnx.py (batch 1, NHWC), cached under a name that
    changes with the SavedModel, so a retrained model is never compared with a stale graph."""
    import hashlib

    saved_model = SHAPES_MODEL / "saved_model"
    if not (saved_model / "saved_model.pb").is_file():  # no TensorFlow here: the copied graph
        carried = sorted((CACHE / "trained").glob("shapes_ssd_*_b1_nhwc.onnx"))
        if len(carried) != 1:
            pytest.skip(f"{saved_model} is absent and {CACHE / 'trained'} has no single graph")
        return carried[0]
    digest = hashlib.sha256((saved_model / "saved_model.pb").read_bytes()).hexdigest()[:12]
    path = CACHE / "trained" / f"shapes_ssd_{digest}_b1_nhwc.onnx"
    if path.is_file():
        return path
    if not have_tensorflow():
        pytest.skip(f"{path} is not cached and TensorFlow is absent")
    import create_onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    code = create_onnx.main(["--pipeline_config", str(SHAPES_MODEL / "pipeline.config"),
                             "--saved_model", str(saved_model), "--onnx", str(path)])
    assert code == 0, "create_onnx.py failed for models/shapes_ssd"
    return path


def check_true_image_shape_defaults(keep, fixed) -> None:
    """create_onnx's true_image_shape choice: on for a keep_aspect_ratio config, off for a
    fixed_shape one, off with --no_true_image_shape."""
    import create_onnx
    from tfod_trt.convert.options import ConversionOptions, wants_true_image_shape

    default = ConversionOptions()
    assert wants_true_image_shape(keep, default)
    assert not wants_true_image_shape(fixed, default)
    off = create_onnx.parse_args(["-p", "x", "-m", "y", "-o", "z", "--no_true_image_shape"])
    assert off.no_true_image_shape
    assert not wants_true_image_shape(
        keep, ConversionOptions(true_image_shape=False))
