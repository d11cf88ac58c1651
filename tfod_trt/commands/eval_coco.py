"""eval_coco.py's work: the model asked for, run over an annotated folder, scored by pycocotools."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pycocotools.coco import COCO
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from tfod_trt.cli import run_main
from tfod_trt.config.labels import load_labels
from tfod_trt.detect.batch import Runner, detect_folder
from tfod_trt.detect.inputs import make_batcher, preprocessor_argument
from tfod_trt.detect.results import ImageResult
from tfod_trt.detect.runners import model_inputs, open_model
from tfod_trt.errors import UsageError
from tfod_trt.evaluate.checks import settle
from tfod_trt.evaluate.coco import (
    IOU_TYPES,
    PROG,
    annotated_images,
    check_categories,
    load_annotations,
    load_detections,
    score_detections,
    to_records,
)
from tfod_trt.files import atomic_write_bytes, check_outputs, check_writable_file
from tfod_trt.io.images import find_images
from tfod_trt.serve.client import (
    RemoteRun,
    TritonPool,
    add_triton_arguments,
    check_triton_arguments,
    parse_urls,
    report_failures,
)


def detect_remote(images: dict[Path, int], args: argparse.Namespace
                  ) -> tuple[list[ImageResult], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The images sent to the servers of --triton, with a progress bar: results, unreadable
    images, and images that no server answered."""
    pool = TritonPool(parse_urls(args.triton), args.model, args.concurrency, "--triton",
                      "eval_coco.py --triton URL --model NAME ...")
    remote = RemoteRun(pool, list(images), args.score_threshold)
    results = []
    with logging_redirect_tqdm(), tqdm(total=len(images), unit="image", desc=PROG) as bar:
        for result in remote.results():
            results.append(result)
            bar.update(len(results) + len(remote.skipped) + len(remote.failed) - bar.n)
        bar.update(len(images) - bar.n)
    return results, remote.skipped, remote.failed


def detect_all(runner: Runner, images: dict[Path, int], args: argparse.Namespace,
               desc: str = PROG) -> tuple[list[ImageResult], list[tuple[Path, str]]]:
    """Runs ``runner`` over ``images`` with a progress bar: results, and unreadable images."""
    preprocessor = None if args.saved_model else args.preprocessor  # already applied
    try:
        batcher = make_batcher(runner, args.input, preprocessor, args.batch_size)
    except ValueError as err:
        raise UsageError(f"{args.engine or args.onnx or args.saved_model}: {err}") from err
    batcher.images = list(images)
    results = []
    with logging_redirect_tqdm(), tqdm(total=len(batcher), unit="image", desc=desc) as bar:
        for result in detect_folder(runner, batcher, args.score_threshold):
            results.append(result)
            bar.update(len(results) + len(batcher.skipped) - bar.n)
        bar.update(len(batcher) - bar.n)
    return results, batcher.skipped


def write_results(path: Path, records: list[dict]) -> None:
    """One detection per line, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = ",\n".join(json.dumps(record) for record in records)
    atomic_write_bytes(path, f"[\n{body}\n]\n".encode())


def check_results_path(args: argparse.Namespace, images: list[Path]) -> None:
    """Refuses a --results file that is one of the files the command reads."""
    check_outputs({"--annotations": args.annotations, "--detections": args.detections,
                   "--labels": args.labels, "--input": images, **model_inputs(args)},
                  {"--results": args.results})


def run(args: argparse.Namespace) -> int:
    """The command line's work; raises UsageError (or OSError/ValueError) for bad input."""
    found = find_images(args.input) if args.input else []
    check_results_path(args, found)
    gt, dropped = load_annotations(args.annotations, args.iou_type)
    settle(dropped, args.strict, PROG)
    images = annotated_images(found, gt, args.annotations) if args.input else {}
    failed: list = []
    if args.detections:
        records, dropped = load_detections(args.detections, gt, args.score_threshold,
                                           args.iou_type)
        settle(dropped, args.strict, PROG)
        evaluated = list(images.values()) or gt.getImgIds()
        what = str(args.detections)
    else:
        detected = detect_records(args, gt, images)
        if detected is None:
            return 1
        records, evaluated, failed = detected
        what = str(args.engine or args.onnx or args.saved_model or args.triton)
    scores = score_detections(gt, records, evaluated, args.iou_type)
    print(f"{what}: {len(evaluated)} images, {len(records)} detections")
    if args.iou_type == "segm":
        print("segm: the IoU of the masks (Mask R-CNN), not of the boxes")
    print(scores.table())
    if args.per_category:
        print(scores.category_table())
    if failed:
        print(f"{PROG}: the scores leave out the {len(failed)} images that failed",
              file=sys.stderr)
        return 1
    return 0


