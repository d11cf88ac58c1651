"""COCO mAP (pycocotools) of a detection model on an annotated image folder, the same evaluation
for a TensorRT engine, its ONNX model on the CPU reference runtime, or the TFOD SavedModel.

    python eval_coco.py -e model.engine -i val2017/ -a instances_val2017.json
    python eval_coco.py --onnx model.onnx -i val2017/ -a instances_val2017.json --per_category
    python eval_coco.py --saved_model exported/saved_model -i val2017/ -a instances_val2017.json
    python eval_coco.py --detections detections.json -a instances_val2017.json [-i val2017/]

Every image of the folder that the annotations list is evaluated (found by ``file_name``), also
those the model finds nothing in; images the annotations do not list are reported and skipped.
All three models see the same preprocessed images (network size, pixels 0..255): the SavedModel
gets the resizer of its ``pipeline.config`` (or ``-p``) applied here, as the converted models do.

Class index -> COCO ``category_id``: index + 1, which is TFOD's label map id (0 is background);
with ``-l`` the label map must name exactly the annotations' categories.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import infer
from cli import UsageError, run_main
from image_batcher import KEEP_ASPECT_RATIO, Preprocessor, find_images
from infer import ImageResult, Runner
from labels import load_labels
from onnx_utils import atomic_write_bytes
from parity import SavedModelRunner
from pipeline_config import load_pipeline_config

PROG = "eval_coco.py"
# pycocotools' summary, in its order: name -> (IoU, area, detections per image).
STATS = {
    "AP": ("0.50:0.95", "all", 100), "AP50": ("0.50", "all", 100),
    "AP75": ("0.75", "all", 100), "APs": ("0.50:0.95", "small", 100),
    "APm": ("0.50:0.95", "medium", 100), "APl": ("0.50:0.95", "large", 100),
    "AR1": ("0.50:0.95", "all", 1), "AR10": ("0.50:0.95", "all", 10),
    "AR100": ("0.50:0.95", "all", 100), "ARs": ("0.50:0.95", "small", 100),
    "ARm": ("0.50:0.95", "medium", 100), "ARl": ("0.50:0.95", "large", 100),
}
SHOWN = 10  # names listed in a message before "... and N more"


# ---------------------------------------------------------------------------------------------
# Annotations, images and categories


def quiet() -> contextlib.AbstractContextManager:
    """Silences pycocotools' progress prints."""
    return contextlib.redirect_stdout(io.StringIO())


def listing(items: Iterable[object]) -> str:
    """``a, b, c`` with at most SHOWN items, then ``... and N more``."""
    items = list(items)
    more = f" ... and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(str(item) for item in items[:SHOWN]) + more


def load_annotations(path: Path) -> COCO:
    """A COCO instances file; errors name the file."""
    if not path.is_file():
        raise UsageError(f"{path}: annotations file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{path}: cannot read the annotations ({err})") from err
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise UsageError(f"{path}: not a COCO annotations file (no '{key}' list)")
    if not all(isinstance(image, dict) and {"id", "file_name"} <= set(image)
               for image in data["images"]):
        raise UsageError(f"{path}: every image needs an 'id' and a 'file_name'")
    try:
        for ann in data["annotations"]:  # optional in some exporters' files
            ann.setdefault("iscrowd", 0)
            ann.setdefault("area", ann["bbox"][2] * ann["bbox"][3])
        gt = COCO()
        gt.dataset = data
        with quiet():
            gt.createIndex()
    except (KeyError, TypeError, IndexError) as err:
        raise UsageError(f"{path}: malformed COCO annotations ({type(err).__name__}: "
                         f"{err})") from err
    return gt


def image_ids_by_name(gt: COCO) -> dict[str, int]:
    """file name (without folders) -> image id."""
    return {Path(image["file_name"]).name: image["id"] for image in gt.dataset["images"]}


