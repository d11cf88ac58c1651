"""Trains a TFOD SSD or Faster R-CNN from a pipeline config on a synthetic shapes set
(tools/make_shapes_dataset.py) from random initialisation, on the CPU, and exports it as a
float-input SavedModel.

    python tools/train_shapes.py --pipeline_config configs/shapes_ssd_mobilenet_v2_256.config \
        --data .cache/shapes/train --work .cache/shapes_training --export models/shapes_ssd
    python tools/train_shapes.py \
        --pipeline_config configs/shapes_faster_rcnn_resnet50_256.config \
        --data .cache/shapes/train --work .cache/frcnn_training --export .cache/trained/shapes_frcnn

The loop is TFOD's own (model_lib_v2.eager_train_step): `model.provide_groundtruth` ->
`preprocess` -> `predict` -> `loss` plus the regularisation losses, with the optimizer and
learning-rate schedule that `train_config` names (optimizer_builder), `batch_size` and
`num_steps` from the config, and its random horizontal / vertical flips (Faster R-CNN: the
losses of both stages, its proposals sampled against the ground truth). Seeded (`--seed`); a
checkpoint is written every `--checkpoint_every` steps under WORK and a restarted run resumes
from the last one. The export runs in a fresh process (exporter_lib_v2, `float_image_tensor`),
as tools/make_tfod_model.py does, and writes `pipeline.config`, `saved_model/`, `checkpoint/`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_dataset(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """All images of a shapes set in memory: uint8 [N,H,W,3], padded normalised boxes
    [N,M,4] (ymin, xmin, ymax, xmax), 0-based classes [N,M], box counts [N], class count."""
    from PIL import Image
    from tqdm import tqdm

    path = folder / "annotations.json"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; run tools/make_shapes_dataset.py --split train")
    coco = json.loads(path.read_text())
    per_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    most = max(len(v) for v in per_image.values())
    images = coco["images"]
    pixels = np.zeros((len(images), images[0]["height"], images[0]["width"], 3), np.uint8)
    boxes = np.zeros((len(images), most, 4), np.float32)
    classes = np.zeros((len(images), most), np.int32)
    counts = np.zeros(len(images), np.int32)
    for i, image in enumerate(tqdm(images, desc=f"loading {folder}", unit="img")):
        pixels[i] = np.asarray(Image.open(folder / "images" / image["file_name"]).convert("RGB"))
        h, w = image["height"], image["width"]
        anns = per_image.get(image["id"], [])
        counts[i] = len(anns)
        for k, ann in enumerate(anns):
            x, y, bw, bh = ann["bbox"]
            boxes[i, k] = (y / h, x / w, (y + bh) / h, (x + bw) / w)
            classes[i, k] = ann["category_id"] - 1
    return pixels, boxes, classes, counts, len(coco["categories"])


def batches(data, batch_size: int, seed: int, flips: tuple[bool, bool], start_step: int):
    """Endless shuffled batches with random flips; batch s depends only on (seed, s)."""
    pixels, boxes, classes, counts, _ = data
    step = start_step
    while True:
        rng = np.random.default_rng([seed, step])
        idx = rng.choice(len(pixels), batch_size, replace=False)
        img, box = pixels[idx].astype(np.float32), boxes[idx].copy()
        for b in range(batch_size):
            if flips[0] and rng.random() < 0.5:
                img[b] = img[b, :, ::-1]
                box[b, :, [1, 3]] = 1 - box[b, :, [3, 1]]
            if flips[1] and rng.random() < 0.5:
                img[b] = img[b, ::-1]
                box[b, :, [0, 2]] = 1 - box[b, :, [2, 0]]
        yield img, box, classes[idx], counts[idx]
        step += 1


def model_body(model_config):
    """The meta-architecture's message of a `model` config (its `ssd` or `faster_rcnn`)."""
    return getattr(model_config, model_config.WhichOneof("model"))


def set_class_prior(model, box_predictor, prior_logit: float = -4.6) -> None:
    """Sets the class heads' biases to the config's `class_prediction_bias_init` (focal-loss
    prior): the Keras convolutional heads of this TFOD version leave them at 0, which makes
    the first steps' focal loss about 40 instead of about 1."""
    which = box_predictor.WhichOneof("box_predictor_oneof")
    value = getattr(getattr(box_predictor, which), "class_prediction_bias_init", prior_logit)
    found = [v for v in model.trainable_variables
             if "ClassPredictor" in v.name and v.name.split("/")[-1].startswith("bias")]
    if not found:
        raise RuntimeError("no ClassPredictor bias found in the model")
    for var in found:
        var.assign(np.full(var.shape, value, np.float32))


