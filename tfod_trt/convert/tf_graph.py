"""The TensorFlow side of the conversion: find, cut and convert the part of a TFOD SavedModel
that the ONNX graph keeps.

The SavedModel holds preprocessing (a per-image resize loop), the network, and TFOD's
post-processing (box decoding and a per-class NMS loop). TensorRT builds neither loop, so the
converter keeps only the network: from the preprocessed image to the raw class logits and box
encodings. Everything is located by graph structure, starting from the SavedModel's documented
outputs (`raw_detection_scores`, `raw_detection_boxes`), never by scope names, so renamed or
suffixed scopes (`BoxPredictor_1/...`) do not matter. Anchors depend only on the input size and
are evaluated once with TensorFlow. For parity checks, ssd_reference runs the whole frozen graph
from the preprocessed image and the true image shapes (TFOD's clip window) instead.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfod_trt import optional


class ConversionError(RuntimeError):
    """A SavedModel that cannot be converted; the message says why and what to do."""


@dataclass
class NetworkCut:
    """Tensor names (in the frozen SavedModel graph) where the kept network starts and ends."""

    image: str  # preprocessed image batch [B,H,W,3], as fed to the feature extractor
    class_logits: str  # [B,N,C(+1)] logits before the score converter
    box_encodings: str  # [B,N,4] or [B,N,1,4] box deltas before the box coder's scaling
    anchors: str  # tiled anchors [B*N,4] or [B,N,4], corner form, normalised
    score_converter: str  # "SIGMOID" (the op that turned logits into raw_detection_scores)


@dataclass
class ConvertedNetwork:
    """The network as ONNX (tf2onnx output, before our graph surgery) with its anchors."""

    onnx_model: object  # onnx.ModelProto
    input_name: str
    logits_name: str
    boxes_name: str
    anchors: np.ndarray  # [N,4] float32, corner form (ymin, xmin, ymax, xmax), normalised
    # the heads' output shapes as TensorFlow ran them on one batch (a dynamic batch: of 1)
    logits_shape: list[int]
    boxes_shape: list[int]


def serving_signature(saved_model: Path) -> tuple[Any, Any]:
    """(the loaded SavedModel, its ``serving_default`` signature), the signature checked to take
    one float image input; ConversionError (the folder, the problem, the fix) otherwise. Keep
    the SavedModel while the signature is used: its variables die with it."""
    tf = optional.tensorflow()
    try:
        loaded = tf.saved_model.load(str(saved_model))
    except Exception as exc:  # TF raises many types here; the user needs the path and the cause
        raise ConversionError(f"{saved_model}: not a loadable SavedModel ({exc})") from exc
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ConversionError(f"{saved_model}: the SavedModel has no 'serving_default' signature")
    check_input_signature(saved_model, signature)
    return loaded, signature


def load_frozen_graph(saved_model: Path):
    """Loads the serving signature and freezes its variables; returns (graph_def, outputs)."""
    tf = optional.tensorflow()
    convert_variables_to_constants_v2 = \
        optional.tensorflow_constants().convert_variables_to_constants_v2
    _loaded, signature = serving_signature(saved_model)  # _loaded: alive till frozen
    frozen = convert_variables_to_constants_v2(signature, lower_control_flow=False)
    names = tf.nest.flatten({key: key for key in signature.structured_outputs})
    outputs = {name: tensor.name for name, tensor in zip(names, frozen.outputs, strict=True)}
    return frozen.graph.as_graph_def(), outputs


def check_input_signature(saved_model: Path, signature) -> None:
    specs = signature.structured_input_signature[1]
    spec = specs.get("input_tensor")
    if spec is None:
        raise ConversionError(
            f"{saved_model}: expected one image input 'input_tensor', found {sorted(specs)}; "
            "export with exporter_main_v2.py --input_type float_image_tensor"
        )
    if spec.dtype.name != "float32":
        raise ConversionError(
            f"{saved_model}: the input 'input_tensor' is {spec.dtype.name} (an 'image_tensor' "
            "export); TensorRT needs a float input. Re-export the checkpoint with\n"
            "  python object_detection/exporter_main_v2.py --input_type float_image_tensor "
            "--pipeline_config_path pipeline.config --trained_checkpoint_dir checkpoint/ "
            "--output_directory exported/"
        )


class GraphIndex:
    """Node lookup and producer/consumer walks over a GraphDef."""

    def __init__(self, graph_def) -> None:
        self.nodes = {node.name: node for node in graph_def.node}

    def node(self, tensor: str):
        return self.nodes[tensor.split(":")[0].lstrip("^")]

    def inputs(self, node) -> list[str]:
        return [name for name in node.input if not name.startswith("^")]

    def ancestors(self, tensor: str, stop: Callable[[Any], bool] = lambda node: False):
        """Breadth-first over the producers of `tensor`, nearest first; nodes for which
        `stop(node)` holds are yielded but not walked through."""
        seen, queue = set(), deque([self.node(tensor)])
        while queue:
            node = queue.popleft()
            if node.name in seen:
                continue
            seen.add(node.name)
            yield node
            if not stop(node):
                queue.extend(self.node(name) for name in self.inputs(node))

    def walk_up(self, tensor: str, through: set[str]) -> str:
        """Follows the first data input while the producer's op is in `through`."""
        node = self.node(tensor)
        while node.op in through:
            tensor = self.inputs(node)[0]
            node = self.node(tensor)
        return tensor


