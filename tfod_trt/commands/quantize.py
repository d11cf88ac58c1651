"""quantize.py's work: an FP32 ONNX -> its Q/DQ INT8 or FP16 ONNX."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tfod_trt.cli import run_main
from tfod_trt.convert.onnx_file import read_detector
from tfod_trt.files import atomic_write_bytes, check_outputs
from tfod_trt.io.images import images_read_from
from tfod_trt.quant.fp16 import convert_fp16
from tfod_trt.quant.int8 import CALIBRATION_METHODS, quantize_int8

log = logging.getLogger("quantize")


def run(args: argparse.Namespace) -> int:
    check_outputs({"--onnx": args.onnx, "--calib_input": images_read_from(args.calib_input)},
                  {"--output": args.output, "--calib_cache": args.calib_cache})
    model = read_detector(args.onnx)
    if args.mode == "int8":
        typed = quantize_int8(model, args.calib_input, args.calib_cache, args.calib_num_images,
                              args.calib_method, args.onnx)
    else:
        typed = convert_fp16(model, args.onnx)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.output, typed.SerializeToString())
    log.info("wrote %s", args.output)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="quantize.py",
        description="Make a Q/DQ INT8 or an FP16 ONNX (for TensorRT) from an FP32 ONNX of "
                    "create_onnx.py.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("-o", "--onnx", required=True, type=Path, help="the FP32 ONNX model")
    parser.add_argument("--output", required=True, type=Path, help="the ONNX file to write")
    parser.add_argument("-m", "--mode", choices=["int8", "fp16"], default="int8")
    parser.add_argument("--calib_input", type=Path, help="int8: a folder of calibration images")
    parser.add_argument("--calib_cache", type=Path,
                        help="int8: JSON range cache to read (skips calibration) or write")
    parser.add_argument("--calib_num_images", type=int, default=5000,
                        help="int8: at most this many calibration images")
    parser.add_argument("--calib_method", choices=CALIBRATION_METHODS, default="minmax",
                        help="int8: ONNX Runtime's range calibration method")
    args = parser.parse_args(argv)
    if args.calib_num_images < 1:
        parser.error("--calib_num_images must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("quantize.py", parse_args, run, argv)
