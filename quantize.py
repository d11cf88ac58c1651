"""Explicitly typed ONNX graphs for TensorRT: INT8 by Q/DQ nodes, and FP16 / mixed precision.

TensorRT 11 builds strongly typed networks only: precision is what the ONNX says. This module
makes such graphs from an FP32 graph of create_onnx.py (they also build on 8.6 and 10.x):

    python quantize.py -o model.onnx --output model.qdq.onnx --mode int8 \
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

import sys

from tfod_trt.commands.quantize import main, parse_args  # noqa: F401 (this script's interface)

if __name__ == "__main__":
    sys.exit(main())
