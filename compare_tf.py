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
import sys
from pathlib import Path

from tfod_trt.cli import run_main
from tfod_trt.commands.compare_tf import PROG, run


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


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 no image could be read, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
