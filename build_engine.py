"""Builds a TensorRT engine (8.6, 10.x or 11.x) from an ONNX graph made by create_onnx.py.

    python build_engine.py -o model.onnx -e model.engine [-p fp32|fp16|int8] \\
        [--int8_mode calibrator|qdq] [--fp16_onnx] [--calib_input IMAGES] \\
        [--calib_cache model.cache] [--timing_cache timing.cache]

The engine is written with its metadata beside it (``<engine>.json``: the ONNX's metadata plus
how it was built), which trt_runner.TrtRunner reads. Plugin nodes are adapted to what the
installed TensorRT registers (trt_compat.adapt_onnx_plugins) before parsing.

Reduced precision comes either from builder flags on the FP32 graph (8.6-10.x: FP16 flag, INT8
flag with TensorRT's calibrator, MinMax by default) or from the graph itself (quantize.py: an
FP16 / mixed graph, or Q/DQ nodes calibrated with ONNX Runtime), which is the only way on
TensorRT 11 (strongly typed). trt_compat says which the installed TensorRT needs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import trt_compat
from onnx_utils import NMS_PLUGIN, TRUE_IMAGE_SHAPE, atomic_write_bytes, read_metadata

if TYPE_CHECKING:
    import onnx
    import tensorrt as trt

    from image_batcher import Batch

log = logging.getLogger("build_engine")

GIB = 1 << 30
# Parts of the graph that stay FP32 in reduced precision: box decoding inputs and anchors by
# name, plus the NMS plugin, what feeds it and everything after it (see _sensitive_layers).
SENSITIVE_NAME_PARTS = ("anchors", "box_deltas")


class BuildError(RuntimeError):
    """Why no engine was built, as one line for the user."""


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


# ---------------------------------------------------------------------------------------------
# INT8 calibration (TensorRT 8.6-10.x only; 11 has explicit quantization instead).


# --calib_method -> TensorRT's calibrator. MinMax is the default: measured on the trained model
# (TensorRT 8.6, H100), EntropyCalibrator2 clipped an early MobileNet ReLU6 to 0.75 (its real
# range: 6) and the engine lost 49 of 54 AP points; Q/DQ with min-max ranges lost 0.3.
CALIBRATORS = {"minmax": "IInt8MinMaxCalibrator", "entropy": "IInt8EntropyCalibrator2"}


def calibrator_class(trt: Any, method: str = "minmax") -> type:
    """A subclass of this TensorRT module's calibrator for ``method`` (CALIBRATORS; the base
    classes do not exist in TensorRT 11, so the subclass is made on demand)."""
    if method not in CALIBRATORS:
        raise BuildError(f"--calib_method {method}: TensorRT's calibrator offers "
                         f"{', '.join(CALIBRATORS)} (percentile: --int8_mode qdq)")
    base = getattr(trt, CALIBRATORS[method])

    class ImageCalibrator(base):
        """Feeds preprocessed image batches; reads and writes the cache file atomically."""

        def __init__(self, batches: Iterator[Batch], batch_size: int,
                     cache: Path | None, backend: Any = None) -> None:
            base.__init__(self)
            self.batches, self.batch_size, self.cache = batches, batch_size, cache
            self.backend = backend  # CUDA back-end, made on the first batch if None
            self.owns_backend = backend is None
            self.buffers: dict[str, tuple[np.ndarray, int]] = {}  # name -> (pinned, device)
            self.count = 0

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: list[str], p_str: Any = None) -> list[int] | None:
            batch = next(self.batches, None)
            if batch is None:
                return None
            try:
                pointers = [self._upload(name, batch.true_image_shape()
                                         if name == TRUE_IMAGE_SHAPE else batch.data)
                            for name in names]
                self.backend.synchronize()
            except Exception:  # TensorRT swallows exceptions from its callbacks: log them
                log.exception("calibration batch %d could not be copied to the GPU", self.count)
                return None
            self.count += 1
            if self.count % 10 == 0:
                log.info("calibration batch %d", self.count)
            return pointers

        def _upload(self, name: str, array: np.ndarray) -> int:
            if name not in self.buffers:
                import trt_runner

                self.backend = self.backend or trt_runner.make_backend()
                self.buffers[name] = (self.backend.pinned_empty(array.size, array.dtype),
                                      self.backend.malloc(array.nbytes))
            host, device = self.buffers[name]
            np.copyto(host, array.reshape(-1))
            self.backend.copy_htod_async(device, host)
            return device

        def read_calibration_cache(self) -> bytes | None:
            if self.cache and self.cache.is_file():
                log.info("using the calibration cache %s (no calibration)", self.cache)
                return self.cache.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if self.cache:
                atomic_write_bytes(self.cache, bytes(cache))
                log.info("wrote the calibration cache %s", self.cache)

        def close(self) -> None:
            """Frees the GPU buffer once the build is done."""
            for host, device in self.buffers.values():
                self.backend.free_pinned(host)
                self.backend.free(device)
            self.buffers = {}
            if self.owns_backend and self.backend is not None:
                self.backend.close()
                self.backend = None

    return ImageCalibrator


def calibration_batches(options: BuildOptions, metadata: dict, batch_size: int
                        ) -> Iterator[Batch]:
    """Calibration images preprocessed as create_onnx.py's metadata says, in full batches
    (the same images and order quantize.py's Q/DQ calibration uses)."""
    if options.calib_input is None:
        return iter(())
    import quantize

    batches = quantize.calibration_batches(options.calib_input, metadata, batch_size,
                                           options.calib_num_images, "--calib_input")
    try:
        first = next(batches)  # the generator's checks run now, not inside TensorRT
    except quantize.QuantizeError as err:
        raise BuildError(str(err)) from err
    return itertools.chain([first], batches)


def check_options(options: BuildOptions, trt: Any, prequantized: bool = False) -> None:
    """What can be refused before any slow work: an INT8 mode this TensorRT lacks, INT8
    without calibration images or an existing cache (unless the ONNX has Q/DQ already)."""
    reason = trt_compat.reduced_precision_unsupported(options.precision, trt, options.int8_mode)
    if reason:
        raise BuildError(reason)
    if options.precision != "int8" or prequantized:
        return
    if options.calib_input is not None and not options.calib_input.exists():
        raise BuildError(f"--calib_input {options.calib_input}: no such image file or folder")
    has_cache = options.calib_cache is not None and options.calib_cache.is_file()
    if options.calib_input is None and not has_cache:
        raise BuildError("INT8 needs calibration images (--calib_input) or an existing "
                         "calibration cache (--calib_cache)")


# ---------------------------------------------------------------------------------------------
# The builder.


def _tensor_names(node: onnx.NodeProto, which: str) -> set[str]:
    return {name for name in getattr(node, which) if name}


def _layer_tensors(layer: trt.ILayer) -> tuple[list[trt.ITensor], list[trt.ITensor]]:
    """A layer's (inputs, outputs), without its unset optional inputs."""
    inputs = [layer.get_input(j) for j in range(layer.num_inputs)]
    outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
    return [t for t in inputs if t is not None], outputs


class EngineBuilder:
    """ONNX -> TensorRT network -> serialized engine, on the installed TensorRT."""

    def __init__(self, verbose: bool = False) -> None:
        self.trt = trt = trt_compat.require_tensorrt()
        self.logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        trt.init_libnvinfer_plugins(self.logger, "")
        try:
            self.builder: trt.Builder = trt.Builder(self.logger)
        except (TypeError, RuntimeError) as err:  # a null builder: no GPU or driver
            raise BuildError(f"TensorRT cannot create a builder here ({err}): no usable NVIDIA "
                             "GPU or driver; build engines on the GPU machine") from err
        self.config: trt.IBuilderConfig = self.builder.create_builder_config()
        self.network: trt.INetworkDefinition | None = None
        self.parser: trt.OnnxParser | None = None
        self.onnx_metadata: dict = {}
        self.nms_tensors: set[str] = set()
        self.profiled = False
        self.typed_precision: str | None = None  # "fp16"/"int8" when the ONNX carries it

    def create_network(self, onnx_path: Path, options: BuildOptions | None = None) -> None:
        """Loads the ONNX, makes it FP16 or Q/DQ when ``options`` ask for a typed ONNX (see
        BuildOptions.typed_onnx), adapts its plugins to this TensorRT and parses it."""
        import onnx

        trt = self.trt
        try:
            model = onnx.load(str(onnx_path), load_external_data=False)
        except Exception as err:  # protobuf's DecodeError and friends
            raise BuildError(f"{onnx_path}: not a readable ONNX file ({err})") from err
        self.onnx_metadata = read_metadata(model)
        model = self._typed_model(model, onnx_path, options)
        try:
            model = trt_compat.adapt_onnx_plugins(model, trt)
        except trt_compat.PluginUnavailable as err:
            raise BuildError(str(err)) from err
        for node in model.graph.node:
            if node.op_type == NMS_PLUGIN:
                self.nms_tensors |= _tensor_names(node, "input") | _tensor_names(node, "output")
        self.network = self.builder.create_network(trt_compat.network_flags(trt))
        self.parser = trt.OnnxParser(self.network, self.logger)
        if not self.parser.parse(model.SerializeToString(), str(onnx_path)):
            raise BuildError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse it: "
                             + self._parse_errors(model))

    def _typed_model(self, model: onnx.ModelProto, onnx_path: Path,
                     options: BuildOptions | None) -> onnx.ModelProto:
        """The graph with its precision written in: an ONNX that has it already (Q/DQ nodes,
        FP16 tensors) is kept, an FP32 one is converted by quantize.py when asked."""
        import quantize

        if quantize.has_qdq(model):
            self.typed_precision = "int8"
        elif quantize.is_fp16(model):
            self.typed_precision = "fp16"
        if options is None or options.precision == "fp32" or self.typed_precision:
            if options is not None and self.typed_precision not in (None, options.precision):
                raise BuildError(f"{onnx_path} is an {self.typed_precision} ONNX: build it with "
                                 f"-p {self.typed_precision}")
            return model
        if not options.typed_onnx(self.trt):
            return model
        try:
            if options.precision == "fp16":
                typed = quantize.convert_fp16(model, onnx_path)
            else:
                typed = quantize.quantize_int8(model, options.calib_input, options.calib_cache,
                                               options.calib_num_images, options.calib_method,
                                               onnx_path)
        except quantize.QuantizeError as err:
            raise BuildError(str(err)) from err
        self.typed_precision = options.precision
        return typed

    def _parse_errors(self, model: onnx.ModelProto) -> str:
        """The parser's errors with node names (``node()`` is an index in 8.6, 10 and 11)."""
        messages = []
        for i in range(self.parser.num_errors):
            error: trt.ParserError = self.parser.get_error(i)
            index = error.node()
            where = "graph"
            if 0 <= index < len(model.graph.node):
                node = model.graph.node[index]
                where = f"node {node.name!r} ({node.op_type})"
            messages.append(f"{where}: {error.desc()}")
        return "; ".join(messages) or "no error reported (rerun with --verbose)"

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {self.network.get_input(i).name: tuple(self.network.get_input(i).shape)
                for i in range(self.network.num_inputs)}

    def add_profile(self, shapes: dict[str, tuple[tuple[int, ...], ...]]) -> None:
        """One optimization profile: input name -> (min, opt, max) shapes."""
        profile: trt.IOptimizationProfile = self.builder.create_optimization_profile()
        for name, (low, opt, high) in shapes.items():
            profile.set_shape(name, low, opt, high)
        self.config.add_optimization_profile(profile)
        self.profiled = True

    def build(self, options: BuildOptions) -> bytes:
        """The serialized engine (also saves the timing cache when one is named)."""
        dynamic = [n for n, s in self.input_shapes.items() if any(d < 0 for d in s)]
        if dynamic and not self.profiled:
            raise BuildError(f"the ONNX inputs {dynamic} have dynamic shapes "
                             f"{[self.input_shapes[n] for n in dynamic]}; make the ONNX with a "
                             "static batch size (create_onnx.py --batch_size)")
        check_options(options, self.trt, self.typed_precision is not None)
        trt_compat.set_workspace(self.config, int(options.workspace_gib * GIB), self.trt)
        if options.optimization_level is not None:
            self.config.builder_optimization_level = options.optimization_level
        self._load_timing_cache(options.timing_cache)
        calibrator = self._set_precision(options)
        start = time.perf_counter()
        try:
            serialized = self.builder.build_serialized_network(self.network, self.config)
        finally:
            if calibrator is not None:
                calibrator.close()
        if serialized is None:
            raise BuildError("TensorRT could not build the engine (see its log above; "
                             "rerun with --verbose for details)")
        log.info("built in %.1f s", time.perf_counter() - start)
        self._save_timing_cache(options.timing_cache)
        return bytes(serialized)

    # -- precision ------------------------------------------------------------------------------

    def _set_precision(self, options: BuildOptions) -> Any:
        """Builder flags for the precision; returns the INT8 calibrator, if any."""
        trt = self.trt
        if options.precision == "fp32":
            if not options.tf32:
                self.config.clear_flag(trt.BuilderFlag.TF32)
            return None
        calibrator = None
        if self.typed_precision is not None:  # the ONNX carries its precision
            for flag in trt_compat.typed_onnx_flags(self.typed_precision, trt):
                self.config.set_flag(trt.BuilderFlag.FP16 if flag == "FP16"
                                     else trt.BuilderFlag.INT8)
        elif options.precision == "fp16":
            self.config.set_flag(trt.BuilderFlag.FP16)
        else:
            self.config.set_flag(trt.BuilderFlag.INT8)
            calibrator = self._calibrator(options)
            self.config.int8_calibrator = calibrator
        self._keep_sensitive_fp32()
        return calibrator

    def _calibrator(self, options: BuildOptions) -> Any:
        shapes = self.input_shapes
        images = {n: s for n, s in shapes.items() if n != TRUE_IMAGE_SHAPE}
        if len(images) != 1 or any(d < 0 for s in shapes.values() for d in s):
            raise BuildError(f"INT8 calibration needs one image input (and optionally "
                             f"{TRUE_IMAGE_SHAPE}) of static shape, got {shapes}")
        batch_size = next(iter(images.values()))[0]
        if options.calib_input is not None and batch_size != options.calib_batch_size:
            log.info("the ONNX input has a static batch of %d: calibrating in batches of %d "
                     "(not --calib_batch_size %d)", batch_size, batch_size,
                     options.calib_batch_size)
        batches = calibration_batches(options, self.onnx_metadata, batch_size)
        return calibrator_class(self.trt, options.calib_method)(batches, batch_size,
                                                                options.calib_cache)

    def _sensitive_layers(self) -> list[trt.ILayer]:
        """Layers named after the anchors or box deltas; the heads' last convolutions and what
        carries their outputs to the NMS (so that no calibrated range clips the class logits;
        on the trained model this alone did not rescue the entropy calibrator, whose loss came
        from the backbone: docs/benchmarks.md); the NMS and everything downstream of it or of
        the true_image_shape input (the clip window and its reciprocal: 1/h in FP16 moves
        boxes by ~5e-4). Layers are in topological order."""
        network: trt.INetworkDefinition = self.network
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        tensors = {id(layer): tuple({t.name for t in side} for side in _layer_tensors(layer))
                   for layer in layers}
        head_outputs = self._head_outputs(layers, tensors)
        after_nms = set(self.nms_tensors) | {TRUE_IMAGE_SHAPE}
        found = []
        for layer in layers:
            inputs, outputs = tensors[id(layer)]
            names = [layer.name, *outputs]
            if (outputs & head_outputs or inputs & after_nms
                    or any(part in name for part in SENSITIVE_NAME_PARTS for name in names)):
                found.append(layer)
                if inputs & after_nms:
                    after_nms |= outputs
        return found

    def _head_outputs(self, layers: list[trt.ILayer], tensors: dict) -> set[str]:
        """The tensors from the NMS inputs back to (and including) the nearest convolution's
        output on every path: the heads' last layers, reshapes, transposes and concats."""
        convolution = self.trt.LayerType.CONVOLUTION
        producer = {name: layer for layer in layers for name in tensors[id(layer)][1]}
        found, todo = set(), list(self.nms_tensors)
        while todo:
            name = todo.pop()
            if name in found or name not in producer:
                continue
            found.add(name)
            layer = producer[name]
            if layer.type != convolution:
                todo += tensors[id(layer)][0]
        return found

    def _keep_sensitive_fp32(self) -> None:
        """Pins the sensitive layers to FP32 where TensorRT has per-layer precision (8.6-10.x);
        integer and boolean work (NMS counts, masks) is left alone."""
        trt = self.trt
        if not trt_compat.supports_layer_precision(trt):
            return
        floats = (trt.DataType.FLOAT, trt.DataType.HALF)
        pinned = []
        for layer in self._sensitive_layers():
            inputs, outputs = _layer_tensors(layer)
            computes = inputs or outputs
            if not any(t.dtype in floats for t in computes):
                continue
            layer.precision = trt.DataType.FLOAT
            for j, tensor in enumerate(outputs):
                if tensor.dtype in floats:
                    layer.set_output_type(j, trt.DataType.FLOAT)
            pinned.append(layer.name)
        if pinned:
            self.config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            log.info("kept %d layers in FP32: %s", len(pinned), ", ".join(pinned))

    # -- timing cache ---------------------------------------------------------------------------

    def _load_timing_cache(self, path: Path | None) -> None:
        if path is None:
            return
        data = path.read_bytes() if path.is_file() else b""
        cache: trt.ITimingCache = self.config.create_timing_cache(data)
        self.config.set_timing_cache(cache, False)
        log.info("%s the timing cache %s", "using" if data else "starting", path)

    def _save_timing_cache(self, path: Path | None) -> None:
        if path is None:
            return
        cache: trt.ITimingCache = self.config.get_timing_cache()
        atomic_write_bytes(path, bytes(cache.serialize()))


