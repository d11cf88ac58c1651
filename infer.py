"""Detects objects in images with a converted model: a TensorRT engine (``--engine``) or, with no
TensorRT at all, the ONNX file on the CPU reference runtime (``--onnx``).

    python infer.py -e model.engine -i images/ -o results/ [-l label_map.pbtxt] [-t 0.3]
    python infer.py --onnx model.onnx -i photo.jpg -o results/ --no_pictures

Writes, per image, ``<stem>.txt`` (one tab-separated line per detection, best score first:
``xmin ymin xmax ymax score class``, original-image pixels, 0-based class, as NVIDIA's sample
did) and ``<stem>.png`` (the picture); per run ``detections.json`` (COCO results style).

The reusable part is the package: ``tfod_trt.detect.inputs.make_batcher`` and
``tfod_trt.detect.batch.detect_folder`` (or ``tfod_trt.detect.pipeline.detect_folder_pipelined``)
take any runner (``infer(batch) -> dict``, ``metadata``, ``input_shape``) and give detections in
pixels.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from tfod_trt.cli import run_main
from tfod_trt.commands.infer import PROG, run

DEFAULT_WORKERS = min(16, os.cpu_count() or 1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Detect objects with a TensorRT engine or its ONNX model (CPU).",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("-e", "--engine", type=Path, help="TensorRT engine (TensorRT and a GPU)")
    model.add_argument("--onnx", type=Path,
                       help="ONNX model from create_onnx.py, run on the CPU without TensorRT")
    parser.add_argument("-i", "--input", required=True, type=Path,
                        help="an image, or a folder of images (.jpg .jpeg .png .bmp)")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="folder for the results (created)")
    parser.add_argument("-p", "--preprocessor",
                        help="fixed_shape:HxW or keep_aspect_ratio:MIN:MAX "
                             "(default: from the model's metadata)")
    parser.add_argument("-l", "--labels", type=Path,
                        help="class names: a TFOD label map .pbtxt, or a text file with one "
                             "name per line (line 1 = class 0)")
    parser.add_argument("-t", "--score_threshold", "--nms_threshold", type=float,
                        help="keep detections scoring at least this (default: all that the "
                             "model's NMS keeps, as NVIDIA's sample did; zoo configs keep "
                             "scores down to 1e-8, so pass e.g. 0.3 for readable pictures)")
    parser.add_argument("-b", "--batch_size", type=int,
                        help="images per batch (default: the model's; a static model takes "
                             "only its own)")
    parser.add_argument("--no_pictures", action="store_true",
                        help="write no .png pictures, only .txt and detections.json")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help=f"processes (or threads) decoding and resizing images "
                             f"(default {DEFAULT_WORKERS}; --decode nvjpeg: at most 4 read files)")
    parser.add_argument("--decode", choices=("processes", "threads", "nvjpeg"),
                        default="processes",
                        help="workers for a folder: processes (default; faster on many cores), "
                             "threads (no start-up second; enough for small folders), or "
                             "nvjpeg: JPEGs decoded and resized on the GPU (engines only; "
                             "fastest; pixels differ from TensorFlow's decode by a few levels)")
    parser.add_argument("--writers", type=int, default=4,
                        help="threads writing the result files (default 4)")
    parser.add_argument("--pipeline_depth", type=int, default=2,
                        help="input buffer sets: batches being prepared or run (default 2; "
                             "--decode nvjpeg uses at least 4)")
    parser.add_argument("--serial", action="store_true",
                        help="no pipelining: decode, infer and write one batch after another")
    args = parser.parse_args(argv)
    for name in ("workers", "writers", "pipeline_depth"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} {getattr(args, name)} must be at least 1")
    if args.score_threshold is not None and not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score_threshold {args.score_threshold} must lie in [0, 1]")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch_size {args.batch_size} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 no image could be read, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
