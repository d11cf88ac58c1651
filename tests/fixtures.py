"""Real TFOD fixture models, exported and converted once, and cached under .cache/fixtures (or
$TFOD_TRT_CACHE) across test runs.

A fixture model is built from the TF2 zoo config of the reference data folder (conftest.py:
--data) when it is there, else from the config that tfod_trt.config.writer writes for the same
architecture (ZOO_PRESETS); its random weights are calibrated on the folder's COCO photos, else on
synthetic shapes (tools/make_shapes_dataset.py). The cache key names both sources (`source_key`,
`cached`): zoo-built models keep the plain folders (models-v3/NAME), the others have their own
(models-v3/written-<digest>+mosaics/NAME), so the two never mix; an architecture whose recipe
changed on its own adds its tag (models-v3/zoo+swish/NAME: RECIPE_TAGS); `USED` records what each
test used.

Where TensorFlow is absent (a TensorRT machine), only converted ONNX files already in the cache
are used; copy `.cache/fixtures/onnx-*` there (dev/gpu/gpu_carry.sh).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TFOD_TRT_SHARED", ROOT.parent / "shared"))  # use_data_folder
CACHE = Path(os.environ.get("TFOD_TRT_CACHE", ROOT / ".cache" / "fixtures"))
# Bump when the fixture recipe (tools/make_tfod_model.py) changes: old cached models go stale.
RECIPE = "v3"  # the fixture models
ONNX_RECIPE = "v4"  # their converted graphs (v4: per-class NMS)
MODELS = CACHE / f"models-{RECIPE}"
# A recipe change for one architecture alone: fixture-name prefix -> a tag in those fixtures'
# cache key (source_key), so that their models and graphs of an older recipe are never reused
# while the others stay valid. Bump the tag when that architecture's recipe changes again.
# "swish": EfficientDet's BiFPN fusion weights positive, BatchNorm gammas x4 and
# squeeze-and-excitation kernels x0.1.
RECIPE_TAGS = {"ssd_efficientdet_": "swish"}
# Synthetic calibration images where the COCO photos are absent (their own folder and seed):
# 2x2 mosaics of shapes images (calibration_mosaics).
CALIBRATION_SHAPES = CACHE / "calibration-shapes"
CALIBRATION_COUNT, CALIBRATION_SEED = 32, 4242
STAND_IN = "v2"  # bump when tools/make_stand_in_photos.py draws other photos
# Faster R-CNN heads are calibrated on photos: on smooth noise their logits saturate on photos.
# Two photos (600 crops in the second stage) keep a build under ~6 GB of memory.
ON_PHOTOS = ["--num_classes", "4", "--calibration_count", "2"]

# The TF2 zoo's EfficientDet D0..D7 configs (D3-D7 train on 32 TPUs).
EFFICIENTDET_ZOO = [
    f"ssd_efficientdet_d{d}_{side}x{side}_coco17_tpu-{8 if d < 3 else 32}.config"
    for d, side in enumerate((512, 640, 768, 896, 1024, 1280, 1408, 1536))]
# name -> (zoo config, extra make_tfod_model.py arguments); few classes keep them small.
FIXTURE_MODELS = {
    "ssd_mobilenet_v2": ("ssd_mobilenet_v2_320x320_coco17_tpu-8.config", ["--num_classes", "6"]),
    "ssd_mobilenet_v2_keep_aspect": (
        "ssd_mobilenet_v2_320x320_coco17_tpu-8.config",
        ["--num_classes", "4", "--keep_aspect_ratio", "320:320"],
    ),
    "ssd_mobilenet_v2_keep_aspect_256_320": (  # min < max: TFOD would shrink its padded input
        "ssd_mobilenet_v2_320x320_coco17_tpu-8.config",
        ["--num_classes", "4", "--keep_aspect_ratio", "256:320"],
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
    "mask_rcnn_r50_320": ("mask_rcnn_r50_320.config", ON_PHOTOS),
    "mask_rcnn_irv2_1024": ("mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config",
                            ON_PHOTOS),
    # EfficientDet D0 (CI) .. D7 (--run-slow): keep_aspect_ratio, no background class; D6 and
    # D7 (1408, 1536 pixels) calibrate on 4 photos: with 8, building D7 took over 19 GB
    **{f"ssd_efficientdet_d{d}": (zoo, ["--num_classes", "5", *(
        ["--calibration_count", "4"] if d >= 6 else [])])
       for d, zoo in enumerate(EFFICIENTDET_ZOO)},
}
# Zoo config -> the tfod_trt.config.writer preset written in its place when the data folder
# lacks it: the CI fixtures (the slow ones need the zoo).
ZOO_PRESETS = {
    "ssd_mobilenet_v2_320x320_coco17_tpu-8.config": "ssd_mobilenet_v2_320",
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config": "ssd_mobilenet_v2_fpnlite_320",
    "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config": "ssd_resnet50_v1_fpn_640",
    "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config": "faster_rcnn_resnet50_v1_640",
    "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config":
        "mask_rcnn_inception_resnet_v2_1024",
    **{zoo: f"ssd_efficientdet_d{d}" for d, zoo in enumerate(EFFICIENTDET_ZOO)},
}
# Presets with no zoo config (architectures sized for CPU tests): config name -> preset; the
# written config is their only source.
WRITTEN_PRESETS = {"mask_rcnn_r50_320.config": "mask_rcnn_r50_320"}
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
# fixture name -> what it was built from, for the tests that used it (conftest.py reports it).
USED: dict[str, str] = {}
TOUCHED: set[str] = set()  # fixture names used by the running test


def use_data_folder(path: Path) -> None:
    """Points the fixtures at this run's reference data folder (conftest.py: --data)."""
    global SHARED
    SHARED = Path(path)


