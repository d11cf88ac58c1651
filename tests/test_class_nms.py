"""The per-class NMS of the SSD graphs (tfod_trt/convert/class_nms.py) against TFOD's own
post-processing (batch_multiclass_non_max_suppression with its clip window), on random heads
where TFOD's per-class cap, its total cap and its prune of boxes emptied by the clip all decide
what is kept. The graph runs on the CPU reference runtime (ONNX Runtime + the NumPy plugin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from tfod_trt.convert.class_nms import add_per_class_nms
from tfod_trt.convert.graph_edits import const, save_model, slice_last_axis, variable
from tfod_trt.convert.postprocess import anchors_center_size
from tfod_trt.reference.runner import ReferenceRunner

IOU = 0.5


def random_heads(anchors: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(corner anchors [N,4], heads [1,N,4+C]: box deltas then class logits). A few confident
    anchors lie wholly outside the image: the clip empties their boxes."""
    rng = np.random.default_rng(seed)
    center = rng.uniform(-0.1, 1.1, (anchors, 2))
    size = rng.uniform(0.05, 0.4, (anchors, 2))
    center[:3] = [[1.3, 0.5], [0.5, -0.3], [1.4, 1.4]]
    corners = np.concatenate([center - size / 2, center + size / 2], axis=1).astype(np.float32)
    deltas = rng.normal(0, 0.3, (anchors, 4))
    # distinct logits (no ties whose order TFOD would leave open), spread over [-6, 4)
    logits = rng.permutation(anchors * classes).reshape(anchors, classes) * (
        10 / (anchors * classes)) - 6
    logits[:3] += 10  # above every other logit: the best of their classes
    return corners, np.concatenate([deltas, logits], axis=1)[None].astype(np.float32)


def per_class_graph(path: Path, corners: np.ndarray, classes: int, max_per_class: int,
                    max_total: int, threshold: float) -> Path:
    anchors = len(corners)
    heads = variable("heads", np.float32, [1, anchors, 4 + classes])
    graph = gs.Graph(inputs=[heads], opset=17)
    deltas = slice_last_axis(graph, heads, 0, 4, "box_deltas", [1, anchors, 4])
    logits = slice_last_axis(graph, heads, 4, 4 + classes, "class_logits", [1, anchors, classes])
    graph.outputs = add_per_class_nms(
        graph, deltas, logits, const("anchors", anchors_center_size(corners)), 1,
        score_threshold=threshold, iou_threshold=IOU, max_per_class=max_per_class,
        max_total=max_total)
    save_model(gs.export_onnx(graph.cleanup().toposort()), path)
    return path


def tfod_detections(corners: np.ndarray, heads: np.ndarray, max_per_class: int,
                    max_total: int, threshold: float) -> dict[str, np.ndarray]:
    """TFOD's decoding and post-processing of the same heads (as an SSD's postprocess calls
    them, with the whole image as the clip window)."""
    import tensorflow as tf
    from object_detection.box_coders import faster_rcnn_box_coder
    from object_detection.core import box_list, post_processing

    decoded = faster_rcnn_box_coder.FasterRcnnBoxCoder().decode(
        tf.constant(heads[0, :, :4]), box_list.BoxList(tf.constant(corners))).get()
    boxes, scores, labels, _, _, num = post_processing.batch_multiclass_non_max_suppression(
        decoded[None, :, None, :], tf.sigmoid(tf.constant(heads[:, :, 4:])), threshold, IOU,
        max_size_per_class=max_per_class, max_total_size=max_total,
        clip_window=tf.constant([[0.0, 0.0, 1.0, 1.0]]))
    return {"num": int(num[0]), "boxes": boxes[0].numpy(), "scores": scores[0].numpy(),
            "classes": labels[0].numpy().astype(int)}


@pytest.mark.parametrize("anchors,classes,max_per_class,max_total,threshold", [
    (60, 4, 3, 8, 1e-8),  # the per-class cap decides (the plugin's dense path)
    (200, 3, 100, 20, 1e-8),  # the total cap decides
    (60, 2, 100, 100, 1e-8),  # fewer detections than the total cap: zero-filled after the count
    (60, 3, 100, 50, 0.3),  # the plugin's filter path
    (6, 1030, 100, 20, 0.3),  # more segments than the filter path launches: the dense path
])
def test_per_class_nms_is_tfods(tmp_path: Path, anchors: int, classes: int,
                                max_per_class: int, max_total: int, threshold: float) -> None:
    corners, heads = random_heads(anchors, classes, seed=anchors)
    assert len(np.unique(heads[0, :, 4:])) == anchors * classes  # no ties
    path = per_class_graph(tmp_path / "nms.onnx", corners, classes, max_per_class, max_total,
                           threshold)
    got = ReferenceRunner(path, detector=False).infer(heads)
    want = tfod_detections(corners, heads, max_per_class, max_total, threshold)
    num = int(got["num_detections"][0, 0])
    assert num == want["num"] and 0 < num
    np.testing.assert_array_equal(got["detection_classes"][0, :num], want["classes"][:num])
    np.testing.assert_allclose(got["detection_scores"][0, :num], want["scores"][:num],
                               rtol=1e-5)
    np.testing.assert_allclose(got["detection_boxes"][0, :num], want["boxes"][:num],
                               atol=2e-6)
    assert not got["detection_scores"][0, num:].any()
    assert not got["detection_boxes"][0, num:].any()
    if max_per_class < max_total:  # the per-class cap changed TFOD's answer
        uncapped = tfod_detections(corners, heads, max_total, max_total, threshold)
        assert uncapped["num"] != num or (uncapped["classes"][:num] != want["classes"][:num]).any()


def test_many_segments_take_the_dense_path(tmp_path: Path) -> None:
    """Beyond 1024 image-class segments the plugin's filter path cannot launch: the plugin
    gets threshold 0 (its dense path) and the graph applies the real one."""
    corners, _ = random_heads(6, 1030, seed=6)
    model = onnx.load(str(per_class_graph(tmp_path / "nms.onnx", corners, 1030, 100, 20, 0.3)))
    (plugin,) = [n for n in model.graph.node if n.op_type == "EfficientNMS_TRT"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in plugin.attribute}
    assert attrs["score_threshold"] == 0.0
    assert any("cap_above" in n.name for n in model.graph.node)
