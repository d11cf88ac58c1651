"""benchmark.py's work: engines, ONNX graphs and the folder pipeline timed, one JSON report."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tfod_trt.bench.feeds import read_npz
from tfod_trt.bench.latency import bench_engine, find_engines
from tfod_trt.bench.onnx_cpu import bench_onnx
from tfod_trt.bench.pipeline import bench_pipeline
from tfod_trt.bench.profile import print_profile, profile_engine
from tfod_trt.bench.served import bench_served, read_files
from tfod_trt.bench.timing import PERCENTILES
from tfod_trt.cli import run_main
from tfod_trt.convert.onnx_file import read_detector
from tfod_trt.detect.inputs import preprocessor_argument
from tfod_trt.errors import UsageError
from tfod_trt.files import atomic_write_bytes, check_outputs, check_writable_file
from tfod_trt.io.images import find_images
from tfod_trt.io.processes import DEFAULT_WORKERS
from tfod_trt.metadata import INPUT_NAME
from tfod_trt.serve.client import TritonPool, parse_urls
from tfod_trt.trt import compat as trt_compat
from tfod_trt.trt.engine_file import EngineError, metadata_path, read_engine_metadata

PROG = "benchmark.py"
DESCRIPTION = ("Benchmarks TensorRT engines (GPU), their ONNX graphs on ONNX Runtime "
               "(CPU baseline), and served detectors under load (--triton).")
DEFAULT_CONCURRENCY = (1, 8, 64)


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

        info["tensorrt"] = trt_compat.version_string()
    except (ImportError, RuntimeError):
        info["tensorrt"] = None
    return info


def jobs(args: argparse.Namespace, engines: list[Path]) -> Iterator[tuple[str, Path]]:
    if not args.skip_latency:
        yield from (("latency", e) for e in engines)
    if args.profile:
        yield from (("profile", e) for e in engines)
    if args.pipeline:
        yield from (("pipeline", e) for e in engines)
    yield from (("onnx", m) for m in args.onnx)
    if args.triton:
        yield from (("triton", clients) for clients in args.concurrency)


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
    if entry["kind"] == "triton":
        stats = entry.get("latency_ms") or {"median": float("nan"), "p99": float("nan")}
        errors = f"  errors: {entry['errors'][0]}" if entry["errors"] else ""
        return (f"{entry['model']} at {entry['source']}: {entry['concurrency']:3d} clients "
                f"{entry['images_per_s']:9.1f} img/s  latency median {stats['median']:8.3f}  "
                f"p99 {stats['p99']:8.3f} ms{errors}")
    if entry["kind"] == "skipped":
        return f"{Path(entry['source']).name}: skipped batch {entry['batch']}: {entry['reason']}"
    return None


def check_files(args: argparse.Namespace) -> list[Path]:
    """The engines to measure; refuses missing inputs and a --json that is one of them."""
    engines = find_engines(args.engine)
    for model in args.onnx:  # before any engine is timed
        read_detector(model, load_external_data=False)
    listed: dict[str, list[Path]] = {}  # the images each flag reads, listed once
    for flag, images in (("--images", args.images), ("--pipeline", args.pipeline)):
        if images is not None:
            try:
                listed[flag] = find_images(images)
            except (FileNotFoundError, ValueError) as err:
                raise UsageError(f"{flag}: {err}") from err
    if args.inputs is not None:
        read_npz(args.inputs)
    if args.images is not None or args.pipeline is not None:
        check_preprocessing_known(engines, args.preprocessor)
    if args.batch:
        check_batches_fit(engines, args.batch)
    if args.json:
        check_writable_file(args.json, "--json")
    check_outputs({"--engine": [*engines, *map(metadata_path, engines)], "--onnx": args.onnx,
                   **listed,
                   "--inputs": args.inputs}, {"--json": args.json})
    return engines


def check_batches_fit(engines: list[Path], batches: list[int]) -> None:
    """Refuses a --batch_size beyond the optimization profile that build_engine.py recorded
    in a dynamic-batch engine's ``<engine>.json`` (static engines run at their own batch)."""
    for engine in engines:
        try:
            profile = (read_engine_metadata(engine).get("engine") or {}).get("profile") or {}
        except EngineError as err:
            raise UsageError(str(err)) from err
        shapes = profile.get(INPUT_NAME)
        if not shapes:
            continue
        low, high = shapes[0][0], shapes[2][0]
        outside = [b for b in batches if not low <= b <= high]
        if outside:
            raise UsageError(
                f"--batch_size {outside[0]}: {engine} takes batches of {low} to {high} (its "
                "optimization profile, build_engine.py --batch_profile)")


