"""Plots benchmark.py JSON files: GPU compute latency (median, p99 as error bar) and
throughput against batch size, one line per precision (dashed: with CUDA graphs).

    python tools/plot_benchmarks.py out/latency.json [more.json ...] -o out/latency.png
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tfod_trt.errors import UsageError  # noqa: E402
from tfod_trt.files import atomic_write_bytes, check_outputs  # noqa: E402

PROG = "plot_benchmarks.py"


def series(reports: list[dict], measure: str = "compute") -> dict[tuple[str, bool], list[dict]]:
    """(precision, cuda_graph) -> TensorRT records of ``measure``, sorted by batch (one per
    batch: the last one read wins)."""
    by_key: dict[tuple[str, bool], dict[int, dict]] = defaultdict(dict)
    for report in reports:
        for entry in report.get("results", []):
            if entry.get("kind") == "tensorrt" and entry.get("measure") == measure:
                key = (entry.get("precision", "unknown"), bool(entry.get("cuda_graph")))
                by_key[key][int(entry["batch"])] = entry
    return {key: [rows[b] for b in sorted(rows)] for key, rows in sorted(by_key.items())}


def plot(reports: list[dict], output: Path, measure: str = "compute") -> int:
    """Writes the PNG atomically; returns the number of lines drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = series(reports, measure)
    if not lines:
        raise ValueError(f"no TensorRT '{measure}' results in the JSON files")
    import matplotlib.ticker

    fig, (latency, throughput) = plt.subplots(1, 2, figsize=(12, 4.5))
    batches_seen = sorted({r["batch"] for rows in lines.values() for r in rows})
    for (precision, graph), rows in lines.items():
        batches = [r["batch"] for r in rows]
        median = [r["latency_ms"]["median"] for r in rows]
        p99 = [r["latency_ms"]["p99"] - r["latency_ms"]["median"] for r in rows]
        label = f"{precision}{' + CUDA graph' if graph else ''}"
        style = "--" if graph else "-"
        latency.errorbar(batches, median, yerr=[[0] * len(p99), p99], fmt=f"o{style}",
                         capsize=3, label=label)
        throughput.plot(batches, [r["images_per_s"] for r in rows], f"o{style}", label=label)
    device = next((r.get("device", {}) for r in reports), {})
    title = f"{device.get('gpu') or 'GPU'}, TensorRT {device.get('tensorrt') or '?'}"
    for axis, ylabel in ((latency, f"{measure} latency, median (bar: p99) [ms]"),
                         (throughput, "images/s (batch / mean latency)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(batches_seen)
        axis.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel("batch size")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(output, buffer.getvalue())
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    """Exit code 0, or 2 with a one-line error."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("json", type=Path, nargs="+", help="benchmark.py --json outputs")
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    parser.add_argument("--measure", default="compute",
                        choices=("compute", "end_to_end", "infer_call"))
    args = parser.parse_args(argv)
    try:
        check_outputs({"JSON": args.json}, {"--output": args.output})
        reports = [json.loads(path.read_text()) for path in args.json]
        count = plot(reports, args.output, args.measure)
    except (UsageError, OSError, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(f"{args.output}: {count} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
