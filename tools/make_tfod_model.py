"""Builds a real TFOD model from a pipeline config, gives it non-degenerate random weights and
exports it as a SavedModel, the way `exporter_main_v2.py` does.

    python tools/make_tfod_model.py --pipeline_config CFG --output DIR [--num_classes 3]
        [--keep_aspect_ratio MIN:MAX] [--input_type float_image_tensor|image_tensor] [--seed 0]
        [--calibration_images DIR [--calibration_count 8]]

DIR receives `pipeline.config`, `checkpoint/` and `saved_model/`. The zoo's own initialisers make
every SSD score equal (sigmoid(-4.6)) and Faster R-CNN detect nothing, so weights are
re-randomised: He-normal kernels, EfficientDet's BiFPN fusion weights in U(0.5, 1.5) (and, as its
layers use swish, all its BatchNorm gammas x4 and its squeeze-and-excitation kernels x0.1),
BatchNorm statistics set from a real forward pass (so that activations stay in range through
150 layers), and head kernels rescaled so that class logits have a std of about 2 and box
encodings about 0.5. Faster R-CNN heads are set per output column, stage by stage: pooled
second-stage features hardly differ between proposals, so a global rescale left one class
winning every proposal with near-equal scores; now each class's logits spread with a std of 2
across proposals around a random per-class offset. Mask R-CNN's mask head (random weights like
every conv) is set last: its mask logits get a std of 2 around 0 per class. The export runs in a
fresh process (as exporter_main_v2 does), otherwise Keras suffixes the layer scopes (`..._1`).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Scope names (whole path components) of the layers that produce the SSD heads' outputs.
CLASS_HEAD_KEYS = {"ClassPredictor"}
BOX_HEAD_KEYS = {"BoxEncodingPredictor", "BoxPredictor"}
TARGET_LOGIT_STD = 2.0
TARGET_BOX_STD = 0.5
TARGET_MASK_STD = 2.0
SSD_LOGIT_MEAN = -8.0  # sigmoid(-8 + 2 * 3.6) = 0.3: about 10 scores >= 0.3 per image
CLASS_OFFSET_STD = 1.0  # Faster R-CNN: spread of the per-class mean logit
# The last BatchNorm of a Keras ResNet bottleneck branch (conv4_block3_3_bn/gamma:0).
RESIDUAL_BRANCH_END = re.compile(r"_block\d+_3_bn/")
# EfficientDet's BiFPN fusion weights (ReLU, then normalised to sum 1): positive and unequal, as
# trained ones are; He-normal values would switch off a random half of the BiFPN's inputs.
BIFPN_FUSION_WEIGHTS = "bifpn_combine_weights:0"
# EfficientNet's swish halves small inputs but passes large ones, so an image's energy against
# the calibrated BatchNorm statistics compounds block after block (BiFPN output std 30x apart
# between two photos; some photos' logits saturate). BatchNorm gamma x4 keeps swish near its
# linear part; squeeze-and-excitation kernels x0.1 keep its gates near sigmoid(bias).
SWISH_GAMMA_SCALE = 4.0
SQUEEZE_EXCITE_KERNEL = re.compile(r"(^|/)se_(reduce|expand)_conv2d/kernel:0$")
SQUEEZE_EXCITE_GAIN = 0.1


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


def calibration_images(folder: Path | None, size: tuple[int, int], seed: int, count: int = 8):
    """Up to `count` photos resized to the input size (the last ones of the folder, sorted), or
    smooth random images when no folder is given. BatchNorm statistics taken on photos keep
    activations in range on photos, so float rounding is not amplified through the network."""
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tfod_trt.config.preprocessor import Preprocessor
    from tfod_trt.io.images import find_images
    from tfod_trt.io.resize import load_preprocessed

    if folder is not None:
        pre = Preprocessor.fixed_shape(*size)
        photos = [load_preprocessed(p, pre)[0] for p in find_images(folder)[-count:]]
        return tf.constant(np.stack(photos))
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (4, size[0] // 16 + 1, size[1] // 16 + 1, 3)).astype(np.float32)
    return tf.image.resize(tf.constant(coarse), size)


def randomise_weights(model, images, seed: int, residual_gamma: float = 1.0) -> None:
    """Replaces the zoo initialisation by non-degenerate random weights (see module docstring).

    residual_gamma < 1 scales the last BatchNorm of every ResNet bottleneck branch, as trained
    ResNets are: with unit branches, float rounding grows ~1.2x per block, so TF and ONNX Runtime
    drift apart by 4e-3 in the scores of a 101-layer net (measured tensor by tensor)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def forward():
        prep, shapes = model.preprocess(images)
        return model.predict(prep, shapes)

    forward()  # creates the variables
    swish = any(SQUEEZE_EXCITE_KERNEL.search(v.name) for v in model.variables)  # EfficientNet
    branch_ends = 0
    for var in model.variables:
        name, shape = var.name, var.shape.as_list()
        if name.endswith(BIFPN_FUSION_WEIGHTS):
            var.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif name.endswith(("kernel:0", "depthwise_kernel:0", "weights:0")) and len(shape) >= 2:
            var.assign(he_normal(name, shape, rng))
        elif name.endswith(("gamma:0", "moving_variance:0")):
            gamma = rng.uniform(0.8, 1.2, shape).astype(np.float32)
            if swish and name.endswith("gamma:0"):
                gamma *= SWISH_GAMMA_SCALE
            if RESIDUAL_BRANCH_END.search(name) and name.endswith("gamma:0"):
                gamma *= residual_gamma
                branch_ends += 1
            var.assign(gamma)
        elif name.endswith(("beta:0", "moving_mean:0", "bias:0", "biases:0")):
            var.assign(rng.normal(0, 0.05, shape).astype(np.float32))
    if residual_gamma != 1.0 and not branch_ends:
        raise RuntimeError("--residual_gamma: this model has no ResNet bottleneck BatchNorms")
    normalise_batchnorm_statistics(model, images)
    if hasattr(model, "_mask_rcnn_box_predictor"):  # Faster R-CNN
        rescale_two_stage_heads(model, forward, rng)
        rescale_mask_head(model, forward)
    else:
        rescale_heads(model, forward())


