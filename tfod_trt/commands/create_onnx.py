"""create_onnx.py's work: checks, conversion, the written ONNX and its optional validation."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from tfod_trt.config.pipeline_config import load_pipeline_config
from tfod_trt.config.text_proto import ConfigError
from tfod_trt.convert.converter import convert
from tfod_trt.convert.graph_edits import save_model
from tfod_trt.convert.options import ConversionOptions, check_thresholds
from tfod_trt.convert.tf_graph import ConversionError
from tfod_trt.evaluate.parity import validate

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
    if args.validate and not args.validate.exists():
        raise FileNotFoundError(f"{args.validate}: no such image file or folder")


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
            true_image_shape=False if args.no_true_image_shape else None,
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
            report = validate(
                args.saved_model, args.onnx, args.validate, args.validate_images
            )
            print(report.summary())
            return 0 if report.passed else 1
    except (ConfigError, ConversionError, OSError, ValueError) as exc:
        print(f"create_onnx.py: error: {exc}", file=sys.stderr)
        return 2
    return 0
