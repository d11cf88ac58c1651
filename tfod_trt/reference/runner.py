"""Runs a converted ONNX graph on the CPU without TensorRT: ONNX Runtime for the standard
operators, the NumPy plugins of reference_plugins.py for the TensorRT plugin nodes.

The graph is split at its plugin nodes: each ONNX Runtime segment computes what the next plugin
needs (or the graph outputs at the end) from the graph inputs and the plugin outputs so far.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs
import onnxruntime as ort

from tfod_trt.convert.onnx_file import check_detector, read_onnx
from tfod_trt.metadata import TRUE_IMAGE_SHAPE, read_metadata
from tfod_trt.reference import plugins as reference_plugins


def _efficient_nms(node: gs.Node, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs = node.attrs
    return list(reference_plugins.efficient_nms(
        *inputs,
        score_threshold=attrs["score_threshold"],
        iou_threshold=attrs["iou_threshold"],
        max_output_boxes=attrs["max_output_boxes"],
        background_class=attrs.get("background_class", -1),
        score_activation=bool(attrs.get("score_activation", 0)),
        box_coding=attrs.get("box_coding", 0),
        class_agnostic=bool(attrs.get("class_agnostic", 0)),
    ))


def _crop_and_resize(node: gs.Node, inputs: list[np.ndarray]) -> list[np.ndarray]:
    attrs = node.attrs
    return [reference_plugins.crop_and_resize(
        inputs[0], inputs[1], attrs["crop_height"], attrs["crop_width"])]


PLUGINS = {
    "EfficientNMS_TRT": _efficient_nms,
    "CropAndResize": _crop_and_resize,
    "CropAndResizeDynamic": _crop_and_resize,
}


class ReferenceRunner:
    """`runner.infer(batch)` -> dict of the graph's outputs, as TensorRT would return them.

    A file that is no ONNX model, or (with ``detector``) no detection graph of create_onnx.py,
    raises onnx_file.OnnxFileError naming it; ``detector=False`` runs any graph."""

    def __init__(self, onnx_path: str | Path, extra_outputs: tuple[str, ...] = (),
                 detector: bool = True) -> None:
        self.path = Path(onnx_path)
        model = read_onnx(self.path)
        if detector:
            check_detector(model, self.path)
        self.metadata = read_metadata(model)
        self.graph = gs.import_onnx(model)
        missing = [name for name in extra_outputs if name not in self.graph.tensors()]
        if missing:
            raise ValueError(
                f"{self.path}: the graph has no tensor {', '.join(map(repr, missing))}; "
                "convert the model again with this version of create_onnx.py")
        self.input_names = [t.name for t in self.graph.inputs]
        self.output_names = [t.name for t in self.graph.outputs] + list(extra_outputs)
        self.steps = self._plan(extra_outputs)

    @property
    def input_shape(self) -> list[int]:
        return list(self.graph.inputs[0].shape)

    def _plan(self, extra_outputs: tuple[str, ...]) -> list:
        """Alternating ONNX Runtime sessions and plugin calls, in execution order."""
        plugins = [node for node in self.graph.toposort().nodes if node.op in PLUGINS]
        available = list(self.input_names)
        steps = []
        for plugin in plugins:
            wanted = [t.name for t in plugin.inputs if isinstance(t, gs.Variable)]
            steps.append(("onnx", self._segment(available, wanted)))
            steps.append(("plugin", plugin))
            available += [t.name for t in plugin.outputs]
        steps.append(("onnx", self._segment(available, self.output_names)))
        return steps

    def _segment(self, inputs: list[str], outputs: list[str]) -> ort.InferenceSession | None:
        graph = self.graph.copy()
        tensors = graph.tensors()
        missing = [name for name in outputs if name not in inputs]
        if not missing:
            return None
        graph.inputs = [tensors[name] for name in inputs]
        graph.outputs = [tensors[name] for name in missing]
        graph.cleanup(remove_unused_graph_inputs=True)
        for tensor in graph.outputs:
            tensor.dtype = tensor.dtype or np.float32
        options = ort.SessionOptions()
        options.log_severity_level = 3
        model = gs.export_onnx(graph)
        return ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    @property
    def needs_true_image_shape(self) -> bool:
        return TRUE_IMAGE_SHAPE in self.input_names

    def infer(self, batch: np.ndarray,
              true_image_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Runs one batch (the graph's input layout and batch size) through the whole graph;
        `true_image_shape` [B,2] (Batch.true_image_shape()) is required by graphs that have it."""
        values: dict[str, np.ndarray] = {self.input_names[0]: batch.astype(np.float32)}
        if self.needs_true_image_shape:
            if true_image_shape is None:
                raise ValueError(
                    f"{self.path}: this graph needs the {TRUE_IMAGE_SHAPE} input [B,2] (each "
                    "image's resized height and width before padding): "
                    "image_batcher.Batch.true_image_shape()")
            expected = (batch.shape[0], 2)
            if np.shape(true_image_shape) != expected:
                raise ValueError(f"{TRUE_IMAGE_SHAPE} must have shape {expected}, got "
                                 f"{np.shape(true_image_shape)}")
            values[TRUE_IMAGE_SHAPE] = np.asarray(true_image_shape, np.float32)
        elif true_image_shape is not None:
            raise ValueError(f"{self.path}: this graph has no {TRUE_IMAGE_SHAPE} input")
        for kind, step in self.steps:
            if kind == "plugin":
                inputs = [
                    values[t.name] if isinstance(t, gs.Variable) else t.values
                    for t in step.inputs
                ]
                values.update(zip([t.name for t in step.outputs], PLUGINS[step.op](step, inputs),
                                  strict=True))
            elif step is not None:
                feeds = {i.name: values[i.name] for i in step.get_inputs()}
                names = [o.name for o in step.get_outputs()]
                values.update(zip(names, step.run(names, feeds), strict=True))
        return {name: values[name] for name in self.output_names}