PASS_THROUGH = {"Identity", "IdentityN", "Squeeze", "ExpandDims"}


def find_network_cut(graph_def, outputs: dict[str, str], model_name: str) -> NetworkCut:
    """Locates the network's input and head outputs by structure; names what is missing."""
    check_outputs(outputs, model_name)
    index = GraphIndex(graph_def)
    logits = find_logits(index, outputs["raw_detection_scores"], model_name, "Sigmoid", "SSD")
    box_encodings, anchors = find_box_decoder_inputs(
        index, outputs["raw_detection_boxes"], model_name
    )
    image = find_preprocessed_image(index, logits, model_name)
    return NetworkCut(image, logits, box_encodings, anchors, "SIGMOID")


def check_outputs(outputs: dict[str, str], model_name: str) -> None:
    for needed in ("raw_detection_scores", "raw_detection_boxes"):
        if needed not in outputs:
            raise ConversionError(
                f"{model_name}: the SavedModel has no '{needed}' output; it is not a TFOD "
                "exporter_main_v2 export of a supported model"
            )


def find_logits(index: GraphIndex, scores: str, model_name: str, converter: str,
                arch: str) -> str:
    """The input of the score converter op (`Sigmoid`, `Softmax`) behind `scores`."""
    node = index.node(index.walk_up(scores, PASS_THROUGH | {"Slice", "StridedSlice"}))
    if node.op != converter:
        raise ConversionError(
            f"{model_name}: raw_detection_scores come from a '{node.op}' op, not a {converter} "
            f"score converter; only {converter.upper()} score conversion is supported for "
            f"{arch} models"
        )
    return index.inputs(node)[0]


def find_box_decoder_inputs(index: GraphIndex, boxes: str, model_name: str) -> tuple[str, str]:
    """The box coder's decode: h = exp(th / scale) * anchor_h. Exp leads to the encodings, the
    Mul beside it to the anchors."""
    exps = [node for node in index.ancestors(boxes) if node.op == "Exp"]
    if not exps:
        raise ConversionError(
            f"{model_name}: no box decoder (Exp) found before raw_detection_boxes; only the "
            "faster_rcnn_box_coder is supported"
        )
    exp = exps[0]
    walk = {"RealDiv", "Mul", "Unpack", "Transpose", "Identity", "Split", "StridedSlice"}
    encodings_reshape = index.node(index.walk_up(index.inputs(exp)[0], walk))
    if encodings_reshape.op != "Reshape":
        raise ConversionError(
            f"{model_name}: the box decoder's input is a '{encodings_reshape.op}', expected the "
            "Reshape of the box predictor's encodings"
        )
    box_encodings = index.inputs(encodings_reshape)[0]
    consumer = next(
        (
            node for node in index.nodes.values()
            if node.op == "Mul" and exp.name in [i.split(":")[0] for i in index.inputs(node)]
        ),
        None,
    )
    if consumer is None:
        raise ConversionError(f"{model_name}: the box decoder's anchor sizes were not found")
    other = next(i for i in index.inputs(consumer) if i.split(":")[0] != exp.name)
    size_walk = {"Sub", "Unpack", "Transpose", "Identity", "Split", "StridedSlice"}
    anchors_reshape = index.node(index.walk_up(other, size_walk))
    if anchors_reshape.op != "Reshape":
        raise ConversionError(f"{model_name}: the box decoder's anchors were not found")
    return box_encodings, index.inputs(anchors_reshape)[0]


