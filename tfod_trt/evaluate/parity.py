"""Detection matching and the SavedModel-vs-ONNX parity check behind `create_onnx.py --validate`.

Both sides see the same preprocessed image (the network input size, pixels 0..255), so the
check measures the conversion and nothing else: TFOD's resize of an image that already has the
network size is the identity. Faster R-CNN runs TF's frozen serving graph with its resize loop
bypassed (faster_rcnn.tf_reference; also right for keep_aspect_ratio min < max, where the resize
would not be the identity), fed the images' true shapes where the graph takes them, and the
report adds the first-stage proposals, and for Mask R-CNN how far the masks of the matched
detections agree (mask_agreement.py). An SSD graph with the `true_image_shape` input is checked
the same way (tf_graph.ssd_reference), TF fed the same true shapes as the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tfod_trt.config.pipeline_config import FASTER_RCNN_BOX_SCALES
from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.convert import faster_rcnn, tf_graph
from tfod_trt.detect.batch import box_frame, run_batch
from tfod_trt.detect.results import batch_results
from tfod_trt.detections import Detections, split_batch
from tfod_trt.evaluate.mask_agreement import MaskAgreement
from tfod_trt.evaluate.matching import (
    SCORE_FLOOR,
    MatchResult,
    match_detections,
    match_pairs,
    match_result,
)
from tfod_trt.io.batcher import Batch, ImageBatcher
from tfod_trt.io.images import load_image
from tfod_trt.io.resize import preprocess
from tfod_trt.metadata import read_metadata, static_batch_size
from tfod_trt.reference.runner import ReferenceRunner
from tfod_trt.reference.tensorflow import TensorFlowRunner

# (min IoU, max |score diff|, min matched rate) of a detection pair, per meta-architecture
TOLERANCES = {"ssd": (0.99, 1e-3, 0.99), "faster_rcnn": (0.98, 2e-3, 0.98)}
PROPOSAL_MIN_IOU = 0.98
DYNAMIC_VALIDATION_BATCH = 2  # --validate runs a dynamic-batch graph on batches of two images


@dataclass
class ValidationReport:
    """What `--validate` prints; `passed` decides the exit code."""

    images: int = 0
    detections: MatchResult = field(default_factory=MatchResult)
    max_box_diff: float = 0.0
    max_raw_score_diff: float = 0.0
    min_rate: float = 0.99
    skipped: list = field(default_factory=list)
    proposals: MatchResult | None = None  # Faster R-CNN: TF's proposals found among ours
    proposals_in_place: int = 0  # ... at the same rank, to 0.01 pixel
    max_second_stage_score_diff: float = 0.0  # class scores of the proposals in place
    second_stage_outliers: int = 0  # proposals in place whose scores differ by more than allowed
    masks: MaskAgreement | None = None  # Mask R-CNN: the masks of the matched detections

    @property
    def passed(self) -> bool:
        masks_agree = self.masks is None or self.masks.passed
        return self.images > 0 and self.detections.rate >= self.min_rate and masks_agree

    def summary(self) -> str:
        d = self.detections
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"{verdict}: {d.matched}/{d.reference} SavedModel detections with score >= "
            f"{SCORE_FLOOR} matched by the ONNX graph ({100 * d.rate:.2f}%, need "
            f">= {100 * self.min_rate:.0f}%) on {self.images} images",
            f"  matched pairs: min IoU {d.min_iou:.5f}, max |score diff| {d.max_score_diff:.2e}; "
            f"{d.unmatched_test} ONNX detections without a partner",
        ]
        if self.proposals is None:
            lines.append(f"  raw head outputs before NMS: max |box diff| {self.max_box_diff:.2e}"
                         f", max |score diff| {self.max_raw_score_diff:.2e}")
        else:
            p = self.proposals
            lines += [
                f"  first stage: {p.matched}/{p.reference} TF proposals matched (IoU >= "
                f"{PROPOSAL_MIN_IOU}, min {p.min_iou:.5f}), {self.proposals_in_place} at the "
                f"same rank; RPN before NMS: max |box diff| {self.max_box_diff:.2e} px, max "
                f"|objectness diff| {self.max_raw_score_diff:.2e}",
                f"  second stage on the proposals in place: max |class score diff| "
                f"{self.max_second_stage_score_diff:.2e}, {self.second_stage_outliers} above the "
                "detection tolerance",
            ]
        if self.masks is not None:
            lines.append(self.masks.summary())
        lines += [f"  skipped {path}: {why}" for path, why in self.skipped]
        return "\n".join(lines)


def decode_like_plugin(deltas: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Center-size decoding of EfficientNMS_TRT (box_coding=1) -> corners."""
    y = deltas[..., 0] * anchors[..., 2] + anchors[..., 0]
    x = deltas[..., 1] * anchors[..., 3] + anchors[..., 1]
    h = anchors[..., 2] * np.exp(deltas[..., 2])
    w = anchors[..., 3] * np.exp(deltas[..., 3])
    return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)


