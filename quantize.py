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
import json
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs

import onnx_utils
from cli import UsageError, run_main
from onnx_utils import (
    NMS_PLUGIN,
    PLUGIN_OPS,
    TRUE_IMAGE_SHAPE,
    atomic_write_bytes,
    read_metadata,
)

log = logging.getLogger("quantize")

# Keep in step with build_engine.SENSITIVE_NAME_PARTS (not imported: build_engine imports us).
SENSITIVE_NAME_PARTS = ("anchors", "box_deltas")
# Plugin inputs that carry boxes (op -> input positions): their producers' branch stays FP32.
BOX_INPUTS = {NMS_PLUGIN: (0, 2), "CropAndResize": (1,), "CropAndResizeDynamic": (1,)}
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
CACHE_FORMAT = "tfod_trt.qdq_ranges.v1"


class QuantizeError(UsageError):
    """Why no typed graph was made, as one line naming the file and the problem."""


# ---------------------------------------------------------------------------------------------
# Which nodes are sensitive.


def sensitive_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the nodes that must stay FP32 (see the module docstring)."""
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output if out}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def ancestors(tensors: list[str]) -> set[str]:
        seen: set[str] = set()
        todo = [producer[t] for t in tensors if t in producer]
        while todo:
            node = todo.pop()
            if node.name in seen:
                continue
            seen.add(node.name)
            todo += [producer[t] for t in node.input if t in producer]
        return seen

    plugins = [n for n in nodes if n.op_type in PLUGIN_OPS]
    sensitive: set[str] = set()
    # the plugins, the users of the true_image_shape input (clip windows), everything after them
    todo = [*plugins, *consumers.get(TRUE_IMAGE_SHAPE, [])]
    while todo:
        node = todo.pop()
        if node.name in sensitive:
            continue
        sensitive.add(node.name)
        for out in node.output:
            todo += consumers.get(out, [])
    box_inputs, other_inputs = [], []
    for plugin in plugins:
        for i, name in enumerate(plugin.input):
            if name:
                (box_inputs if i in BOX_INPUTS.get(plugin.op_type, ()) else other_inputs).append(
                    name)
                if name in producer:
                    sensitive.add(producer[name].name)
    sensitive |= ancestors(box_inputs) - ancestors(other_inputs)
    for node in nodes:
        if any(part in name for part in SENSITIVE_NAME_PARTS
               for name in [node.name, *node.output]):
            sensitive.add(node.name)
    return sensitive


def _named(model: onnx.ModelProto, path: Path | str) -> None:
    unnamed = [i for i, n in enumerate(model.graph.node) if not n.name]
    if unnamed:
        raise QuantizeError(f"{path}: nodes {unnamed[:5]} have no name; the ONNX must come "
                            "from create_onnx.py")


def has_qdq(model: onnx.ModelProto) -> bool:
    """Whether the graph is already explicitly quantized."""
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def is_fp16(model: onnx.ModelProto) -> bool:
    """Whether the graph already computes in FP16 (has FP16 initializers or Casts to FP16)."""
    half = onnx.TensorProto.FLOAT16
    return (any(t.data_type == half for t in model.graph.initializer)
            or any(n.op_type == "Cast" and any(a.name == "to" and a.i == half
                                                for a in n.attribute)
                   for n in model.graph.node))


# ---------------------------------------------------------------------------------------------
# INT8: calibration on the plugin-free part, then Q/DQ with ONNX Runtime's quantizer.


def plugin_free_prefix(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph from its inputs to the inputs of its plugins that need no plugin output
    (for SSD: the NMS inputs; for Faster R-CNN: the first-stage NMS inputs), for ONNX Runtime."""
    graph = gs.import_onnx(model)
    after: set[str] = set()
    for node in graph.toposort().nodes:
        if node.op in PLUGIN_OPS or any(t.name in after for t in node.inputs):
            after |= {t.name for t in node.outputs}
    tensors = graph.tensors()
    wanted: list[str] = []
    for node in graph.nodes:
        if node.op in PLUGIN_OPS:
            wanted += [t.name for t in node.inputs if isinstance(t, gs.Variable)
                       and t.name not in after and t.name not in wanted]
    if not wanted:
        raise QuantizeError("the graph has no TensorRT plugin inputs to calibrate up to")
    graph.outputs = [tensors[name] for name in wanted]
    for tensor in graph.outputs:
        tensor.dtype = tensor.dtype or np.float32
    graph.cleanup(remove_unused_graph_inputs=True)
    prefix = gs.export_onnx(graph)
    del prefix.metadata_props[:]
    return prefix


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes that get Q/DQ inputs: convolutions (MatMul, Gemm) of the plugin-free prefix
    that are not sensitive."""
    sensitive = sensitive_nodes(model)
    prefix = {n.name for n in plugin_free_prefix(model).graph.node}
    return [n.name for n in model.graph.node
            if n.op_type in QUANTIZED_OPS and n.name in prefix and n.name not in sensitive]


def calibration_batches(images: Path, metadata: dict, batch_size: int, max_images: int,
                        path: Path | str = "the ONNX") -> Iterator:
    """Images preprocessed as inference preprocesses them (the ONNX metadata says how), in full
    batches, shuffled as build_engine's calibrator shuffles them, with a tqdm progress bar
    (image_batcher.Batch objects)."""
    from tqdm import tqdm

    from image_batcher import ImageBatcher, Preprocessor

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
    log.info("calibrating on %d batches of %d images (ONNX Runtime, CPU)", batcher.num_batches,
             batch_size)
    yield from tqdm(batcher, total=batcher.num_batches, desc="calibration", unit="batch")


def calibrate(model: onnx.ModelProto, images: Path, max_images: int = 5000,
              method: str = "minmax", path: Path | str = "the ONNX"
              ) -> dict[str, tuple[float, float]]:
    """Activation ranges (tensor -> (min, max)) of the quantized nodes' inputs, collected by
    ONNX Runtime's calibrator on the plugin-free prefix of ``model``."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

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
    from onnxruntime.quantization import CalibrationMethod, QuantType
    from onnxruntime.quantization.calibrate import TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    _named(model, path)
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
    quantized = _toposorted(_unquantize_sensitive_inputs(quantizer.quantize_model(),
                                                         sensitive_nodes(model)), model)
    log.info("quantized %d nodes to INT8 (Q/DQ); %d sensitive nodes stay FP32", len(nodes),
             len(sensitive_nodes(model)))
    return quantized


