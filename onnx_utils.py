"""The ONNX helpers of NVIDIA's sample layout, by their old name: graph edits
(tfod_trt.convert.graph_edits, tfod_trt.convert.postprocess), the metadata that travels in the
ONNX file (tfod_trt.metadata) and atomic file writing (tfod_trt.files)."""

from tfod_trt.convert.graph_edits import *  # noqa: F403
from tfod_trt.convert.postprocess import *  # noqa: F403
from tfod_trt.files import atomic_write_bytes  # noqa: F401
from tfod_trt.metadata import *  # noqa: F403