def validate(
    saved_model: Path, onnx_path: Path, images: Path, max_images: int = 16,
    min_iou: float | None = None, max_score_diff: float | None = None,
    min_rate: float | None = None,
) -> ValidationReport:
    """Runs the SavedModel and the ONNX graph (CPU reference runtime) on the same images;
    unset tolerances take the meta-architecture's TOLERANCES."""
    meta = read_metadata(onnx_path)
    if not meta:
        raise ValueError(f"{onnx_path}: no create_onnx.py metadata in this ONNX file")
    two_stage = meta["meta_arch"] == "faster_rcnn"
    defaults = TOLERANCES[meta["meta_arch"]]
    min_iou, max_score_diff, min_rate = (
        default if value is None else value
        for value, default in zip((min_iou, max_score_diff, min_rate), defaults, strict=True))
    runner = ReferenceRunner(onnx_path, extra_outputs=TWO_STAGE_OUTPUTS if two_stage else (
        "box_deltas", "class_logits"))
    clipped = bool(meta.get("true_image_shape"))  # TF must clip to the same true images
    if two_stage:
        reference = _two_stage_reference(saved_model, meta)
    elif clipped:
        reference = _ssd_reference(saved_model, meta)
    else:  # the graph clips to its whole input, as TF does on an image of that size
        infer = TensorFlowRunner(saved_model).infer

        def reference(images: np.ndarray, true_shapes: None = None) -> dict[str, np.ndarray]:
            return infer(images)
    batcher = ImageBatcher(
        images, Preprocessor.from_dict(meta["preprocessor"]),
        batch_size=static_batch_size(meta) or DYNAMIC_VALIDATION_BATCH,
        layout=meta["input_format"], max_images=max_images,
    )
    report = ValidationReport(min_rate=min_rate, proposals=MatchResult() if two_stage else None,
                              masks=MaskAgreement() if meta.get("masks") else None)
    for batch in tqdm(batcher, total=batcher.num_batches, desc="validate", unit="batch"):
        nhwc = batch.data if meta["input_format"] == "NHWC" else batch.data.transpose(0, 2, 3, 1)
        true_shape = batch.true_image_shape()
        ours = {key: value[: batch.count] for key, value in runner.infer(
            batch.data, true_shape if runner.needs_true_image_shape else None).items()}
        # TF clips to the true images where the graph does
        theirs = reference(nhwc[: batch.count],
                           true_shape[: batch.count] if runner.needs_true_image_shape else None)
        theirs["detection_classes"] = theirs["detection_classes"] - 1  # TFOD's label offset
        _compare_detections(report, theirs, ours, min_iou, max_score_diff)
        if two_stage:
            _compare_two_stage(report, runner, ours, theirs, meta, max_score_diff)
        else:
            _compare_ssd_heads(report, runner, ours, theirs, meta)
        report.images += batch.count
    report.skipped = list(batcher.skipped)
    return report


