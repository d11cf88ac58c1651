"""Mask R-CNN through create_onnx.py: the configs (the zoo's Inception-ResNet v2 and the presets),
the graph contract with its fourth output detection_masks, parity of boxes and masks with the
SavedModel on photos, and configs that do not belong to the SavedModel."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from fixtures import ConfigSource, config_sources, converted_onnx, exported_model, written_config
from test_create_onnx import no_tf2onnx

import create_onnx
from tfod_trt.config.pipeline_config import (
    MASK_PREDICTOR,
    MOBILENET_NORM,
    MaskConfig,
    TwoStageConfig,
    load_pipeline_config,
)
from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.config.text_proto import parse_text_proto
from tfod_trt.convert.config_check import ConfigMismatch, check_masks
from tfod_trt.evaluate.mask_agreement import MaskAgreement, binary_mask_iou
from tfod_trt.evaluate.parity import ValidationReport, _compare_detections, validate
from tfod_trt.io.batcher import ImageBatcher
from tfod_trt.metadata import read_metadata
from tfod_trt.reference.runner import ReferenceRunner
from tfod_trt.reference.tensorflow import TensorFlowRunner

CI_MODEL = "mask_rcnn_r50_320"
IRV2_ZOO = "mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config"


def mask_predictor(path: Path):
    """The config's mask_rcnn_box_predictor block, as text-format fields."""
    root = parse_text_proto(path.read_text(), str(path))
    return root.get1(f"model.faster_rcnn.{MASK_PREDICTOR}")


@pytest.mark.parametrize("source", config_sources([IRV2_ZOO]), ids=str)
def test_inception_resnet_v2_config(source: ConfigSource) -> None:
    """The zoo's Mask R-CNN config (where present) and the config written for its preset."""
    config = load_pipeline_config(source.path())
    assert (config.meta_arch, config.feature_extractor, config.num_classes) == (
        "faster_rcnn", "faster_rcnn_inception_resnet_v2_keras", 90)
    assert config.masks == MaskConfig(height=33, width=33)
    pre = config.preprocessor
    assert (pre.kind, pre.height, pre.width) == ("fixed_shape", 1024, 1024)
    assert config.two_stage == TwoStageConfig(
        score_threshold=0.0, iou_threshold=0.7, max_proposals=300, initial_crop_size=17,
        maxpool_kernel_size=1, maxpool_stride=1, matmul_crop=False)
    assert (config.score_threshold, config.iou_threshold) == (0.0, 0.6)
    assert (config.max_detections_per_class, config.max_total_detections) == (100, 100)
    assert config.score_converter == "SOFTMAX" and config.normalization == MOBILENET_NORM
    predictor = mask_predictor(source.path())
    assert predictor.get1("mask_prediction_conv_depth") == 0  # TFOD derives it
    assert predictor.get1("mask_prediction_num_conv_layers") == 4
    assert predictor.get1("predict_instance_masks") is True
    assert not predictor.get1("share_box_across_classes", False)
    conv = predictor.get1("conv_hyperparams")  # no BatchNorm, TFOD's default activation
    assert "batch_norm" not in conv and "activation" not in conv


def test_small_preset_config() -> None:
    """The R50 preset sized for CPU tests: what keeps it small, and the mask head."""
    path = written_config(CI_MODEL)
    config = load_pipeline_config(path)
    assert config.masks == MaskConfig(height=21, width=21)
    assert config.feature_extractor == "faster_rcnn_resnet50_keras"
    assert (config.preprocessor.kind, config.preprocessor.height) == ("keep_aspect_ratio", 320)
    assert (config.two_stage.max_proposals, config.max_total_detections) == (64, 32)
    predictor = mask_predictor(path)
    assert (predictor.get1("mask_prediction_conv_depth"),
            predictor.get1("mask_prediction_num_conv_layers")) == (32, 2)


