"""What an engine build is asked for (the command line's choices) and why a build is refused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfod_trt.trt import compat as trt_compat


class BuildError(RuntimeError):
    """Why no engine was built, as one line for the user."""


# --keep_fp32: what an FP16 / INT8 build with TensorRT's precision flags pins to FP32.
KEEP_FP32 = {
    "heads": "the heads' last convolutions and what carries them to the NMS, the box "
             "decoding, the plugins and everything after them",
    "nms": "the box decoding, the plugins and everything after them; the heads in reduced "
           "precision",
    "none": "nothing: TensorRT picks every layer's precision (as NVIDIA's sample did)",
}


@dataclass
class BuildOptions:
    """What the command line chooses (defaults as NVIDIA's sample)."""

    precision: str = "fp32"
    workspace_gib: float = 8.0
    timing_cache: Path | None = None
    calib_input: Path | None = None
    calib_cache: Path | None = None
    calib_num_images: int = 5000
    calib_batch_size: int = 8
    tf32: bool = False
    int8_mode: str | None = None  # "calibrator" or "qdq"; None: trt_compat.default_int8_mode
    fp16_onnx: bool = False  # fp16 from an FP16 ONNX also where the FP16 flag exists
    calib_method: str = "minmax"  # INT8 ranges: CALIBRATORS / ONNX Runtime's methods
    optimization_level: int | None = None  # TensorRT's builder level 0-5 (None: its default, 3)
    keep_fp32: str = "heads"  # KEEP_FP32: the layers pinned to FP32 in FP16 / INT8 builds
    # a dynamic-batch ONNX: the engine's batches (MIN, OPT, MAX); None: batch_profile's default
    batch_profile: tuple[int, int, int] | None = None

    def typed_onnx(self, trt: Any) -> bool:
        """Whether the precision goes into the ONNX (FP16 graph or Q/DQ) before parsing."""
        if self.precision == "fp16":
            return self.fp16_onnx or trt_compat.needs_typed_onnx("fp16", trt)
        if self.precision == "int8":
            return self.resolved_int8_mode(trt) == "qdq"
        return False

    def resolved_int8_mode(self, trt: Any) -> str:
        """The INT8 mode asked for, or this TensorRT's default."""
        return self.int8_mode or trt_compat.default_int8_mode(trt)
