"""EfficientDet (TFOD's SSD with an EfficientNet + BiFPN feature extractor) through
create_onnx.py: the graph contract, parity with the SavedModel on photos (D0 here, D1..D7 with
--run-slow), the keep_aspect_ratio padding against the original photos, and the config check of
its backbone."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from fixtures import FIXTURE_MODELS, converted_onnx, exported_model

from tfod_trt.config.pipeline_config import load_pipeline_config
from tfod_trt.evaluate.parity import TOLERANCES, match_on_original_photos, validate
from tfod_trt.io.images import find_images, load_image
from tfod_trt.metadata import read_metadata

CI_MODEL = "ssd_efficientdet_d0"
SLOW_MODELS = [f"ssd_efficientdet_d{d}" for d in range(1, 8)]
CLASSES = int(FIXTURE_MODELS[CI_MODEL][1][1])  # the fixture recipe's --num_classes
# D0 at 512x512: 9 anchors (3 scales x 3 aspect ratios) per cell of levels 3..7.
D0_ANCHORS = 9 * (64 * 64 + 32 * 32 + 16 * 16 + 8 * 8 + 4 * 4)
D0_SQUEEZE_EXCITATIONS = 16  # EfficientNet-b0's 16 MBConv blocks each have one


def ops(model: onnx.ModelProto, op: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == op]


def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def dims(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in value.type.tensor_type.shape.dim]


def test_graph_contract() -> None:
    model = onnx.load(str(converted_onnx(CI_MODEL)))
    assert [(i.name, dims(i)) for i in model.graph.input] == [
        ("input_tensor", [1, 512, 512, 3]), ("true_image_shape", [1, 2])]
    assert [(o.name, dims(o)) for o in model.graph.output] == [
        ("num_detections", [1, 1]), ("detection_boxes", [1, 100, 4]),
        ("detection_scores", [1, 100]), ("detection_classes", [1, 100])]
    (nms,) = ops(model, "EfficientNMS_TRT")
    settings = attrs(nms)
    assert settings["iou_threshold"] == pytest.approx(0.5)  # EfficientDet's, not SSD's 0.6
    assert settings["score_threshold"] == pytest.approx(1e-8)
    assert (settings["score_activation"], settings["box_coding"], settings["background_class"]) \
        == (1, 1, -1)
    anchors = next(t for t in model.graph.initializer if t.name == nms.input[2])
    assert list(anchors.dims) == [1, D0_ANCHORS, 4]
    assert settings["max_output_boxes"] == 100  # per class (per-class NMS), then the total
    shapes = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    # no background column to drop: the class logits are the head's own, one per class; the
    # plugin takes each class of each image as a segment of its own
    assert dims(shapes["class_logits"]) == [1, D0_ANCHORS, CLASSES]
    assert dims(shapes[nms.input[1]]) == [CLASSES, D0_ANCHORS, 1]


def test_fixture_fuses_every_bifpn_input() -> None:
    """The fixture recipe's BiFPN fusion weights (tools/make_tfod_model.py) are positive, as
    trained ones are: each weighted fusion (a MatMul by its normalised weights) uses every
    input, unequally."""
    model = onnx.load(str(converted_onnx(CI_MODEL)))
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    fusions = [constants[n.input[1]] for n in ops(model, "MatMul") if "/combine/" in n.name]
    assert len(fusions) == 8 * 3  # D0: 3 BiFPN layers of 8 fusion nodes
    for weights in fusions:
        assert (weights > 0.1).all() and weights.sum() == pytest.approx(1.0, abs=1e-3)
        assert weights.max() - weights.min() > 1e-3


def test_fixture_is_of_the_current_recipe() -> None:
    """The cached D0 fixture comes from the recipe with the swish measures (RECIPE_TAGS in
    fixtures.py): its squeeze-and-excitation kernels are He-normal x0.1. A graph converted from
    an older recipe's model has them x1."""
    import numpy as np

    model = onnx.load(str(converted_onnx(CI_MODEL)))
    constants = {t.name: t for t in model.graph.initializer}
    gains = []
    for node in ops(model, "Conv"):
        if "/se_reduce_conv2d/" in node.name or "/se_expand_conv2d/" in node.name:
            kernel = onnx.numpy_helper.to_array(constants[node.input[1]]).astype(np.float64)
            gains.append(kernel.std() / np.sqrt(2.0 / np.prod(kernel.shape[1:])))
    assert len(gains) == 2 * D0_SQUEEZE_EXCITATIONS
    assert 0.05 < np.median(gains) < 0.2, np.median(gains)


def test_fixture_answers_each_photo(coco_dir: Path) -> None:
    """The fixture recipe's network answers each photo its own way, with a spread like the other
    SSD fixtures' and no saturated scores. Measured on 8 photos: with He-normal fusion weights
    every logit map was the same (correlation 1.000); with positive ones but no swish measures,
    the logit std was 0.32-0.97 (and 5.4, scores of exactly 1, on another photo)."""
    import numpy as np

    from tfod_trt.config.preprocessor import Preprocessor
    from tfod_trt.io.resize import load_preprocessed
    from tfod_trt.reference.runner import ReferenceRunner

    runner = ReferenceRunner(converted_onnx(CI_MODEL), extra_outputs=("class_logits",))
    whole = np.array([[512, 512]], np.float32)  # stretched photos: no padding to compare
    logits = np.array([
        runner.infer(load_preprocessed(photo, Preprocessor.fixed_shape(512, 512))[0][None],
                     whole)["class_logits"].ravel()
        for photo in find_images(coco_dir / "images")[:8]])
    spread = logits.std(axis=1)
    assert (spread > 1.0).all() and (spread < 4.0).all(), spread
    assert logits.max() < 15.0  # sigmoid(15) < 1 in float32: no ties at 1.0
    correlations = np.corrcoef(logits)[np.triu_indices(len(logits), 1)]
    assert correlations.max() < 0.9, correlations.max()


