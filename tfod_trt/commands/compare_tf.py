"""compare_tf.py's work: TensorFlow and a converted model side by side on the same images."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from tfod_trt.cli import run_main
from tfod_trt.config.labels import load_labels
from tfod_trt.detect.inputs import make_batcher, preprocessor_argument
from tfod_trt.detect.results import ImageResult, output_stems
from tfod_trt.detect.runners import (
    model_inputs,
    open_runner,
    open_saved_model,
    saved_model_box_frame,
    saved_model_config,
    saved_model_folder,
)
from tfod_trt.errors import UsageError
from tfod_trt.evaluate.checks import settle
from tfod_trt.evaluate.coco import (
    STATS,
    annotated_images,
    category_names,
    check_categories,
    load_annotations,
    score_detections,
    to_records,
)
from tfod_trt.evaluate.compare import (
    above,
    describe,
    detect_together,
    ground_truth,
    match,
    save_comparison,
    summary,
)
from tfod_trt.evaluate.matching import MatchResult
from tfod_trt.files import atomic_write_bytes, check_output_folder, check_outputs
from tfod_trt.io.images import find_images
from tfod_trt.reference.tensorflow import have_tensorflow

if TYPE_CHECKING:
    from pycocotools.coco import COCO

    from tfod_trt.detect.batch import Runner
    from tfod_trt.io.batcher import ImageBatcher

PROG = "compare_tf.py"
# The least matched fraction that passes: what a TensorRT INT8 engine keeps against the CPU
# reference at the same IoU 0.5 and score 0.3 (docs/evaluation.md); FP32 and FP16 reach 97%.
MIN_MATCHED = 0.9
REPORT = "report.json"


@dataclass
class _Inputs:
    """The checked command line: the SavedModel, the annotations and labels, the images."""

    folder: Path
    gt: COCO | None
    labels: dict[int, str] | None
    images: list[Path]
    image_ids: dict[Path, int]  # the images' annotation ids (empty without --annotations)


@dataclass
class _Compared:
    """Both models' results, per image and in all."""

    entries: list[dict] = field(default_factory=list)  # per image: its matching summary
    total: MatchResult = field(default_factory=MatchResult)
    both: list[tuple[ImageResult, ...]] = field(default_factory=list)  # (TensorFlow, converted)


def _check_inputs(args: argparse.Namespace) -> _Inputs:
    """TensorFlow present, the inputs read, the images chosen, --output usable."""
    if not have_tensorflow():
        raise UsageError("TensorFlow is not installed in this Python: compare_tf.py needs "
                         "TensorFlow and TensorRT (or --onnx) in one environment; without "
                         "TensorFlow, eval_coco.py --engine scores the engine alone")
    folder = saved_model_folder(args.saved_model)
    gt = None
    if args.annotations:
        gt, dropped = load_annotations(args.annotations)
        settle(dropped, False, PROG)
    labels = load_labels(args.labels) if args.labels else None
    images = find_images(args.input)
    image_ids = annotated_images(images, gt, args.annotations) if gt else {}
    images = (list(image_ids) if gt else images)[: args.num_images]
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"{args.output}: exists and is not a folder")
    check_output_folder(args.output, {"--input": args.input})
    panels = [args.output / f"{stem}.png" for stem in output_stems(images).values()]
    check_outputs({"--input": images, "--annotations": args.annotations,
                   "--labels": args.labels, **model_inputs(args)},
                  {"--output": [*panels, args.output / REPORT]})
    return _Inputs(folder, gt, labels, images, image_ids)


def _open_models(args: argparse.Namespace,
                 inputs: _Inputs) -> tuple[Runner, Runner, ImageBatcher]:
    """The converted model, its batcher over the chosen images, and the SavedModel on
    TensorFlow fed the same batches (a keep_aspect_ratio model: their original photos)."""
    converted = open_runner(args)
    meta = converted.metadata or {}
    if inputs.gt:
        check_categories(inputs.gt, args.annotations, inputs.labels, args.labels,
                         meta.get("num_classes"))
    try:
        batcher = make_batcher(converted, args.input, args.preprocessor)
    except ValueError as err:
        raise UsageError(f"{args.engine or args.onnx}: {err}") from err
    batcher.images = inputs.images
    frame = saved_model_box_frame(saved_model_config(inputs.folder, None), meta)
    tf = open_saved_model(inputs.folder, batcher.pre, meta.get("num_classes"),
                          batcher.batch_size, batcher.layout, frame)
    return tf, converted, batcher


def _compare(args: argparse.Namespace, inputs: _Inputs, models: list[Runner],
             batcher: ImageBatcher, titles: list[str]) -> _Compared:
    """Runs both models, matches their detections and saves a side-by-side picture of each
    image under --output."""
    gt, image_ids, images = inputs.gt, inputs.image_ids, inputs.images
    names = inputs.labels or ({cid - 1: name for cid, name in category_names(gt).items()}
                              if gt else {})
    args.output.mkdir(parents=True, exist_ok=True)
    stems = output_stems(images)
    done = _Compared()
    with logging_redirect_tqdm(), tqdm(total=len(images), unit="image", desc=PROG) as bar:
        for pair in detect_together(models, batcher):
            done.both.append(pair)
            shown = tuple(above(r, args.score_threshold) for r in pair)
            result = match(*shown, args.iou)
            done.total.add(result)
            path = pair[0].path
            truth = ground_truth(gt, image_ids[path]) if gt else None
            save_comparison(shown, titles, names, truth, args.output / f"{stems[path]}.png")
            done.entries.append({"file_name": path.name, "panel": f"{stems[path]}.png",
                                 **summary(result)})
            bar.update(len(done.both) + len(batcher.skipped) - bar.n)
        bar.update(len(images) - bar.n)
    return done


