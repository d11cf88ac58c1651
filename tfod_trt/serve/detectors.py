"""The detector a repository serves, read from an engine (and the ``<engine>.json`` that
build_engine.py writes beside it) or from an ONNX graph of create_onnx.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.convert.onnx_file import read_detector
from tfod_trt.errors import UsageError
from tfod_trt.metadata import read_metadata
from tfod_trt.serve.detector_io import DetectorIO, io_from_metadata, io_from_onnx
from tfod_trt.serve.postprocess import PostprocessSettings
from tfod_trt.serve.preprocess import PreprocessSettings
from tfod_trt.trt.engine_file import REBUILD, EngineError, metadata_path, read_engine_metadata


@dataclass(frozen=True)
class Detector:
    """The detector's inputs and outputs, its metadata (create_onnx.py's) and the file that
    runs it: an engine (``plan``) or an ONNX graph (for the CPU stand-in)."""

    io: DetectorIO
    metadata: dict
    model_file: Path
    plan: bool

    def preprocess_settings(self) -> PreprocessSettings:
        """What the served preprocessing needs to know of the detector."""
        io = self.io
        return PreprocessSettings(Preprocessor.from_dict(self.metadata["preprocessor"]),
                                  self.metadata.get("input_format") or "NHWC", io.min_batch,
                                  io.max_batch, io.takes_true_image_shape)

    def postprocess_settings(self, score_threshold: float = 0.0,
                             labels: dict[int, str] | None = None) -> PostprocessSettings:
        """What the served postprocessing needs: the detector's class offset and box frame,
        the score threshold and class names."""
        return PostprocessSettings(int(self.metadata.get("class_offset", 0)),
                                   self.metadata.get("box_frame") or "input", score_threshold,
                                   labels or {})


def engine_detector(engine: Path) -> Detector:
    """An engine of build_engine.py; UsageError where it or its metadata is missing."""
    if not engine.is_file():
        raise UsageError(f"{engine}: engine file not found: build it with build_engine.py")
    try:
        metadata = read_engine_metadata(engine)
    except EngineError as err:
        raise UsageError(str(err)) from err
    if not metadata:
        raise UsageError(f"{engine}: no {metadata_path(engine).name} beside it (build_engine.py "
                         f"writes it: the engine's inputs and outputs are read there); {REBUILD}")
    try:
        io = io_from_metadata(metadata, metadata_path(engine))
    except ValueError as err:
        raise UsageError(f"{err}; {REBUILD}") from err
    return Detector(io, metadata, engine, plan=True)


def onnx_detector(onnx_path: Path) -> Detector:
    """An ONNX graph of create_onnx.py, for a CPU stand-in of its engine."""
    model = read_detector(onnx_path, load_external_data=False)
    metadata = read_metadata(model)
    if not metadata.get("preprocessor"):
        raise UsageError(f"{onnx_path}: has no preprocessing in its metadata: convert the model "
                         "with create_onnx.py")
    try:
        io = io_from_onnx(model, onnx_path)
    except ValueError as err:
        raise UsageError(str(err)) from err
    return Detector(io, metadata, onnx_path, plan=False)
