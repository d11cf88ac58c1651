"""The folder pipeline measured: engine-only throughput, infer.py's pipelined path (CPU or nvJPEG
decoding) and the serial loop, first pass apart from the steady state."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tfod_trt.bench.feeds import sample_feed
from tfod_trt.bench.latency import engine_description, graph_modes, infer_once
from tfod_trt.bench.timing import EventTimer, latency_stats, timed_loop
from tfod_trt.cuda_ctypes import CudaUnavailable
from tfod_trt.detect.batch import box_frame, class_offset_of, run_batch
from tfod_trt.detect.inputs import make_batcher
from tfod_trt.detect.pipeline import detect_folder_pipelined, pipeline_depth
from tfod_trt.detect.results import batch_results
from tfod_trt.io.batcher import Batch, ImageBatcher
from tfod_trt.io.images import ImageError
from tfod_trt.io.resize import load_preprocessed
from tfod_trt.trt.runner import TrtRunner


def repeated_batcher(runner: Any, args: argparse.Namespace, count: int,
                     processes: bool = True, gpu_decode: bool = False) -> ImageBatcher:
    """infer.py's batcher for the runner on the --pipeline images (decode processes by
    default; --workers, --preprocessor), its image list cycled to ``count`` images."""

    batcher = make_batcher(runner, args.pipeline, args.preprocessor, workers=args.workers,
                           processes=processes, gpu_decode=gpu_decode)
    repeats = -(-count // len(batcher.images))
    batcher.images = (batcher.images * repeats)[:count]
    return batcher


def serial_loop(runner: Any, batcher: ImageBatcher) -> int:
    """decode -> copy -> infer -> copy, one batch after the other, no thread; returns the
    number of images done. Same post-processing as the pipeline."""

    offset = class_offset_of(runner)
    done = 0
    paths = list(batcher.images)
    for first in range(0, len(paths), batcher.batch_size):
        data = np.zeros(batcher.shape, np.float32)
        batch_paths, scales = [], []
        for path in paths[first:first + batcher.batch_size]:
            try:
                image, scale = load_preprocessed(path, batcher.pre)
            except (ImageError, ValueError):
                continue
            index = len(batch_paths)
            data[index] = image.transpose(2, 0, 1) if batcher.layout == "NCHW" else image
            batch_paths.append(path)
            scales.append(scale)
        if not batch_paths:
            continue
        batch = Batch(data, batch_paths, scales)
        done += len(batch_results(run_batch(runner, batch), batch, offset, 0.0,
                                         box_frame(runner)))
    return done


def bench_pipeline(path: Path, args: argparse.Namespace) -> dict:
    """Engine-only throughput at the engine's batch, infer.py's pipelined path and the serial
    loop, measured in one run on the same images."""

    loop = {"warmup_s": args.warmup, "duration_s": args.duration,
            "min_iterations": args.iterations}
    with TrtRunner(path, args.cuda_backend) as runner:
        batcher = repeated_batcher(runner, args, args.pipeline_images)
        batch = batcher.batch_size
        shape = batcher.shape
        described = engine_description(runner)
        runner.set_input_shape(shape)
        infer_once(runner, sample_feed(runner, shape, args, images=args.pipeline))
        timer = EventTimer(runner.backend)
        try:
            engine_only = {}
            for graph in graph_modes("both"):
                if graph and not runner.capture_graph():
                    continue
                if not graph:
                    runner.release_graph()
                stats = latency_stats(timed_loop(lambda: timer(runner.enqueue), **loop))
                engine_only["cuda_graph" if graph else "no_cuda_graph"] = {
                    "latency_ms": stats, "images_per_s": batch * 1e3 / stats["mean"]}
            runner.release_graph()
        finally:
            timer.close()

        def pipelined(source: ImageBatcher) -> int:
            return sum(1 for _ in detect_folder_pipelined(runner, source,
                                                                depth=args.pipeline_depth))

        warm = repeated_batcher(runner, args, min(4 * batch, len(batcher)))
        pipelined(warm)  # worker processes, page cache, TensorRT with the pipeline's buffers
        serial_loop(runner, warm)

        threaded = repeated_batcher(runner, args, args.pipeline_images, processes=False)
        runs = [("pipelined", pipelined, batcher), ("pipelined_threads", pipelined, threaded),
                ("serial", lambda b: serial_loop(runner, b), batcher)]
        gpu_decoded, unavailable = nvjpeg_batchers(runner, args, warm)
        if gpu_decoded is not None:
            runs.insert(1, ("pipelined_nvjpeg", pipelined, gpu_decoded))
        timings = {}
        for name, work, source in runs:
            if name == "serial":  # the slow baseline: one pass
                timings[name] = timed_pass(work, source)
                continue
            passes = [timed_pass(work, source) for _ in range(args.pipeline_passes)]
            timings[name] = {**steady_state(passes),
                             "pipeline_depth": pipeline_depth(source, args.pipeline_depth)}
        if gpu_decoded is not None:
            gpu_decoded.close()
    return {"kind": "pipeline", "source": str(path), "batch": batch, "images": len(batcher),
            "image_folder": str(args.pipeline), "workers": args.workers,
            "pipeline_depth": args.pipeline_depth, **described, "engine_only": engine_only,
            **timings, **({"nvjpeg_unavailable": unavailable} if unavailable else {}),
            **pipeline_ratios(engine_only, timings)}


def timed_pass(work: Callable[[ImageBatcher], int], source: ImageBatcher) -> dict:
    """One pass of ``work`` over the batcher's images: images done, seconds, images/s."""
    start = time.perf_counter()
    done = work(source)
    seconds = time.perf_counter() - start
    source.skipped.clear()
    return {"images": done, "seconds": seconds, "images_per_s": done / seconds}