def _report(args: argparse.Namespace, inputs: _Inputs, done: _Compared,
            skipped: list[tuple[Path, str]], runtime: str) -> dict:
    """report.json's content; prints each image's and the overall matching."""
    report = {
        "saved_model": str(inputs.folder), "converted": str(args.engine or args.onnx),
        "runtime": runtime, "score_threshold": args.score_threshold, "iou": args.iou,
        "min_matched": args.min_matched,
        "images": done.entries, "overall": {"images": len(done.entries), **summary(done.total)},
        "skipped": [{"file_name": path.name, "reason": reason} for path, reason in skipped],
    }
    for entry in done.entries:
        print(describe(entry["file_name"], entry, runtime))
    print(describe(f"overall ({len(done.entries)} images)", report["overall"], runtime))
    return report


def _coco_scores(gt: COCO, image_ids: dict[Path, int], both: list[tuple[ImageResult, ...]],
                 runtime: str, sources: tuple[Path, Path]) -> dict:
    """Both models' COCO numbers on the compared images (printed); report.json's "map"."""
    evaluated = [image_ids[pair[0].path] for pair in both]
    scores = []
    for side, source in enumerate(sources):
        records, dropped = to_records([pair[side] for pair in both], image_ids, gt, source)
        settle(dropped, False, PROG)
        scores.append(score_detections(gt, records, evaluated))
    print(f"COCO on {len(evaluated)} images: {'TensorFlow':>10} {runtime:>10}")
    for name in STATS:
        print(f"  {name:<6}{scores[0].stats[name]:19.4f} {scores[1].stats[name]:10.4f}")
    return {"tensorflow": scores[0].stats, "converted": scores[1].stats}


def run(args: argparse.Namespace) -> int:
    """The command line's work; raises UsageError (or OSError/ValueError) for bad input."""
    inputs = _check_inputs(args)
    tf, converted, batcher = _open_models(args, inputs)
    runtime = "TensorRT" if args.engine else "ONNX"
    titles = ["TensorFlow", runtime if args.engine else "ONNX (CPU reference)"]
    titles += ["ground truth"] if inputs.gt else []
    done = _compare(args, inputs, [tf, converted], batcher, titles)
    for path, reason in batcher.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if not done.entries:
        print(f"{PROG}: no image could be read", file=sys.stderr)
        return 1
    report = _report(args, inputs, done, batcher.skipped, runtime)
    if inputs.gt:
        report["map"] = _coco_scores(inputs.gt, inputs.image_ids, done.both, runtime,
                                     (inputs.folder, args.engine or args.onnx))
    atomic_write_bytes(args.output / REPORT, (json.dumps(report, indent=1) + "\n").encode())
    print(f"panels and report.json in {args.output}")
    return _verdict(report["overall"]["matched_rate"], args.min_matched, args.output)


def _verdict(matched_rate: float, min_matched: float, output: Path) -> int:
    """0 where at least ``min_matched`` of the detections matched; else 1, said in one line."""
    if matched_rate >= min_matched:
        return 0
    print(f"{PROG}: the models disagree: {100 * matched_rate:.1f}% of the detections matched, "
          f"below --min_matched {min_matched:g} (details in {output / REPORT})",
          file=sys.stderr)
    return 1


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
                        help="folder for the panels and report.json (created; not the "
                             "image folder, nor inside it)")
    parser.add_argument("-n", "--num_images", type=int, default=16,
                        help="compare the first N images (default 16)")
    parser.add_argument("-a", "--annotations", type=Path,
                        help="COCO annotations JSON: ground-truth panels and each side's mAP")
    parser.add_argument("-l", "--labels", type=Path,
                        help="the model's TFOD label map (names; with -a its ids must be the "
                             "annotations' categories)")
    parser.add_argument("-p", "--preprocessor", type=preprocessor_argument,
                        help="fixed_shape:HxW or keep_aspect_ratio:MIN:MAX (default: the "
                             "converted model's metadata)")
    parser.add_argument("-t", "--score_threshold", type=float, default=0.3,
                        help="compare and draw detections scoring at least this (default 0.3; "
                             "the mAP uses all)")
    parser.add_argument("--iou", type=float, default=0.5,
                        help="least IoU of a matched pair (default 0.5)")
    parser.add_argument("--min_matched", type=float, default=MIN_MATCHED,
                        help="exit 1 unless at least this fraction of the detections is matched "
                             f"(matched pairs over the larger side's detections; default "
                             f"{MIN_MATCHED})")
    args = parser.parse_args(argv)
    for flag, value in (("--score_threshold", args.score_threshold), ("--iou", args.iou),
                        ("--min_matched", args.min_matched)):
        if not 0.0 <= value <= 1.0:
            parser.error(f"{flag} {value} must lie in [0, 1]")
    if args.num_images < 1:
        parser.error(f"--num_images {args.num_images} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 the models agree, 1 fewer than --min_matched of the detections matched or
    no image could be read, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)
