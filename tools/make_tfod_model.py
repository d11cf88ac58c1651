"""Builds a real TFOD model from a pipeline config, gives it non-degenerate random weights and
exports it as a SavedModel, the way `exporter_main_v2.py` does.

    python tools/make_tfod_model.py --pipeline_config CFG --output DIR [--num_classes 3]
        [--keep_aspect_ratio MIN:MAX] [--input_type float_image_tensor|image_tensor] [--seed 0]

DIR receives `pipeline.config`, `checkpoint/` and `saved_model/`. The zoo's own initialisers make
every SSD score equal (sigmoid(-4.6)) and Faster R-CNN detect nothing, so weights are
re-randomised: He-normal kernels, BatchNorm statistics set from a real forward pass (so that
activations stay in range through 150 layers), and head kernels rescaled so that class logits have
a std of about 2 and box encodings about 0.5. The export runs in a fresh process (as
exporter_main_v2 does), otherwise Keras suffixes the layer scopes (`..._1`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CLASS_HEAD_KEYS = ("ClassPredictor", "class_head", "objectness")
BOX_HEAD_KEYS = ("BoxEncodingPredictor",)
TARGET_LOGIT_STD = 2.0
TARGET_BOX_STD = 0.5


def edit_config(pipeline, num_classes: int | None, keep_aspect: tuple[int, int] | None) -> None:
    """Applies the fixture overrides to a TrainEvalPipelineConfig proto in place."""
    arch = pipeline.model.WhichOneof("model")
    model = getattr(pipeline.model, arch)
    if num_classes:
        model.num_classes = num_classes
    if keep_aspect:
        resizer = model.image_resizer
        resizer.ClearField("fixed_shape_resizer")
        resizer.keep_aspect_ratio_resizer.min_dimension = keep_aspect[0]
        resizer.keep_aspect_ratio_resizer.max_dimension = keep_aspect[1]
        resizer.keep_aspect_ratio_resizer.pad_to_max_dimension = True
    # Checkpoints of the zoo are not available here; build from scratch.
    pipeline.train_config.fine_tune_checkpoint = ""


def input_size(pipeline) -> tuple[int, int]:
    arch = pipeline.model.WhichOneof("model")
    resizer = getattr(pipeline.model, arch).image_resizer
    if resizer.HasField("fixed_shape_resizer"):
        return resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width
    side = resizer.keep_aspect_ratio_resizer.max_dimension
    return side, side


def randomise_weights(model, size: tuple[int, int], seed: int) -> None:
    """Replaces the zoo initialisation by non-degenerate random weights (see module docstring)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    images = tf.constant(rng.uniform(0, 255, (2, *size, 3)).astype(np.float32))

    def forward():
        prep, shapes = model.preprocess(images)
        return model.predict(prep, shapes)

    forward()  # creates the variables
    for var in model.variables:
        name, shape = var.name, var.shape.as_list()
        if name.endswith(("kernel:0", "depthwise_kernel:0", "weights:0")) and len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1])) if "depthwise" not in name else int(np.prod(shape[:2]))
            var.assign(rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), shape).astype(np.float32))
        elif name.endswith(("gamma:0", "moving_variance:0")):
            var.assign(rng.uniform(0.8, 1.2, shape).astype(np.float32))
        elif name.endswith(("beta:0", "moving_mean:0", "bias:0", "biases:0")):
            var.assign(rng.normal(0, 0.05, shape).astype(np.float32))
    normalise_batchnorm_statistics(model, images)
    rescale_heads(model, forward())


def normalise_batchnorm_statistics(model, images) -> None:
    """Sets each BatchNorm's moving statistics from what it really sees, in one forward pass.

    Every BatchNorm layer is patched to store the mean and variance of its input as its moving
    statistics just before it normalises; running eagerly, the layers see already-normalised
    inputs in forward order.
    """
    import numpy as np
    import tensorflow as tf

    layers = [m for m in model.submodules if isinstance(m, tf.keras.layers.BatchNormalization)]
    originals = {id(layer): layer.call for layer in layers}

    def patched(layer):
        def call(inputs, *args, **kwargs):
            axes = list(range(len(inputs.shape) - 1))
            layer.moving_mean.assign(tf.reduce_mean(inputs, axes))
            variance = tf.math.reduce_variance(inputs, axes).numpy()
            layer.moving_variance.assign(np.maximum(variance, 1e-3))
            return originals[id(layer)](inputs, *args, **kwargs)

        return call

    for layer in layers:
        layer.call = patched(layer)
    try:
        prep, shapes = model.preprocess(images)
        model.predict(prep, shapes)
    finally:
        for layer in layers:
            layer.call = originals[id(layer)]


def rescale_heads(model, predictions: dict) -> None:
    """Scales the last layers of the heads so logits and box encodings have useful spreads."""
    import numpy as np

    targets = []
    for key, value in predictions.items():
        if not hasattr(value, "numpy") or value.dtype.name != "float32":
            continue
        if key in ("class_predictions_with_background", "rpn_objectness_predictions_with_background"):
            targets.append((CLASS_HEAD_KEYS, value, TARGET_LOGIT_STD, key))
        elif key in ("box_encodings", "rpn_box_encodings", "refined_box_encodings"):
            targets.append((BOX_HEAD_KEYS, value, TARGET_BOX_STD, key))
    for keys, value, target, key in targets:
        std = float(np.std(value.numpy()))
        if std <= 0:
            continue
        scope = "FirstStage" if key.startswith("rpn") else None
        for var in model.variables:
            name = var.name
            if not any(k in name for k in keys):
                continue
            first_stage = "FirstStage" in name
            if (scope is None) == first_stage:
                continue
            var.assign(var * (target / std))


def build_and_save(args: argparse.Namespace, work: Path) -> None:
    import tensorflow as tf
    from object_detection.builders import model_builder
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(str(args.pipeline_config))
    pipeline = config_util.create_pipeline_proto_from_configs(configs)
    edit_config(pipeline, args.num_classes, args.keep_aspect_ratio)
    tf.keras.utils.set_random_seed(args.seed)
    model = model_builder.build(pipeline.model, is_training=False)
    randomise_weights(model, input_size(pipeline), args.seed)
    tf.train.Checkpoint(model=model).save(str(work / "ckpt" / "ckpt"))
    config_util.save_pipeline_config(pipeline, str(work))


def export(args: argparse.Namespace, work: Path) -> None:
    from object_detection import exporter_lib_v2
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(str(work / "pipeline.config"))
    pipeline = config_util.create_pipeline_proto_from_configs(configs)
    exporter_lib_v2.export_inference_graph(
        args.input_type, pipeline, str(work / "ckpt"), str(args.output)
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline_config", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--num_classes", type=int)
    parser.add_argument(
        "--keep_aspect_ratio", metavar="MIN:MAX",
        type=lambda s: tuple(int(v) for v in s.split(":")),
        help="replace the resizer by keep_aspect_ratio_resizer MIN/MAX with padding",
    )
    parser.add_argument(
        "--input_type", default="float_image_tensor", choices=["float_image_tensor", "image_tensor"]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--_export_from", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._export_from:
        export(args, args._export_from)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_and_save(args, work)
        forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
        subprocess.run(
            [sys.executable, __file__, *forwarded, "--_export_from", str(work)], check=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
