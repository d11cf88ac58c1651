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
import datetime
import json
import logging
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from cli import UsageError, run_main
from image_batcher import Batch, ImageBatcher, ImageError, load_preprocessed
from onnx_utils import atomic_write_bytes

if TYPE_CHECKING:
    import tensorrt as trt

    from trt_runner import TrtRunner

PROG = "benchmark.py"
log = logging.getLogger("benchmark")

PERCENTILES = (90, 95, 99)
LAYER_KINDS = {  # kind -> pattern on TensorRT's layer names (fused layers join names with " + ")
    "reformat": re.compile(r"reformat|copynode", re.I),
    "transpose": re.compile(r"transpose|permute|shuffle", re.I),
    "cast": re.compile(r"(?<![a-z])cast", re.I),
    "plugin": re.compile(r"efficient_?nms|crop_?and_?resize|roi_?align", re.I),
}
SURGERY_LEFTOVERS = ("reformat", "transpose", "cast")


# ---------------------------------------------------------------------------------------------
# Statistics and timing loops.


def latency_stats(values_ms: list[float]) -> dict[str, float]:
    """count, mean, median, p90/p95/p99, min, max and std of latencies in milliseconds."""
    if not values_ms:
        raise ValueError("no measurements")
    values = np.asarray(values_ms, dtype=np.float64)
    stats = {"count": int(values.size), "mean": float(values.mean()),
             "median": float(np.median(values))}
    stats.update({f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES})
    stats.update({"min": float(values.min()), "max": float(values.max()),
                  "std": float(values.std())})
    return stats


def timed_loop(step: Callable[[], float], warmup_s: float, duration_s: float,
               min_iterations: int) -> list[float]:
    """Runs ``step`` (which returns one latency in ms) for ``warmup_s`` unrecorded, then until
    at least ``min_iterations`` runs and ``duration_s`` seconds; returns the latencies."""
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:
        step()
    values: list[float] = []
    start = time.perf_counter()
    while len(values) < min_iterations or time.perf_counter() - start < duration_s:
        values.append(step())
    return values


def wall_ms(work: Callable[[], Any]) -> float:
    """Host wall time of ``work()`` in ms."""
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) * 1e3


class EventTimer:
    """GPU time of work enqueued on a back-end's stream, with two CUDA events."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.start, self.end = backend.create_event(), backend.create_event()

    def __call__(self, enqueue: Callable[[], None]) -> float:
        """Records, enqueues, records, waits; returns the milliseconds between the events."""
        self.backend.record_event(self.start)
        enqueue()
        self.backend.record_event(self.end)
        self.backend.synchronize_event(self.end)
        return self.backend.elapsed_ms(self.start, self.end)

    def close(self) -> None:
        self.backend.destroy_event(self.start)
        self.backend.destroy_event(self.end)


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


def sample_input(shape: tuple[int, ...], images: Path | None, runner: Any) -> np.ndarray:
    """Real preprocessed photos (repeated to fill the batch) when ``images`` is given, else
    uniform noise in 0..255 (NMS time depends on the data: photos are the fairer input)."""
    if images is None:
        return np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    import infer

    batcher = infer.make_batcher(runner, images, batch_size=None if _static(runner) else
                                 shape[0], max_images=shape[0])
    batch = next(iter(batcher))
    return np.resize(batch.data[: batch.count], shape).astype(np.float32)


def whole_image_shapes(runner: Any, data: np.ndarray) -> np.ndarray | None:
    """The true_image_shape feed of graphs that take one: every image fills the input."""
    if not getattr(runner, "needs_true_image_shape", False):
        return None
    nchw = (runner.metadata or {}).get("input_format") == "NCHW"
    height, width = data.shape[2:4] if nchw else data.shape[1:3]
    return np.tile(np.float32([height, width]), (len(data), 1))


def infer_once(runner: Any, data: np.ndarray) -> dict[str, np.ndarray]:
    """``runner.infer`` on sample data (with whole-image true shapes where the graph wants)."""
    return runner.infer(data, whole_image_shapes(runner, data))


def _static(runner: Any) -> bool:
    return not getattr(runner, "is_dynamic", False)


# ---------------------------------------------------------------------------------------------
# TensorRT measurements.


def record(kind: str, source: Path, batch: int, measure: str, latencies: list[float],
           **extra: Any) -> dict:
    """One result record: latency statistics and images/s (batch / mean latency)."""
    stats = latency_stats(latencies)
    return {"kind": kind, "source": str(source), "batch": batch, "measure": measure, **extra,
            "latency_ms": stats, "images_per_s": batch * 1e3 / stats["mean"]}


def engine_description(runner: TrtRunner) -> dict:
    engine = runner.metadata.get("engine", {})
    return {"precision": engine.get("precision", "unknown"), "dynamic": runner.is_dynamic,
            "input_shape": list(runner.input_shape), "input_format":
            runner.metadata.get("input_format")}


def bench_engine(path: Path, args: argparse.Namespace) -> list[dict]:
    """compute (with and/or without CUDA graphs), end_to_end and infer_call records for each
    batch of one engine."""
    from trt_runner import TrtRunner

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
                data = sample_input(shape, args.images, runner)
                runner.set_input_shape(shape)
                infer_once(runner, data)  # TensorRT's lazy set-up; the pinned input keeps the data

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
                    timed_loop(lambda d=data: wall_ms(lambda: infer_once(runner, d)), **loop),
                    **described, cuda_graph=False, cuda_backend=runner.backend.name))
        finally:
            timer.close()
    return records


def graph_modes(choice: str) -> list[bool]:
    return {"both": [False, True], "on": [True], "off": [False]}[choice]


def layer_kind(name: str) -> str:
    """transpose / cast / reformat / plugin / other, from a TensorRT layer name."""
    for kind, pattern in LAYER_KINDS.items():
        if pattern.search(name):
            return kind
    return "other"


def layer_profiler(trt: Any) -> Any:  # noqa: F811 (the tensorrt module, given)
    """A ``trt.IProfiler`` that sums each layer's reported milliseconds."""

    class LayerProfiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.total: dict[str, float] = {}
            self.calls = 0

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.total[layer_name] = self.total.get(layer_name, 0.0) + float(ms)
            self.calls += 1

    return LayerProfiler()