# ---------------------------------------------------------------------------------------------
# FP16.


def convert_fp16(model: onnx.ModelProto, path: Path | str = "the ONNX") -> onnx.ModelProto:
    """The FP16 / mixed copy of an FP32 graph: weights and activations FP16, graph inputs and
    outputs, the sensitive nodes and the plugins FP32 (Casts in between)."""
    from onnxruntime.transformers import float16

    _named(model, path)
    if is_fp16(model):
        raise QuantizeError(f"{path} already computes in FP16")
    blocked = sensitive_nodes(model)
    op_block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | PLUGIN_OPS)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # the converter changes the model it is given
    half = float16.convert_float_to_float16(
        copy, keep_io_types=True, op_block_list=op_block, node_block_list=sorted(blocked),
        disable_shape_infer=True)
    half = _toposorted(_drop_fp16_round_trips(half), model)
    check_model(half)
    log.info("converted to FP16; %d sensitive nodes stay FP32", len(blocked))
    return half


def _unquantize_sensitive_inputs(model: onnx.ModelProto, sensitive: set[str]
                                 ) -> onnx.ModelProto:
    """Feeds the sensitive nodes the FP32 tensor where the quantizer gave them the output of a
    Q/DQ pair that it made for a quantized neighbour (e.g. the box head reading the feature
    map that the class head quantizes)."""
    graph = gs.import_onnx(model)
    for node in graph.nodes:
        if node.name not in sensitive:
            continue
        for i, tensor in enumerate(node.inputs):
            dq = tensor.inputs[0] if tensor.inputs else None
            q = dq.inputs[0].inputs[0] if dq is not None and dq.op == "DequantizeLinear" \
                and dq.inputs[0].inputs else None
            if q is not None and q.op == "QuantizeLinear":
                node.inputs[i] = q.inputs[0]
    graph.cleanup()
    return gs.export_onnx(graph)


def _drop_fp16_round_trips(model: onnx.ModelProto) -> onnx.ModelProto:
    """Removes the converter's Cast to FP16 and back between two FP32 nodes (e.g. the box
    deltas between their Div and the NMS plugin): the value stays FP32 and keeps its name."""
    graph = gs.import_onnx(model)
    half, single = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    outputs = {id(t) for t in graph.outputs}
    for cast in list(graph.nodes):
        if cast.op != "Cast" or cast.attrs.get("to") != half or id(cast.outputs[0]) in outputs:
            continue
        middle = cast.outputs[0]
        back = middle.outputs
        if not back or any(n.op != "Cast" or n.attrs.get("to") != single for n in back):
            continue
        source = cast.inputs[0]
        name = middle.name
        for node in back:
            target = node.outputs[0]
            if id(target) in outputs:  # a graph output keeps its name
                name, target.name = target.name, f"{target.name}_removed"
            for consumer in list(target.outputs):
                for i, tensor in enumerate(consumer.inputs):
                    if tensor is target:
                        consumer.inputs[i] = source
            graph.outputs = [source if t is target else t for t in graph.outputs]
            node.outputs.clear()
        cast.outputs.clear()
        middle.name = f"{middle.name}_removed"
        source.name = name
    graph.cleanup()
    return gs.export_onnx(graph)


def _toposorted(model: onnx.ModelProto, source: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its nodes in topological order (the converter appends its input Casts)
    and the metadata of ``source``."""
    graph = gs.import_onnx(model)
    graph.toposort()
    graph.cleanup()
    sorted_model = gs.export_onnx(graph)
    del sorted_model.opset_import[:]
    sorted_model.opset_import.extend(source.opset_import)
    del sorted_model.metadata_props[:]
    sorted_model.metadata_props.extend(source.metadata_props)
    sorted_model.ir_version = source.ir_version
    return sorted_model


def check_model(model: onnx.ModelProto) -> None:
    """onnx.checker on a typed graph (onnx_utils.check_model: plugins in their own domain)."""
    onnx_utils.check_model(model)


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


def load(path: Path) -> onnx.ModelProto:
    """An ONNX file, or a clear error naming it."""
    if not path.is_file():
        raise QuantizeError(f"ONNX file {path} not found")
    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf's DecodeError and friends
        raise QuantizeError(f"{path}: not a readable ONNX file ({err})") from err


def run(args: argparse.Namespace) -> int:
    model = load(args.onnx)
    if args.mode == "int8":
        typed = quantize_int8(model, args.calib_input, args.calib_cache, args.calib_num_images,
                              args.calib_method, args.onnx)
    else:
        typed = convert_fp16(model, args.onnx)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.output, typed.SerializeToString())
    log.info("wrote %s", args.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_main("quantize.py", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
