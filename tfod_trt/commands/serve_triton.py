"""serve_triton.py's work: an engine (or its ONNX, on the CPU) served by a Triton Inference
Server started from Python (PyTriton), as one model that takes encoded images and answers
boxes in pixels (tfod_trt/serve/interface.py), batching the requests that arrive together."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tfod_trt.cli import run_main
from tfod_trt.commands.export_triton import default_name, positive_int
from tfod_trt.config.labels import load_labels
from tfod_trt.detect.runners import open_runner
from tfod_trt.errors import UsageError
from tfod_trt.io.processes import DEFAULT_WORKERS, decode_processes
from tfod_trt.serve.detectors import Detector, engine_detector, onnx_detector
from tfod_trt.serve.pytriton_server import DetectorServer, ServerError, ServerOptions
from tfod_trt.serve.repository import model_names
from tfod_trt.serve.service import DetectionService

PROG = "serve_triton.py"


def max_batch(args: argparse.Namespace, detector: Detector) -> int:
    """--max_batch, at most what the detector takes in one batch (default: that)."""
    most = detector.io.max_batch
    if args.max_batch is None:
        return most
    if args.max_batch > most:
        kind = "its profile's max" if detector.io.dynamic else "its static batch"
        raise UsageError(f"--max_batch {args.max_batch}: {detector.model_file} takes at most "
                         f"{most} images per batch ({kind})")
    return args.max_batch


def options_of(args: argparse.Namespace, detector: Detector) -> ServerOptions:
    if not 0.0 <= args.score_threshold <= 1.0 or math.isnan(args.score_threshold):
        raise UsageError(f"--score_threshold {args.score_threshold}: must lie in [0, 1]")
    name = args.name or default_name(detector.model_file)
    model_names(name)  # checks it
    if args.http_port == args.grpc_port:
        raise UsageError(f"--http_port and --grpc_port are both {args.http_port}: give two ports")
    return ServerOptions(name, max_batch(args, detector), args.queue_delay_us, args.http_port,
                         args.grpc_port)


def announce(options: ServerOptions, detector: Detector, instances: int) -> None:
    """What is served where, once the server answers."""
    runtime = "TensorRT" if detector.plan else "the CPU reference runtime"
    http = f"http://localhost:{options.http_port}"
    print(f"{PROG}: serving model '{options.name}' ({detector.model_file.name} on {runtime}, "
          f"{instances} instance(s), batches of up to {options.max_batch} images)\n"
          f"  HTTP  {http}  (ready: {http}/v2/health/ready)\n"
          f"  gRPC  localhost:{options.grpc_port}\n"
          f"  e.g.  python infer.py --triton localhost:{options.http_port} --model "
          f"{options.name} --input images/ --output results/\n"
          "Ctrl-C stops it.", flush=True)


def run(args: argparse.Namespace) -> int:
    """The command line's work; raises UsageError (or OSError/ValueError) for bad input."""
    detector = engine_detector(args.engine) if args.engine else onnx_detector(args.onnx)
    options = options_of(args, detector)
    labels = load_labels(args.labels) if args.labels else {}
    server = DetectorServer(options)  # PyTriton there, the ports free
    pre = detector.preprocess_settings()
    post = detector.postprocess_settings(args.score_threshold, labels)
    decoder = decode_processes(args.decode_workers) if args.decode_workers else None
    services = [DetectionService(open_runner(args), pre, post, args.verbose, decoder)
                for _ in range(args.instances)]
    try:
        server.serve(services, detector.io.max_detections,
                     lambda: announce(options, detector, args.instances))
    except ServerError as err:
        print(f"{PROG}: error: {err}", flush=True)
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a detector with a Triton Inference Server started from Python "
                    "(PyTriton; run it with .venv-serve/bin/python): one model NAME that takes "
                    "encoded images and answers boxes in pixels, scores, classes and labels, "
                    "as the ensemble of export_triton.py does (docs/serving.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("-e", "--engine", type=Path,
                       help="the engine of build_engine.py (its ENGINE.json beside it; "
                            "TensorRT and a GPU)")
    model.add_argument("--onnx", type=Path,
                       help="the ONNX of create_onnx.py instead, run on the CPU reference "
                            "runtime")
    parser.add_argument("-n", "--name",
                        help="the model's name (default: the model file's stem)")
    parser.add_argument("-l", "--labels", type=Path,
                        help="class names: a TFOD label map .pbtxt, or a text file with one "
                             "name per line (line 1 = class 0)")
    parser.add_argument("--max_batch", type=positive_int,
                        help="the most images of one batch (default: the engine's batch, or "
                             "its profile's max); a static engine's batches are padded to it")
    parser.add_argument("--queue_delay_us", type=int, default=0,
                        help="how long (microseconds) Triton's batcher may hold a request to "
                             "batch it with later ones")
    parser.add_argument("--instances", type=positive_int, default=1,
                        help="instances of the model (each its own runtime)")
    parser.add_argument("--decode_workers", type=int, default=DEFAULT_WORKERS,
                        help="processes that decode and resize the requests' images, shared "
                             "by the instances (0: in each instance's thread)")
    parser.add_argument("--http_port", type=int, default=8000, help="the HTTP port")
    parser.add_argument("--grpc_port", type=int, default=8001, help="the gRPC port")
    parser.add_argument("-t", "--score_threshold", type=float, default=0.0,
                        help="answer only detections scoring at least this (default: all that "
                             "the model's NMS keeps, as infer.py)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print a line per batch: its images, requests and time")
    args = parser.parse_args(argv)
    if args.decode_workers < 0:
        parser.error(f"--decode_workers {args.decode_workers} must be at least 0")
    if args.queue_delay_us < 0:
        parser.error(f"--queue_delay_us {args.queue_delay_us} must be at least 0")
    for flag in ("http_port", "grpc_port"):
        if not 1 <= getattr(args, flag) <= 65535:
            parser.error(f"--{flag} {getattr(args, flag)} must lie in 1..65535")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 130 / 143 stopped by SIGINT / SIGTERM, 1 the server could not start or ended
    by itself, 2 bad command line or input files."""
    return run_main(PROG, parse_args, run, argv)