def he_normal(name: str, shape: list[int], rng):
    """A He-normal kernel (a depthwise kernel's fan-in is its window); squeeze-and-excitation
    kernels scaled by SQUEEZE_EXCITE_GAIN."""
    import numpy as np

    fan_in = int(np.prod(shape[:2] if "depthwise" in name else shape[:-1]))
    kernel = rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), shape)
    if SQUEEZE_EXCITE_KERNEL.search(name):
        kernel *= SQUEEZE_EXCITE_GAIN
    return kernel.astype(np.float32)


def normalise_batchnorm_statistics(model, images, min_variance: float = 1e-3) -> None:
    """Sets each BatchNorm's moving statistics from what it really sees, in one forward pass.

    Every BatchNorm layer is patched to store the mean and variance of its input as its moving
    statistics just before it normalises; running eagerly, the layers see already-normalised
    inputs in forward order.
    """
    import numpy as np
    import tensorflow as tf

    # TFOD's FreezableBatchNorm derives from Keras' V1 BatchNormalization, which is not a
    # subclass of tf.keras.layers.BatchNormalization: recognise the layers by their statistics.
    layers = [m for m in model.submodules
              if hasattr(m, "moving_mean") and hasattr(m, "moving_variance")]
    if not layers:
        raise RuntimeError("no BatchNorm layers found to normalise")
    originals = {id(layer): layer.call for layer in layers}

    def patched(layer):
        def call(inputs, *args, **kwargs):
            axes = list(range(len(inputs.shape) - 1))
            layer.moving_mean.assign(tf.reduce_mean(inputs, axes))
            variance = tf.math.reduce_variance(inputs, axes).numpy()
            layer.moving_variance.assign(np.maximum(variance, min_variance))
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
    """SSD: scales the last layers of the heads so logits and box encodings have useful spreads,
    and shifts the class logits to a low mean, so that only the tail of each image scores high
    (as with a trained model) instead of a hundred near-equal saturated scores."""
    import numpy as np

    targets = {
        "class_predictions_with_background": (CLASS_HEAD_KEYS, TARGET_LOGIT_STD, SSD_LOGIT_MEAN),
        "box_encodings": (BOX_HEAD_KEYS, TARGET_BOX_STD, None),
    }
    for key, (keys, target_std, target_mean) in targets.items():
        if key not in predictions:
            continue
        values = predictions[key].numpy()
        factor = target_std / max(float(np.std(values)), 1e-12)
        for var in model.variables:
            parts = var.name.split("/")
            # A separable conv is linear in both kernels: scale only the pointwise one.
            if not keys & set(parts) or "depthwise_kernel" in parts[-1]:
                continue
            var.assign(var * factor)
            if target_mean is not None and parts[-1].startswith("bias"):
                var.assign_add(np.full(var.shape, target_mean - factor * float(np.mean(values)),
                                       np.float32))


