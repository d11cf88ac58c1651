"""infer.py's work: a file or folder -> detection files, pictures and detections.json."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from tfod_trt.cli import run_main
from tfod_trt.config.labels import load_labels
from tfod_trt.detect.batch import detect_folder
from tfod_trt.detect.inputs import make_batcher, preprocessor_argument
from tfod_trt.detect.manifest import MANIFEST, claim_files, finish_files, read_manifest
from tfod_trt.detect.pipeline import detect_folder_pipelined
from tfod_trt.detect.results import ImageResult, output_stems
from tfod_trt.detect.runners import model_inputs, open_runner
from tfod_trt.detect.writer import ResultWriter
from tfod_trt.errors import UsageError
from tfod_trt.files import atomic_write_bytes, check_output_folder, check_outputs
from tfod_trt.io.images import find_images
from tfod_trt.io.processes import DEFAULT_WORKERS
from tfod_trt.serve.client import (
    RemoteRun,
    TritonPool,
    add_triton_arguments,
    check_triton_arguments,
    parse_urls,
    report_failures,
)

PROG = "infer.py"
DETECTIONS = "detections.json"


def planned_files(stems: dict[Path, str], pictures: bool) -> list[str]:
    """The names of the files a run may write in the output folder, its manifest aside."""
    names = [f"{stem}.txt" for stem in stems.values()]
    names += [f"{stem}.png" for stem in stems.values()] if pictures else []
    return [*names, DETECTIONS]


def check_paths(args: argparse.Namespace, images: list[Path], planned: list[str]) -> set[str]:
    """Refuses an output folder that would mix with the images or write over an input;
    returns the files the folder's manifest lists from the previous run."""
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"{args.output}: exists and is not a folder")
    check_output_folder(args.output, {"--input": args.input})
    check_outputs({"--input": images, "--labels": args.labels, **model_inputs(args)},
                  {"--output": [args.output / name for name in [*planned, MANIFEST]]})
    return read_manifest(args.output) if args.output.is_dir() else set()


@dataclass
class Source:
    """Where the results come from: the model run here, or Triton servers (--triton)."""

    results: Iterator[ImageResult]
    total: int  # images to go
    skipped: list[tuple[Path, str]]  # (image, reason) of those that could not be read
    failed: list[tuple[Path, str]] = field(default_factory=list)  # no server answered them
    close: Callable[[], None] = lambda: None


def local_source(args: argparse.Namespace, images: list[Path]) -> Source:
    """The engine or ONNX model, run here over the batcher (pipelined unless --serial)."""
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
    threshold = args.score_threshold or 0.0
    if args.serial:  # one thing at a time, files written in this thread
        results = detect_folder(runner, batcher, threshold)
    else:
        results = detect_folder_pipelined(runner, batcher, threshold,
                                          depth=args.pipeline_depth)
    return Source(results, len(batcher), batcher.skipped,
                  close=getattr(batcher, "close", lambda: None))


def remote_source(args: argparse.Namespace, images: list[Path]) -> Source:
    """The servers of --triton, the images spread over them."""
    pool = TritonPool(parse_urls(args.triton), args.model, args.concurrency, "--triton",
                      "infer.py --triton URL --model NAME ...")
    remote = RemoteRun(pool, images, args.score_threshold or 0.0)
    return Source(remote.results(), len(images), remote.skipped, remote.failed, remote.close)


def run(args: argparse.Namespace) -> int:
    """The command line's work; raises UsageError (or OSError/ValueError) for bad input."""
    images = find_images(args.input)
    labels = load_labels(args.labels) if args.labels else {}
    stems = output_stems(images)
    planned = planned_files(stems, not args.no_pictures)
    previous = check_paths(args, images, planned)
    source = remote_source(args, images) if args.triton else local_source(args, images)
    args.output.mkdir(parents=True, exist_ok=True)
    claimed = claim_files(args.output, previous, planned)
    writer = ResultWriter(args.output, stems, labels, not args.no_pictures,
                          threads=0 if args.serial else args.writers)
    done, found, elapsed = detect_and_write(args, source, writer)
    finish_files(args.output, claimed, writer.written | {DETECTIONS})
    for path, reason in source.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    report_failures(PROG, source.failed)
    failed = f", {len(source.failed)} failed" if source.failed else ""
    print(f"{done} images, {found} detections, {len(source.skipped)} skipped{failed}, "
          f"{done / elapsed if elapsed > 0 else 0.0:.1f} images/s")
    return 0 if done and not source.failed else 1


def detect_and_write(args: argparse.Namespace, source: Source,
                     writer: ResultWriter) -> tuple[int, int, float]:
    """Each result's files through ``writer``, then detections.json: (images, detections,
    seconds)."""
    done = found = 0
    start = time.perf_counter()
    try:
        with logging_redirect_tqdm(), tqdm(total=source.total, unit="image", desc=PROG) as bar:
            for result in source.results:
                writer.put(result)
                done, found = done + 1, found + len(result)
                bar.update(done + len(source.skipped) + len(source.failed) - bar.n)
            records = writer.close()
            bar.update(source.total - bar.n)
    finally:
        source.results.close()
        writer.close()
        source.close()
    elapsed = time.perf_counter() - start
    body = ",\n".join(json.dumps(record) for record in records)
    atomic_write_bytes(args.output / DETECTIONS, f"[\n{body}\n]\n".encode())
    return done, found, elapsed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Detect objects with a TensorRT engine, its ONNX model (CPU), or "
                               "Triton servers serving it (--triton).",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("-e", "--engine", type=Path, help="TensorRT engine (TensorRT and a GPU)")
    model.add_argument("--onnx", type=Path,
                       help="ONNX model from create_onnx.py, run on the CPU without TensorRT")
    model.add_argument("--triton", metavar="URL[,URL...]",
                       help="send the images to Triton servers (HOST:PORT of their HTTP "
                            "endpoint) serving --model (serve_triton.py, export_triton.py); "
                            "needs the serving environment's Python (.venv-serve/bin/python)")
    add_triton_arguments(parser)
    parser.add_argument("-i", "--input", required=True, type=Path,
                        help="an image, or a folder of images (.jpg .jpeg .png .bmp)")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help="folder for the results (created; not the image folder, nor "
                             "inside it); infer_manifest.json there lists the files written, "
                             "and a rerun removes those it does not write again")
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
                             "only its own, a dynamic-batch engine its profile's MIN to MAX "
                             "(default MAX), a dynamic-batch ONNX any (default 1))")
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
    check_triton_arguments(parser, args, {"-p/--preprocessor": args.preprocessor,
                                          "-b/--batch_size": args.batch_size,
                                          "--decode nvjpeg": args.decode == "nvjpeg",
                                          "--serial": args.serial})
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 no image could be read, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)
