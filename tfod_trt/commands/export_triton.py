"""export_triton.py's work: an engine (or its ONNX, for a CPU stand-in) -> a detector's models
in a Triton Inference Server model repository."""

from __future__ import annotations

import argparse
import logging
import math
import re
from pathlib import Path

from tfod_trt.cli import run_main
from tfod_trt.config.labels import load_labels
from tfod_trt.errors import UsageError
from tfod_trt.serve.detectors import Detector, engine_detector, onnx_detector
from tfod_trt.serve.interface import IMAGES
from tfod_trt.serve.repository import (
    ServingOptions,
    check_targets,
    model_folders,
    write_repository,
)
from tfod_trt.trt.engine_file import metadata_path

PROG = "export_triton.py"
log = logging.getLogger("export_triton")


def default_name(model_file: Path) -> str:
    """The detector's name when --name is not given: the model file's stem, made a valid
    model name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model_file.stem).lstrip("._-") or "detector"


def check_repo(repo: Path) -> None:
    if repo.exists() and not repo.is_dir():
        raise UsageError(f"--repo {repo}: is a file, not a folder")


def run(args: argparse.Namespace) -> int:
    """The command line's work; raises UsageError (or OSError/ValueError) for bad input."""
    check_repo(args.repo)
    if not 0.0 <= args.score_threshold <= 1.0 or math.isnan(args.score_threshold):
        raise UsageError(f"--score_threshold {args.score_threshold}: must lie in [0, 1]")
    labels = load_labels(args.labels) if args.labels else {}
    detector = engine_detector(args.engine) if args.engine else onnx_detector(args.onnx)
    options = ServingOptions(args.name or default_name(detector.model_file), labels,
                             args.score_threshold, args.instances, args.pre_post_instances)
    folders = model_folders(detector, options)
    inputs = {"--engine": [args.engine, metadata_path(args.engine)] if args.engine else None,
              "--onnx": args.onnx, "--labels": args.labels}
    check_targets(args.repo, folders, inputs)
    write_repository(args.repo, folders)
    report(args.repo, options.name, detector, [folder.name for folder in folders])
    return 0


def report(repo: Path, name: str, detector: Detector, models: list[str]) -> None:
    """What was written, what a client calls, and what the server needs."""
    log.info("wrote %s in %s", ", ".join(models), repo)
    batch = (f"dynamic batches of {detector.io.min_batch} to {detector.io.max_batch}"
             if detector.io.dynamic else f"a static batch of {detector.io.max_batch}")
    log.info("clients send encoded images ('%s') to model '%s' (up to %d per request; the "
             "detector takes %s)", IMAGES, name, detector.io.max_batch, batch)
    if detector.plan:
        version = (detector.metadata.get("engine") or {}).get("tensorrt_version", "unknown")
        log.info("the engine was built with TensorRT %s: serve it with a Triton release of the "
                 "same TensorRT version (docs/serving.md)", version)
    else:
        log.info("%s_detector runs the ONNX on the CPU reference runtime (a stand-in for the "
                 "engine: the server's Python needs onnx, onnx-graphsurgeon and onnxruntime)",
                 name)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write a detector's models into a Triton Inference Server model "
                    "repository: the engine (tensorrt_plan), Python preprocessing (encoded "
                    "images in, TFOD's resize) and postprocessing (boxes in pixels, class "
                    "names), and the ensemble NAME that clients call (docs/serving.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("-e", "--engine", type=Path,
                       help="the engine of build_engine.py (its ENGINE.json beside it)")
    model.add_argument("--onnx", type=Path,
                       help="the ONNX of create_onnx.py instead, run on the CPU by a Python "
                            "model: a stand-in for the engine where there is no GPU")
    parser.add_argument("-r", "--repo", required=True, type=Path,
                        help="the model repository (created; other models in it are kept, "
                             "this detector's are replaced)")
    parser.add_argument("-n", "--name",
                        help="the ensemble's name; the other models are NAME_preprocess, "
                             "NAME_detector, NAME_postprocess (default: the model file's stem)")
    parser.add_argument("-l", "--labels", type=Path,
                        help="class names: a TFOD label map .pbtxt, or a text file with one "
                             "name per line (line 1 = class 0)")
    parser.add_argument("-t", "--score_threshold", type=float, default=0.0,
                        help="answer only detections scoring at least this (default: all that "
                             "the model's NMS keeps, as infer.py)")
    parser.add_argument("--instances", type=positive_int, default=1,
                        help="instances of the detector (per GPU for an engine)")
    parser.add_argument("--pre_post_instances", type=positive_int, default=1,
                        help="instances of the preprocessing and of the postprocessing (CPU "
                             "processes)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, parse_args, run, argv)