def detect_records(args: argparse.Namespace, gt: COCO, images: dict[Path, int]
                   ) -> tuple[list[dict], list[int], list[tuple[Path, str]]] | None:
    """The model run over the images: (COCO records, the image ids evaluated, images that
    no server answered); None (reported) where no image gave a result."""
    labels = load_labels(args.labels) if args.labels else None
    if args.results:
        check_writable_file(args.results, "--results")
    results, skipped, failed = model_results(args, gt, labels, images)
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    report_failures(PROG, failed)
    if not results:
        if not failed:
            print(f"{PROG}: no image could be read", file=sys.stderr)
        return None
    what = str(args.engine or args.onnx or args.saved_model or args.triton)
    records, dropped = to_records(results, images, gt, what, args.iou_type)
    settle(dropped, args.strict, PROG)
    if args.results:
        write_results(args.results, records)
    return records, [images[result.path] for result in results], failed


def model_results(args: argparse.Namespace, gt: COCO, labels: dict[int, str] | None,
                  images: dict[Path, int]) -> tuple[list[ImageResult], list, list]:
    """The model's results on the images: (results, skipped, failed), the categories checked
    against what the model can produce."""
    if args.triton:
        check_categories(gt, args.annotations, labels, args.labels, None)
        return detect_remote(images, args)
    runner = open_model(args)
    if args.iou_type == "segm" and not (runner.metadata or {}).get("masks"):
        raise UsageError(f"{args.engine or args.onnx or args.saved_model}: --iou_type segm "
                         "needs a model with masks (Mask R-CNN); this one outputs no "
                         "detection_masks")
    check_categories(gt, args.annotations, labels, args.labels,
                     (runner.metadata or {}).get("num_classes"))
    return (*detect_all(runner, images, args), [])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="COCO mAP of a TensorRT engine, its ONNX model (CPU), Triton "
                               "servers serving it (--triton) or the TFOD SavedModel "
                               "(TensorFlow), or of a detections JSON.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-e", "--engine", type=Path, help="TensorRT engine (TensorRT and a GPU)")
    source.add_argument("--onnx", type=Path,
                        help="ONNX model from create_onnx.py, run on the CPU reference runtime")
    source.add_argument("--saved_model", type=Path,
                        help="TFOD SavedModel folder (or its export folder), run on TensorFlow "
                             "(a keep_aspect_ratio model on the original photos)")
    source.add_argument("--triton", metavar="URL[,URL...]",
                        help="send the images to Triton servers (HOST:PORT of their HTTP "
                             "endpoint) serving --model (serve_triton.py, export_triton.py); "
                             "needs the serving environment's Python (.venv-serve/bin/python)")
    source.add_argument("--detections", type=Path,
                        help="only score this detections JSON (COCO results with image_id, or "
                             "infer.py's detections.json with file_name)")
    add_triton_arguments(parser)
    parser.add_argument("-i", "--input", type=Path,
                        help="folder of the annotated images (with --detections: optional, "
                             "restricts the evaluation to the images found there)")
    parser.add_argument("-a", "--annotations", required=True, type=Path,
                        help="COCO annotations JSON, e.g. instances_val2017.json")
    parser.add_argument("-p", "--preprocessor", type=preprocessor_argument,
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
    parser.add_argument("-b", "--batch_size", type=int,
                        help="images per batch (default: the model's; a static-batch engine or "
                        "ONNX takes only its own, a dynamic-batch engine its profile's MIN to "
                        "MAX (default MAX), a dynamic-batch ONNX any (default 1))")
    parser.add_argument("--results", type=Path, help="write the detections to this COCO JSON")
    parser.add_argument("--iou_type", choices=IOU_TYPES, default="bbox",
                        help="bbox: the boxes' mAP; segm: the masks' mAP of a Mask R-CNN "
                        "(annotations with segmentations; a --detections file with RLE "
                        "'segmentation' rows, as infer.py writes them)")
    parser.add_argument("--per_category", action="store_true",
                        help="also print AP and AP50 per category")
    parser.add_argument("--strict", action="store_true",
                        help="refuse (exit 2) annotations or detections with unusable entries "
                             "instead of dropping them with a warning (docs/evaluation.md "
                             "lists the checks)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score_threshold {args.score_threshold} must lie in [0, 1]")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch_size {args.batch_size} must be at least 1")
    if args.detections:
        used = [flag for flag, value in (("-p", args.preprocessor), ("-l", args.labels),
                                         ("--pipeline_config", args.pipeline_config),
                                         ("--results", args.results),
                                         ("-b", args.batch_size)) if value]
        if used:
            parser.error(f"{', '.join(used)}: not with --detections (it only scores the file)")
    elif args.input is None:
        parser.error("-i/--input is required (the annotated images)")
    if args.pipeline_config and not args.saved_model:
        parser.error("--pipeline_config goes with --saved_model")
    check_triton_arguments(parser, args, {"-p/--preprocessor": args.preprocessor})
    if args.triton and args.iou_type == "segm":
        parser.error("--iou_type segm: Triton servers return boxes only; run the model here "
                     "(--engine, --onnx or --saved_model) or score infer.py's --detections")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 no image could be read, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)
