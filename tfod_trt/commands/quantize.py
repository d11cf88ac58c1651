"""quantize.py's work: an FP32 ONNX -> its Q/DQ INT8 or FP16 ONNX."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import onnx

from tfod_trt.files import atomic_write_bytes
from tfod_trt.quant.fp16 import convert_fp16
from tfod_trt.quant.int8 import quantize_int8
from tfod_trt.quant.sensitive import QuantizeError

log = logging.getLogger("quantize")


def load(path: Path) -> onnx.ModelProto:
    """An ONNX file, or a clear error naming it."""
    if not path.is_file():
        raise QuantizeError(f"ONNX file {path} not found")
    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf's DecodeError and friends
        raise QuantizeError(f"{path}: not a readable ONNX file ({err})") from err


def run(args: argparse.Namespace) -> int:
    model = load(args.onnx)
    if args.mode == "int8":
        typed = quantize_int8(model, args.calib_input, args.calib_cache, args.calib_num_images,
                              args.calib_method, args.onnx)
    else:
        typed = convert_fp16(model, args.onnx)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.output, typed.SerializeToString())
    log.info("wrote %s", args.output)
    return 0
