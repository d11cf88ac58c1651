"""Faster R-CNN through create_onnx.py: graph contract, parity with the SavedModel on real
photos (detections and first-stage proposals), refused variants, and the NumPy CropAndResize
path of the reference runner."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from detection_sets import unmatched_detections
from fixtures import (
    FIXTURE_MODELS,
    ConfigSource,
    check_true_image_shape_defaults,
    config_sources,
    converted_onnx,
    exported_model,
    have_tensorflow,
    zoo_config,
)

import create_onnx
from tfod_trt.config.pipeline_config import load_pipeline_config
from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.config.writer import ARCHITECTURES, FixedShape, pipeline_config_text
from tfod_trt.evaluate.matching import SCORE_FLOOR
from tfod_trt.evaluate.parity import (
    _two_stage_reference,
    match_on_original_photos,
    proposals_in_place,
    real_proposals,
    validate,
)
from tfod_trt.io.batcher import Batch, ImageBatcher
from tfod_trt.io.images import find_images
from tfod_trt.io.resize import ImageScale
from tfod_trt.metadata import read_metadata
from tfod_trt.reference import plugins as reference_plugins
from tfod_trt.reference.runner import ReferenceRunner
from tfod_trt.reference.tensorflow import TensorFlowRunner

CI_MODEL = "faster_rcnn_r50_640"
SLOW_MODELS = ["faster_rcnn_r50_1024", "faster_rcnn_r50_800x1333", "faster_rcnn_irv2_640",
               "faster_rcnn_r50_fpn_640"]


def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def nodes(model: onnx.ModelProto, op: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == op]


def dims(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in value.type.tensor_type.shape.dim]


def test_graph_contract() -> None:
    model = onnx.load(str(converted_onnx(CI_MODEL)))
    config = load_pipeline_config(exported_model(CI_MODEL) / "pipeline.config")
    proposals, k = config.two_stage.max_proposals, config.max_total_detections
    assert (proposals, k, config.max_detections_per_class) == (300, 300, 100)
    # keep_aspect_ratio: the true (unpadded) image shape is a second input by default
    assert [(i.name, dims(i), i.type.tensor_type.elem_type) for i in model.graph.input] == [
        ("input_tensor", [1, 640, 640, 3], onnx.TensorProto.FLOAT),
        ("true_image_shape", [1, 2], onnx.TensorProto.FLOAT)]
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ("num_detections", [1, 1]), ("detection_boxes", [1, k, 4]),
        ("detection_scores", [1, k]), ("detection_classes", [1, k])]

    rpn, second = (attrs(n) for n in nodes(model, "EfficientNMS_TRT"))
    assert rpn["max_output_boxes"] == proposals and rpn["iou_threshold"] == pytest.approx(0.7)
    assert rpn["score_threshold"] == 0.0 and rpn["background_class"] == -1
    assert second["iou_threshold"] == pytest.approx(0.6) and second["score_threshold"] == 0.0
    # the plugin keeps all candidates: TFOD caps per class (100) and in total (300) after it
    # drops the boxes that the clip window empties
    assert second["max_output_boxes"] == proposals * 4
    for nms in (rpn, second):
        assert (nms["score_activation"], nms["box_coding"], nms["plugin_version"]) == (
            0, 1, b"1")

    (crop,) = nodes(model, "CropAndResize")
    assert attrs(crop) == {"plugin_version": b"1", "crop_width": 14, "crop_height": 14}
    shapes = {v.name: dims(v) for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    assert shapes[crop.input[0]] == [1, 1024, 40, 40]  # conv4 of ResNet-50, NCHW
    assert shapes[crop.input[1]] == [1, proposals, 4]
    scores_input = nodes(model, "EfficientNMS_TRT")[1].input[1]
    assert shapes[scores_input] == [1, proposals, 4]  # background column sliced off

    meta = read_metadata(model)
    assert (meta["meta_arch"], meta["num_classes"], meta["max_detections"]) == (
        "faster_rcnn", 4, k)
    assert meta["first_stage"] == {"score_threshold": 0.0, "iou_threshold": pytest.approx(0.7),
                                   "max_proposals": 300, "initial_crop_size": 14}
    assert meta["normalization"]["offset"] == [-123.68, -116.779, -103.939]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 17
    assert (meta["true_image_shape"], meta["box_frame"]) == ("true_image_shape", "true_image")


def check_parity(name: str, coco_dir: Path, batch: int = 1, layout: str = "NHWC") -> None:
    report = validate(exported_model(name) / "saved_model",
                             converted_onnx(name, batch, layout), coco_dir / "images",
                             max_images=8)
    print(name, report.summary())
    assert report.passed and report.images == 8
    assert report.detections.reference >= 8 * 50  # a meaningful number of detections
    assert report.detections.rate >= 0.98
    assert report.detections.min_iou >= 0.98 and report.detections.max_score_diff <= 2e-3
    assert report.proposals.rate >= 0.99
    assert report.proposals_in_place <= report.proposals.reference  # padding not counted
    # the crop's edge rows (parity._compare_two_stage) may flip for a few proposals
    assert report.second_stage_outliers <= 0.01 * report.proposals_in_place


def test_proposals_in_place_leave_out_the_padding() -> None:
    """TF pads its proposals with zero boxes after those its clip window emptied; ours are
    zero there too, which is no match at the same rank."""
    tf_rois = np.zeros((6, 4), np.float32)
    tf_rois[:3] = [[0, 0, 10, 10], [5, 5, 20, 30], [1, 2, 3, 4]]
    ours = tf_rois.copy()
    ours[1] += 0.5  # moved by half a pixel: not in place
    assert proposals_in_place(tf_rois, ours).tolist() == [True, False, True] + [False] * 3
    assert real_proposals(tf_rois).sum() == 3


def test_parity_with_saved_model(coco_dir: Path) -> None:
    check_parity(CI_MODEL, coco_dir)


@pytest.mark.slow
def test_parity_batch2_nchw(coco_dir: Path) -> None:
    check_parity(CI_MODEL, coco_dir, batch=2, layout="NCHW")


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_MODELS)
def test_parity_large_models(name: str, coco_dir: Path) -> None:
    check_parity(name, coco_dir)


def test_dynamic_batch_graph() -> None:
    """create_onnx.py --batch_size -1: every input and output of the static graph with the
    batch named 'batch', and the dynamic CropAndResize (TensorRT 8.6's static one takes no
    run-time shapes)."""
    static = onnx.load(str(converted_onnx(CI_MODEL)), load_external_data=False)
    model = onnx.load(str(converted_onnx(CI_MODEL, -1)), load_external_data=False)

    def io_dims(graph_model: onnx.ModelProto) -> dict[str, list]:
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
                for v in [*graph_model.graph.input, *graph_model.graph.output]}

    assert io_dims(model) == {name: ["batch", *shape[1:]]
                              for name, shape in io_dims(static).items()}
    assert len(nodes(model, "CropAndResizeDynamic")) == 1 and not nodes(model, "CropAndResize")
    assert len(nodes(static, "CropAndResize")) == 1
    assert read_metadata(model)["dynamic_batch"] is True


@pytest.mark.slow
def test_parity_dynamic_batch(coco_dir: Path) -> None:
    """The dynamic graph, validated in batches of several images, against the SavedModel."""
    check_parity(CI_MODEL, coco_dir, batch=-1)


def test_reference_is_the_saved_model_signature(coco_dir: Path) -> None:
    """For a resizer that leaves a network-size image unchanged, parity's TF reference (resize
    loop bypassed) gives what the SavedModel's own signature gives; and the fixture's scores are
    not degenerate (several classes win proposals, scores spread)."""
    model_dir = exported_model(CI_MODEL)
    meta = read_metadata(converted_onnx(CI_MODEL))
    pre = Preprocessor.from_dict(meta["preprocessor"])
    batch = next(iter(ImageBatcher(coco_dir / "images", pre, batch_size=1, max_images=1)))
    signature = TensorFlowRunner(model_dir / "saved_model").infer(batch.data)
    bypassed = _two_stage_reference(model_dir / "saved_model", meta)(
        batch.data, np.float32([[pre.height, pre.width]]))
    # Two graphs: TensorFlow's CPU kernels may sum in another order (seen: differences up to
    # 1.5e-5, and near-tied detections swapping ranks), so the detections are compared as sets.
    np.testing.assert_array_equal(bypassed["num_detections"], signature["num_detections"])
    assert not unmatched_detections(bypassed, signature, atol=1e-4)

    scores = signature["raw_detection_scores"][0, :, 1:]  # [proposals, classes]
    assert len(np.unique(scores.argmax(1))) >= 2 and scores.max() > 0.5
    assert np.log(scores).std(axis=0).min() > 0.3  # each class's logit spreads over proposals
    assert (signature["detection_scores"][0] >= SCORE_FLOOR).sum() >= 100


@pytest.mark.slow
@pytest.mark.parametrize("name", ["faster_rcnn_r50_640", "faster_rcnn_r50_800x1333"])
def test_keep_aspect_against_original_photos(name: str, coco_dir: Path) -> None:
    """TF on original photos matches the graph fed their true image shapes."""
    photos = find_images(coco_dir / "images")[:4]
    result = match_on_original_photos(
        converted_onnx(name), exported_model(name) / "saved_model", photos, 0.98, 2e-3)
    print(f"{name} on original photos: {result.matched}/{result.reference} TF detections "
          f"matched ({100 * result.rate:.1f}%)")
    assert result.reference > 0 and result.rate >= 0.98


def test_true_image_shape_input_is_required(coco_dir: Path) -> None:
    """A graph with the true_image_shape input refuses to run without it (never a silent
    whole-input clip window), and the feed helper pads a short batch with the input size."""
    runner = ReferenceRunner(converted_onnx(CI_MODEL))
    with pytest.raises(ValueError, match="true_image_shape"):
        runner.infer(np.zeros([1, 640, 640, 3], np.float32))
    batch = Batch(np.zeros([2, 640, 640, 3], np.float32), [Path("a.jpg")],
                  [ImageScale(480, 640, 480, 640, 640, 640)])
    np.testing.assert_array_equal(batch.true_image_shape(), [[480, 640], [640, 640]])


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = create_onnx.main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("edit,words", [
    (("number_of_stages: 2", "number_of_stages: 3"),
     "number_of_stages: 3 (Mask R-CNN) needs the mask head: set second_stage_box_predictor."
     "mask_rcnn_box_predictor.predict_instance_masks: true"),
    (("initial_crop_size: 14", "initial_crop_size: 14\n    context_config { max_num_context_"
      "features: 2000 }"), "Context R-CNN models are not supported yet"),
    (("number_of_stages: 2", "number_of_stages: 1"), "RPN only) models are not supported yet"),
    (("score_converter: SOFTMAX", "score_converter: SIGMOID"), "only SOFTMAX is supported"),
    (("faster_rcnn_resnet50_keras", "faster_rcnn_nas"),
     "feature extractor 'faster_rcnn_nas' is not supported for faster_rcnn"),
])
def test_unsupported_variants(tmp_path: Path, capsys, edit, words) -> None:
    text = zoo_config(FIXTURE_MODELS[CI_MODEL][0]).read_text().replace(
        "first_stage_nms_score_threshold", "number_of_stages: 2\n    "
        "first_stage_nms_score_threshold")
    assert edit[0] in text
    config = tmp_path / "pipeline.config"
    config.write_text(text.replace(edit[0], edit[1]))
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"")
    code, err = run_cli(["-p", str(config), "-m", str(tmp_path / "saved_model"),
                         "-o", str(tmp_path / "x.onnx")], capsys)
    assert code == 2 and words in err and str(config) in err


FASTER_RCNN_ZOO = [f"faster_rcnn_resnet{depth}_v1_{size}_coco17_{chip}-8.config"
                   for depth in (50, 101, 152)
                   for size, chip in (("640x640", "tpu"), ("1024x1024", "tpu"),
                                      ("800x1333", "gpu"))]
FASTER_RCNN_ZOO.append("faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config")


@pytest.mark.parametrize("source", config_sources(FASTER_RCNN_ZOO), ids=str)
def test_faster_rcnn_configs(source: ConfigSource) -> None:
    """The zoo's Faster R-CNN configs (where present) and the config written for its preset."""
    config = load_pipeline_config(source.path())
    size = source.zoo_name.split("_")[-3]
    extractor = source.zoo_name.split("_v1_")[0] + ("_fpn" if "_fpn_" in source.zoo_name else "")
    assert config.meta_arch == "faster_rcnn" and config.feature_extractor == f"{extractor}_keras"
    assert config.num_classes == 90 and config.add_background_class
    assert config.score_converter == "SOFTMAX" and config.box_scales == (10, 10, 5, 5)
    assert config.max_total_detections == (100 if size == "800x1333" else 300)
    assert config.max_detections_per_class == 100 and config.score_threshold == 0.0
    assert config.iou_threshold == 0.6
    two_stage = config.two_stage
    assert two_stage.max_proposals == 300 and two_stage.initial_crop_size == 14
    assert (two_stage.score_threshold, two_stage.iou_threshold) == (0.0, 0.7)
    assert (two_stage.maxpool_kernel_size, two_stage.maxpool_stride) == (2, 2)
    assert two_stage.matmul_crop == (size != "800x1333")
    assert config.normalization == ((1.0, 1.0, 1.0), (-123.68, -116.779, -103.939))
    preprocessor = config.preprocessor
    assert preprocessor.pad_value == (0.0, 0.0, 0.0)
    if size in ("640x640", "800x1333"):
        low, high = (int(side) for side in size.split("x"))
        assert preprocessor.kind == "keep_aspect_ratio"
        assert (preprocessor.min_dimension, preprocessor.max_dimension) == (low, high)
        assert (preprocessor.height, preprocessor.width) == (high, high)
    else:
        assert (preprocessor.kind, preprocessor.height, preprocessor.width) == (
            "fixed_shape", 1024, 1024)