def steady_state(passes: list[dict]) -> dict:
    """The passes of one path summed up: its steady state is the median pass after the first
    (the slower of two), with the first pass beside it. A folder's first pass after the short
    warm-up ran up to 8% slower than the next ones on H100 machines (docs/benchmarks.md), a
    one-off cost that a 1 s pass magnifies and a long run spreads thin."""
    later = sorted(passes[1:] or passes, key=lambda one: one["images_per_s"])
    return {**later[(len(later) - 1) // 2], "first_pass": passes[0],
            "passes_images_per_s": [one["images_per_s"] for one in passes]}


def nvjpeg_batchers(runner: Any, args: argparse.Namespace, warm: ImageBatcher
                    ) -> tuple[ImageBatcher | None, str | None]:
    """The measured GPU-decode batcher, warmed up on ``warm``'s images (NVRTC's compile,
    nvJPEG's handle and decode states, the reader processes: what a long folder run pays
    once), or None and why."""

    batcher = None
    try:
        batcher = repeated_batcher(runner, args, args.pipeline_images, gpu_decode=True)
        measured = batcher.images
        batcher.images = measured[:len(warm)]
        sum(1 for _ in detect_folder_pipelined(runner, batcher, depth=args.pipeline_depth))
        batcher.images = measured
        return batcher, None
    except BaseException as err:
        if batcher is not None:
            batcher.close()
        if not isinstance(err, CudaUnavailable):
            raise
        print(f"benchmark: no GPU decode measurement: {err}", file=sys.stderr)
        return None, str(err)


def pipeline_ratios(engine_only: dict, timings: dict) -> dict:
    """Each pipelined path's steady state (and first pass) over the engine-only throughput
    (the faster of with and without a CUDA graph: the pipeline replays one per buffer set
    where it can) and over the serial loop, and the targets (>= 80% of engine-only, >= 3x
    serial) for the fastest path in its steady state."""
    engine_ips = max(mode["images_per_s"] for mode in engine_only.values())
    serial_ips = timings["serial"]["images_per_s"]
    ratios: dict[str, Any] = {"engine_only_images_per_s": engine_ips}
    for name, timing in timings.items():
        if name != "serial":
            ratios[f"{name}_over_engine_only"] = timing["images_per_s"] / engine_ips
            ratios[f"{name}_over_serial"] = timing["images_per_s"] / serial_ips
            ratios[f"{name}_first_pass_over_engine_only"] = (
                timing["first_pass"]["images_per_s"] / engine_ips)
    fastest = max((name for name in timings if name != "serial"),
                  key=lambda name: timings[name]["images_per_s"])
    ratios["fastest_path"] = fastest
    ratios["targets_met"] = {
        "pipelined >= 0.8 x engine-only": ratios[f"{fastest}_over_engine_only"] >= 0.8,
        "pipelined >= 3 x serial": ratios[f"{fastest}_over_serial"] >= 3.0}
    return ratios
