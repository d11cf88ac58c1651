"""Reading the ONNX file a command is given: one clear line when it is no ONNX model, or no
detection graph of the kind create_onnx.py makes (the outputs every later tool reads)."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from tfod_trt.errors import UsageError
from tfod_trt.metadata import NMS_PLUGIN, OUTPUT_NAMES


class OnnxFileError(UsageError):
    """An ONNX file that cannot be used; the message names it and says why."""


def read_onnx(path: str | Path, load_external_data: bool = True) -> onnx.ModelProto:
    """The ONNX model at ``path``; OnnxFileError when it is missing, empty or not ONNX."""
    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(f"{path}: ONNX file not found")
    size = path.stat().st_size
    if size == 0:
        raise OnnxFileError(f"{path}: not an ONNX model (0 bytes)")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except (DecodeError, ValueError) as err:  # protobuf's and onnx's words for other bytes
        raise OnnxFileError(f"{path}: not an ONNX model (cannot parse: {err})") from err
    except OSError as err:  # unreadable, or its external data is
        raise OnnxFileError(f"{path}: cannot be read ({err})") from err
    if not model.graph.node:  # protobuf parses many other files as an empty message
        raise OnnxFileError(f"{path}: not an ONNX model (cannot parse: no graph in its "
                            f"{size} bytes)")
    return model


def check_detector(model: onnx.ModelProto, path: str | Path) -> None:
    """OnnxFileError unless the graph has an EfficientNMS_TRT node and the detection outputs
    (metadata.OUTPUT_NAMES) that the later tools read."""
    outputs = [output.name for output in model.graph.output]
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    has_nms = any(node.op_type == NMS_PLUGIN for node in model.graph.node)
    if missing or not has_nms:
        lacks = (f"outputs {', '.join(missing)} missing" if missing
                 else f"no {NMS_PLUGIN} node")
        raise OnnxFileError(
            f"{path}: has no {NMS_PLUGIN} output: not a graph made by create_onnx.py ({lacks}; "
            f"its outputs: {', '.join(outputs) or 'none'})")


def read_detector(path: str | Path, load_external_data: bool = True) -> onnx.ModelProto:
    """:func:`read_onnx`, then :func:`check_detector`."""
    model = read_onnx(path, load_external_data)
    check_detector(model, path)
    return model
