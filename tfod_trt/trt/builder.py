"""Builds a TensorRT engine (8.6, 10.x or 11.x) from an ONNX graph made by create_onnx.py, and
writes it with its metadata (``<engine>.json``) beside it. Plugin nodes are adapted to what the
installed TensorRT registers; reduced precision keeps the sensitive part in FP32."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from tfod_trt.convert.onnx_file import read_onnx
from tfod_trt.files import atomic_write_bytes, check_writable_file
from tfod_trt.io.images import find_images
from tfod_trt.metadata import NMS_PLUGIN, TRUE_IMAGE_SHAPE, read_metadata
from tfod_trt.quant.fp16 import convert_fp16
from tfod_trt.quant.int8 import quantize_int8
from tfod_trt.quant.sensitive import SENSITIVE_NAME_PARTS, QuantizeError, has_qdq, is_fp16
from tfod_trt.trt import compat as trt_compat
from tfod_trt.trt.batch_profile import profile_shapes
from tfod_trt.trt.build_options import BuildError, BuildOptions
from tfod_trt.trt.calibrator import calibration_batches, calibrator_class
from tfod_trt.trt.engine_file import metadata_path

if TYPE_CHECKING:
    import onnx
    import tensorrt as trt

log = logging.getLogger("build_engine")


GIB = 1 << 30






def check_options(options: BuildOptions, trt: Any, prequantized: bool = False) -> None:
    """What can be refused before any slow work: an INT8 mode this TensorRT lacks, and
    :func:`check_calibration_options`."""
    reason = trt_compat.reduced_precision_unsupported(options.precision, trt, options.int8_mode)
    if reason:
        raise BuildError(reason)
    if options.keep_fp32 != "heads" and options.precision != "fp32" and (
            prequantized or options.typed_onnx(trt)):
        raise BuildError(f"--keep_fp32 {options.keep_fp32} chooses layer precisions, which "
                         "this build takes from a typed ONNX instead (FP16 graph or Q/DQ: "
                         "--fp16_onnx, --int8_mode qdq, TensorRT 11); leave --keep_fp32 out")
    check_calibration_options(options, prequantized)


def check_calibration_options(options: BuildOptions, prequantized: bool = False) -> None:
    """What needs no TensorRT to refuse: INT8 without calibration images or an existing cache
    (unless the ONNX has Q/DQ already), calibration images that do not exist."""
    if options.precision != "int8" or prequantized:
        return
    if options.calib_input is not None:
        if not options.calib_input.exists():
            raise BuildError(f"--calib_input {options.calib_input}: no such image file or "
                             "folder")
        try:
            find_images(options.calib_input)
        except ValueError as err:  # no images there
            raise BuildError(f"--calib_input: {err}") from err
    has_cache = options.calib_cache is not None and options.calib_cache.is_file()
    if options.calib_input is None and not has_cache:
        raise BuildError("INT8 needs calibration images (--calib_input) or an existing "
                         "calibration cache (--calib_cache)")


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
                             "GPU or driver; build engines on a machine with one") from err
        self.config: trt.IBuilderConfig = self.builder.create_builder_config()
        self.network: trt.INetworkDefinition | None = None
        self.parser: trt.OnnxParser | None = None
        self.onnx_metadata: dict = {}
        self.nms_tensors: set[str] = set()
        self.profiled = False
        # input name -> [min, opt, max] shapes of the optimization profile, for <engine>.json
        self.profile: dict[str, list[list[int]]] = {}
        self.typed_precision: str | None = None  # "fp16"/"int8" when the ONNX carries it

    def create_network(self, onnx_path: Path, options: BuildOptions | None = None,
                       model: onnx.ModelProto | None = None) -> None:
        """Loads the ONNX (unless ``model`` is it, read already), makes it FP16 or Q/DQ when
        ``options`` ask for a typed ONNX (see BuildOptions.typed_onnx), adapts its plugins to
        this TensorRT and parses it."""

        trt = self.trt
        if model is None:
            model = read_onnx(onnx_path, load_external_data=False)
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

        if has_qdq(model):
            self.typed_precision = "int8"
        elif is_fp16(model):
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
                typed = convert_fp16(model, onnx_path)
            else:
                typed = quantize_int8(model, options.calib_input, options.calib_cache,
                                               options.calib_num_images, options.calib_method,
                                               onnx_path)
        except QuantizeError as err:
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
            self.profile[name] = [list(low), list(opt), list(high)]
        self.config.add_optimization_profile(profile)
        self.profiled = True

    def build(self, options: BuildOptions) -> bytes:
        """The serialized engine (also saves the timing cache when one is named)."""
        dynamic = [n for n, s in self.input_shapes.items() if any(d < 0 for d in s)]
        if dynamic and not self.profiled:
            raise BuildError(f"the ONNX inputs {dynamic} have dynamic shapes "
                             f"{[self.input_shapes[n] for n in dynamic]} and no optimization "
                             "profile gives their range (add_profile; build_engine.py adds "
                             "one: --batch_profile)")
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
        self._keep_sensitive_fp32(options.keep_fp32)
        return calibrator

    def _calibrator(self, options: BuildOptions) -> Any:
        shapes = self.input_shapes
        images = {n: s for n, s in shapes.items() if n != TRUE_IMAGE_SHAPE}
        if len(images) != 1 or any(d < 0 for s in shapes.values() for d in s[1:]):
            raise BuildError(f"INT8 calibration needs one image input (and optionally "
                             f"{TRUE_IMAGE_SHAPE}) of static shape but for the batch, got "
                             f"{shapes}")
        batch_size = next(iter(images.values()))[0]
        if batch_size < 0:  # a dynamic batch: calibrated at --calib_batch_size
            batch_size = options.calib_batch_size
            self._set_calibration_profile(batch_size)
        elif options.calib_input is not None and batch_size != options.calib_batch_size:
            log.info("the ONNX input has a static batch of %d: calibrating in batches of %d "
                     "(not --calib_batch_size %d)", batch_size, batch_size,
                     options.calib_batch_size)
        batches = calibration_batches(options, self.onnx_metadata, batch_size)
        return calibrator_class(self.trt, options.calib_method)(batches, batch_size,
                                                                options.calib_cache)

    def _set_calibration_profile(self, batch_size: int) -> None:
        """The shapes TensorRT's calibration runs at (a profile of its own: every input at
        ``batch_size``), which a network with a dynamic batch must be given."""
        profile: trt.IOptimizationProfile = self.builder.create_optimization_profile()
        for name, shape in self.input_shapes.items():
            fixed = (batch_size, *shape[1:])
            profile.set_shape(name, fixed, fixed, fixed)
        if not self.config.set_calibration_profile(profile):
            raise BuildError(f"TensorRT refused the calibration profile at batch {batch_size} "
                             "(--calib_batch_size)")
        log.info("calibrating the dynamic batch in batches of %d (--calib_batch_size)",
                 batch_size)

    def _sensitive_layers(self, keep: str = "heads") -> list[trt.ILayer]:
        """Layers named after the anchors or box deltas; with ``keep`` "heads" the heads' last
        convolutions and what carries their outputs to the NMS (so that no calibrated range
        clips the class logits; on the trained model this alone did not rescue the entropy
        calibrator, whose loss came from the backbone: docs/engines.md); the NMS and
        everything downstream of it or of the true_image_shape input (the clip window and its
        reciprocal: 1/h in FP16 moves boxes by ~5e-4). None with ``keep`` "none" (KEEP_FP32).
        Layers are in topological order."""
        if keep == "none":
            return []
        network: trt.INetworkDefinition = self.network
        layers = [network.get_layer(i) for i in range(network.num_layers)]
        tensors = {id(layer): tuple({t.name for t in side} for side in _layer_tensors(layer))
                   for layer in layers}
        head_outputs = self._head_outputs(layers, tensors) if keep == "heads" else set()
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

    def _keep_sensitive_fp32(self, keep: str = "heads") -> None:
        """Pins the sensitive layers (``keep``: KEEP_FP32) to FP32 where TensorRT has per-layer
        precision (8.6-10.x); integer and boolean work (NMS counts, masks) is left alone."""
        trt = self.trt
        if not trt_compat.supports_layer_precision(trt):
            return
        floats = (trt.DataType.FLOAT, trt.DataType.HALF)
        pinned = []
        for layer in self._sensitive_layers(keep):
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
            # dynamic inputs' (min, opt, max) shapes (export_triton.py's batch sizes)
            "profile": builder.profile or None,
            "keep_fp32": options.keep_fp32 if options.precision != "fp32" else None,
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


def build(onnx_path: Path, engine_path: Path, options: BuildOptions,
          verbose: bool = False) -> None:
    """The whole job: checks (the files and options first, then TensorRT), build, engine and
    ``<engine>.json`` written atomically."""

    model = read_onnx(onnx_path, load_external_data=False)  # before TensorRT is looked for
    check_writable_file(engine_path, "-e")
    batch_shapes = profile_shapes(model, onnx_path, options.batch_profile)
    prequantized = has_qdq(model)
    check_calibration_options(options, prequantized)
    check_options(options, trt_compat.require_tensorrt(), prequantized)
    builder = EngineBuilder(verbose)
    builder.create_network(onnx_path, options, model)
    if batch_shapes:  # a dynamic batch
        builder.add_profile(batch_shapes)
        low, opt, high = (shape[0] for shape in next(iter(batch_shapes.values())))
        log.info("dynamic batch: the engine takes batches of %d to %d, tuned for %d "
                 "(--batch_profile)", low, high, opt)
    engine = builder.build(options)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(engine_path, engine)
    metadata = json.dumps(engine_metadata(builder, onnx_path, options), indent=2, sort_keys=True)
    atomic_write_bytes(metadata_path(engine_path), metadata.encode())
    log.info("wrote %s (%.1f MB) and its metadata", engine_path, len(engine) / 1e6)
