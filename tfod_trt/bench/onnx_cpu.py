"""The CPU baseline: an ONNX graph timed on ONNX Runtime (with the NumPy plugins)."""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import onnxruntime

from tfod_trt.bench.feeds import sample_feed
from tfod_trt.bench.latency import infer_once, record
from tfod_trt.bench.timing import timed_loop, wall_ms
from tfod_trt.detect.batch import dynamic_batch_range
from tfod_trt.reference.runner import ReferenceRunner


def bench_onnx(path: Path, args: argparse.Namespace) -> list[dict]:
    """ONNX Runtime on the CPU (reference_runner: ORT + the NumPy plugins), at the graph's
    batch (a dynamic-batch graph: at each --batch_size, default 1): host wall time of one
    inference."""

    runner = ReferenceRunner(path)
    static = dynamic_batch_range(runner) is None
    batches = [int(runner.input_shape[0])] if static else (args.batch or [1])
    records = []
    for batch in batches:
        shape = (batch, *(int(d) for d in runner.input_shape[1:]))
        feed = sample_feed(runner, shape, args)
        latencies = timed_loop(lambda f=feed: wall_ms(lambda: infer_once(runner, f)),
                               args.warmup, args.duration, args.iterations)
        records.append(record("onnxruntime_cpu", path, batch, "infer_call", latencies,
                              onnxruntime_version=onnxruntime.__version__, dynamic=not static,
                              input_shape=list(shape),
                              cpu=platform.processor() or platform.machine()))
    return records
