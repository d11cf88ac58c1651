"""Compares detection graphs for TensorRT side by side, without running them: the count of each
op, and the parts around the network: the preprocessing (graph input -> first Conv), the
post-processing between the heads' last convolutions and the NMS plugin, and what follows the
plugin; each node with its input shapes, small constants and (for plugins) attributes.

    python tools/compare_onnx_graphs.py nvidia_b1.onnx ours_b1.onnx [--json report.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import onnx
from onnx import numpy_helper, shape_inference

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tfod_trt.cli import run_main  # noqa: E402
from tfod_trt.convert.onnx_file import read_onnx  # noqa: E402
from tfod_trt.files import atomic_write_bytes, check_outputs  # noqa: E402
from tfod_trt.metadata import PLUGIN_OPS  # noqa: E402

PROG = "compare_onnx_graphs.py"
SMALL = 8  # constants of at most this many values are shown


class GraphView:
    """A graph's nodes with their producers, consumers, constants and inferred shapes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        model = shape_inference.infer_shapes(model)
        graph = model.graph
        self.nodes = list(graph.node)
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in self.nodes:
            if node.op_type == "Constant" and node.attribute:
                value = onnx.helper.get_attribute_value(node.attribute[0])
                if isinstance(value, onnx.TensorProto):
                    self.constants[node.output[0]] = numpy_helper.to_array(value)
        self.producer = {out: node for node in self.nodes for out in node.output if out}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        infos = [*graph.value_info, *graph.input, *graph.output]
        self.shapes = {info.name: [d.dim_value or d.dim_param or "?" for d in
                                   info.type.tensor_type.shape.dim] for info in infos}
        self.inputs = [t.name for t in graph.input if t.name not in self.constants]
        self.opset = {o.domain or "ai.onnx": o.version for o in model.opset_import}

    def backwards_until(self, tensors: list[str], stop_op: str) -> list[onnx.NodeProto]:
        """The nodes that produce ``tensors``, walking back up to (not into) ``stop_op``."""
        found: dict[str, onnx.NodeProto] = {}
        todo = list(tensors)
        while todo:
            node = self.producer.get(todo.pop())
            if node is None or node.op_type == stop_op or node.name in found:
                continue
            found[node.name] = node
            todo += [t for t in node.input if t not in self.constants]
        return self.in_graph_order(found.values())

    def downstream(self, start: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
        """``start`` and every node fed by them."""
        found = {node.name: node for node in start}
        todo = [out for node in start for out in node.output]
        while todo:
            for node in self.consumers.get(todo.pop(), []):
                if node.name not in found:
                    found[node.name] = node
                    todo += list(node.output)
        return self.in_graph_order(found.values())

    def in_graph_order(self, nodes) -> list[onnx.NodeProto]:
        order = {node.name: i for i, node in enumerate(self.nodes)}
        return sorted(nodes, key=lambda node: order[node.name])

    def describe(self, node: onnx.NodeProto) -> dict:
        """Op, name, input shapes (constants: shape and, when small, values), attributes."""
        inputs = []
        for name in node.input:
            if name in self.constants:
                value = self.constants[name]
                shown = value.ravel().tolist() if value.size <= SMALL else None
                inputs.append({"constant": list(value.shape), "values": shown})
            else:
                inputs.append({"tensor": name, "shape": self.shapes.get(name)})
        attrs = {a.name: _plain(onnx.helper.get_attribute_value(a)) for a in node.attribute}
        return {"op": node.op_type, "name": node.name, "inputs": inputs, "attributes": attrs}


def _plain(value):
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (int, float, str)) else str(value)


def report(path: Path) -> dict:
    """One graph's op counts and the nodes around its network."""
    view = GraphView(read_onnx(path))
    plugins = [node for node in view.nodes if node.op_type in PLUGIN_OPS]
    plugin_inputs = [t for node in plugins for t in node.input if t and t not in view.constants]
    first_conv = next((n for n in view.nodes if n.op_type == "Conv"), None)
    preprocessing = view.backwards_until(list(first_conv.input[:1]), "Conv") if first_conv else []
    return {
        "file": str(path), "opset": view.opset, "nodes": len(view.nodes),
        "ops": dict(Counter(node.op_type for node in view.nodes).most_common()),
        "preprocessing": [view.describe(n) for n in preprocessing],
        "heads_to_nms": [view.describe(n) for n in view.backwards_until(plugin_inputs, "Conv")],
        "nms_and_after": [view.describe(n) for n in view.downstream(plugins)],
    }


def op_table(reports: list[dict]) -> list[str]:
    names = [Path(r["file"]).name for r in reports]
    ops = sorted({op for r in reports for op in r["ops"]},
                 key=lambda op: (-max(r["ops"].get(op, 0) for r in reports), op))
    lines = ["| op | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for op in ops:
        counts = [str(r["ops"].get(op, 0)) for r in reports]
        lines.append(f"| {op} | " + " | ".join(counts) + " |")
    lines.append("| **nodes** | " + " | ".join(str(r["nodes"]) for r in reports) + " |")
    return lines


def node_line(node: dict) -> str:
    parts = []
    for item in node["inputs"]:
        if "tensor" in item:
            parts.append(f"{item['shape']}")
        else:
            parts.append(f"const{item['constant']}" + (f"={item['values']}" if item["values"]
                                                         is not None else ""))
    attrs = f" {node['attributes']}" if node["attributes"] else ""
    return f"  {node['op']:<16} {node['name'][-48:]:<48} ({', '.join(parts)}){attrs}"


def print_report(reports: list[dict]) -> None:
    print("\n".join(op_table(reports)))
    for section in ("preprocessing", "heads_to_nms", "nms_and_after"):
        for r in reports:
            print(f"\n{Path(r['file']).name}: {section} ({len(r[section])} nodes)")
            for node in r[section]:
                print(node_line(node))


def run(args: argparse.Namespace) -> int:
    if args.json:
        check_outputs({"graphs": args.graphs}, {"--json": args.json})
    reports = [report(path) for path in args.graphs]
    print_report(reports)
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(reports, indent=1) + "\n").encode())
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", type=Path, nargs="+", help="ONNX files")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 2 a file that is no ONNX model."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