def annotated_images(images: list[Path], gt: COCO, annotations: Path) -> dict[Path, int]:
    """The images the annotations list, with their ids; the others are reported and left out."""
    ids = image_ids_by_name(gt)
    found = {path: ids[path.name] for path in images if path.name in ids}
    absent = [path.name for path in images if path.name not in ids]
    if not found:
        raise UsageError(f"{annotations}: lists none of the {len(images)} images of "
                         f"{images[0].parent} (e.g. {listing(absent[:3])})")
    if absent:
        print(f"{PROG}: warning: {len(absent)} images are not in {annotations}, skipped: "
              f"{listing(absent)}", file=sys.stderr)
    return found


def category_names(gt: COCO) -> dict[int, str]:
    """category_id -> name."""
    return {cat["id"]: cat.get("name", str(cat["id"])) for cat in gt.dataset["categories"]}


def check_categories(
    gt: COCO, annotations: Path, labels: dict[int, str] | None, labels_path: Path | None,
    num_classes: int | None,
) -> None:
    """The annotations' categories must be what the model (ids 1..num_classes) or the label map
    (its ids) can produce, and with a label map every one of its ids must be a category."""
    names = category_names(gt)
    if labels is not None:
        label_ids = {index + 1 for index in labels}
        extra = sorted(label_ids - set(names))
        if extra:
            raise UsageError(f"{labels_path}: label map ids {listing(extra)} are no categories "
                             f"of {annotations}")
        beyond = sorted(i for i in label_ids if num_classes and i > num_classes)
        if beyond:
            raise UsageError(f"{labels_path}: label map ids {listing(beyond)} exceed the "
                             f"model's {num_classes} classes")
        renamed = [f"{i} ({labels[i - 1]!r} vs {names[i]!r})" for i in sorted(label_ids)
                   if labels[i - 1] != names[i]]
        if renamed:
            print(f"{PROG}: warning: {labels_path} names categories of {annotations} "
                  f"differently: {listing(renamed)}", file=sys.stderr)
        producible, source = label_ids, f"the label map {labels_path}"
    elif num_classes:
        producible, source = set(range(1, num_classes + 1)), f"the model's {num_classes} classes"
    else:
        return
    missing = sorted(set(names) - producible)
    if missing:
        raise UsageError(
            f"{annotations}: categories {listing(f'{i} ({names[i]})' for i in missing)} cannot "
            f"be produced by {source} (class index i is category i + 1); pass -l with a label "
            "map of the model's classes and annotations of those categories")


def to_records(
    results: Iterable[ImageResult], image_ids: dict[Path, int], gt: COCO
) -> tuple[list[dict], int]:
    """COCO results entries with image ids, and how many detections were left out because their
    category (class index + 1) is none of the annotations'."""
    names = category_names(gt)
    by_class = {cid - 1: name for cid, name in names.items()}
    records, dropped = [], 0
    for result in results:
        for record in infer.coco_records(result, by_class):
            if record["category_id"] in names:
                records.append({"image_id": image_ids[result.path], **record})
            else:
                dropped += 1
    return records, dropped