def crop_graph(path: Path, rois: np.ndarray, crop: int) -> None:
    """NHWC features -> Transpose (ONNX Runtime) -> CropAndResize (NumPy) -> Mul (ONNX Runtime)."""
    from tfod_trt.convert.graph_edits import add_node, const, variable
    from tfod_trt.convert.postprocess import add_crop_and_resize

    features = variable("features", np.float32, [1, 9, 7, 3])
    graph = gs.Graph(inputs=[features], opset=17)
    (nchw,) = add_node(graph, "Transpose", [features],
                          [variable("nchw", np.float32, [1, 3, 9, 7])], perm=[0, 3, 1, 2])
    crops = add_crop_and_resize(graph, nchw, const("rois", rois), crop, crop, "crops")
    (doubled,) = add_node(graph, "Mul", [crops, const("two", 2.0)],
                             [variable("doubled", np.float32, list(crops.shape))])
    graph.outputs = [doubled]
    onnx.save(gs.export_onnx(graph), str(path))


def test_crop_and_resize_through_reference_runner(tmp_path: Path) -> None:
    rois = np.array([[[0.1, 0.2, 0.9, 0.7], [0.0, 0.0, 1.0, 1.0], [0.5, -0.2, 1.3, 0.4],
                      [0.6, 0.6, 0.2, 0.3]]], np.float32)  # inside, whole, outside, flipped
    crop_graph(tmp_path / "crop.onnx", rois, 5)
    features = np.random.default_rng(0).normal(size=(1, 9, 7, 3)).astype(np.float32)
    (doubled,) = ReferenceRunner(tmp_path / "crop.onnx", detector=False).infer(features).values()
    assert doubled.shape == (1, 4, 3, 5, 5)
    expected = reference_plugins.crop_and_resize(features.transpose(0, 3, 1, 2), rois, 5, 5)
    np.testing.assert_array_equal(doubled, 2 * expected)
    if have_tensorflow():
        import tensorflow as tf

        tf_crops = tf.image.crop_and_resize(features, rois[0], [0] * 4, [5, 5]).numpy()
        np.testing.assert_allclose(doubled[0] / 2, tf_crops.transpose(0, 3, 1, 2), atol=1e-6)


