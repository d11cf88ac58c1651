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
import sys
from pathlib import Path

from tfod_trt.cli import run_main
from tfod_trt.commands.eval_coco import PROG, run

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


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 no image could be read, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