def load_detections(path: Path, gt: COCO, score_threshold: float) -> list[dict]:
    """A detections JSON (COCO results, or infer.py's detections.json with file names)."""
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{path}: cannot read the detections ({err})") from err
    if not isinstance(records, list):
        raise UsageError(f"{path}: not a detections file (a JSON list of COCO results)")
    ids, known = image_ids_by_name(gt), set(gt.getImgIds())
    unknown: list[str] = []
    for number, record in enumerate(records, 1):
        if not (isinstance(record, dict) and isinstance(record.get("score"), int | float)
                and isinstance(record.get("bbox"), list) and len(record["bbox"]) == 4
                and isinstance(record.get("category_id"), int)):
            raise UsageError(f"{path}: detection {number} is not {{\"bbox\": [x, y, width, "
                             "height], \"score\": S, \"category_id\": C, ...}")
        if "image_id" not in record:
            record["image_id"] = ids.get(Path(str(record.get("file_name"))).name)
        if record["image_id"] not in known:
            unknown.append(str(record.get("file_name", record["image_id"])))
    if unknown:
        raise UsageError(f"{path}: {len(unknown)} detections are of images that are not in the "
                         f"annotations: {listing(sorted(set(unknown)))}")
    return [record for record in records if record["score"] >= score_threshold]


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass
class CocoScores:
    """pycocotools' 12 summary numbers by name (-1: no ground truth of that kind), and per
    category: id, name, ground-truth boxes, AP and AP50."""

    stats: dict[str, float]
    per_category: list[dict]

    def table(self) -> str:
        return "\n".join(
            f"{name:<6}{value:8.4f}   IoU={iou:<9} area={area:<6} maxDets={dets}"
            for (name, (iou, area, dets)), value in zip(STATS.items(), self.stats.values(),
                                                         strict=True)
        )

    def category_table(self) -> str:
        lines = [f"{'id':>4}  {'category':<20}{'boxes':>6}{'AP':>8}{'AP50':>8}"]
        lines += [
            f"{c['id']:>4}  {c['name'][:20]:<20}{c['boxes']:>6}"
            + "".join(f"{v:8.4f}" if v >= 0 else f"{'-':>8}" for v in (c["AP"], c["AP50"]))
            for c in self.per_category
        ]
        return "\n".join(lines)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def score_detections(gt: COCO, records: list[dict], image_ids: Iterable[int]) -> CocoScores:
    """COCO bounding-box evaluation of ``records`` over exactly ``image_ids``."""
    with quiet():
        if records:
            dt = gt.loadRes([dict(record) for record in records])  # loadRes adds keys
        else:  # loadRes refuses an empty list: no detections scores 0
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "annotations": [],
                          "categories": gt.dataset["categories"]}
            dt.createIndex()
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.imgIds = sorted(set(image_ids))
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [IoU, recall, category, area, maxDets]
    names = category_names(gt)
    per_category = []
    for k, cat_id in enumerate(evaluator.params.catIds):
        anns = gt.loadAnns(gt.getAnnIds(imgIds=evaluator.params.imgIds, catIds=[cat_id],
                                        iscrowd=False))
        per_category.append({
            "id": cat_id, "name": names[cat_id], "boxes": len(anns),
            "AP": _mean_valid(precision[:, :, k, 0, -1]),
            "AP50": _mean_valid(precision[0, :, k, 0, -1]),
        })
    return CocoScores(dict(zip(STATS, map(float, evaluator.stats), strict=True)), per_category)


# ---------------------------------------------------------------------------------------------
# Models


class TensorFlowRunner:
    """The TFOD SavedModel behind infer.py's Runner interface: it takes the batches made for
    ``input_shape`` (the layout and batch size of another model, if need be) and its classes
    are TFOD's 1-based ones (metadata ``class_offset`` 1)."""

    def __init__(self, saved_model: Path, pre: Preprocessor, batch_size: int = 1,
                 layout: str = "NHWC", num_classes: int | None = None) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):  # leave GPU memory to TensorRT
            with contextlib.suppress(RuntimeError):  # TensorFlow's GPU already initialised
                tf.config.experimental.set_memory_growth(gpu, True)
        self.model = SavedModelRunner(saved_model)
        self.layout = layout
        self.metadata = {"class_offset": 1, "preprocessor": pre.to_dict(), "input_format": layout,
                         "num_classes": num_classes, "batch_size": batch_size}
        hw = [pre.height, pre.width]
        self.input_shape = [batch_size, 3, *hw] if layout == "NCHW" else [batch_size, *hw, 3]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self.model.infer(batch.transpose(0, 2, 3, 1) if self.layout == "NCHW" else batch)


