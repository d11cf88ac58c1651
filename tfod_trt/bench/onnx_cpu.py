"""The CPU baseline: an ONNX graph timed on ONNX Runtime (with the NumPy plugins)."""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import onnxruntime

from tfod_trt.bench.feeds import sample_feed
from tfod_trt.bench.latency import infer_once, record
from tfod_trt.bench.timing import timed_loop, wall_ms
from tfod_trt.reference.runner import ReferenceRunner


def bench_onnx(path: Path, args: argparse.Namespace) -> dict:
    """ONNX Runtime on the CPU (reference_runner: ORT + the NumPy plugins), at the graph's
    batch: host wall time of one inference."""


    runner = ReferenceRunner(path)
    batch = int(runner.input_shape[0]) if str(runner.input_shape[0]).isdigit() else 1
    shape = (batch, *(int(d) for d in runner.input_shape[1:]))
    feed = sample_feed(runner, shape, args)
    latencies = timed_loop(lambda: wall_ms(lambda: infer_once(runner, feed)), args.warmup,
                           args.duration, args.iterations)
    return record("onnxruntime_cpu", path, batch, "infer_call", latencies,
                  onnxruntime_version=onnxruntime.__version__,
                  input_shape=list(shape), cpu=platform.processor() or platform.machine())