def profile_engine(path: Path, args: argparse.Namespace) -> dict:
    """Per-layer times (mean per inference) at the engine's batch (a dynamic engine: its
    largest), the top layers and the share of each kind; leftovers >= flag_percent flagged."""
    import trt_compat
    from trt_runner import TrtRunner

    with TrtRunner(path, args.cuda_backend) as runner:
        batch = runner.batch_size
        shape = input_shape_for(runner, batch)
        data = sample_input(shape, args.images, runner)
        described = engine_description(runner)
        infer_once(runner, data)  # set-up, before the profiler is attached
        profiler = layer_profiler(trt_compat.require_tensorrt())
        context: trt.IExecutionContext = runner.context
        context.profiler = profiler
        runs = max(args.iterations, 20)
        for _ in range(runs):
            before = profiler.calls
            runner.enqueue()
            runner.backend.synchronize()
            if profiler.calls == before:  # enqueue_emits_profile off: ask for the report
                context.report_to_profiler()
        if profiler.calls == 0:
            raise RuntimeError(f"{path}: TensorRT reported no layer times")
        layers = sorted(profiler.total.items(), key=lambda item: -item[1])
    total = sum(ms for _, ms in layers)
    rows = [{"name": name, "ms": ms / runs, "percent": 100 * ms / total, "kind": layer_kind(name)}
            for name, ms in layers]
    by_kind: dict[str, float] = {}
    for row in rows:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0.0) + row["percent"]
    flagged = [row for row in rows
               if row["kind"] in SURGERY_LEFTOVERS and row["percent"] >= args.flag_percent]
    return {"kind": "profile", "source": str(path), "batch": batch, "runs": runs,
            **described, "total_ms": total / runs, "layers": rows,
            "percent_by_kind": by_kind, "flagged": flagged,
            "flag_percent": args.flag_percent}


def print_profile(entry: dict, top: int) -> None:
    print(f"\n{entry['source']} (batch {entry['batch']}, {entry['precision']}): "
          f"{entry['total_ms']:.3f} ms in {len(entry['layers'])} layers")
    for row in entry["layers"][:top]:
        print(f"  {row['percent']:6.2f}%  {row['ms']:8.4f} ms  {row['kind']:9s} {row['name']}")
    shares = ", ".join(f"{k} {v:.1f}%" for k, v in sorted(entry["percent_by_kind"].items()))
    print(f"  by kind: {shares}")
    for row in entry["flagged"]:
        print(f"  FLAGGED ({row['kind']} >= {entry['flag_percent']}%): {row['name']} "
              f"{row['percent']:.1f}%")