def have_tensorflow() -> bool:
    """Whether TensorFlow is installed in this Python (without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


def saved_model_folder(path: Path) -> Path:
    """``path`` itself, or the ``saved_model`` folder of a TFOD export folder."""
    for folder in (path, path / "saved_model"):
        if (folder / "saved_model.pb").is_file():
            return folder
    raise UsageError(f"{path}: no saved_model.pb here (pass a TFOD export's saved_model folder)")


def saved_model_preprocessor(
    folder: Path, pipeline_config: Path | None, preprocessor: str | None
) -> tuple[Preprocessor, int | None]:
    """(resizer, class count) from ``pipeline_config`` (default: the pipeline.config beside the
    saved_model folder, when there is one), or the resizer of ``preprocessor`` (``-p``)."""
    config = pipeline_config or folder.parent / "pipeline.config"
    if pipeline_config or config.is_file():
        model = load_pipeline_config(config)
        stored = model.preprocessor
        pre = infer.resolve_preprocessor(preprocessor, stored.to_dict(),
                                         (stored.height, stored.width))
        return pre, model.num_classes
    if preprocessor:
        return Preprocessor.from_string(preprocessor), None
    raise UsageError(f"{folder}: no pipeline.config beside the SavedModel; pass "
                     "--pipeline_config or -p/--preprocessor")


def open_saved_model(folder: Path, pre: Preprocessor, num_classes: int | None = None,
                     batch_size: int = 1, layout: str = "NHWC") -> TensorFlowRunner:
    """The SavedModel on TensorFlow; a UsageError when TensorFlow is absent or cannot load it."""
    if not have_tensorflow():
        raise UsageError("TensorFlow is not installed in this Python: the SavedModel needs it "
                         "(the converted model runs without it: --onnx or --engine)")
    if pre.kind == KEEP_ASPECT_RATIO and pre.min_dimension != pre.max_dimension:
        raise UsageError(f"{folder}: TFOD's resizer {pre.to_string()} would shrink the padded "
                         f"{pre.height}x{pre.width} input once more, so the SavedModel cannot "
                         "take the images the converted model takes (only fixed_shape or "
                         "keep_aspect_ratio with MIN == MAX can)")
    try:
        return TensorFlowRunner(folder, pre, batch_size, layout, num_classes)
    except Exception as err:  # whatever TensorFlow raises for a folder it cannot load
        raise UsageError(f"{folder}: cannot load the SavedModel: {type(err).__name__}: "
                         f"{err}") from err


def open_model(args: argparse.Namespace) -> Runner:
    """The runner that ``--engine``, ``--onnx`` or ``--saved_model`` asks for."""
    if not args.saved_model:
        return infer.open_runner(args)
    folder = saved_model_folder(args.saved_model)
    return open_saved_model(folder, *saved_model_preprocessor(folder, args.pipeline_config,
                                                              args.preprocessor))


def detect_all(runner: Runner, images: dict[Path, int], args: argparse.Namespace,
               desc: str = PROG) -> tuple[list[ImageResult], list[tuple[Path, str]]]:
    """Runs ``runner`` over ``images`` with a progress bar: results, and unreadable images."""
    preprocessor = None if args.saved_model else args.preprocessor  # already applied
    try:
        batcher = infer.make_batcher(runner, args.input, preprocessor)
    except ValueError as err:
        raise UsageError(f"{args.engine or args.onnx or args.saved_model}: {err}") from err
    batcher.images = list(images)
    results = []
    with logging_redirect_tqdm(), tqdm(total=len(batcher), unit="image", desc=desc) as bar:
        for result in infer.detect_folder(runner, batcher, args.score_threshold):
            results.append(result)
            bar.update(len(results) + len(batcher.skipped) - bar.n)
        bar.update(len(batcher) - bar.n)
    return results, batcher.skipped


# ---------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="COCO mAP of a TensorRT engine, its ONNX model (CPU) or the "
                               "TFOD SavedModel (TensorFlow), or of a detections JSON.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-e", "--engine", type=Path, help="TensorRT engine (TensorRT and a GPU)")
    source.add_argument("--onnx", type=Path,
                        help="ONNX model from create_onnx.py, run on the CPU reference runtime")
    source.add_argument("--saved_model", type=Path,
                        help="TFOD SavedModel folder (or its export folder), run on TensorFlow")
    source.add_argument("--detections", type=Path,
                        help="only score this detections JSON (COCO results with image_id, or "
                             "infer.py's detections.json with file_name)")
    parser.add_argument("-i", "--input", type=Path,
                        help="folder of the annotated images (with --detections: optional, "
                             "restricts the evaluation to the images found there)")
    parser.add_argument("-a", "--annotations", required=True, type=Path,
                        help="COCO annotations JSON, e.g. instances_val2017.json")
    parser.add_argument("-p", "--preprocessor",
                        help="fixed_shape:HxW or keep_aspect_ratio:MIN:MAX (default: the "
                             "model's metadata, or the SavedModel's pipeline.config)")
    parser.add_argument("--pipeline_config", type=Path,
                        help="with --saved_model: its pipeline.config (default: the one beside "
                             "the saved_model folder)")
    parser.add_argument("-l", "--labels", type=Path,
                        help="the model's TFOD label map: class index i is category id i + 1, "
                             "and its ids must be the annotations' categories (default: the "
                             "model's classes are category ids 1..num_classes)")
    parser.add_argument("-t", "--score_threshold", type=float, default=0.0,
                        help="score only detections at least this (default: all)")
    parser.add_argument("--results", type=Path, help="write the detections to this COCO JSON")
    parser.add_argument("--per_category", action="store_true",
                        help="also print AP and AP50 per category")
    args = parser.parse_args(argv)
    if not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score_threshold {args.score_threshold} must lie in [0, 1]")
    if args.detections:
        used = [flag for flag, value in (("-p", args.preprocessor), ("-l", args.labels),
                                         ("--pipeline_config", args.pipeline_config),
                                         ("--results", args.results)) if value]
        if used:
            parser.error(f"{', '.join(used)}: not with --detections (it only scores the file)")
    elif args.input is None:
        parser.error("-i/--input is required (the annotated images)")
    if args.pipeline_config and not args.saved_model:
        parser.error("--pipeline_config goes with --saved_model")
    return args


def write_results(path: Path, records: list[dict]) -> None:
    """One detection per line, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",\n".join(json.dumps(record) for record in records)
    atomic_write_bytes(path, f"[\n{body}\n]\n".encode())


