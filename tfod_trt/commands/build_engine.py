"""build_engine.py's work: the build options from the command line, the build, one-line errors."""

from __future__ import annotations

import argparse
import sys

from tfod_trt.trt.build_options import BuildError, BuildOptions
from tfod_trt.trt.builder import build
from tfod_trt.trt.compat import TensorRTUnavailable


def run(args: argparse.Namespace) -> int:
    """The command line's work: 0 built, 2 bad input or no TensorRT here."""
    options = BuildOptions(
        precision=args.precision, workspace_gib=args.workspace, timing_cache=args.timing_cache,
        calib_input=args.calib_input, calib_cache=args.calib_cache,
        calib_num_images=args.calib_num_images, calib_batch_size=args.calib_batch_size,
        tf32=args.tf32, int8_mode=args.int8_mode, fp16_onnx=args.fp16_onnx,
        calib_method=args.calib_method, optimization_level=args.optimization_level,
    )
    try:
        build(args.onnx, args.engine, options, args.verbose)
    except (BuildError, TensorRTUnavailable, OSError, ValueError) as err:
        print(f"build_engine.py: error: {err}", file=sys.stderr)
        return 2
    return 0
