"""Carries several ONNX graphs of one network in one call to the GPU machine (each call carries
at most 64 MiB): `pack` moves every large initializer into one shared `weights.bin`, each
distinct tensor stored once (the graphs of NVIDIA's sample and of create_onnx.py share all
their weights, and the batch variants too), as ONNX external data; `unpack` writes each graph
back as a self-contained file. The weights stay exact (float32).

    python dev/gpu/onnx_shared_weights.py pack OUT_DIR a.onnx b.onnx ...
    python dev/gpu/onnx_shared_weights.py unpack OUT_DIR DEST_DIR
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

WEIGHTS = "weights.bin"
MIN_SIZE = 1024  # small tensors (shapes, scales) stay inside each graph


def _raw(tensor: onnx.TensorProto) -> bytes:
    """The tensor's data as ONNX raw_data bytes, whichever field holds it."""
    return numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name).raw_data


def _point_to(tensor: onnx.TensorProto, offset: int, length: int) -> None:
    """Makes the tensor's data the bytes [offset, offset + length) of weights.bin."""
    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data",
                  "uint64_data"):
        tensor.ClearField(field)
    del tensor.external_data[:]
    for key, value in (("location", WEIGHTS), ("offset", offset), ("length", length)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, str(value)
    tensor.data_location = onnx.TensorProto.EXTERNAL


def pack(graphs: list[Path], out_dir: Path) -> int:
    """Writes out_dir/NAME.onnx for each graph and the shared out_dir/weights.bin; returns the
    number of bytes of weights stored."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stored: dict[str, tuple[int, int]] = {}  # content digest -> (offset, length)
    with (out_dir / WEIGHTS).open("wb") as blob:
        for path in graphs:
            model = onnx.load(str(path))
            for tensor in model.graph.initializer:
                if int(np.prod(tensor.dims)) < MIN_SIZE:
                    continue
                raw = _raw(tensor)
                key = hashlib.sha256(f"{tensor.data_type}{list(tensor.dims)}".encode() + raw
                                     ).hexdigest()
                if key not in stored:
                    stored[key] = (blob.tell(), len(raw))
                    blob.write(raw)
                offset, length = stored[key]
                _point_to(tensor, offset, length)
            (out_dir / path.name).write_bytes(model.SerializeToString())
        return blob.tell()


def unpack(source_dir: Path, dest_dir: Path) -> list[Path]:
    """Every packed graph of source_dir written self-contained to dest_dir."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source_dir.glob("*.onnx")):
        model = onnx.load(str(path))  # resolves weights.bin beside it
        target = dest_dir / path.name
        onnx.save(model, str(target))
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["pack", "unpack"])
    parser.add_argument("folder", type=Path, help="pack: the folder to write; unpack: the "
                                                  "packed folder")
    parser.add_argument("paths", type=Path, nargs="+",
                        help="pack: the graphs; unpack: the folder to write")
    args = parser.parse_args(argv)
    if args.action == "pack":
        size = pack(args.paths, args.folder)
        print(f"{args.folder}: {len(args.paths)} graphs, {size / 2**20:.1f} MiB of weights")
    else:
        if len(args.paths) != 1:
            parser.error("unpack takes one destination folder")
        for path in unpack(args.folder, args.paths[0]):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
