"""Explicitly typed ONNX graphs for TensorRT: INT8 by Q/DQ nodes, and FP16 / mixed precision.

TensorRT 11 builds strongly typed networks only: precision is what the ONNX says. This module
makes such graphs from an FP32 graph of create_onnx.py (they also build on 8.6 and 10.x):

    python quantize.py -o model.onnx --output model.qdq.onnx --mode int8 \\
        --calib_input calibration_images/ --calib_cache model.qdq.json
    python quantize.py -o model.onnx --output model.fp16.onnx --mode fp16

build_engine.py calls the same functions itself (``--int8_mode qdq``, and FP16 on TensorRT 11).

INT8 uses ONNX Runtime's own quantization tool (``onnxruntime.quantization``): its calibrator
collects the activation ranges on the plugin-free part of the graph (from the input up to the
inputs of the first TensorRT plugin), fed with images preprocessed exactly as inference does
(image_batcher and the ONNX metadata); its QDQ quantizer then inserts QuantizeLinear /
DequantizeLinear pairs in the whole graph: symmetric INT8 (zero point 0), per-channel weights,
per-tensor activations, biases left in FP32, which is what TensorRT's explicit quantization
expects. Only convolutions (and MatMul / Gemm) outside the sensitive part are quantized.

FP16 uses ONNX Runtime's copy of onnxconverter-common's float16 converter
(``onnxruntime.transformers.float16``), which inserts the Casts around blocked nodes itself.

The sensitive part stays FP32 in both: nodes named after the anchors or box deltas
(build_engine.SENSITIVE_NAME_PARTS), the nodes that produce plugin inputs, the branch that
only feeds box inputs of the plugins (box predictor, box decoding, anchors), the plugins and
everything after them (for Faster R-CNN: the proposals, CropAndResize and the second stage).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tfod_trt.cli import run_main
from tfod_trt.commands.quantize import run
from tfod_trt.quant.int8 import CALIBRATION_METHODS

# ---------------------------------------------------------------------------------------------
# Command line.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
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


if __name__ == "__main__":
    sys.exit(main())