# ---------------------------------------------------------------------------------------------
# The folder pipeline against the serial loop, and ONNX Runtime.


def repeated_batcher(runner: Any, images: Path, count: int, workers: int,
                     processes: bool = True, gpu_decode: bool = False) -> ImageBatcher:
    """infer.py's batcher for the runner (decode processes by default), its image list cycled
    to ``count`` images."""
    import infer

    batcher = infer.make_batcher(runner, images, workers=workers, processes=processes,
                                 gpu_decode=gpu_decode)
    repeats = -(-count // len(batcher.images))
    batcher.images = (batcher.images * repeats)[:count]
    return batcher


def serial_loop(runner: Any, batcher: ImageBatcher) -> int:
    """decode -> copy -> infer -> copy, one batch after the other, no thread; returns the
    number of images done. Same post-processing as the pipeline."""
    import infer

    offset = infer.class_offset_of(runner)
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
        done += len(infer.batch_results(infer.run_batch(runner, batch), batch, offset, 0.0,
                                         infer.box_frame(runner)))
    return done


def bench_pipeline(path: Path, args: argparse.Namespace) -> dict:
    """Engine-only throughput at the engine's batch, infer.py's pipelined path and the serial
    loop, measured in one run on the same images."""
    import infer
    from trt_runner import TrtRunner

    loop = {"warmup_s": args.warmup, "duration_s": args.duration,
            "min_iterations": args.iterations}
    with TrtRunner(path, args.cuda_backend) as runner:
        batcher = repeated_batcher(runner, args.pipeline, args.pipeline_images, args.workers)
        batch = batcher.batch_size
        shape = batcher.shape
        described = engine_description(runner)
        runner.set_input_shape(shape)
        data = sample_input(shape, args.pipeline, runner)
        infer_once(runner, data)
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
            return sum(1 for _ in infer.detect_folder_pipelined(runner, source,
                                                                depth=args.pipeline_depth))

        warm = repeated_batcher(runner, args.pipeline, min(4 * batch, len(batcher)),
                                args.workers)
        pipelined(warm)  # worker processes, page cache, TensorRT with the pipeline's buffers
        serial_loop(runner, warm)

        threaded = repeated_batcher(runner, args.pipeline, args.pipeline_images, args.workers,
                                    processes=False)
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
                             "pipeline_depth": infer.pipeline_depth(source, args.pipeline_depth)}
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
    warm-up ran up to 8% slower than the next ones on the H100 machines (docs/benchmarks.md,
    sessions 9 and 10), a one-off cost that a 1 s pass magnifies and a long run spreads thin."""
    later = sorted(passes[1:] or passes, key=lambda one: one["images_per_s"])
    return {**later[(len(later) - 1) // 2], "first_pass": passes[0],
            "passes_images_per_s": [one["images_per_s"] for one in passes]}


def nvjpeg_batchers(runner: Any, args: argparse.Namespace, warm: ImageBatcher
                    ) -> tuple[ImageBatcher | None, str | None]:
    """The measured GPU-decode batcher, warmed up on ``warm``'s images (NVRTC's compile,
    nvJPEG's handle and decode states, the reader processes: what a long folder run pays
    once), or None and why."""
    import infer
    from cuda_ctypes import CudaUnavailable

    batcher = None
    try:
        batcher = repeated_batcher(runner, args.pipeline, args.pipeline_images, args.workers,
                                   gpu_decode=True)
        measured = batcher.images
        batcher.images = measured[:len(warm)]
        sum(1 for _ in infer.detect_folder_pipelined(runner, batcher, depth=args.pipeline_depth))
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


def bench_onnx(path: Path, args: argparse.Namespace) -> dict:
    """ONNX Runtime on the CPU (reference_runner: ORT + the NumPy plugins), at the graph's
    batch: host wall time of one inference."""
    import onnxruntime

    from reference_runner import ReferenceRunner

    runner = ReferenceRunner(path)
    batch = int(runner.input_shape[0]) if str(runner.input_shape[0]).isdigit() else 1
    shape = (batch, *(int(d) for d in runner.input_shape[1:]))
    data = sample_input(shape, args.images, runner)
    latencies = timed_loop(lambda: wall_ms(lambda: infer_once(runner, data)), args.warmup,
                           args.duration, args.iterations)
    return record("onnxruntime_cpu", path, batch, "infer_call", latencies,
                  onnxruntime_version=onnxruntime.__version__,
                  input_shape=list(shape), cpu=platform.processor() or platform.machine())


# ---------------------------------------------------------------------------------------------
# Command line.


def device_info() -> dict:
    """GPU name and driver (nvidia-smi), TensorRT version, host."""
    info: dict[str, Any] = {"host": platform.node(), "python": platform.python_version()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=30, check=True).stdout.strip().splitlines()
        info["gpu"], info["driver"] = (part.strip() for part in out[0].split(",", 1))
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        info["gpu"] = None
    try:
        import trt_compat

        info["tensorrt"] = trt_compat.version_string()
    except (ImportError, RuntimeError):
        info["tensorrt"] = None
    return info


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


def jobs(args: argparse.Namespace, engines: list[Path]) -> Iterator[tuple[str, Path]]:
    if not args.skip_latency:
        yield from (("latency", e) for e in engines)
    if args.profile:
        yield from (("profile", e) for e in engines)
    if args.pipeline:
        yield from (("pipeline", e) for e in engines)
    yield from (("onnx", m) for m in args.onnx)


def summary_line(entry: dict) -> str | None:
    if entry["kind"] in ("tensorrt", "onnxruntime_cpu"):
        stats = entry["latency_ms"]
        graph = " graph" if entry.get("cuda_graph") else ""
        return (f"{Path(entry['source']).name:40s} b{entry['batch']:<3d} "
                f"{entry.get('precision', 'cpu'):5s} {entry['measure']:10s}{graph:6s} "
                f"mean {stats['mean']:8.3f}  median {stats['median']:8.3f}  "
                f"p99 {stats['p99']:8.3f} ms  {entry['images_per_s']:9.1f} img/s")
    if entry["kind"] == "pipeline":
        paths = ", ".join(f"{name} {entry[name]['images_per_s']:.1f}" for name in
                          ("pipelined", "pipelined_nvjpeg", "pipelined_threads", "serial")
                          if name in entry)
        fastest = entry["fastest_path"]
        return (f"{Path(entry['source']).name}: img/s {paths}, engine-only "
                f"{entry['engine_only_images_per_s']:.1f} -> "
                f"{fastest} "
                f"{entry[f'{fastest}_over_engine_only']:.2f} x engine-only (first pass "
                f"{entry[f'{fastest}_first_pass_over_engine_only']:.2f}), "
                f"{entry[f'{fastest}_over_serial']:.2f} x serial")
    if entry["kind"] == "skipped":
        return f"{Path(entry['source']).name}: skipped batch {entry['batch']}: {entry['reason']}"
    return None


def run(args: argparse.Namespace) -> int:
    engines = find_engines(args.engine)
    for model in args.onnx:
        if not model.is_file():
            raise UsageError(f"{model}: ONNX file not found")
    if args.pipeline and not args.pipeline.exists():
        raise UsageError(f"{args.pipeline}: image folder not found")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "tool": PROG, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": sys.argv, "device": device_info(),
        "settings": {"warmup_s": args.warmup, "duration_s": args.duration,
                     "min_iterations": args.iterations, "percentiles": list(PERCENTILES)},
        "results": [],
    }
    todo = list(jobs(args, engines))
    bench = {"latency": bench_engine, "profile": profile_engine, "pipeline": bench_pipeline,
             "onnx": bench_onnx}
    for kind, path in tqdm(todo, desc=PROG, unit="job"):
        try:
            produced = bench[kind](path, args)
        except (ImportError, RuntimeError) as err:  # no TensorRT/GPU, engine cannot load
            raise UsageError(f"{path}: {type(err).__name__}: {err}") from err
        entries = produced if isinstance(produced, list) else [produced]
        report["results"] += entries
        for entry in entries:
            if entry["kind"] == "profile":
                print_profile(entry, args.top)
            elif (line := summary_line(entry)) is not None:
                tqdm.write(line)
        if args.json:  # after every job: a long run that dies keeps what it measured
            atomic_write_bytes(args.json, (json.dumps(report, indent=1) + "\n").encode())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 2 bad command line, files, or no TensorRT/GPU for the engines."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