def test_cap_per_class() -> None:
    """TFOD's max_detections_per_class after EfficientNMS_TRT (whose outputs are sorted by score
    and zero-filled): each class keeps its best 2, then the best 3 remain, in order."""
    import onnxruntime as ort

    from tfod_trt.convert.graph_edits import variable
    from tfod_trt.convert.postprocess import cap_per_class

    shapes = {"num_detections": [2, 1], "detection_boxes": [2, 8, 4],
              "detection_scores": [2, 8], "detection_classes": [2, 8]}
    dtypes = {"num_detections": np.int32, "detection_classes": np.int32}
    inputs = [variable(name, dtypes.get(name, np.float32), shape)
              for name, shape in shapes.items()]
    graph = gs.Graph(inputs=list(inputs), opset=17)
    graph.outputs = cap_per_class(graph, inputs, num_classes=3, max_per_class=2, keep=3)
    session = ort.InferenceSession(gs.export_onnx(graph).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    scores = np.float32([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0, 0], [0.3, 0, 0, 0, 0, 0, 0, 0]])
    classes = np.int32([[1, 1, 1, 0, 0, 2, 0, 0], [2, 0, 0, 0, 0, 0, 0, 0]])
    boxes = np.broadcast_to(scores[..., None], (2, 8, 4)).astype(np.float32)
    num, out_boxes, out_scores, out_classes = session.run(None, {
        "uncapped_num_detections": np.int32([[6], [1]]), "uncapped_detection_boxes": boxes,
        "uncapped_detection_scores": scores, "uncapped_detection_classes": classes})
    np.testing.assert_array_equal(num, [[3], [1]])
    np.testing.assert_array_equal(out_scores, np.float32([[0.9, 0.8, 0.6], [0.3, 0, 0]]))
    np.testing.assert_array_equal(out_classes, [[1, 1, 0], [2, 0, 0]])
    np.testing.assert_array_equal(out_boxes[..., 0], out_scores)


