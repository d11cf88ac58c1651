"""INT8 by Q/DQ nodes: ONNX Runtime's calibrator on the plugin-free part of the graph, fed as
inference is, then its QDQ quantizer (symmetric, per-channel weights), with a ranges cache."""

from __future__ import annotations

import itertools
import json
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantType
from onnxruntime.quantization.calibrate import TensorData, TensorsData, create_calibrator
from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
from tqdm import tqdm

from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.files import atomic_write_bytes
from tfod_trt.io.batcher import Batch, ImageBatcher
from tfod_trt.metadata import TRUE_IMAGE_SHAPE, read_metadata
from tfod_trt.quant.sensitive import (
    QUANTIZED_OPS,
    QuantizeError,
    check_node_names,
    has_qdq,
    plugin_free_prefix,
    quantized_nodes,
    sensitive_nodes,
    toposorted,
    unquantize_sensitive_inputs,
)

log = logging.getLogger("quantize")


CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
CACHE_FORMAT = "tfod_trt.qdq_ranges.v1"


def calibration_batches(images: Path, metadata: dict, batch_size: int, max_images: int,
                        path: Path | str = "the ONNX") -> Iterator[Batch]:
    """Images preprocessed as inference preprocesses them (the ONNX metadata says how), in full
    batches, shuffled as build_engine's calibrator shuffles them, with a tqdm progress bar.
    The first batch is read before this returns: images that do not make one are refused
    here, before any calibration work."""
    if "preprocessor" not in metadata:
        raise QuantizeError(f"{path}: calibration needs the preprocessor that create_onnx.py "
                            "stores in the ONNX metadata, and this ONNX has none")
    try:
        batcher = ImageBatcher(images, Preprocessor.from_dict(metadata["preprocessor"]),
                               batch_size, layout=metadata.get("input_format", "NHWC"),
                               max_images=max_images, shuffle=True, exact_batches=True)
    except (FileNotFoundError, ValueError) as err:
        raise QuantizeError(f"calibration images: {err}") from err
    if batcher.num_batches == 0:
        raise QuantizeError(f"calibration images {images}: {len(batcher)} images, fewer than "
                            f"one batch of {batch_size}")
    first, rest = _first_batch(batcher, images)
    log.info("calibrating on %d batches of %d images (ONNX Runtime, CPU)", batcher.num_batches,
             batch_size)
    return iter(tqdm(itertools.chain([first], rest), total=batcher.num_batches,
                     desc="calibration", unit="batch"))


def _first_batch(batcher: ImageBatcher, images: Path) -> tuple[Batch, Iterator[Batch]]:
    """The first batch and the others; a QuantizeError, naming the first unreadable image in
    its one line (instead of a warning per image), where the readable images make no batch."""
    batcher.report_skips = False
    batches = iter(batcher)
    try:
        first = next(batches, None)
    finally:
        batcher.report_skips = True
    if first is None:
        total = len(batcher)
        readable = total - len(batcher.skipped)
        bad, reason = min(batcher.skipped)  # the first by name (the batcher shuffles)
        if not readable:
            raise QuantizeError(f"{images}: none of the {total} images could be read (first: "
                                f"{bad}: {reason})")
        raise QuantizeError(f"{images}: {readable} of the {total} images could be read, fewer "
                            f"than one batch of {batcher.batch_size} (first unreadable: {bad}: "
                            f"{reason})")
    for path, reason in batcher.skipped:
        log.warning("skipping image %s: %s", path, reason)
    return first, batches


def calibrate(model: onnx.ModelProto, images: Path, max_images: int = 5000,
              method: str = "minmax", path: Path | str = "the ONNX"
              ) -> dict[str, tuple[float, float]]:
    """Activation ranges (tensor -> (min, max)) of the quantized nodes' inputs, collected by
    ONNX Runtime's calibrator on the plugin-free prefix of ``model``."""

    if method not in CALIBRATION_METHODS:
        raise QuantizeError(f"unknown calibration method {method!r}: use one of "
                            f"{', '.join(CALIBRATION_METHODS)}")
    prefix = plugin_free_prefix(model)
    names = [i.name for i in prefix.graph.input]
    extra = [n for n in names[1:] if n != TRUE_IMAGE_SHAPE]
    if extra:
        raise QuantizeError(f"{path}: calibration feeds only the image input and "
                            f"true_image_shape, but the graph also needs {extra}")
    batch_size = prefix.graph.input[0].type.tensor_type.shape.dim[0].dim_value or 1
    batches = calibration_batches(images, read_metadata(model), batch_size, max_images, path)

    class Reader(CalibrationDataReader):
        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(batches, None)
            if batch is None:
                return None
            feeds = {names[0]: batch.data}
            if TRUE_IMAGE_SHAPE in names:  # Faster R-CNN graphs that clip to the true image
                feeds[TRUE_IMAGE_SHAPE] = batch.true_image_shape()
            return feeds

    kind = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory(prefix="tfod_trt_calib_") as tmp:
        prefix_path = Path(tmp) / "prefix.onnx"
        onnx.save(prefix, prefix_path)
        calibrator = create_calibrator(prefix_path, list(QUANTIZED_OPS),
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=kind,
                                       extra_options={"symmetric": True})
        calibrator.collect_data(Reader())
        ranges = calibrator.compute_data()
        del calibrator
    return {name: (float(np.min(data.range_value[0])), float(np.max(data.range_value[1])))
            for name, data in ranges.data.items()}