def _compare_detections(report: ValidationReport, theirs: dict, ours: dict, min_iou: float,
                        max_score_diff: float) -> None:
    """Matches each image's detections (and compares the masks of the pairs, if any)."""
    for ref, test in zip(split_batch(theirs), split_batch(ours), strict=True):
        ref, test = ref.above(SCORE_FLOOR), test.above(SCORE_FLOOR)
        pairs = match_pairs(ref, test, min_iou, max_score_diff)
        report.detections.add(match_result(ref, test, pairs))
        if report.masks is not None:
            report.masks.add(ref, test, pairs)


def _nms_anchors(runner, index: int = -1) -> np.ndarray:
    """The anchors input of the graph's EfficientNMS_TRT nodes (the last one by default)."""
    return [n for n in runner.graph.nodes if n.op == "EfficientNMS_TRT"][index].inputs[2].values


def _max_diff(runner, what: str, ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs|; arrays of different shapes are a graph that does not match."""
    if ours.shape != theirs.shape:
        raise ValueError(
            f"{runner.path}: its {what} have shape {list(ours.shape)}, the SavedModel's "
            f"{list(theirs.shape)}; the ONNX graph does not match the SavedModel")
    return float(np.abs(ours - theirs).max())


def _compare_ssd_heads(report: ValidationReport, runner, ours: dict, theirs: dict,
                       meta: dict) -> None:
    raw_boxes = decode_like_plugin(ours["box_deltas"], _nms_anchors(runner))
    report.max_box_diff = max(report.max_box_diff, _max_diff(
        runner, "raw boxes", raw_boxes, theirs["raw_detection_boxes"]))
    tf_scores = theirs["raw_detection_scores"][..., -meta["num_classes"]:]
    our_scores = 1 / (1 + np.exp(-ours["class_logits"].astype(np.float64)))
    report.max_raw_score_diff = max(report.max_raw_score_diff, _max_diff(
        runner, "raw class scores", our_scores, tf_scores))


TWO_STAGE_OUTPUTS = ("rpn_objectness", "rpn_box_deltas", "proposals", "class_probabilities")


def _two_stage_reference(saved_model: Path, meta: dict):
    """faster_rcnn.tf_reference, fed the graph's pixels normalised as the graph does."""

    pre = meta["preprocessor"]
    return _normalising(faster_rcnn.tf_reference(Path(saved_model), pre["height"],
                                                 pre["width"]), meta)


def _ssd_reference(saved_model: Path, meta: dict):
    """tf_graph.ssd_reference (TF fed the true image shapes), fed the graph's pixels
    normalised as the graph does."""

    pre = meta["preprocessor"]
    return _normalising(tf_graph.ssd_reference(Path(saved_model), pre["height"], pre["width"]),
                        meta)


def _normalising(run, meta: dict):
    """run(normalised images, true shapes) -> the same on pixels 0..255, normalised with the
    graph's scale and offset."""
    scale = np.asarray(meta["normalization"]["scale"], np.float32)
    offset = np.asarray(meta["normalization"]["offset"], np.float32)
    return lambda images, true_shapes=None: run(images.astype(np.float32) * scale + offset,
                                                true_shapes)


def _compare_two_stage(report: ValidationReport, runner, ours: dict, theirs: dict,
                       meta: dict, max_score_diff: float) -> None:
    """RPN heads before NMS, proposals (as sets and by rank), second-stage scores. A proposal
    on the image edge can differ a lot: tf.image.crop_and_resize (and the plugin) read 0 for the
    crop's last row when rounding puts it past the map, so a 1e-3 px shift can flip that row."""

    anchors = _nms_anchors(runner, 0)
    tf_deltas = theirs["rpn_encodings"].reshape(theirs["rpn_encodings"].shape[0], -1, 4)
    tf_boxes = decode_like_plugin(tf_deltas / np.float32(FASTER_RCNN_BOX_SCALES), anchors)
    report.max_box_diff = max(report.max_box_diff, _max_diff(
        runner, "first-stage boxes", decode_like_plugin(ours["rpn_box_deltas"], anchors),
        tf_boxes))
    logits = theirs["rpn_logits"].astype(np.float64)
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    tf_objectness = exp / exp.sum(-1, keepdims=True)
    report.max_raw_score_diff = max(report.max_raw_score_diff, _max_diff(
        runner, "objectness scores", ours["rpn_objectness"], tf_objectness))

    pre = meta["preprocessor"]
    window = np.float32([pre["height"], pre["width"]] * 2)
    for tf_rois, our_rois, tf_scores, our_scores in zip(
            theirs["proposals"], ours["proposals"] * window, theirs["raw_detection_scores"],
            ours["class_probabilities"], strict=True):
        tf_kept = tf_rois[real_proposals(tf_rois)]
        flat = np.zeros(len(tf_rois))
        report.proposals.add(match_detections(
            Detections(tf_kept, flat[: len(tf_kept)], flat[: len(tf_kept)]),
            Detections(our_rois, flat, flat), PROPOSAL_MIN_IOU, 0.0))
        in_place = proposals_in_place(tf_rois, our_rois)
        report.proposals_in_place += int(in_place.sum())
        if in_place.any():
            diff = np.abs(tf_scores[in_place] - our_scores[in_place]).max(axis=1)
            report.max_second_stage_score_diff = max(report.max_second_stage_score_diff,
                                                     float(diff.max()))
            report.second_stage_outliers += int((diff > max_score_diff).sum())


def real_proposals(tf_rois: np.ndarray) -> np.ndarray:
    """[R] mask of TF's proposals [R,4] that are not padding: TF drops the proposals that its
    clip window emptied and pads the list at the end with zero boxes."""
    return np.prod(tf_rois[:, 2:] - tf_rois[:, :2], axis=1) != 0


def proposals_in_place(tf_rois: np.ndarray, our_rois: np.ndarray) -> np.ndarray:
    """[R] mask of TF's real proposals that ours match at the same rank, to 0.01 pixel (the
    padding, zero on both sides, does not count)."""
    return real_proposals(tf_rois) & (np.abs(tf_rois - our_rois).max(axis=1) <= 0.01)


def match_on_original_photos(onnx_path: Path, saved_model: Path, photos: list[Path],
                             min_iou: float, max_score_diff: float) -> MatchResult:
    """TF on original (non-square) photos, with its own resize, padding and true image shapes,
    vs the ONNX graph (CPU reference runtime) on our padded input fed each photo's true image
    shape where it takes one: boxes compared in pixels of the original photo."""

    runner, tf_model = ReferenceRunner(onnx_path), TensorFlowRunner(saved_model)
    pre = Preprocessor.from_dict(runner.metadata["preprocessor"])
    result = MatchResult()
    for photo in photos:
        image = load_image(photo)
        padded, scale = preprocess(image, pre)
        data = padded.transpose(2, 0, 1) if runner.metadata["input_format"] == "NCHW" else padded
        batch = Batch(data[None], [photo], [scale])
        (found,) = batch_results(run_batch(runner, batch), batch, 0, 0.0,
                                       box_frame(runner))
        theirs = tf_model.infer(image[None].astype(np.float32))
        theirs["detection_classes"] = theirs["detection_classes"] - 1
        ref = split_batch(theirs)[0]  # normalised to the true image, as TFOD exports
        ref = Detections(scale.to_pixels(ref.boxes, "true_image"), ref.scores, ref.classes)
        ours = Detections(found.boxes, found.scores, found.classes)
        result.add(match_detections(ref.above(SCORE_FLOOR), ours.above(SCORE_FLOOR), min_iou,
                                    max_score_diff))
    return result