def coco_photos() -> Path:
    """The COCO photos of the reference data folder (they may be absent)."""
    return SHARED / "data" / "coco_val2017_64" / "images"


def stand_in_photos() -> Path:
    """The synthetic stand-in for the COCO photos (tools/make_stand_in_photos.py: images/,
    instances_val2017_64.json, label_map.pbtxt), made once in the cache."""
    output = CACHE / f"stand-in-photos-{STAND_IN}"
    if not (output / "instances_val2017_64.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_stand_in_photos.py"),
                        "--output", str(output)], check=True, capture_output=True, text=True)
    return output


def have_tensorflow() -> bool:
    return all(importlib.util.find_spec(m) for m in ("tensorflow", "tf2onnx", "object_detection"))


def make_shapes(output: Path, count: int, seed: int) -> Path:
    """A synthetic shapes set (tools/make_shapes_dataset.py), made once: annotations.json is
    written last, so its presence means a whole set."""
    if not (output / "annotations.json").is_file():
        subprocess.run([sys.executable, str(ROOT / "tools" / "make_shapes_dataset.py"),
                        "--output", str(output), "--count", str(count), "--seed", str(seed)],
                       check=True, capture_output=True, encoding="utf-8", errors="replace")
    return output


def calibration_photos() -> Path:
    """The images that calibrate the random weights: COCO photos, else synthetic mosaics."""
    if coco_photos().is_dir():
        return coco_photos()
    return calibration_mosaics(
        make_shapes(CALIBRATION_SHAPES, CALIBRATION_COUNT, CALIBRATION_SEED) / "images")