def find_preprocessed_image(index: GraphIndex, logits: str, model_name: str) -> str:
    """The exporter resizes each image in a tf.map_fn; its stacked float output feeds the net."""
    for node in index.ancestors(logits):
        if node.op == "TensorListStack" and node.attr["element_dtype"].type == 1:  # DT_FLOAT
            return node.name + ":0"
    raise ConversionError(
        f"{model_name}: the preprocessed image (the exporter's per-image map) was not found"
    )


def prune_graph(graph_def, feeds: dict[str, tuple], fetches: list[str]):
    """A concrete function of the frozen graph: placeholders (name -> (the graph tensor they
    replace, static shape[, dtype, default float32])) in, the `fetches` tensors out."""
    tf = optional.tensorflow()

    def imported():
        input_map = {feed[0]: tf.compat.v1.placeholder(
            feed[2] if len(feed) > 2 else tf.float32, feed[1], name)
            for name, feed in feeds.items()}
        tf.compat.v1.import_graph_def(graph_def, input_map=input_map, name="")

    wrapped = tf.compat.v1.wrap_function(imported, [])
    get = wrapped.graph.get_tensor_by_name
    return wrapped.prune(feeds=[get(name + ":0") for name in feeds],
                         fetches=[get(name if ":" in name else name + ":0") for name in fetches])


def cut_network(graph_def, cut: NetworkCut, batch_size: int | None, height: int, width: int):
    """A tf.function-free concrete graph: image input (batch None: any batch) -> (logits,
    encodings, anchors)."""
    return prune_graph(graph_def, {"image": (cut.image, [batch_size, height, width, 3])},
                       [cut.class_logits, cut.box_encodings, cut.anchors])


def to_onnx(function, output_names: list[str], opset: int, name: str):
    """tf2onnx of a pruned concrete function (all its inputs, the given outputs) -> ModelProto."""
    # One pass of the cheap optimizers keeps the graph lean; tf2onnx's default loop repeats all of
    # them until nothing changes, which costs minutes on an SSD.
    return optimize(graph_maker(function, output_names, opset)).make_model(name)


def graph_maker(function, output_names: list[str], opset: int) -> Callable[[], Any]:
    """A function that makes tf2onnx's graph of a pruned concrete function anew on each call."""
    tf = optional.tensorflow()
    _, tf_loader, tfonnx = optional.tf2onnx()

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    input_names = [t.name for t in function.inputs]
    net_graph = tf_loader.from_function(function, input_names, output_names)

    def make():
        with tf.Graph().as_default() as tf_graph:
            tf.import_graph_def(net_graph, name="")
            return tfonnx.process_tf_graph(
                tf_graph, opset=opset, input_names=input_names, output_names=output_names
            )

    return make


def optimize(make_graph: Callable[[], Any], optimizers: dict | None = None):
    """tf2onnx's optimizers (`optimizers`: its default set) on the graph `make_graph` returns,
    in place. tf2onnx copies the whole graph before each optimizer, to skip one that fails: the
    same graph at over twice the memory (a Mask R-CNN R50 conversion peaked at 12.7 GB instead
    of 5.5 GB). Where an optimizer fails, the graph is made again and optimized tf2onnx's way."""
    optimizer = optional.tf2onnx()[0]
    graph = make_graph()
    try:
        return optimizer.optimize_graph(graph, catch_errors=False, optimizers=optimizers)
    except Exception:  # whatever an optimizer raises, tf2onnx's own way then skips it
        return optimizer.optimize_graph(make_graph(), optimizers=optimizers)


