"""Benchmarks TensorRT engines (GPU) and their ONNX graphs on ONNX Runtime (CPU baseline).

    python benchmark.py -e engines/ --cuda_graphs both --batch 1 8 32 --json out/latency.json
    python benchmark.py -e model_b16_fp16.engine --pipeline images/ --json out/pipeline.json
    python benchmark.py -e model.engine --profile --json out/profile.json
    python benchmark.py --onnx model_b1.onnx model_b8.onnx --json out/onnx_cpu.json

Timing follows trtexec: warm-up (``--warmup`` s), then at least ``--iterations`` runs and
``--duration`` s; mean, median and 90/95/99th percentiles. Measures (records in the JSON):

* ``compute``: GPU time of one inference, CUDA events around ``execute_async_v3`` (or the CUDA
  graph replay, ``cuda_graph: true``), no copies;
* ``end_to_end``: CUDA events around input copy + inference + output copies;
* ``infer_call``: host wall time of ``TrtRunner.infer`` (also copies into and out of the pinned
  buffers), and for ONNX Runtime the reference runner's ``infer`` (with the NumPy NMS plugin);
* ``pipeline`` (``--pipeline IMAGES``): images/s of infer.py's pipelined folder path (decode
  pool, pinned double buffers, overlapped copies; no file writing), of the serial loop (decode
  -> copy -> infer -> copy per batch, one thing at a time), and the engine-only throughput at
  the engine's batch, all in one run; each pipelined path makes ``--pipeline_passes`` passes
  over the images, its first pass reported apart from its steady state (the median later pass);
* ``profile`` (``--profile``): per-layer times from TensorRT's IProfiler, the top layers, and
  the share of transposes/shuffles, casts and reformats (flagged at >= ``--flag_percent``).

Engines with a static batch run at their batch; dynamic-batch engines at each ``--batch`` that
their optimisation profile allows. ``tools/plot_benchmarks.py`` plots the JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfod_trt.cli import run_main
from tfod_trt.commands.benchmark import PROG, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("-e", "--engine", type=Path, nargs="+", default=[],
                        help="engine files, or folders of *.engine")
    parser.add_argument("--onnx", type=Path, nargs="+", default=[],
                        help="ONNX graphs to time on ONNX Runtime (CPU baseline)")
    parser.add_argument("--json", type=Path, help="write every result here (atomically)")
    parser.add_argument("--warmup", type=float, default=0.2, help="warm-up seconds (0.2)")
    parser.add_argument("--duration", type=float, default=3.0,
                        help="seconds measured at least, per measure (3)")
    parser.add_argument("--iterations", type=int, default=10,
                        help="iterations measured at least, per measure (10)")
    parser.add_argument("--batch", type=int, nargs="+",
                        help="batch sizes for dynamic-batch engines (default: the profile's "
                             "min, opt, max); static engines run at their own batch")
    parser.add_argument("--cuda_graphs", choices=("off", "on", "both"), default="both",
                        help="time inference with CUDA graphs, without, or both (default)")
    parser.add_argument("--cuda_backend", choices=("auto", "cuda-python", "pycuda"),
                        default="auto")
    parser.add_argument("--images", type=Path,
                        help="feed real preprocessed photos from this folder (default: noise)")
    parser.add_argument("--pipeline", type=Path, metavar="IMAGES",
                        help="also measure infer.py's pipelined folder path and the serial "
                             "loop on these images, with the engine-only throughput")
    parser.add_argument("--pipeline_images", type=int, default=1024,
                        help="images per pipeline measurement (the folder cycled; 1024)")
    parser.add_argument("--pipeline_passes", type=int, default=3,
                        help="passes per pipelined path: the first is reported apart, the "
                             "median of the others is its steady state (3)")
    parser.add_argument("--pipeline_depth", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None,
                        help="decode processes (and threads) of the pipeline (default: infer.py's)")
    parser.add_argument("--profile", action="store_true",
                        help="per-layer times (TensorRT IProfiler) of each engine")
    parser.add_argument("--top", type=int, default=15, help="layers printed per profile (15)")
    parser.add_argument("--flag_percent", type=float, default=5.0,
                        help="flag transposes/casts/reformats taking at least this share (5)")
    parser.add_argument("--skip_latency", action="store_true",
                        help="only --pipeline / --profile, no latency sweep")
    args = parser.parse_args(argv)
    if not args.engine and not args.onnx:
        parser.error("give --engine and/or --onnx")
    if (args.pipeline or args.profile) and not args.engine:
        parser.error("--pipeline and --profile need --engine")
    for name in ("iterations", "pipeline_images", "pipeline_passes", "pipeline_depth", "top"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or args.duration < 0:
        parser.error("--warmup and --duration must not be negative")
    if args.batch and min(args.batch) < 1:
        parser.error("--batch sizes must be at least 1")
    if args.workers is None:
        import infer

        args.workers = infer.DEFAULT_WORKERS
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 2 bad command line, files, or no TensorRT/GPU for the engines."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
