"""Compares the TFOD SavedModel (TensorFlow) with its TensorRT engine, or its ONNX model on the
CPU reference runtime, on the same preprocessed images.

    python compare_tf.py -s exported/saved_model -e model.engine -i images/ -o compare/ \\
        [-a instances_val2017.json] [-l label_map.pbtxt] [-n 16] [-t 0.3] [--iou 0.5]
    python compare_tf.py -s exported/saved_model --onnx model.onnx -i images/ -o compare/

Writes per image ``<stem>.png`` (TensorFlow | TensorRT or ONNX | ground truth, the last with
``-a``) and ``report.json``: per image and overall, the detections (score >= ``-t``) matched
across the two (same class, IoU >= ``--iou``), those left unmatched on each side and the score
differences of the matched pairs; with ``-a`` also the COCO mAP of each side (all detections).
TensorFlow and the runtime must be importable in one Python (TensorRT: also a GPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import eval_coco
import infer
from cli import UsageError, run_main
from image_batcher import ImageBatcher, ImageError, find_images, load_image
from infer import ImageResult, Runner
from labels import load_labels
from onnx_utils import atomic_write_bytes
from parity import Detections, MatchResult, match_detections, split_batch
from visualize import annotate, save_panels

PROG = "compare_tf.py"
log = logging.getLogger("compare_tf")


def detect_together(
    runners: Sequence[Runner], batcher: ImageBatcher
) -> Iterator[tuple[ImageResult, ...]]:
    """Runs every runner on each batch; yields, per readable image, one result per runner."""
    offsets = [infer.class_offset_of(runner) for runner in runners]
    frames = [infer.box_frame(runner) for runner in runners]
    for batch in batcher:
        outputs = [split_batch(infer.run_batch(runner, batch), offset)[: batch.count]
                   for runner, offset in zip(runners, offsets, strict=True)]
        for path, scale, *found in zip(batch.paths, batch.scales, *outputs, strict=True):
            yield tuple(infer.to_image_result(path, scale, d, 0.0, frame)
                        for d, frame in zip(found, frames, strict=True))


def above(result: ImageResult, threshold: float) -> ImageResult:
    """The detections scoring at least ``threshold``."""
    keep = result.scores >= threshold
    return replace(result, boxes=result.boxes[keep], scores=result.scores[keep],
                   classes=result.classes[keep])


def match(tf: ImageResult, converted: ImageResult, min_iou: float) -> MatchResult:
    """TensorFlow's detections (best first) each paired with the converted model's detection of
    the same class with the highest IoU, when that is >= ``min_iou``."""
    def pixels(r: ImageResult) -> Detections:
        return Detections(r.boxes, r.scores, r.classes)

    return match_detections(pixels(tf), pixels(converted), min_iou, max_score_diff=1.0)


def summary(result: MatchResult) -> dict:
    """The report's numbers for one image or all of them. ``matched_rate``: matched pairs over
    the larger side's detections (1.0 when neither side found anything)."""
    converted = result.matched + result.unmatched_test
    larger = max(result.reference, converted)
    return {
        "tensorflow_detections": result.reference,
        "converted_detections": converted,
        "matched": result.matched,
        "unmatched_tensorflow": result.reference - result.matched,
        "unmatched_converted": result.unmatched_test,
        "matched_rate": result.matched / larger if larger else 1.0,
        "score_diff_mean": result.mean_score_diff if result.matched else None,
        "score_diff_max": result.max_score_diff if result.matched else None,
    }


def describe(name: str, numbers: dict, runtime: str) -> str:
    """One printed line of the report."""
    diffs = ("" if numbers["score_diff_mean"] is None else
             f", |score diff| mean {numbers['score_diff_mean']:.2e} max "
             f"{numbers['score_diff_max']:.2e}")
    return (f"{name}: TensorFlow {numbers['tensorflow_detections']}, {runtime} "
            f"{numbers['converted_detections']}, matched {numbers['matched']} "
            f"({100 * numbers['matched_rate']:.1f}%), unmatched "
            f"{numbers['unmatched_tensorflow']} / {numbers['unmatched_converted']}{diffs}")


def ground_truth(gt: COCO, image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """An image's annotated boxes (pixels, xmin ymin xmax ymax) and 0-based classes."""
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
    return boxes.reshape(-1, 4), np.array([a["category_id"] - 1 for a in anns], dtype=np.int64)


def save_comparison(
    results: tuple[ImageResult, ImageResult], titles: list[str], names: dict[int, str],
    truth: tuple[np.ndarray, np.ndarray] | None, out_path: Path,
) -> None:
    """The panels of one image: each model's detections, then the ground truth if given."""
    try:
        image = load_image(results[0].path)
    except ImageError as err:  # changed since the batcher read it
        log.warning("no picture for %s: %s", results[0].path, err.reason)
        return
    panels = [annotate(image, r.boxes, r.scores, r.classes, names) for r in results]
    if truth is not None:
        panels.append(annotate(image, truth[0], None, truth[1], names))
    save_panels(panels, titles, out_path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Compare the TFOD SavedModel (TensorFlow) with its TensorRT "
                               "engine or its ONNX model (CPU) on the same images.")
    parser.add_argument("-s", "--saved_model", required=True, type=Path,
                        help="TFOD SavedModel folder (or its export folder)")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("-e", "--engine", type=Path, help="TensorRT engine (TensorRT and a GPU)")
    model.add_argument("--onnx", type=Path,
                       help="ONNX model from create_onnx.py, run on the CPU reference runtime")
    parser.add_argument("-i", "--input", required=True, type=Path, help="an image folder")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="folder for the panels and report.json (created)")
    parser.add_argument("-n", "--num_images", type=int, default=16,
                        help="compare the first N images (default 16)")
    parser.add_argument("-a", "--annotations", type=Path,
                        help="COCO annotations JSON: ground-truth panels and each side's mAP")
    parser.add_argument("-l", "--labels", type=Path,
                        help="the model's TFOD label map (names; with -a its ids must be the "
                             "annotations' categories)")
    parser.add_argument("-p", "--preprocessor",
                        help="fixed_shape:HxW or keep_aspect_ratio:MIN:MAX (default: the "
                             "converted model's metadata)")
    parser.add_argument("-t", "--score_threshold", type=float, default=0.3,
                        help="compare and draw detections scoring at least this (default 0.3; "
                             "the mAP uses all)")
    parser.add_argument("--iou", type=float, default=0.5,
                        help="least IoU of a matched pair (default 0.5)")
    args = parser.parse_args(argv)
    for flag, value in (("--score_threshold", args.score_threshold), ("--iou", args.iou)):
        if not 0.0 <= value <= 1.0:
            parser.error(f"{flag} {value} must lie in [0, 1]")
    if args.num_images < 1:
        parser.error(f"--num_images {args.num_images} must be at least 1")
    return args