def write_cache(path: Path, ranges: dict[str, tuple[float, float]], method: str) -> None:
    """The calibration cache: JSON of the tensor ranges, written atomically."""
    text = json.dumps({"format": CACHE_FORMAT, "method": method,
                       "ranges": {k: list(v) for k, v in sorted(ranges.items())}}, indent=1)
    atomic_write_bytes(path, text.encode())
    log.info("wrote the calibration cache %s", path)


def read_cache(path: Path) -> dict[str, tuple[float, float]]:
    """The tensor ranges of a cache written by :func:`write_cache`."""
    try:
        data = json.loads(path.read_text())
        if data.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {data.get('format')!r} is not {CACHE_FORMAT!r}")
        return {k: (float(lo), float(hi)) for k, (lo, hi) in data["ranges"].items()}
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise QuantizeError(f"calibration cache {path} is not a Q/DQ range cache of quantize.py "
                            f"({err}); TensorRT calibrator caches serve only --int8_mode "
                            "calibrator: delete it or name another file") from err


def quantize_int8(model: onnx.ModelProto, calib_input: Path | None = None,
                  calib_cache: Path | None = None, max_images: int = 5000,
                  method: str = "minmax", path: Path | str = "the ONNX") -> onnx.ModelProto:
    """The Q/DQ (explicitly quantized INT8) copy of an FP32 graph of create_onnx.py.

    An existing ``calib_cache`` is used instead of calibrating; otherwise ``calib_input``
    images are calibrated on and the cache (if named) is written.
    """

    check_node_names(model, path)
    if has_qdq(model):
        raise QuantizeError(f"{path} is already quantized (it has Q/DQ nodes)")
    if calib_cache is not None and calib_cache.is_file():
        log.info("using the calibration cache %s (no calibration)", calib_cache)
        ranges = read_cache(calib_cache)
    elif calib_input is None:
        named = f" ({calib_cache} does not exist)" if calib_cache else ""
        raise QuantizeError("Q/DQ INT8 needs calibration images (--calib_input) or an existing "
                            f"calibration cache (--calib_cache){named}")
    else:
        ranges = calibrate(model, calib_input, max_images, method, path)
        if calib_cache is not None:
            write_cache(calib_cache, ranges, method)

    nodes = quantized_nodes(model)
    weights = {i.name for i in model.graph.initializer}
    needed = {name for node in model.graph.node if node.name in nodes
              for name in node.input[:1] if name not in weights}
    missing = sorted(needed - set(ranges))
    if missing:
        raise QuantizeError(f"calibration cache {calib_cache} has no range for {len(missing)} "
                            f"tensors of {path} (e.g. {missing[0]!r}): it was made for another "
                            "model; delete it to calibrate again")
    tensors = TensorsData(CalibrationMethod.MinMax, {
        name: TensorData(lowest=np.float32(-max(abs(lo), abs(hi))),
                         highest=np.float32(max(abs(lo), abs(hi))))
        for name, (lo, hi) in ranges.items()})
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    quantizer = QDQQuantizer(
        copy, True, False, QuantType.QInt8, QuantType.QInt8, tensors, nodes, [],
        list(QUANTIZED_OPS),
        {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
         "AddQDQPairToWeight": True, "DedicatedQDQPair": True,
         "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)},
    )
    quantized = toposorted(unquantize_sensitive_inputs(quantizer.quantize_model(),
                                                         sensitive_nodes(model)), model)
    log.info("quantized %d nodes to INT8 (Q/DQ); %d sensitive nodes stay FP32", len(nodes),
             len(sensitive_nodes(model)))
    return quantized