def test_squeeze_excitation_means_are_reduce_means() -> None:
    """ONNX Runtime's GlobalAveragePool sums 65,536 values per channel in one float32 sum; the
    graph has ReduceMean instead (one reduction layer in TensorRT either way)."""
    model = onnx.load(str(converted_onnx(CI_MODEL)))
    assert not ops(model, "GlobalAveragePool")
    means = ops(model, "ReduceMean")
    assert len(means) == D0_SQUEEZE_EXCITATIONS
    assert all(attrs(n) == {"axes": [2, 3], "keepdims": 1} for n in means)


@pytest.mark.parametrize("opset", [17, 18])  # axes: an attribute, then an input
def test_precise_global_means(opset: int) -> None:
    """The rewrite on its own, in ONNX Runtime at both opsets: each channel's mean of a 256x256
    map within 2e-6 of float64's (ONNX Runtime's GlobalAveragePool was 8e-6 off here)."""
    import numpy as np
    import onnx_graphsurgeon as gs
    import onnxruntime

    from tfod_trt.convert.graph_edits import add_node, precise_global_means, variable

    maps = np.random.default_rng(0).normal(0.3, 0.5, (1, 32, 256, 256)).astype(np.float32)
    features = variable("features", np.float32, list(maps.shape))
    graph = gs.Graph(inputs=[features], opset=opset)
    graph.outputs = add_node(graph, "GlobalAveragePool", [features],
                             [variable("means", np.float32, [1, 32, 1, 1])])
    precise_global_means(graph, opset)
    assert [n.op for n in graph.nodes] == ["ReduceMean"]
    session = onnxruntime.InferenceSession(gs.export_onnx(graph).SerializeToString())
    (means,) = session.run(None, {"features": maps})
    exact = maps.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(means, exact, rtol=2e-6)


def test_metadata() -> None:
    meta = read_metadata(converted_onnx(CI_MODEL))
    assert meta["feature_extractor"] == "ssd_efficientnet-b0_bifpn_keras"
    assert meta["num_classes"] == CLASSES and meta["class_offset"] == 0
    assert meta["true_image_shape"] == "true_image_shape" and meta["box_frame"] == "true_image"
    pre = meta["preprocessor"]
    assert (pre["kind"], pre["min_dimension"], pre["max_dimension"]) == (
        "keep_aspect_ratio", 512, 512)
    assert pre["pad_value"] == pytest.approx([123.675, 116.28, 103.53])  # ImageNet mean
    # EfficientNet's (x / 255 - mean) / std as x * scale + offset
    assert meta["normalization"]["scale"] == pytest.approx([1 / 58.395, 1 / 57.12, 1 / 57.375])
    assert meta["normalization"]["offset"] == pytest.approx(
        [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225])


def check_parity(name: str, onnx_path: Path, images: Path, count: int = 16) -> None:
    report = validate(exported_model(name) / "saved_model", onnx_path, images,
                      max_images=count)
    print(name, report.summary())
    assert report.images == count
    # a meaningful number of detections (the D0 fixture: 1600 of score >= 0.01 on 16 photos,
    # max_total_detections on each)
    assert report.detections.reference >= count * 50
    assert report.detections.rate >= 0.99
    assert report.detections.max_score_diff <= 1e-3 and report.detections.min_iou >= 0.99
    assert report.max_box_diff <= 1e-3 and report.max_raw_score_diff <= 1e-3


def test_parity_with_saved_model(coco_dir: Path) -> None:
    check_parity(CI_MODEL, converted_onnx(CI_MODEL), coco_dir / "images")


@pytest.mark.slow
def test_parity_batch2_nchw(coco_dir: Path) -> None:
    check_parity(CI_MODEL, converted_onnx(CI_MODEL, 2, "NCHW"), coco_dir / "images")


def test_against_original_photos(coco_dir: Path) -> None:
    """TF on each original photo (its own resize and padding) against the graph fed the
    resized, padded photo and its true image shape."""
    photos = [p for p in find_images(coco_dir / "images")[:12]
              if len(set(load_image(p).shape[:2])) == 2][:6]  # non-square: padding occurs
    assert len(photos) >= 4
    min_iou, max_score_diff, _ = TOLERANCES["ssd"]
    result = match_on_original_photos(converted_onnx(CI_MODEL),
                                      exported_model(CI_MODEL) / "saved_model", photos,
                                      min_iou, max_score_diff)
    print(f"{CI_MODEL} on {len(photos)} original photos: {result.matched}/{result.reference} "
          f"matched, min IoU {result.min_iou:.5f}, max |score diff| "
          f"{result.max_score_diff:.2e}")
    assert result.reference >= len(photos) * 50  # the D0 fixture: 600 on 6 photos
    assert result.rate >= 0.99
    assert result.min_iou >= 0.99 and result.max_score_diff <= 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_MODELS)
def test_every_efficientdet(name: str, coco_dir: Path) -> None:
    """D1..D7 built from the zoo's configs (or the written ones), converted and validated."""
    config = load_pipeline_config(exported_model(name) / "pipeline.config")
    assert config.feature_extractor.startswith("ssd_efficientnet-b")
    check_parity(name, converted_onnx(name), coco_dir / "images",
                 count=16 if config.preprocessor.height <= 1024 else 8)
