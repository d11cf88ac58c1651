"""Engine latency: GPU compute (with and without CUDA graphs), end to end with the copies, and
the runner's own call, per batch size."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from tfod_trt.bench.feeds import Feed, sample_feed
from tfod_trt.bench.timing import EventTimer, latency_stats, timed_loop, wall_ms
from tfod_trt.errors import UsageError
from tfod_trt.trt.runner import TrtRunner

# ---------------------------------------------------------------------------------------------
# What runs where.


def find_engines(paths: list[Path]) -> list[Path]:
    """Engine files, folders expanded to their sorted ``*.engine``."""
    engines: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.engine"))
            if not found:
                raise UsageError(f"{path}: no *.engine files in this folder")
            engines += found
        elif path.is_file():
            engines.append(path)
        else:
            raise UsageError(f"{path}: engine file or folder not found")
    return engines


def batch_sizes(runner: TrtRunner, requested: list[int] | None) -> tuple[list[int], list[dict]]:
    """(batches to run, skipped ones with the reason): a static engine's own batch; for a
    dynamic one each requested batch inside its profile (default: the profile's min, opt,
    max)."""
    if not runner.is_dynamic:
        return [runner.input_shape[0]], []
    low, opt, high = (shape[0] for shape in runner.profile_shapes)
    wanted = requested or sorted({low, opt, high})
    inside = [b for b in wanted if low <= b <= high]
    skipped = [{"batch": b, "reason": f"outside the engine's profile {low}..{high}"}
               for b in wanted if not low <= b <= high]
    return inside, skipped


def input_shape_for(runner: TrtRunner, batch: int) -> tuple[int, ...]:
    return (batch, *runner.profile_shapes[2][1:])


def infer_once(runner: Any, feed: Feed) -> dict[str, np.ndarray]:
    """``runner.infer`` on a sample feed (with its true_image_shape where the graph takes one)."""
    return runner.infer(feed.image, feed.true_image_shape)


# ---------------------------------------------------------------------------------------------
# TensorRT measurements.


def record(kind: str, source: Path, batch: int, measure: str, latencies: list[float],
           **extra: Any) -> dict:
    """One result record: latency statistics and images/s (batch / mean latency)."""
    stats = latency_stats(latencies)
    return {"kind": kind, "source": str(source), "batch": batch, "measure": measure, **extra,
            "latency_ms": stats, "images_per_s": batch * 1e3 / stats["mean"]}


def engine_description(runner: TrtRunner) -> dict:
    """What the records say about the engine; an engine built elsewhere (trtexec, NVIDIA's
    sample) has no ``<engine>.json``: its precision is "unknown"."""
    engine = runner.metadata.get("engine", {})
    return {"precision": engine.get("precision", "unknown"), "dynamic": runner.is_dynamic,
            "input_shape": list(runner.input_shape), "input_format":
            runner.metadata.get("input_format"), "engine_metadata": bool(runner.metadata)}


def bench_engine(path: Path, args: argparse.Namespace) -> list[dict]:
    """compute (with and/or without CUDA graphs), end_to_end and infer_call records for each
    batch of one engine."""

    records: list[dict] = []
    with TrtRunner(path, args.cuda_backend) as runner:
        described = engine_description(runner)
        batches, skipped = batch_sizes(runner, args.batch)
        records += [{"kind": "skipped", "source": str(path), **s} for s in skipped]
        loop = {"warmup_s": args.warmup, "duration_s": args.duration,
                "min_iterations": args.iterations}
        timer = EventTimer(runner.backend)
        try:
            for batch in batches:
                shape = input_shape_for(runner, batch)
                feed = sample_feed(runner, shape, args)
                runner.set_input_shape(shape)
                infer_once(runner, feed)  # TensorRT's lazy set-up; the pinned input keeps the data

                def end_to_end() -> None:
                    runner.copy_inputs_async()
                    runner.enqueue()
                    runner.copy_outputs_async()

                for graph in graph_modes(args.cuda_graphs):
                    if graph and not runner.capture_graph():
                        records.append({"kind": "skipped", "source": str(path), "batch": batch,
                                        "reason": f"the {runner.backend.name} back-end cannot "
                                                  "capture CUDA graphs"})
                        continue
                    if not graph:
                        runner.release_graph()
                    common = {**described, "cuda_graph": graph,
                              "cuda_backend": runner.backend.name}
                    records.append(record("tensorrt", path, batch, "compute",
                                          timed_loop(lambda: timer(runner.enqueue), **loop),
                                          **common))
                    records.append(record("tensorrt", path, batch, "end_to_end",
                                          timed_loop(lambda: timer(end_to_end), **loop),
                                          **common))
                runner.release_graph()
                records.append(record(
                    "tensorrt", path, batch, "infer_call",
                    timed_loop(lambda f=feed: wall_ms(lambda: infer_once(runner, f)), **loop),
                    **described, cuda_graph=False, cuda_backend=runner.backend.name))
        finally:
            timer.close()
    return records


def graph_modes(choice: str) -> list[bool]:
    return {"both": [False, True], "on": [True], "off": [False]}[choice]
