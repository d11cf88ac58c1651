"""Builds a TensorRT engine (8.6, 10.x or 11.x) from an ONNX graph made by create_onnx.py.

    python build_engine.py -o model.onnx -e model.engine [-p fp32|fp16|int8] \
        [--int8_mode calibrator|qdq] [--fp16_onnx] [--calib_input IMAGES] \
        [--calib_cache model.cache] [--timing_cache timing.cache] [--keep_fp32 heads|nms|none]

The engine is written with its metadata beside it (``<engine>.json``: the ONNX's metadata plus
how it was built), which trt_runner.TrtRunner reads. Plugin nodes are adapted to what the
installed TensorRT registers (trt_compat.adapt_onnx_plugins) before parsing.

Reduced precision comes either from builder flags on the FP32 graph (8.6-10.x: FP16 flag, INT8
flag with TensorRT's calibrator, MinMax by default) or from the graph itself (quantize.py: an
FP16 / mixed graph, or Q/DQ nodes calibrated with ONNX Runtime), which is the only way on
TensorRT 11 (strongly typed). trt_compat says which the installed TensorRT needs.
"""

import sys

from tfod_trt.commands.build_engine import main, parse_args  # noqa: F401 (this script's interface)

if __name__ == "__main__":
    sys.exit(main())