def run(args: argparse.Namespace) -> int:
    """The command line's work; raises UsageError (or OSError/ValueError) for bad input."""
    if not eval_coco.have_tensorflow():
        raise UsageError("TensorFlow is not installed in this Python: compare_tf.py needs "
                         "TensorFlow and TensorRT (or --onnx) in one environment; without "
                         "TensorFlow, eval_coco.py --engine scores the engine alone")
    folder = eval_coco.saved_model_folder(args.saved_model)
    gt = eval_coco.load_annotations(args.annotations) if args.annotations else None
    labels = load_labels(args.labels) if args.labels else None
    images = find_images(args.input)
    image_ids = eval_coco.annotated_images(images, gt, args.annotations) if gt else {}
    images = (list(image_ids) if gt else images)[: args.num_images]
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"{args.output}: exists and is not a folder")
    if args.output.resolve() in {path.parent.resolve() for path in images}:
        raise UsageError(f"{args.output}: is the image folder; choose another --output")

    converted = infer.open_runner(args)
    meta = converted.metadata or {}
    if gt:
        eval_coco.check_categories(gt, args.annotations, labels, args.labels,
                                   meta.get("num_classes"))
    try:
        batcher = infer.make_batcher(converted, args.input, args.preprocessor)
    except ValueError as err:
        raise UsageError(f"{args.engine or args.onnx}: {err}") from err
    batcher.images = images
    tf = eval_coco.open_saved_model(folder, batcher.pre, meta.get("num_classes"),
                                    batcher.batch_size, batcher.layout)
    runtime = "TensorRT" if args.engine else "ONNX"
    titles = ["TensorFlow", runtime if args.engine else "ONNX (CPU reference)"]
    titles += ["ground truth"] if gt else []
    names = labels or ({cid - 1: name for cid, name in eval_coco.category_names(gt).items()}
                       if gt else {})
    args.output.mkdir(parents=True, exist_ok=True)
    stems = infer.output_stems(images)

    entries, total, both = [], MatchResult(), []
    with logging_redirect_tqdm(), tqdm(total=len(images), unit="image", desc=PROG) as bar:
        for pair in detect_together([tf, converted], batcher):
            both.append(pair)
            shown = tuple(above(r, args.score_threshold) for r in pair)
            result = match(*shown, args.iou)
            total.add(result)
            path = pair[0].path
            truth = ground_truth(gt, image_ids[path]) if gt else None
            save_comparison(shown, titles, names, truth, args.output / f"{stems[path]}.png")
            entries.append({"file_name": path.name, "panel": f"{stems[path]}.png",
                            **summary(result)})
            bar.update(len(both) + len(batcher.skipped) - bar.n)
        bar.update(len(images) - bar.n)
    for path, reason in batcher.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not entries:
        print(f"{PROG}: no image could be read", file=sys.stderr)
        return 1

    report = {
        "saved_model": str(folder), "converted": str(args.engine or args.onnx),
        "runtime": runtime, "score_threshold": args.score_threshold, "iou": args.iou,
        "images": entries, "overall": {"images": len(entries), **summary(total)},
        "skipped": [{"file_name": path.name, "reason": reason}
                    for path, reason in batcher.skipped],
    }
    for entry in entries:
        print(describe(entry["file_name"], entry, runtime))
    print(describe(f"overall ({len(entries)} images)", report["overall"], runtime))
    if gt:
        evaluated = [image_ids[pair[0].path] for pair in both]
        scores = [eval_coco.score_detections(
            gt, eval_coco.to_records([pair[side] for pair in both], image_ids, gt)[0], evaluated)
            for side in (0, 1)]
        report["map"] = {"tensorflow": scores[0].stats, "converted": scores[1].stats}
        print(f"COCO on {len(evaluated)} images: {'TensorFlow':>10} {runtime:>10}")
        for name in eval_coco.STATS:
            print(f"  {name:<6}{scores[0].stats[name]:19.4f} {scores[1].stats[name]:10.4f}")
    atomic_write_bytes(args.output / "report.json", (json.dumps(report, indent=1) + "\n").encode())
    print(f"panels and report.json in {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 no image could be read, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