def test_graph_contract() -> None:
    """Faster R-CNN's outputs plus detection_masks [B,K,h,w] float32, the metadata's masks
    entry, and the mask stage fed the detections as output."""
    model = onnx.load(str(converted_onnx(CI_MODEL)))
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in model.graph.output}
    assert dims == {"num_detections": [1, 1], "detection_boxes": [1, 32, 4],
                    "detection_scores": [1, 32], "detection_classes": [1, 32],
                    "detection_masks": [1, 32, 21, 21]}
    (masks,) = [o for o in model.graph.output if o.name == "detection_masks"]
    assert masks.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = read_metadata(model)
    assert meta["masks"] == {"output": "detection_masks", "height": 21, "width": 21}
    producer = {out: node for node in model.graph.node for out in node.output}
    # the proposals' crop and the detections' crop read the same feature map; the second crops
    # at the detection boxes as output (kept inside the map as the matmul crop needs)
    first, second = [n for n in model.graph.node if n.op_type == "CropAndResize"]
    assert first.input[0] == second.input[0]
    edge = producer[second.input[1]]
    assert edge.op_type == "Min" and edge.input[0] == "detection_boxes"
    sigmoid = producer["detection_masks"]
    assert sigmoid.op_type == "Sigmoid"
    gather = producer[producer[sigmoid.input[0]].input[0]]
    assert gather.op_type == "GatherElements"
    assert onnx.helper.get_attribute_value(gather.attribute[0]) == 2  # the class axis


def check_parity(name: str, coco_dir: Path, images: int = 8) -> None:
    """create_onnx.py --validate's check: boxes as Faster R-CNN's, and the masks of the matched
    detections binarised above 0.5 with a mean IoU >= 0.99."""
    report = validate(exported_model(name) / "saved_model", converted_onnx(name),
                      coco_dir / "images", max_images=images)
    print(name, report.summary())
    assert report.passed and report.images == images
    assert report.detections.reference >= images * 20 and report.detections.rate >= 0.99
    assert report.masks.pairs == report.detections.matched
    assert report.masks.mean_iou >= 0.99
    assert "masks of the" in report.summary()


def test_parity_with_saved_model(coco_dir: Path) -> None:
    check_parity(CI_MODEL, coco_dir)


@pytest.mark.slow
def test_inception_resnet_v2_1024_parity(coco_dir: Path) -> None:
    """The zoo's Mask R-CNN (4 classes): 300 proposals of 17x17 crops, 100 detections with
    33x33 masks, the native crop."""
    check_parity("mask_rcnn_irv2_1024", coco_dir, images=4)


def test_saved_model_masks_are_not_degenerate(coco_dir: Path) -> None:
    """The fixture's mask head has random weights: about half of each mask is foreground,
    masks differ between detections, and few pixels sit near the 0.5 threshold."""
    saved_model = exported_model(CI_MODEL) / "saved_model"
    pre = Preprocessor.from_dict(read_metadata(converted_onnx(CI_MODEL))["preprocessor"])
    batch = next(iter(ImageBatcher(coco_dir / "images", pre, batch_size=1, max_images=1)))
    masks = TensorFlowRunner(saved_model).infer(batch.data)["detection_masks"][0]
    assert masks.shape == (32, 21, 21)
    foreground = masks >= 0.5
    assert 0.2 < foreground.mean() < 0.8
    assert len({mask.tobytes() for mask in foreground}) > 16
    assert (np.abs(masks - 0.5) < 0.01).mean() < 0.02


@pytest.mark.slow  # a second conversion of the fixture (about a minute, 9 GB at its peak)
def test_dynamic_batch_masks(coco_dir: Path) -> None:
    """create_onnx.py --batch_size -1: a batch of two gives each image's masks of the static
    graph."""
    static = ReferenceRunner(converted_onnx(CI_MODEL))
    dynamic = ReferenceRunner(converted_onnx(CI_MODEL, -1))
    assert [d.dim_param or d.dim_value for d in onnx.load(
        str(dynamic.path), load_external_data=False).graph.output[-1].type.tensor_type.shape.dim
            ] == ["batch", 32, 21, 21]
    pre = Preprocessor.from_dict(static.metadata["preprocessor"])
    batch = next(iter(ImageBatcher(coco_dir / "images", pre, batch_size=2, max_images=2)))
    both = dynamic.infer(batch.data, batch.true_image_shape())
    for i in range(2):
        alone = static.infer(batch.data[i:i + 1], batch.true_image_shape()[i:i + 1])
        np.testing.assert_allclose(both["detection_masks"][i], alone["detection_masks"][0],
                                   atol=1e-6)
        np.testing.assert_array_equal(both["detection_classes"][i],
                                      alone["detection_classes"][0])