def convert_network(
    graph_def, cut: NetworkCut, model_name: str, batch_size: int | None, height: int,
    width: int, opset: int,
) -> ConvertedNetwork:
    """The frozen SavedModel graph's network part (`cut`) -> ONNX (batch_size None: the batch
    dimension left free), plus the anchors (see module docstring)."""
    tf = optional.tensorflow()

    try:
        pruned = cut_network(graph_def, cut, batch_size, height, width)
        probe = batch_size or 1  # the anchors are the same for every image
        logits, boxes, anchors = pruned(tf.zeros([probe, height, width, 3], tf.float32))
        anchors = anchors.numpy().reshape(probe, -1, 4)[0]
    except (ValueError, tf.errors.OpError) as exc:
        first_line = str(exc).strip().splitlines()[0][:300]
        raise ConversionError(
            f"{model_name}: the network does not run at the config's input size "
            f"{height}x{width} ({first_line}); the pipeline config does not match the SavedModel"
        ) from exc

    input_name = pruned.inputs[0].name
    output_names = [t.name for t in pruned.outputs[:2]]
    model = to_onnx(pruned, output_names, opset, f"{model_name} network")
    return ConvertedNetwork(model, input_name, output_names[0], output_names[1], anchors,
                            logits.shape.as_list(), boxes.shape.as_list())


def true_image_shapes(index: GraphIndex, image: str) -> str:
    """The exporter's resize loop's other output beside the preprocessed image `image`: the
    true image shapes [B,3] (int32) that TFOD's post-processing clips to."""
    def loop(stack) -> str:
        return index.node(index.walk_up(index.inputs(stack)[0], {"StopGradient"})).name

    image_loop = loop(index.node(image))
    for node in index.nodes.values():
        if (node.op == "TensorListStack" and node.attr["element_dtype"].type == 3  # DT_INT32
                and loop(node) == image_loop):
            return node.name + ":0"
    raise ConversionError(f"{image}: the resize loop's true image shapes were not found")


def ssd_reference(saved_model: Path, height: int, width: int):
    """TensorFlow's SSD on preprocessed images, for parity checks: the SavedModel's frozen
    serving graph with the exporter's resize loop bypassed, fed the images' true shapes (TFOD's
    clip window; by default the whole network input).

    Returns run(images, true_shapes=None): normalised images [B,H,W,3] (TFOD's preprocessed
    batch) and [B,2] heights and widths -> dict of the SavedModel's outputs."""
    graph_def, outputs = load_frozen_graph(saved_model)
    cut = find_network_cut(graph_def, outputs, saved_model.name)
    return bypassed_resize(graph_def, cut.image, outputs, height, width)


def bypassed_resize(graph_def, image: str, fetches: dict[str, str], height: int, width: int):
    """The frozen graph fed the preprocessed image `image` and the resize loop's true image
    shapes directly: run(images [B,H,W,3], true_shapes [B,2] or None = the whole input) ->
    {name: value of each fetched tensor}."""
    tf = optional.tensorflow()

    shapes_tensor = true_image_shapes(GraphIndex(graph_def), image)
    function = prune_graph(
        graph_def, {"image": (image, [None, height, width, 3]),
                    "true_shapes": (shapes_tensor, [None, 3], tf.int32)},
        list(fetches.values()))

    def run(images: np.ndarray, true_shapes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        shapes = np.full((len(images), 3), 3, np.int32)
        shapes[:, :2] = (height, width) if true_shapes is None else np.asarray(true_shapes)
        values = function(tf.constant(images, tf.float32), tf.constant(shapes))
        return {name: value.numpy() for name, value in zip(fetches, values, strict=True)}

    return run