def test_true_image_shape_default(tmp_path: Path) -> None:
    """The input is there by default where padding can occur (keep_aspect_ratio), not for
    fixed_shape; --no_true_image_shape turns it off (SSD: tests/test_create_onnx.py)."""
    keep = load_pipeline_config(zoo_config(FIXTURE_MODELS[CI_MODEL][0]))
    fixed = tmp_path / "fixed.config"
    fixed.write_text(pipeline_config_text(replace(ARCHITECTURES["faster_rcnn_resnet50_v1_640"],
                                                  image_resizer=FixedShape(1024, 1024))))
    check_true_image_shape_defaults(keep, load_pipeline_config(fixed))


def test_detection_sets_pair_swapped_near_ties_and_nothing_else() -> None:
    """The set comparison takes two near-tied detections in swapped order, and catches a
    changed class, a moved box and a missing detection."""
    boxes = np.float32([[[0, 0, 1, 1], [0.5, 0.5, 1, 1], [0, 0, 0, 0]]])
    first = {"num_detections": np.int32([[2]]), "detection_boxes": boxes,
             "detection_scores": np.float32([[0.500001, 0.5, 0]]),
             "detection_classes": np.int32([[1, 2, 0]])}
    swapped = {**first, "detection_boxes": boxes[:, [1, 0, 2]],
               "detection_scores": np.float32([[0.5, 0.500001, 0]]),
               "detection_classes": np.int32([[2, 1, 0]])}
    assert unmatched_detections(first, swapped, atol=1e-5) == []
    other_class = {**swapped, "detection_classes": np.int32([[2, 3, 0]])}
    assert len(unmatched_detections(first, other_class, atol=1e-5)) == 2
    moved = {**swapped, "detection_boxes": swapped["detection_boxes"] + np.float32(1e-3)}
    assert len(unmatched_detections(first, moved, atol=1e-5)) == 4
    fewer = {**swapped, "num_detections": np.int32([[1]])}
    assert unmatched_detections(first, fewer, atol=1e-5) == [
        "image 0: first's detection 0 [1.0, 0.0, 0.0, 1.0, 1.0, 0.5000010132789612] has no partner"]
