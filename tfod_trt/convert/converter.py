"""SavedModel + pipeline config -> ONNX model, by meta-architecture (SSD or Faster R-CNN)."""

from __future__ import annotations

from pathlib import Path

from tfod_trt.convert import faster_rcnn
from tfod_trt.convert.options import ConversionOptions
from tfod_trt.convert.ssd import convert_ssd


def convert(config, saved_model: Path, options: ConversionOptions):
    """SavedModel + ModelConfig -> onnx.ModelProto with EfficientNMS_TRT and metadata."""
    if config.meta_arch == "faster_rcnn":

        return faster_rcnn.convert(config, saved_model, options)
    return convert_ssd(config, saved_model, options)
