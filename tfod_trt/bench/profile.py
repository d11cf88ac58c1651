"""Per-layer times of an engine (TensorRT's IProfiler), grouped by kind, leftovers flagged."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfod_trt.bench.feeds import sample_feed
from tfod_trt.bench.latency import engine_description, infer_once, input_shape_for
from tfod_trt.trt import compat as trt_compat
from tfod_trt.trt.runner import TrtRunner

if TYPE_CHECKING:
    import tensorrt as trt



LAYER_KINDS = {  # kind -> pattern on TensorRT's layer names (fused layers join names with " + ")
    "reformat": re.compile(r"reformat|copynode", re.I),
    "transpose": re.compile(r"transpose|permute|shuffle", re.I),
    "cast": re.compile(r"(?<![a-z])cast", re.I),
    "plugin": re.compile(r"efficient_?nms|crop_?and_?resize|roi_?align", re.I),
}
SURGERY_LEFTOVERS = ("reformat", "transpose", "cast")


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

    with TrtRunner(path, args.cuda_backend) as runner:
        batch = runner.batch_size
        shape = input_shape_for(runner, batch)
        feed = sample_feed(runner, shape, args)
        described = engine_description(runner)
        infer_once(runner, feed)  # set-up, before the profiler is attached
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
