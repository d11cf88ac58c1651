"""Halves an ONNX file for transport to the GPU machine (each device call carries <= 64 MiB):
`pack` stores every large float32 initializer as float16 bytes, `unpack` turns them back into
float32. The unpacked graph has the same structure and the weights rounded to float16, so it
serves speed benchmarks and engine-vs-ONNX-Runtime comparisons run on that machine; it is not
the original model.

    python dev/gpu/onnx_half_weights.py pack model.onnx model.half.onnx
    python dev/gpu/onnx_half_weights.py unpack model.half.onnx model.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

PACKED = "tfod_trt_half_weights"  # metadata key listing the packed initializers
MIN_SIZE = 1024  # small tensors (shapes, scales) stay exact


def pack(model: onnx.ModelProto) -> onnx.ModelProto:
    """Large float32 initializers -> float16 (names listed in the metadata)."""
    names = []
    for tensor in model.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT and np.prod(tensor.dims) >= MIN_SIZE:
            half = numpy_helper.to_array(tensor).astype(np.float16)
            tensor.CopyFrom(numpy_helper.from_array(half, tensor.name))
            names.append(tensor.name)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        PACKED: "\n".join(names)})
    return model


def unpack(model: onnx.ModelProto) -> onnx.ModelProto:
    """The packed initializers back to float32; the metadata entry removed."""
    props = {p.key: p.value for p in model.metadata_props}
    names = set(props.pop(PACKED, "").split("\n")) - {""}
    if not names:
        raise SystemExit("not a packed model (no tfod_trt_half_weights metadata)")
    for tensor in model.graph.initializer:
        if tensor.name in names:
            full = numpy_helper.to_array(tensor).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(full, tensor.name))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    model = onnx.load(str(args.source))
    model = pack(model) if args.action == "pack" else unpack(model)
    args.target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(args.target))
    print(f"{args.target}: {args.target.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
