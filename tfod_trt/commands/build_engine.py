"""build_engine.py's work: the build options from the command line, the build, one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tfod_trt.errors import UsageError
from tfod_trt.files import check_outputs
from tfod_trt.io.images import images_read_from
from tfod_trt.trt import compat as trt_compat
from tfod_trt.trt.batch_profile import DEFAULT_BATCH_PROFILE, parse_batch_profile
from tfod_trt.trt.build_options import KEEP_FP32, BuildError, BuildOptions
from tfod_trt.trt.builder import build
from tfod_trt.trt.compat import TensorRTUnavailable
from tfod_trt.trt.engine_file import metadata_path


def run(args: argparse.Namespace) -> int:
    """The command line's work: 0 built, 2 bad input or no TensorRT here."""
    options = BuildOptions(
        precision=args.precision, workspace_gib=args.workspace, timing_cache=args.timing_cache,
        calib_input=args.calib_input, calib_cache=args.calib_cache,
        calib_num_images=args.calib_num_images, calib_batch_size=args.calib_batch_size,
        tf32=args.tf32, int8_mode=args.int8_mode, fp16_onnx=args.fp16_onnx,
        calib_method=args.calib_method, optimization_level=args.optimization_level,
        keep_fp32=args.keep_fp32, batch_profile=args.batch_profile,
    )
    try:
        check_outputs({"--onnx": args.onnx, "--calib_input": images_read_from(args.calib_input)},
                      {"--engine": args.engine, "--engine's metadata": metadata_path(args.engine),
                       "--timing_cache": args.timing_cache, "--calib_cache": args.calib_cache})
        build(args.onnx, args.engine, options, args.verbose)
    except (BuildError, TensorRTUnavailable, UsageError, OSError, ValueError) as err:
        print(f"build_engine.py: error: {err}", file=sys.stderr)
        return 2
    return 0


def batch_profile_argument(text: str) -> tuple[int, int, int]:
    """The argparse type of --batch_profile."""
    try:
        return parse_batch_profile(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build_engine.py",
        description="Build a TensorRT engine from an ONNX graph made by create_onnx.py.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-o", "--onnx", required=True, type=Path, help="the ONNX model")
    parser.add_argument("-e", "--engine", required=True, type=Path,
                        help="the engine file to write (its metadata goes to ENGINE.json)")
    parser.add_argument("-p", "--precision", choices=["fp32", "fp16", "int8"], default="fp32")
    parser.add_argument("-w", "--workspace", type=float, default=8.0,
                        help="the builder's workspace limit in GiB")
    parser.add_argument("--int8_mode", choices=trt_compat.INT8_MODES,
                        help="INT8: TensorRT's entropy calibrator (8.6-10.x), or Q/DQ nodes "
                             "calibrated with ONNX Runtime (quantize.py; any version); default: "
                             "calibrator where TensorRT has it, else qdq")
    parser.add_argument("--fp16_onnx", action="store_true",
                        help="FP16: convert the ONNX to FP16 (quantize.py) also where the FP16 "
                             "builder flag exists (always done on TensorRT 11)")
    parser.add_argument("--calib_input", type=Path,
                        help="INT8: a folder of calibration images")
    parser.add_argument("--calib_cache", type=Path,
                        help="INT8: calibration cache to read (skips calibration) or write "
                             "(calibrator: TensorRT's cache; qdq: JSON of tensor ranges)")
    parser.add_argument("--calib_method", choices=["minmax", "entropy", "percentile"],
                        default="minmax", help="INT8 range calibration: minmax (default) or "
                        "entropy (TensorRT's EntropyCalibrator2 / ONNX Runtime's); percentile: "
                        "qdq only")
    parser.add_argument("--calib_num_images", type=int, default=5000,
                        help="INT8: at most this many calibration images")
    parser.add_argument("--calib_batch_size", type=int, default=8,
                        help="INT8: calibration batch size (a static ONNX batch size wins)")
    parser.add_argument("--batch_profile", type=batch_profile_argument, metavar="MIN,OPT,MAX",
                        help="a dynamic-batch ONNX (create_onnx.py --batch_size -1): the "
                        "batch sizes the engine takes, MIN to MAX, its kernels tuned for OPT "
                        f"(default {','.join(map(str, DEFAULT_BATCH_PROFILE))}); refused for "
                        "a static-batch ONNX")
    parser.add_argument("--timing_cache", type=Path,
                        help="timing cache file to read and update (faster rebuilds)")
    parser.add_argument("--tf32", action="store_true",
                        help="fp32: allow TF32 math (faster on Ampere and later, less exact)")
    parser.add_argument("--optimization_level", type=int, choices=range(6), metavar="0-5",
                        help="TensorRT's builder optimization level (default 3): lower builds "
                        "faster, possibly slower engines")
    parser.add_argument("--keep_fp32", choices=list(KEEP_FP32), default="heads",
                        help="FP16 / INT8 with TensorRT's precision flags: what stays FP32; "
                        + "; ".join(f"{name}: {what}" for name, what in KEEP_FP32.items()))
    parser.add_argument("-v", "--verbose", action="store_true", help="TensorRT's verbose log")
    args = parser.parse_args(argv)
    for name in ("calib_num_images", "calib_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.workspace <= 0:
        parser.error("--workspace must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 built, 2 bad command line, input, or no TensorRT here."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(parse_args(argv))