def train(args: argparse.Namespace) -> None:
    """Runs (or resumes) the training loop and leaves a model-only checkpoint in WORK/final."""
    import tensorflow as tf
    from object_detection.builders import model_builder, optimizer_builder
    from object_detection.utils import config_util

    _configure_tensorflow(tf, args.threads, args.seed)
    configs = config_util.get_configs_from_pipeline_file(str(args.pipeline_config))
    train_config = configs["train_config"]
    steps = args.num_steps or train_config.num_steps
    batch_size = train_config.batch_size
    flips = _flips(train_config)
    body = model_body(configs["model"])
    data = _load_training_data(args.data, body.num_classes)

    model = model_builder.build(model_config=configs["model"], is_training=True)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    optimizer, _ = optimizer_builder.build(train_config.optimizer, global_step=global_step)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=global_step)
    manager = tf.train.CheckpointManager(ckpt, str(args.work / "train"), max_to_keep=2)
    size = data[0].shape[1:3]
    step_fn = _train_step(tf, model, optimizer, global_step, batch_size, size, data[4])
    _restore_or_initialise(tf, model, size, ckpt, manager, global_step, body)
    start = int(global_step)
    log = open(args.work / "train_log.txt", "a")  # noqa: SIM115 (closed below)
    stream = batches(data, batch_size, args.seed, flips, start)
    t0 = time.time()
    _run_steps(step_fn, stream, start, steps, log, t0, manager, args.checkpoint_every)
    manager.save(checkpoint_number=int(global_step))
    log.close()
    tf.train.Checkpoint(model=model).save(str(args.work / "final" / "ckpt"))
    pipeline = config_util.create_pipeline_proto_from_configs(configs)
    config_util.save_pipeline_config(pipeline, str(args.work / "final"))
    print(f"trained {steps} steps in {time.time() - t0:.0f} s")


def _configure_tensorflow(tf, threads: int, seed: int) -> None:
    """Thread counts, seeds, and the training phase."""
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.keras.utils.set_random_seed(seed)
    # As model_lib_v2 does: without it TFOD's BatchNorm layers run in inference mode while
    # training (no batch statistics, no moving-average updates) and the network dies.
    tf.keras.backend.set_learning_phase(True)


def _flips(train_config) -> tuple[bool, bool]:
    """(horizontal, vertical): the random flips the config's data augmentation names."""
    augment = {opt.WhichOneof("preprocessing_step") for opt in
               train_config.data_augmentation_options}
    return ("random_horizontal_flip" in augment, "random_vertical_flip" in augment)


def _load_training_data(
    folder: Path, config_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`load_dataset`, its class count checked against the config's."""
    data = load_dataset(folder)
    num_classes = data[4]
    if num_classes != config_classes:
        raise SystemExit(f"{folder} has {num_classes} classes, the config {config_classes}")
    return data


def _train_step(tf, model, optimizer, global_step, batch_size: int, size, num_classes: int):
    """One training step as a tf.function (model_lib_v2.eager_train_step): ground truth,
    preprocess, predict, loss plus regularisation, clipped gradients; returns the total
    loss and the losses."""

    @tf.function(input_signature=[
        tf.TensorSpec([batch_size, *size, 3], tf.float32),
        tf.TensorSpec([batch_size, None, 4], tf.float32),
        tf.TensorSpec([batch_size, None], tf.int32),
        tf.TensorSpec([batch_size], tf.int32)])
    def step_fn(images, boxes, classes, counts):
        model.provide_groundtruth(
            groundtruth_boxes_list=[boxes[b, :counts[b]] for b in range(batch_size)],
            groundtruth_classes_list=[tf.one_hot(classes[b, :counts[b]], num_classes)
                                      for b in range(batch_size)])
        with tf.GradientTape() as tape:
            prep, shapes = model.preprocess(images)
            losses = model.loss(model.predict(prep, shapes), shapes)
            reg = model.regularization_losses()
            losses["regularization"] = tf.add_n(reg) if reg else tf.constant(0.0)
            total = tf.add_n(list(losses.values()))
        variables = model.trainable_variables
        grads = tape.gradient(total, variables)
        grads, _ = tf.clip_by_global_norm(grads, 10.0)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        global_step.assign_add(1)
        return total, losses

    return step_fn


def _restore_or_initialise(tf, model, size, ckpt, manager, global_step, body) -> None:
    """Builds the model's variables, then restores the last checkpoint, or else sets the
    class prior of a fresh SSD."""
    # Variables exist only after a first call: build them, then restore. A training-mode
    # Faster R-CNN samples its proposals against the ground truth, so it needs one box.
    model.provide_groundtruth(groundtruth_boxes_list=[tf.constant([[0.1, 0.1, 0.5, 0.5]])],
                              groundtruth_classes_list=[tf.one_hot([0], body.num_classes)])
    prep, shapes = model.preprocess(tf.zeros([1, *size, 3]))
    model.predict(prep, shapes)
    if manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint)
        print(f"resumed from {manager.latest_checkpoint} at step {int(global_step)}")
    elif hasattr(body, "box_predictor"):  # SSD (Faster R-CNN has no focal-loss prior)
        set_class_prior(model, body.box_predictor)