def run(args: argparse.Namespace) -> int:
    """The command line's work; raises UsageError (or OSError/ValueError) for bad input."""
    gt = load_annotations(args.annotations)
    images = annotated_images(find_images(args.input), gt, args.annotations) if args.input else {}
    if args.detections:
        records = load_detections(args.detections, gt, args.score_threshold)
        evaluated = list(images.values()) or gt.getImgIds()
        what = str(args.detections)
    else:
        labels = load_labels(args.labels) if args.labels else None
        runner = open_model(args)
        check_categories(gt, args.annotations, labels, args.labels,
                         (runner.metadata or {}).get("num_classes"))
        results, skipped = detect_all(runner, images, args)
        for path, reason in skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        if not results:
            print(f"{PROG}: no image could be read", file=sys.stderr)
            return 1
        records, dropped = to_records(results, images, gt)
        if dropped:
            print(f"{PROG}: warning: {dropped} detections of classes that are no category of "
                  f"{args.annotations} left out", file=sys.stderr)
        if args.results:
            write_results(args.results, records)
        evaluated = [images[result.path] for result in results]
        what = str(args.engine or args.onnx or args.saved_model)
    scores = score_detections(gt, records, evaluated)
    print(f"{what}: {len(evaluated)} images, {len(records)} detections")
    print(scores.table())
    if args.per_category:
        print(scores.category_table())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 no image could be read, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