def test_config_without_masks_for_a_mask_saved_model(tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    """The Faster R-CNN form of the config (number_of_stages 2) with a Mask R-CNN SavedModel
    would drop the masks silently: refused before tf2onnx, naming both files."""
    model = exported_model(CI_MODEL)
    config = tmp_path / "pipeline.config"
    text = (model / "pipeline.config").read_text()
    assert "number_of_stages: 3" in text
    config.write_text(text.replace("number_of_stages: 3", "number_of_stages: 2"))
    no_tf2onnx(monkeypatch)
    code = create_onnx.main(["-p", str(config), "-m", str(model / "saved_model"),
                             "-o", str(tmp_path / "x.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "x.onnx").exists()
    assert (f"{config} says number_of_stages 2 (no masks) but {model / 'saved_model'} outputs "
            "detection_masks (Mask R-CNN); use the pipeline.config exported with this "
            "SavedModel") in err


@pytest.mark.parametrize("edit,found,words", [
    (None, None, "says number_of_stages: 3 (Mask R-CNN) but saved_model has no detection_masks "
                 "output"),
    (("mask_height: 21", "mask_height: 15"), (21, 21),
     "says mask_height: 15, mask_width: 21 but saved_model predicts masks of 21x21"),
])
def test_mask_config_mismatch(tmp_path: Path, edit, found, words: str) -> None:
    """check_masks: the config's masks against those the SavedModel predicts ((height, width),
    None for a SavedModel without detection_masks); the matching pair passes."""
    path = tmp_path / "pipeline.config"
    text = written_config(CI_MODEL).read_text()
    path.write_text(text.replace(*edit) if edit else text)
    with pytest.raises(ConfigMismatch, match=re.escape(words)):
        check_masks(load_pipeline_config(path), Path("saved_model"), found)
    check_masks(load_pipeline_config(written_config(CI_MODEL)), Path("saved_model"), (21, 21))


def test_binary_mask_iou() -> None:
    first = np.zeros((4, 4), np.float32)
    first[:2] = 0.9  # 8 pixels
    second = np.zeros((4, 4), np.float32)
    second[0] = 0.6
    second[1, :2] = 0.51
    second[1, 2:] = 0.5  # background, as TFOD binarises (> 0.5): 6 pixels, inside the first
    assert binary_mask_iou(first, second) == 6 / 8
    assert binary_mask_iou(np.zeros((3, 3)), np.full((3, 3), 0.5)) == 1.0  # both empty


def outputs(boxes: list, masks: np.ndarray) -> dict[str, np.ndarray]:
    """One image's graph outputs: the boxes of class 0 with falling scores, and their masks."""
    count = len(boxes)
    return {"num_detections": np.int32([[count]]), "detection_boxes": np.float32([boxes]),
            "detection_scores": np.float32([np.linspace(0.9, 0.5, count)]),
            "detection_classes": np.zeros((1, count), np.int32),
            "detection_masks": masks[None].astype(np.float32)}


def test_masks_are_compared_on_matched_pairs() -> None:
    """--validate compares the masks of the detections it matched, whatever their order; masks
    that disagree fail it, a side without masks cannot be compared."""
    rng = np.random.default_rng(0)
    masks = rng.uniform(size=(2, 5, 5))
    boxes = [[0.1, 0.1, 0.5, 0.5], [0.4, 0.4, 0.9, 0.8]]
    theirs = outputs(boxes, masks)
    swapped = outputs(boxes[::-1], masks[::-1])
    swapped["detection_scores"] = theirs["detection_scores"][:, ::-1]
    report = ValidationReport(images=1, masks=MaskAgreement())
    _compare_detections(report, theirs, swapped, 0.99, 1e-3)
    assert (report.detections.matched, report.masks.pairs, report.masks.mean_iou) == (2, 2, 1.0)
    assert report.passed

    inverted = outputs(boxes, np.stack([masks[0], 1 - masks[1]]))
    report = ValidationReport(images=1, masks=MaskAgreement())
    _compare_detections(report, theirs, inverted, 0.99, 1e-3)
    assert report.detections.rate == 1.0 and report.masks.mean_iou == pytest.approx(0.5)
    assert report.masks.min_iou == 0.0 and not report.passed
    assert "mean IoU 0.50000 (need >= 0.99)" in report.summary()
    assert report.summary().startswith("FAIL")

    without = {key: value for key, value in theirs.items() if key != "detection_masks"}
    with pytest.raises(ValueError, match="the ONNX graph gives no detection_masks"):
        _compare_detections(ValidationReport(masks=MaskAgreement()), theirs, without, 0.99, 1e-3)