def check_preprocessing_known(engines: list[Path], preprocessor: str | None) -> None:
    """Photos need to know how the model preprocesses them: from ``<engine>.json``
    (build_engine.py writes it) or from --preprocessor."""
    if preprocessor is not None:
        return
    for engine in engines:
        try:
            known = "preprocessor" in read_engine_metadata(engine)
        except EngineError as err:
            raise UsageError(str(err)) from err
        if not known:
            raise UsageError(
                f"{engine}: how to preprocess photos for it is unknown (no "
                f"{metadata_path(engine).name} from build_engine.py on a create_onnx.py graph "
                "beside it); pass --preprocessor (e.g. fixed_shape), or time it on --inputs "
                "FILE.npz or on random inputs (no --images)")


def run(args: argparse.Namespace) -> int:
    engines = check_files(args)
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
    if args.triton:
        bench["triton"] = served_bench(args)
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


def served_bench(args: argparse.Namespace):
    """--triton: the servers checked and the photos read once; a function of the clients."""
    pool = TritonPool(parse_urls(args.triton), args.model, what="benchmark.py --triton",
                      example="benchmark.py --triton URL --model NAME --images DIR")
    if all(server.failed for server in pool.servers):
        raise UsageError(f"--triton {args.triton}: no server answers "
                         f"({pool.servers[0].failed})")
    files = read_files(find_images(args.images))
    return lambda clients, args: bench_served(pool, files, clients, args.warmup,
                                              args.duration)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
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
    parser.add_argument("-b", "--batch_size", "--batch", dest="batch", type=int, nargs="+",
                        help="batch sizes for dynamic-batch engines (default: the profile's "
                             "min, opt, max; a size beyond an engine's profile is refused) "
                             "and dynamic-batch ONNX graphs (default 1); static ones run at "
                             "their own batch")
    parser.add_argument("--cuda_graphs", choices=("off", "on", "both"), default="both",
                        help="time inference with CUDA graphs, without, or both (default)")
    parser.add_argument("--cuda_backend", choices=("auto", "cuda-python", "pycuda"),
                        default="auto")
    feed = parser.add_mutually_exclusive_group()
    feed.add_argument("--images", type=Path,
                      help="feed real preprocessed photos from this folder (default: random "
                           "values of each input's shape and dtype)")
    feed.add_argument("--inputs", type=Path, metavar="FILE.npz",
                      help="feed these arrays, named after the inputs (numpy.savez); their "
                           "batch is repeated or cut to the engine's")
    parser.add_argument("-p", "--preprocessor", type=preprocessor_argument,
                        help="--images / --pipeline on engines without build_engine.py's "
                             "metadata: fixed_shape (the input's size), fixed_shape:HxW or "
                             "keep_aspect_ratio:MIN:MAX (default: from the metadata)")
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
    parser.add_argument("--triton", metavar="URL[,URL...]",
                        help="also load Triton servers of serve_triton.py / export_triton.py "
                             "(HTTP host:port): clients sending one --images file per "
                             "request (run with the serving environment's Python)")
    parser.add_argument("--model", help="--triton: the served model's name")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(DEFAULT_CONCURRENCY),
                        help="--triton: numbers of concurrent clients, one measure each "
                             "(1 8 64)")
    args = parser.parse_args(argv)
    if not args.engine and not args.onnx and not args.triton:
        parser.error("give --engine, --onnx and/or --triton")
    if bool(args.triton) != bool(args.model):
        parser.error("--triton and --model go together")
    if args.triton and args.images is None:
        parser.error("--triton needs --images (the files the clients send)")
    if min(args.concurrency) < 1:
        parser.error("--concurrency: at least 1 client")
    if (args.pipeline or args.profile) and not args.engine:
        parser.error("--pipeline and --profile need --engine")
    for name in ("iterations", "pipeline_images", "pipeline_passes", "pipeline_depth", "top"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.warmup < 0 or args.duration < 0:
        parser.error("--warmup and --duration must not be negative")
    if args.batch and min(args.batch) < 1:
        parser.error(f"--batch_size {min(args.batch)}: batch sizes must be at least 1")
    if args.workers is None:
        args.workers = DEFAULT_WORKERS
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 2 bad command line, files, or no TensorRT/GPU for the engines."""
    return run_main(PROG, parse_args, run, argv)