def calibration_mosaics(images: Path) -> Path:
    """2x2 mosaics of the shapes images, each with a black band as keep_aspect_ratio's padding.
    Calibrated on a few plain shapes images, the BatchNorm statistics are too narrow (flat
    backgrounds, no black): Faster R-CNN's logits then saturate on other images (scores of 0
    and 1); a mosaic shows each BatchNorm several images at once, as a COCO photo's clutter does."""
    from PIL import Image

    output = images.parent / "mosaics"
    sources = sorted(images.glob("*.jpg"))
    if len(list(output.glob("*.jpg"))) == len(sources) // 4:
        return output
    output.mkdir(exist_ok=True)
    for i in range(len(sources) // 4):
        side = 2 * Image.open(sources[0]).size[0]
        canvas = Image.new("RGB", (side, side))
        for k, source in enumerate(sources[4 * i:4 * i + 4]):
            canvas.paste(Image.open(source).convert("RGB"), (side // 2 * (k % 2),
                                                             side // 2 * (k // 2)))
        band = (0, side * 3 // 4, side, side) if i % 2 else (side * 3 // 4, 0, side, side)
        canvas.paste((0, 0, 0), band)
        canvas.save(output / f"{i:06d}.jpg", quality=95)
    return output


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
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_tfod_model.py"), "--pipeline_config",
         str(config), "--output", str(tmp), "--calibration_images", str(calibration_photos()),
         *extra],
        check=True, capture_output=True, text=True,
    )
    if (output / "saved_model").is_dir():  # another process finished first
        shutil.rmtree(tmp)
    else:
        tmp.rename(output)
    return output


def written_config(preset: str) -> Path:
    """The config tfod_trt.config.writer writes for `preset`, in the cache."""
    from tfod_trt.config.writer import ARCHITECTURES, pipeline_config_text

    text = pipeline_config_text(ARCHITECTURES[preset])
    path = CACHE / "configs" / f"written_{preset}.config"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


def zoo_file(name: str) -> Path | None:
    """tfod_configs/`name` of the reference data folder, None where it is absent."""
    path = SHARED / "tfod_configs" / name
    return path if path.is_file() else None


@dataclass(frozen=True)
class ConfigSource:
    """A config whose facts a test checks: the zoo file `zoo_name` itself, or the config written
    for its preset (ZOO_PRESETS), which must say the same."""

    zoo_name: str
    written: bool

    def path(self) -> Path:
        if self.written:
            return written_config(ZOO_PRESETS[self.zoo_name])
        return SHARED / "tfod_configs" / self.zoo_name

    def __str__(self) -> str:
        return f"written-{ZOO_PRESETS[self.zoo_name]}" if self.written else f"zoo-{self.zoo_name}"


def config_sources(zoo_names: list[str]) -> list[ConfigSource]:
    """The written config of each of `zoo_names` that has a preset (always) and each zoo file the
    reference data folder holds (an extra): call at collection, after use_data_folder."""
    written = [ConfigSource(name, True) for name in zoo_names if name in ZOO_PRESETS]
    zoo = [ConfigSource(name, False) for name in zoo_names if zoo_file(name)]
    return written + zoo


def zoo_config(name: str) -> Path:
    """The zoo config `name` of the reference data folder; else one of DERIVED_CONFIGS (written
    to the cache), or the config written for its preset (ZOO_PRESETS) where the zoo is absent;
    always the written one for WRITTEN_PRESETS."""
    zoo = SHARED / "tfod_configs" / name
    if name in WRITTEN_PRESETS:
        return written_config(WRITTEN_PRESETS[name])
    if zoo.is_file():
        return zoo
    if name in ZOO_PRESETS:
        return written_config(ZOO_PRESETS[name])
    if name not in DERIVED_CONFIGS:
        pytest.skip(f"{zoo} is absent (no preset of tfod_trt.config.writer stands in for it)")
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


def config_source(name: str) -> str:
    """Where fixture `name`'s config comes from: 'zoo' (the data folder) or 'written'."""
    config = FIXTURE_MODELS[name][0]
    zoo = SHARED / "tfod_configs" / DERIVED_CONFIGS.get(config, (config,))[0]
    if config in WRITTEN_PRESETS:
        return "written"
    return "zoo" if zoo.is_file() or config not in ZOO_PRESETS else "written"


def recipe_tag(name: str) -> str | None:
    """The RECIPE_TAGS tag of fixture `name`, None for the plain RECIPE."""
    return next((tag for prefix, tag in RECIPE_TAGS.items() if name.startswith(prefix)), None)


def source_key(name: str) -> str:
    """The cache key of fixture `name`: 'zoo', or 'written-<digest of the written config>';
    '+TAG' for a RECIPE_TAGS architecture; '+mosaics' where synthetic shapes mosaics, not COCO
    photos, calibrated it."""
    key = "zoo"
    if config_source(name) == "written":
        text = zoo_config(FIXTURE_MODELS[name][0]).read_bytes()
        key = f"written-{hashlib.sha256(text).hexdigest()[:10]}"
    if tag := recipe_tag(name):
        key += f"+{tag}"
    return key if coco_photos().is_dir() else f"{key}+mosaics"


def cached(root: Path, name: str) -> Path:
    """The cache folder of fixture `name` under `root`: `root` itself for the zoo-built ones (as
    before there were others), else root/<source_key>."""
    key = source_key(name)
    return root if key == "zoo" else root / key


def carried_onnx(path: Path) -> Path | None:
    """Without TensorFlow: a converted graph of that name carried from elsewhere (its key may
    differ: this machine's data folder may lack the zoo configs), the zoo one first."""
    root = CACHE / f"onnx-{ONNX_RECIPE}"
    found = [root / path.name] if (root / path.name).is_file() else []
    return (found or sorted(root.glob(f"*/{path.name}")) or [None])[0]


def note_use(name: str) -> None:
    """Records which config and photos fixture `name` came from (conftest.py reports it)."""
    source = config_source(name)
    config = FIXTURE_MODELS[name][0]
    what = (f"zoo config {config}" if source == "zoo" else
            f"written config (preset {({**ZOO_PRESETS, **WRITTEN_PRESETS})[config]})")
    photos = "COCO photos" if coco_photos().is_dir() else "synthetic shapes mosaics"
    USED[name] = f"{what}, calibrated on {photos} [{source_key(name)}]"
    if name not in TOUCHED:
        print(f"fixture {name}: {USED[name]}")
    TOUCHED.add(name)


def exported_model(name: str, input_type: str = "float_image_tensor") -> Path:
    """The exported fixture model folder (pipeline.config, saved_model/)."""
    config, extra = FIXTURE_MODELS[name]
    note_use(name)
    suffix = "" if input_type == "float_image_tensor" else f"_{input_type}"
    output = cached(MODELS, name) / (name + suffix)
    if (output / "saved_model" / "saved_model.pb").is_file():
        return output
    return build_model(zoo_config(config), output, [*extra, "--input_type", input_type])


def converted_onnx(name: str, batch_size: int = 1, input_format: str = "NHWC") -> Path:
    """The fixture model converted by create_onnx.py (cached); batch_size -1: a dynamic batch
    (NAME_bdyn_LAYOUT.onnx)."""
    note_use(name)
    batch = "dyn" if batch_size == -1 else batch_size
    path = (cached(CACHE / f"onnx-{ONNX_RECIPE}", name)
            / f"{name}_b{batch}_{input_format.lower()}.onnx")
    if path.is_file():
        return path
    if not have_tensorflow():
        carried = carried_onnx(path)
        if carried is None:
            pytest.skip(f"{path} is not cached and TensorFlow is absent")
        USED[name] = f"carried {carried.relative_to(CACHE)}"
        return carried
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


# The trained demo models and their synthetic data: the SSD is committed (models/shapes_ssd); the
# Faster R-CNN, too large to commit, is made by the command in docs/demo.md into
# .cache/trained/shapes_frcnn ($TFOD_TRT_TRAINED names another folder of trained models).
SHAPES_MODEL = ROOT / "models" / "shapes_ssd"
SHAPES_DATA = Path(os.environ.get("TFOD_TRT_SHAPES", ROOT / ".cache" / "shapes"))
TRAINED_MODELS = Path(os.environ.get("TFOD_TRT_TRAINED", ROOT / ".cache" / "trained"))
SHAPES_FRCNN = TRAINED_MODELS / "shapes_frcnn"
SHAPES_FRCNN_COMMAND = (
    "python tools/train_shapes.py --pipeline_config "
    "configs/shapes_faster_rcnn_resnet50_256.config --data .cache/shapes/train "
    "--work .cache/frcnn_training --export .cache/trained/shapes_frcnn")


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


def trained_frcnn() -> Path:
    """The trained Faster R-CNN's export folder; skips, naming the command that makes it, when
    it is absent."""
    if not (SHAPES_FRCNN / "saved_model" / "saved_model.pb").is_file():
        pytest.skip(f"the trained Faster R-CNN {SHAPES_FRCNN} is absent; make it with: "
                    f"{SHAPES_FRCNN_COMMAND}")
    return SHAPES_FRCNN


def trained_onnx(model: Path = SHAPES_MODEL) -> Path:
    """A trained demo model's export folder (models/shapes_ssd by default) converted by
    create_onnx.py (batch 1, NHWC), cached under a name that changes with the SavedModel, so a
    retrained model is never compared with a stale graph."""
    import hashlib

    saved_model = model / "saved_model"
    if not (saved_model / "saved_model.pb").is_file():  # no TensorFlow here: the copied graph
        carried = sorted((CACHE / "trained").glob(f"{model.name}_*_b1_nhwc.onnx"))
        if len(carried) != 1:
            pytest.skip(f"{saved_model} is absent and {CACHE / 'trained'} has no single graph")
        return carried[0]
    digest = hashlib.sha256((saved_model / "saved_model.pb").read_bytes()).hexdigest()[:12]
    path = CACHE / "trained" / f"{model.name}_{digest}_{ONNX_RECIPE}_b1_nhwc.onnx"
    if path.is_file():
        return path
    if not have_tensorflow():
        pytest.skip(f"{path} is not cached and TensorFlow is absent")
    import create_onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    code = create_onnx.main(["--pipeline_config", str(model / "pipeline.config"),
                             "--saved_model", str(saved_model), "--onnx", str(path)])
    assert code == 0, f"create_onnx.py failed for {model}"
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
