"""infer.py's work: a file or folder -> detection files, pictures and detections.json."""

from __future__ import annotations

import argparse
import json
import sys
import time

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from tfod_trt.config.labels import load_labels
from tfod_trt.detect.batch import detect_folder
from tfod_trt.detect.inputs import make_batcher
from tfod_trt.detect.pipeline import detect_folder_pipelined
from tfod_trt.detect.results import output_stems
from tfod_trt.detect.runners import open_runner
from tfod_trt.detect.writer import ResultWriter
from tfod_trt.errors import UsageError
from tfod_trt.files import atomic_write_bytes
from tfod_trt.io.images import find_images

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