# ---------------------------------------------------------------------------------------------
# Command line.


def engine_metadata(builder: EngineBuilder, onnx_path: Path, options: BuildOptions) -> dict:
    """What ``<engine>.json`` holds: the ONNX metadata and an "engine" entry."""
    return {
        **builder.onnx_metadata,
        "engine": {
            "onnx": str(onnx_path),
            "precision": options.precision,
            # "onnx" when the graph carried the precision (FP16 graph / Q/DQ), else "flags"
            "precision_from": "onnx" if builder.typed_precision else "flags",
            "int8_mode": (options.resolved_int8_mode(builder.trt)
                          if options.precision == "int8" else None),
            "tensorrt_version": builder.trt.__version__,
            "tf32": options.tf32 or options.precision != "fp32",
            "optimization_level": options.optimization_level,
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


def _is_prequantized(onnx_path: Path, options: BuildOptions) -> bool:
    """Whether an INT8 build without images or cache gets an ONNX that has Q/DQ already."""
    if options.precision != "int8" or options.calib_input or options.calib_cache:
        return False
    import onnx

    import quantize

    try:
        return quantize.has_qdq(onnx.load(str(onnx_path), load_external_data=False))
    except Exception:  # unreadable: create_network reports it
        return False


def build(onnx_path: Path, engine_path: Path, options: BuildOptions,
          verbose: bool = False) -> None:
    """The whole job: checks, build, engine and ``<engine>.json`` written atomically."""
    import trt_runner

    if not onnx_path.is_file():
        raise BuildError(f"ONNX file {onnx_path} not found")
    check_options(options, trt_compat.require_tensorrt(), _is_prequantized(onnx_path, options))
    builder = EngineBuilder(verbose)
    builder.create_network(onnx_path, options)
    engine = builder.build(options)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(engine_path, engine)
    metadata = json.dumps(engine_metadata(builder, onnx_path, options), indent=2, sort_keys=True)
    atomic_write_bytes(trt_runner.metadata_path(engine_path), metadata.encode())
    log.info("wrote %s (%.1f MB) and its metadata", engine_path, len(engine) / 1e6)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
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
    parser.add_argument("--timing_cache", type=Path,
                        help="timing cache file to read and update (faster rebuilds)")
    parser.add_argument("--tf32", action="store_true",
                        help="fp32: allow TF32 math (faster on Ampere and later, less exact)")
    parser.add_argument("--optimization_level", type=int, choices=range(6), metavar="0-5",
                        help="TensorRT's builder optimization level (default 3): lower builds "
                        "faster, possibly slower engines")
    parser.add_argument("-v", "--verbose", action="store_true", help="TensorRT's verbose log")
    args = parser.parse_args(argv)
    for name in ("calib_num_images", "calib_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.workspace <= 0:
        parser.error("--workspace must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    options = BuildOptions(
        precision=args.precision, workspace_gib=args.workspace, timing_cache=args.timing_cache,
        calib_input=args.calib_input, calib_cache=args.calib_cache,
        calib_num_images=args.calib_num_images, calib_batch_size=args.calib_batch_size,
        tf32=args.tf32, int8_mode=args.int8_mode, fp16_onnx=args.fp16_onnx,
        calib_method=args.calib_method, optimization_level=args.optimization_level,
    )
    try:
        build(args.onnx, args.engine, options, args.verbose)
    except (BuildError, trt_compat.TensorRTUnavailable, OSError, ValueError) as err:
        print(f"build_engine.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
