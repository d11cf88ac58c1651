"""create_onnx.py's work: checks, conversion, the written ONNX and its optional validation."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from tfod_trt.config.pipeline_config import load_pipeline_config
from tfod_trt.config.text_proto import ConfigError
from tfod_trt.convert.converter import convert
from tfod_trt.convert.graph_edits import save_model
from tfod_trt.convert.options import DEFAULT_OPSET, ConversionOptions, check_thresholds
from tfod_trt.convert.tf_graph import ConversionError
from tfod_trt.errors import UsageError
from tfod_trt.evaluate.parity import validate
from tfod_trt.files import check_outputs
from tfod_trt.io.images import ImageError, find_images, load_image
from tfod_trt.metadata import DYNAMIC_BATCH

log = logging.getLogger("create_onnx")


def check_paths(args: argparse.Namespace) -> None:
    """Missing inputs and unwritable outputs, before any slow work starts."""
    if not args.pipeline_config.exists():
        raise FileNotFoundError(f"{args.pipeline_config}: pipeline config not found")
    if not (args.saved_model / "saved_model.pb").is_file():
        raise FileNotFoundError(
            f"{args.saved_model}: no saved_model.pb there; pass the exported 'saved_model' folder"
        )
    for out in [args.onnx] + ([args.tf2onnx] if args.tf2onnx else []):
        parent = out.parent
        if out.is_dir():
            raise IsADirectoryError(f"{out}: is a folder; give a file name for the ONNX model")
        if not parent.is_dir():
            raise FileNotFoundError(f"{out}: the folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise PermissionError(f"{out}: the folder {parent} is not writable")
    validation = (check_validation_images(args.validate, args.validate_images)
                  if args.validate else None)
    check_outputs({"--pipeline_config": args.pipeline_config, "--saved_model": args.saved_model,
                   "--validate": validation},
                  {"--onnx": args.onnx, "--tf2onnx": args.tf2onnx})


def check_validation_images(images: Path, count: int) -> list[Path]:
    """--validate's images (all of them), checked before the conversion: at least one of the
    `count` it would use must be readable."""
    if not images.exists():
        raise FileNotFoundError(f"{images}: no such image file or folder")
    found = find_images(images)  # raises for a folder without images
    candidates = found[:count]
    reasons = []
    for path in candidates:
        try:
            load_image(path)
            return found
        except ImageError as err:
            reasons.append(err.reason)
    raise ValueError(f"{images}: none of the {len(candidates)} images that --validate would "
                     f"use can be read (the first: {candidates[0].name}: {reasons[0]})")


def run(args: argparse.Namespace) -> int:
    """The command line's work: 0 done, 1 --validate found too few matches, 2 bad input."""
    try:
        check_paths(args)
        config = load_pipeline_config(args.pipeline_config)
        options = ConversionOptions(
            batch_size=args.batch_size, input_format=args.input_format,
            score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
            max_detections=args.max_detections, opset=args.opset, debug=tuple(args.debug),
            tf2onnx_path=args.tf2onnx,
            true_image_shape=False if args.no_true_image_shape else None, nms=args.nms,
        )
        if args.score_threshold is not None or args.iou_threshold is not None:
            check_thresholds(
                config.score_threshold if args.score_threshold is None else args.score_threshold,
                config.iou_threshold if args.iou_threshold is None else args.iou_threshold, 1,
            )
        start = time.perf_counter()
        model = convert(config, args.saved_model, options)
        save_model(model, args.onnx)
        log.info("wrote %s in %.1f s", args.onnx, time.perf_counter() - start)
        if args.validate:
            return run_validation(args)
    except (UsageError, ConfigError, ConversionError, OSError, ValueError) as exc:
        print(f"create_onnx.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


def run_validation(args: argparse.Namespace) -> int:
    """--validate on the written ONNX: 0 passed, 1 too few matches or outputs that cannot be
    compared (one line saying why, never a traceback)."""
    try:
        report = validate(args.saved_model, args.onnx, args.validate, args.validate_images)
    except (LookupError, ValueError) as exc:
        print(f"create_onnx.py: --validate FAILED: cannot compare {args.onnx} with "
              f"{args.saved_model}: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.passed else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="create_onnx.py",
        description="Convert a TFOD SavedModel to ONNX with EfficientNMS_TRT for TensorRT: SSD "
        "(MobileNet, ResNet FPN, EfficientDet D0-D7), Faster R-CNN and Mask R-CNN models. The "
        "pipeline config is first checked against the SavedModel's graph (class count, input "
        "size, feature extractor, box coder scales).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-p", "--pipeline_config", required=True, type=Path,
                        help="the pipeline.config exported with the SavedModel")
    parser.add_argument("-m", "--saved_model", required=True, type=Path,
                        help="the exported saved_model folder (input_type float_image_tensor)")
    parser.add_argument("-o", "--onnx", required=True, type=Path, help="the ONNX file to write")
    parser.add_argument("-b", "--batch_size", type=int, default=1,
                        help="static batch size, or -1 for a dynamic batch: the graph takes "
                        "any batch (dimension 'batch'); build_engine.py --batch_profile "
                        "then chooses the engine's range")
    parser.add_argument("--input_format", choices=["NHWC", "NCHW"], default="NHWC")
    parser.add_argument("-t", "--score_threshold", type=float,
                        help="NMS score threshold (default: the config's)")
    parser.add_argument("-u", "--iou_threshold", type=float,
                        help="NMS IoU threshold (default: the config's)")
    parser.add_argument("-d", "--max_detections", type=int,
                        help="detections per image (default: the config's max_total_detections)")
    parser.add_argument("--nms", choices=["per_class", "single"], default="per_class",
                        help="SSD: per_class runs EfficientNMS_TRT for every class of every "
                        "image side by side (faster, TFOD's per-class cap exactly); single runs "
                        "one over all classes of an image, as NVIDIA's sample did")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--tf2onnx", type=Path, metavar="PATH",
                        help="also keep the raw tf2onnx conversion of the network here")
    parser.add_argument("--debug", action="append", default=[], metavar="NODE",
                        help="add a node's outputs (or a tensor) as extra graph outputs")
    parser.add_argument("--no_true_image_shape", action="store_true",
                        help="keep_aspect_ratio models: no true_image_shape input; the whole "
                        "padded input counts as the image (TFOD differs near the padding)")
    parser.add_argument("--validate", type=Path, metavar="IMAGES",
                        help="compare the SavedModel and the new ONNX on these images (CPU; "
                        "the folder is checked before converting; Mask R-CNN: the masks of "
                        "the matched detections too)")
    parser.add_argument("--validate_images", type=int, default=16,
                        help="how many images --validate uses")
    args = parser.parse_args(argv)
    if args.batch_size < 1 and args.batch_size != DYNAMIC_BATCH:
        parser.error(f"--batch_size {args.batch_size}: give a batch size of at least 1, or "
                     f"{DYNAMIC_BATCH} for a dynamic batch")
    if args.validate_images < 1:
        parser.error("--validate_images must be at least 1")
    if not 11 <= args.opset <= 21:  # Clip and Slice take their bounds as inputs from 11
        parser.error("--opset must lie in 11..21 (TensorRT 8.6 reads up to 17)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 --validate found too few matches, 2 bad command line or input."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(parse_args(argv))
