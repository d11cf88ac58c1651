"""infer.py's work: a file or folder -> detection files, pictures and detections.json."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from tfod_trt.cli import run_main
from tfod_trt.config.labels import load_labels
from tfod_trt.detect.batch import detect_folder
from tfod_trt.detect.inputs import make_batcher, preprocessor_argument
from tfod_trt.detect.pipeline import detect_folder_pipelined
from tfod_trt.detect.results import output_stems
from tfod_trt.detect.runners import open_runner
from tfod_trt.detect.writer import ResultWriter
from tfod_trt.errors import UsageError
from tfod_trt.files import atomic_write_bytes
from tfod_trt.io.images import find_images
from tfod_trt.io.processes import DEFAULT_WORKERS

PROG = "infer.py"


def run(args: argparse.Namespace) -> int:
    """The command line's work; raises UsageError (or OSError/ValueError) for bad input."""
    images = find_images(args.input)
    labels = load_labels(args.labels) if args.labels else {}
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"{args.output}: exists and is not a folder")
    stems = output_stems(images)
    if not args.no_pictures:
        inputs = {path.resolve() for path in images}
        for path in images:
            if (args.output / f"{stems[path]}.png").resolve() in inputs:
                raise UsageError(f"{path}: its picture would overwrite it; choose another "
                                 "--output or pass --no_pictures")
    if args.decode == "nvjpeg" and (args.serial or args.onnx):
        raise UsageError("--decode nvjpeg runs on the pipelined path of an engine: drop "
                         "--serial / use --engine")
    runner = open_runner(args)
    try:
        batcher = make_batcher(runner, args.input, args.preprocessor, args.batch_size,
                               gpu_decode=args.decode == "nvjpeg", workers=args.workers,
                               processes=args.decode != "threads" and len(images) > 1)
    except ValueError as err:
        raise UsageError(f"{args.engine or args.onnx}: {err}") from err
    args.output.mkdir(parents=True, exist_ok=True)

    threshold = args.score_threshold or 0.0
    if args.serial:  # one thing at a time, files written in this thread
        results = detect_folder(runner, batcher, threshold)
        writer = ResultWriter(args.output, stems, labels, not args.no_pictures, threads=0)
    else:
        results = detect_folder_pipelined(runner, batcher, threshold,
                                          depth=args.pipeline_depth)
        writer = ResultWriter(args.output, stems, labels, not args.no_pictures,
                              threads=args.writers)
    done = found = 0
    start = time.perf_counter()
    try:
        with logging_redirect_tqdm(), tqdm(total=len(batcher), unit="image", desc=PROG) as bar:
            for result in results:
                writer.put(result)
                done, found = done + 1, found + len(result)
                bar.update(done + len(batcher.skipped) - bar.n)
            records = writer.close()
            bar.update(len(batcher) - bar.n)
    finally:
        results.close()
        writer.close()
        if hasattr(batcher, "close"):
            batcher.close()
    elapsed = time.perf_counter() - start
    body = ",\n".join(json.dumps(record) for record in records)
    atomic_write_bytes(args.output / "detections.json", f"[\n{body}\n]\n".encode())
    for path, reason in batcher.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"{done} images, {found} detections, {len(batcher.skipped)} skipped, "
          f"{done / elapsed if elapsed > 0 else 0.0:.1f} images/s")
    return 0 if done else 1




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
    parser.add_argument("-p", "--preprocessor", type=preprocessor_argument,
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