def _run_steps(step_fn, stream, start: int, steps: int, log, t0: float, manager,
               checkpoint_every: int) -> None:
    """Steps ``start`` to ``steps``, each 10th (and the last) logged to ``log``, a checkpoint
    every ``checkpoint_every``."""
    from tqdm import tqdm

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="training", unit="step")
    for step in bar:
        images, boxes, classes, counts = next(stream)
        total, losses = step_fn(images, boxes, classes, counts)
        if step % 10 == 0 or step == steps - 1:
            parts = {k.removeprefix("Loss/"): round(float(v), 4) for k, v in losses.items()}
            rate = (time.time() - t0) / (step - start + 1)
            bar.set_postfix(loss=f"{float(total):.3f}")
            log.write(json.dumps({"step": step, "loss": round(float(total), 4), **parts,
                                  "s_per_step": round(rate, 3), "time": round(time.time() - t0)})
                      + "\n")
            log.flush()
        if (step + 1) % checkpoint_every == 0:
            manager.save(checkpoint_number=step + 1)


def recalibrate_batchnorm(model, images) -> None:
    """Sets every BatchNorm's moving statistics to the mean and variance of what it sees on
    `images`, in one forward pass in inference mode (forward order, so each layer sees inputs
    already normalised by the calibrated layers before it).

    Needed: in this custom loop (tf.function, legacy Keras) the V1 BatchNorm layers of TFOD
    never apply their moving-average updates, so the trained checkpoint still holds mean 0 /
    variance 1, and in inference every image gives the same (dead) features.
    """
    from make_tfod_model import normalise_batchnorm_statistics

    prep, shapes = model.preprocess(images[:1])
    model.predict(prep, shapes)  # creates the layers (and restores a deferred checkpoint)
    normalise_batchnorm_statistics(model, images, min_variance=0.0)


def export(work: Path, output: Path, data: Path | None = None, count: int = 64) -> None:
    """Recalibrates BatchNorm on `count` training images (WORK/final -> WORK/calibrated), then
    exports WORK/calibrated with exporter_lib_v2 (float input) in a fresh process."""
    import tensorflow as tf
    from object_detection.builders import model_builder
    from object_detection.utils import config_util
    from PIL import Image

    data = data or Path(__file__).resolve().parents[1] / ".cache" / "shapes" / "train"
    configs = config_util.get_configs_from_pipeline_file(str(work / "final" / "pipeline.config"))
    model = model_builder.build(model_config=configs["model"], is_training=False)
    status = tf.train.Checkpoint(model=model).restore(
        tf.train.latest_checkpoint(str(work / "final")))
    status.expect_partial()
    files = sorted((data / "images").glob("*.jpg"))[:count]
    if not files:
        raise SystemExit(f"{data}/images: no training images to recalibrate BatchNorm with")
    images = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) for f in files])
    recalibrate_batchnorm(model, tf.constant(images))
    status.assert_existing_objects_matched()
    tf.train.Checkpoint(model=model).save(str(work / "calibrated" / "ckpt"))
    config_util.save_pipeline_config(config_util.create_pipeline_proto_from_configs(configs),
                                     str(work / "calibrated"))
    subprocess.run([sys.executable, "-c",
                    "import sys; sys.path.insert(0, sys.argv[1]); import train_shapes; "
                    "train_shapes.export_saved_model(*map(train_shapes.Path, sys.argv[2:]))",
                    str(Path(__file__).parent), str(work / "calibrated"), str(output)],
                   check=True)


def export_saved_model(checkpoint_dir: Path, output: Path) -> None:
    """exporter_lib_v2 with a float input (run in a fresh process: Keras scopes stay unsuffixed)."""
    from object_detection import exporter_lib_v2
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(str(checkpoint_dir / "pipeline.config"))
    pipeline = config_util.create_pipeline_proto_from_configs(configs)
    exporter_lib_v2.export_inference_graph("float_image_tensor", pipeline, str(checkpoint_dir),
                                           str(output))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline_config", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="a make_shapes_dataset.py set")
    parser.add_argument("--work", type=Path, required=True, help="checkpoints and the log")
    parser.add_argument("--export", type=Path, help="export the trained model here")
    parser.add_argument("--num_steps", type=int, help="override train_config.num_steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint_every", type=int, default=200)
    parser.add_argument("--export_only", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.export_only:
        train(args)
    if args.export:
        if args.export_only and not (args.work / "final" / "pipeline.config").is_file():
            raise SystemExit(f"{args.work}/final: no trained model to export")
        subprocess.run([sys.executable, "-c",
                        "import sys; sys.path.insert(0, sys.argv[1]); import train_shapes; "
                        "train_shapes.export(*map(train_shapes.Path, sys.argv[2:]))",
                        str(Path(__file__).parent), str(args.work), str(args.export),
                        str(args.data)],
                       check=True)
        print(f"exported to {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