def rescale_two_stage_heads(model, forward, rng) -> None:
    """Faster R-CNN: each output column of the four head layers gets the target std across
    anchors (first stage) or proposals (second stage) and a mean of 0 (boxes) or a random
    offset (logits). The second stage is measured after the first is set: its proposals move."""
    import numpy as np

    rpn = model._first_stage_box_predictor._prediction_heads
    second = model._mask_rcnn_box_predictor
    stages = [
        [(rpn["class_predictions_with_background"], "_class_predictor_layers",
          "rpn_objectness_predictions_with_background", TARGET_LOGIT_STD, CLASS_OFFSET_STD),
         (rpn["box_encodings"], "_box_encoder_layers", "rpn_box_encodings", TARGET_BOX_STD, 0.0)],
        [([second._class_prediction_head], "_class_predictor_layers",
          "class_predictions_with_background", TARGET_LOGIT_STD, CLASS_OFFSET_STD),
         ([second._box_prediction_head], "_box_encoder_layers", "refined_box_encodings",
          TARGET_BOX_STD, 0.0)],
    ]
    for stage, heads in enumerate(stages):
        predictions = forward()
        # The RPN has one head per feature map (FPN level); its outputs concatenate their
        # locations in that order.
        sizes = [int(np.prod(f.shape[1:3])) for f in predictions["rpn_box_predictor_features"]]
        for head_list, layers, key, target, offset_std in heads:
            values = predictions[key].numpy()
            chunks = [values] if stage else np.split(
                values.reshape(len(values), sum(sizes), -1), np.cumsum(sizes)[:-1], axis=1)
            for head, chunk in zip(head_list, chunks, strict=True):
                layer = next(x for x in reversed(getattr(head, layers)) if hasattr(x, "kernel"))
                calibrate_layer(layer, chunk, target, offset_std, rng)


def rescale_mask_head(model, forward) -> None:
    """Mask R-CNN: the mask head's last conv gets mask logits of std TARGET_MASK_STD and mean 0
    per class over the detections' mask pixels, so that masks are half foreground with few
    pixels near the 0.5 threshold (as the first two stages, measured after they are set)."""
    heads = getattr(model._mask_rcnn_box_predictor, "_third_stage_heads", {})
    if "mask_predictions" not in heads:
        return
    logits = forward()["mask_predictions"].numpy()  # [detections, classes, height, width]
    layer = next(x for x in reversed(heads["mask_predictions"]._mask_predictor_layers)
                 if hasattr(x, "kernel"))
    calibrate_layer(layer, logits.transpose(0, 2, 3, 1), TARGET_MASK_STD, 0.0, None)


def calibrate_layer(layer, outputs, target: float, offset_std: float, rng) -> None:
    """Rescales a head layer so each output column has std `target` over `outputs` (its
    current outputs) and mean N(0, offset_std)."""
    import numpy as np

    columns = layer.kernel.shape[-1]
    values = outputs.reshape(-1, columns)
    mean, gain = values.mean(0), target / np.maximum(values.std(0), 1e-6)
    offset = rng.normal(0, offset_std, columns) if offset_std else np.zeros(columns)
    layer.kernel.assign(layer.kernel * gain.astype(np.float32))
    layer.bias.assign(((layer.bias.numpy() - mean) * gain + offset).astype(np.float32))


def build_and_save(args: argparse.Namespace, work: Path) -> None:
    import tensorflow as tf
    from object_detection.builders import model_builder
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(str(args.pipeline_config))
    pipeline = config_util.create_pipeline_proto_from_configs(configs)
    edit_config(pipeline, args.num_classes, args.keep_aspect_ratio)
    tf.keras.utils.set_random_seed(args.seed)
    model = model_builder.build(pipeline.model, is_training=False)
    images = calibration_images(args.calibration_images, input_size(pipeline), args.seed,
                                args.calibration_count)
    randomise_weights(model, images, args.seed, args.residual_gamma)
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
    parser.add_argument("--calibration_count", type=int, default=8,
                        help="how many photos (the folder's last) calibrate; Faster R-CNN runs its "
                        "second stage on 300 crops per photo, ~2 GB each")
    parser.add_argument("--calibration_images", type=Path,
                        help="photos for the BatchNorm statistics (default: smooth noise)")
    parser.add_argument("--residual_gamma", type=float, default=1.0,
                        help="scale of the last BatchNorm gamma in each ResNet bottleneck branch "
                        "(deep ResNets: 0.25 keeps rounding errors from compounding)")
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
