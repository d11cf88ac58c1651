"""The side-by-side table of dev/gpu/gpu_versus_nvidia.sh: one row per engine (its folder holds
row.json, latency.json and profile.json from benchmark.py), the GPU compute median with and
without a CUDA graph, and each engine against NVIDIA's graph at the same batch and precision
(the row marked "anchor").

    python dev/gpu/versus_table.py RESULTS_DIR > table.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ("batch", "precision", "graph", "build", "compute median, CUDA graph (ms)",
           "without graph (ms)", "images/s", "vs NVIDIA", "EfficientNMS (ms)",
           "rest (ms)")


def compute_median(latency: dict, cuda_graph: bool) -> float | None:
    """The compute median of benchmark.py's report, with or without a CUDA graph."""
    for entry in latency.get("results", []):
        if (entry.get("kind") == "tensorrt" and entry.get("measure") == "compute"
                and bool(entry.get("cuda_graph")) == cuda_graph):
            return entry["latency_ms"]["median"]
    return None


def plugin_split(profile: dict) -> tuple[float | None, float | None]:
    """(the plugin layers' mean ms, everything else's) from benchmark.py --profile."""
    entries = [e for e in profile.get("results", []) if e.get("kind") == "profile"]
    if not entries:
        return None, None
    layers = entries[0]["layers"]
    plugin = sum(row["ms"] for row in layers if row["kind"] == "plugin")
    return plugin, sum(row["ms"] for row in layers) - plugin


def load_rows(results: Path) -> list[dict]:
    """Every measured engine: its row.json with the medians and the profile split."""
    rows = []
    for row_file in sorted(results.glob("*/row.json")):
        row = json.loads(row_file.read_text())
        folder = row_file.parent
        latency = _read(folder / "latency.json")
        row["graph_ms"] = compute_median(latency, True)
        row["plain_ms"] = compute_median(latency, False)
        row["nms_ms"], row["rest_ms"] = plugin_split(_read(folder / "profile.json"))
        rows.append(row)
    return sorted(rows, key=lambda r: (r["batch"], r["precision"] != "fp32", r["order"]))


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def ratio(row: dict, rows: list[dict]) -> str:
    """This engine's compute median (CUDA graph) over the anchor's of its batch and
    precision."""
    anchor = next((r for r in rows if r.get("anchor") and r["batch"] == row["batch"]
                   and r["precision"] == row["precision"]), None)
    if row.get("anchor"):
        return "1.00 (anchor)"
    if anchor is None or not anchor["graph_ms"] or row["graph_ms"] is None:
        return "-"
    return f"{row['graph_ms'] / anchor['graph_ms']:.2f}x"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        rate = "-" if not row["graph_ms"] else f"{row['batch'] * 1e3 / row['graph_ms']:.0f}"
        cells = [str(row["batch"]), row["precision"], row["graph"], row["build"],
                 _ms(row["graph_ms"]), _ms(row["plain_ms"]), rate, ratio(row, rows),
                 _ms(row["nms_ms"]), _ms(row["rest_ms"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: versus_table.py RESULTS_DIR", file=sys.stderr)
        return 2
    print(table(load_rows(Path(args[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
