"""Hand-made cases for reference_plugins: one or more per rule of the EfficientNMS_TRT and
CropAndResize notes in docs/design.md.

Expected values are worked out by hand in the comments (or, for crop_and_resize, taken from
tf.image.crop_and_resize); none is produced by the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfod_trt.reference.plugins import crop_and_resize, efficient_nms

F32 = np.float32


def nms(boxes, scores, anchors=None, **params):
    """efficient_nms on lists, with defaults that the cases override."""
    params = {"score_threshold": 0.1, "iou_threshold": 0.5, "max_output_boxes": 4, **params}
    if anchors is not None:
        anchors = np.asarray(anchors, F32)
    return efficient_nms(np.asarray(boxes, F32), np.asarray(scores, F32), anchors, **params)


def stripe(n: int) -> list[float]:
    """Box n of a column of unit boxes that only touch (IoU 0 with each other)."""
    return [float(n), 0.0, n + 1.0, 1.0]


def stripes(count: int) -> list[list[float]]:
    return [stripe(n) for n in range(count)]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def check(result, num, boxes, scores, classes, image=0):
    """Compares image `image` of a result with the expected kept rows (the rest must be 0)."""
    num_out, boxes_out, scores_out, classes_out = result
    assert num_out.dtype == np.int32 and classes_out.dtype == np.int32
    assert boxes_out.dtype == np.float32 and scores_out.dtype == np.float32
    assert num_out[image, 0] == num
    m = boxes_out.shape[1]
    want_boxes = np.zeros((m, 4), F32)
    want_scores = np.zeros(m, F32)
    want_classes = np.zeros(m, np.int32)
    want_boxes[:num], want_scores[:num], want_classes[:num] = boxes, scores, classes
    np.testing.assert_allclose(boxes_out[image], want_boxes, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores_out[image], want_scores, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(classes_out[image], want_classes)


# ------------------------------------------------------------------ step 1: score test


def test_score_exactly_at_threshold_is_kept():
    below = np.nextafter(F32(0.3), F32(0))
    scores = [[[0.3], [below], [0.31]]]
    result = nms([stripes(3)], scores, score_threshold=0.3)
    check(result, 2, [stripe(2), stripe(0)], [0.31, 0.3], [0, 0])


def test_activation_tests_logits_against_logit_of_threshold():
    # logit(0.6) = ln(1.5) = 0.405: the raw 0.5 passes (it would fail against 0.6), 0.4 does not.
    scores = [[[0.5], [0.4]]]
    result = nms([stripes(2)], scores, score_threshold=0.6, score_activation=True)
    check(result, 1, [stripe(0)], [sigmoid(0.5)], [0])


def test_activation_sorts_raw_logits_and_writes_sigmoid():
    # sigmoid(20) and sigmoid(30) are both 1.0 in float32, yet the logit 30 ranks first;
    # logit(0.5) = 0, so the raw 0 is exactly at the threshold and kept; -0.5 is dropped.
    scores = [[[20.0], [30.0], [0.0], [-0.5]]]
    result = nms([stripes(4)], scores, score_threshold=0.5, score_activation=True)
    check(result, 3, [stripe(1), stripe(0), stripe(2)], [1.0, 1.0, 0.5], [0, 0, 0])


def test_background_class_is_excluded():
    scores = [[[0.9, 0.8, 0.7]]]  # one box, three classes; class 0 is background
    result = nms([[stripe(0)]], scores, background_class=0)
    check(result, 2, [stripe(0)] * 2, [0.8, 0.7], [1, 2])


# ------------------------------------------------------------------ step 2: sort and pool


def test_equal_scores_keep_lower_flat_index_first():
    # flat index n*C + c: (0,1)=1 and (1,0)=2 tie at 0.7, then (0,0)=0 and (1,1)=3 at 0.5.
    scores = [[[0.5, 0.7], [0.7, 0.5]]]
    result = nms([stripes(2)], scores)
    check(
        result, 4, [stripe(0), stripe(1), stripe(0), stripe(1)], [0.7, 0.7, 0.5, 0.5], [1, 0, 0, 1]
    )

    # The tie also decides who enters a full pool: of boxes 0 and 2 (both 0.5), box 0 does.
    result = nms([stripes(3)], [[[0.5], [0.9], [0.5]]], candidate_pool=2)
    check(result, 2, [stripe(1), stripe(0)], [0.9, 0.5], [0, 0])


def test_candidate_pool_takes_best_scores_before_nms():
    # Pool of 3: box 3 (0.95), box 0 (0.9), box 1 (0.8). Box 1 is box 0 again and is suppressed;
    # box 2 (0.7) is never a candidate, so only 2 boxes come out although 4 would fit.
    boxes = [stripe(0), stripe(0), stripe(2), stripe(3)]
    scores = [[[0.9], [0.8], [0.7], [0.95]]]
    check(nms([boxes], scores, candidate_pool=3), 2, [stripe(3), stripe(0)], [0.95, 0.9], [0, 0])
    check(nms([boxes], scores), 3, [stripe(3), stripe(0), stripe(2)], [0.95, 0.9, 0.7], [0, 0, 0])


def test_default_pool_drops_the_box_ranked_5001():
    count = 5001
    scores = (0.5 + np.arange(count) * 1e-4).astype(F32)  # box 0 is ranked last
    result = nms(
        [stripes(count)], scores.reshape(1, count, 1), max_output_boxes=count, iou_threshold=0.5
    )
    ranked = np.arange(count - 1, 0, -1)  # boxes 5000 .. 1
    check(result, count - 1, [stripe(n) for n in ranked], scores[ranked], np.zeros(count - 1))


# ------------------------------------------------------------------ step 3: decoding


def test_center_size_decoding_with_shared_and_per_image_anchors():
    # anchor (y, x, h, w) = (0.5, 0.5, 0.2, 0.4), deltas (0.5, -0.25, ln 2, 0):
    # y = 0.5*0.2 + 0.5 = 0.6, x = -0.25*0.4 + 0.5 = 0.4, h = 0.2*2 = 0.4, w = 0.4
    # -> corners [0.4, 0.2, 0.8, 0.6]. Zero deltas on (0.1, 0.9, 0.1, 0.1) -> [.05, .85, .15, .95].
    deltas = [[0.5, -0.25, math.log(2.0), 0.0], [0.0, 0.0, 0.0, 0.0]]
    anchors = [[0.5, 0.5, 0.2, 0.4], [0.1, 0.9, 0.1, 0.1]]
    scores = [[[0.9], [0.8]]] * 2
    want = [[0.4, 0.2, 0.8, 0.6], [0.05, 0.85, 0.15, 0.95]]
    result = nms([deltas] * 2, scores, [anchors], box_coding=1)
    for image in range(2):
        check(result, 2, want, [0.9, 0.8], [0, 0], image)

    # Per-image anchors: image 1 has them swapped. Row 0 on (0.1, 0.9, 0.1, 0.1):
    # y = 0.5*0.1 + 0.1 = 0.15, x = -0.25*0.1 + 0.9 = 0.875, h = 0.2, w = 0.1
    # -> [0.05, 0.825, 0.25, 0.925]; row 1 (zero deltas) on (0.5, 0.5, 0.2, 0.4) -> [.4, .3, .6, .7]
    result = nms([deltas] * 2, scores, [anchors, anchors[::-1]], box_coding=1)
    check(result, 2, want, [0.9, 0.8], [0, 0], image=0)
    swapped = [[0.05, 0.825, 0.25, 0.925], [0.4, 0.3, 0.6, 0.7]]
    check(result, 2, swapped, [0.9, 0.8], [0, 0], image=1)


def test_center_size_without_anchors_becomes_corners():
    result = nms([[[0.5, 0.5, 0.2, 0.4]]], [[[0.9]]], box_coding=1)
    check(result, 1, [[0.4, 0.3, 0.6, 0.7]], [0.9], [0])


def test_corner_coding_with_anchors_adds_them():
    anchors = [[[0.1, 0.2, 0.3, 0.4]]]
    result = nms([[[0.01, -0.02, 0.03, 0.04]]], [[[0.9]]], anchors)
    check(result, 1, [[0.11, 0.18, 0.33, 0.44]], [0.9], [0])


def test_corner_coding_with_anchors_orders_the_delta_first():
    # The kernel reorders the box before adding: (0.1, 0, -0.1, 0) becomes (-0.1, 0, 0.1, 0),
    # so the anchor [0.2, 0.2, 0.6, 0.6] grows to [0.1, 0.2, 0.7, 0.6] (not [0.3, 0.2, 0.5, 0.6]).
    result = nms([[[0.1, 0.0, -0.1, 0.0]]], [[[0.9]]], [[[0.2, 0.2, 0.6, 0.6]]])
    check(result, 1, [[0.1, 0.2, 0.7, 0.6]], [0.9], [0])


def test_no_clipping():
    result = nms([[[-0.5, -0.25, 1.5, 2.0]]], [[[0.9]]])
    check(result, 1, [[-0.5, -0.25, 1.5, 2.0]], [0.9], [0])


# ------------------------------------------------------------------ step 4: NMS


def test_iou_exactly_at_threshold_suppresses():
    # inter 1 x 0.5 = 0.5, union 1 + 0.5 - 0.5 = 1: IoU 0.5 (with the +1 convention it is 0.75).
    boxes = [[[0, 0, 1, 1], [0, 0, 1, 0.5]]]
    scores = [[[0.9], [0.8]]]
    check(nms(boxes, scores, iou_threshold=0.5), 1, [[0, 0, 1, 1]], [0.9], [0])
    just_above = float(np.nextafter(F32(0.5), F32(1)))
    check(nms(boxes, scores, iou_threshold=just_above), 2, boxes[0], [0.9, 0.8], [0, 0])


@pytest.mark.parametrize("flipped", [[1, 1, 0, 0], [0, 1, 1, 0], [1, 0, 0, 1]])
def test_iou_orders_corners_and_output_keeps_them(flipped):
    # The flipped box is [0, 0, 1, 1]: IoU 0.5 with [0, 0, 1, 0.5] as above.
    boxes = [[flipped, [0, 0, 1, 0.5]]]
    scores = [[[0.9], [0.8]]]
    check(nms(boxes, scores, iou_threshold=0.5), 1, [flipped], [0.9], [0])
    check(nms(boxes, scores, iou_threshold=0.6), 2, boxes[0], [0.9, 0.8], [0, 0])


def test_zero_area_boxes_have_iou_zero():
    point = [0.5, 0.5, 0.5, 0.5]
    line = [0.0, 0.5, 1.0, 0.5]
    boxes = [[point, point, line, line]]
    scores = [[[0.9], [0.8], [0.7], [0.6]]]
    result = nms(boxes, scores, iou_threshold=1e-6)
    check(result, 4, boxes[0], [0.9, 0.8, 0.7, 0.6], [0, 0, 0, 0])


def test_nms_is_per_class_unless_class_agnostic():
    # Box 1 overlaps box 0 with IoU 0.9. Sorted: (0, c0) 0.9, (1, c1) 0.8, (1, c0) 0.7.
    boxes = [[[0, 0, 1, 1], [0, 0, 1, 0.9]]]
    scores = [[[0.9, 0.0], [0.7, 0.8]]]
    per_class = nms(boxes, scores)
    check(per_class, 2, boxes[0], [0.9, 0.8], [0, 1])  # (1, c0) is suppressed by (0, c0)
    agnostic = nms(boxes, scores, class_agnostic=True)
    check(agnostic, 1, [[0, 0, 1, 1]], [0.9], [0])


def test_max_output_boxes_caps_the_result():
    scores = [[[0.1], [0.2], [0.3], [0.4], [0.5]]]
    result = nms([stripes(5)], scores, max_output_boxes=3)
    check(result, 3, [stripe(4), stripe(3), stripe(2)], [0.5, 0.4, 0.3], [0, 0, 0])


def test_outputs_are_zero_filled():
    boxes = [[[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]]] * 2
    scores = [[[0.05], [0.9]], [[0.05], [0.05]]]  # image 1 has no box over the threshold
    result = nms(boxes, scores, max_output_boxes=3)
    check(result, 1, [[0.5, 0.6, 0.7, 0.8]], [0.9], [0], image=0)
    check(result, 0, np.zeros((0, 4)), [], [], image=1)


# ------------------------------------------------------------------ box layouts and batches


def test_per_class_boxes():
    # One anchor, a box per class: [0,0,1,1] for class 0 and [0,0,1,0.5] for class 1 (IoU 0.5).
    boxes = [[[[0, 0, 1, 1], [0, 0, 1, 0.5]]]]
    scores = [[[0.9, 0.8]]]
    check(nms(boxes, scores), 2, boxes[0][0], [0.9, 0.8], [0, 1])
    check(nms(boxes, scores, class_agnostic=True), 1, [[0, 0, 1, 1]], [0.9], [0])


def test_shared_boxes_with_a_class_axis_of_one():
    boxes = [[[stripe(0)], [stripe(1)]]]  # [B, N, 1, 4]
    scores = [[[0.2, 0.9], [0.8, 0.3]]]
    check(
        nms(boxes, scores),
        4,
        [stripe(0), stripe(1), stripe(1), stripe(0)],
        [0.9, 0.8, 0.3, 0.2],
        [1, 0, 1, 0],
    )


def test_images_are_independent():
    # Image 0: two separate boxes. Image 1: two copies of one box, the second scoring higher.
    # The pool of 2 and the cap of 2 apply per image.
    boxes = [stripes(2), [stripe(5), stripe(5)]]
    scores = [[[0.9], [0.8]], [[0.2], [0.95]]]
    result = nms(boxes, scores, candidate_pool=2, max_output_boxes=2)
    check(result, 2, stripes(2), [0.9, 0.8], [0, 0], image=0)
    check(result, 1, [stripe(5)], [0.95], [0], image=1)


# ------------------------------------------------------------------ step 5: the dense path


def test_dense_path_emits_removed_elements_after_the_real_boxes():
    # Threshold 0.005 < 0.007: (0, c0) = 0.9 passes; the other three take -32768 and follow in
    # flat-index order (0, c1), (1, c0), (1, c1), kept because no box of their class overlaps.
    scores = [[[0.9, 0.001], [0.0, 0.002]]]
    result = nms([stripes(2)], scores, score_threshold=0.005)
    want_boxes = [stripe(0), stripe(0), stripe(1), stripe(1)]
    check(result, 4, want_boxes, [0.9, -32768, -32768, -32768], [0, 1, 0, 1])

    # At the floor itself the normal path removes them.
    check(nms([stripes(2)], scores, score_threshold=0.007), 1, [stripe(0)], [0.9], [0])


def test_dense_path_with_activation_emits_background_with_score_zero():
    # Threshold 0 under the sigmoid is dense; the background logit 5 becomes -32768 -> sigmoid 0.
    scores = [[[5.0, 1.0]]]
    result = nms(
        [[stripe(0)]], scores, score_threshold=0.0, score_activation=True, background_class=0
    )
    check(result, 2, [stripe(0), stripe(0)], [sigmoid(1.0), 0.0], [1, 0])


# ------------------------------------------------------------------ argument checks


@pytest.mark.parametrize(
    ("boxes_shape", "scores_shape", "anchors_shape", "params", "match"),
    [
        ((1, 2, 4), (1, 2), None, {}, "scores"),
        ((1, 2, 3), (1, 2, 3), None, {}, "boxes"),
        ((1, 3, 4), (1, 2, 3), None, {}, "boxes"),
        ((1, 2, 2, 4), (1, 2, 3), None, {}, "boxes"),
        ((1, 2, 4), (1, 2, 3), (2, 2, 4), {}, "anchors"),
        ((1, 2, 4), (1, 2, 3), (1, 2, 3), {}, "anchors"),
        ((1, 2, 4), (1, 2, 3), None, {"iou_threshold": 0.0}, "iou_threshold"),
        ((1, 2, 4), (1, 2, 3), None, {"score_threshold": -0.1}, "score_threshold"),
        ((1, 2, 4), (1, 2, 3), None, {"max_output_boxes": 0}, "max_output_boxes"),
        ((1, 2, 4), (1, 2, 3), None, {"candidate_pool": 0}, "candidate_pool"),
        ((1, 2, 4), (1, 2, 3), None, {"background_class": 3}, "background_class"),
        ((1, 2, 4), (1, 2, 3), None, {"box_coding": 2}, "box_coding"),
    ],
)
def test_nms_rejects_bad_arguments(boxes_shape, scores_shape, anchors_shape, params, match):
    anchors = None if anchors_shape is None else np.zeros(anchors_shape)
    with pytest.raises(ValueError, match=match):
        nms(np.zeros(boxes_shape), np.zeros(scores_shape), anchors, **params)


@pytest.mark.parametrize(
    ("features_shape", "rois_shape", "crop", "match"),
    [
        ((1, 2, 3), (1, 1, 4), (2, 2), "features"),
        ((1, 1, 3, 3), (1, 1, 5), (2, 2), "rois"),
        ((1, 1, 3, 3), (1, 1, 4, 2), (2, 2), "rois"),
        ((2, 1, 3, 3), (1, 1, 4), (2, 2), "rois"),
        ((1, 1, 3, 3), (1, 1, 4), (0, 2), "crop_height"),
        ((1, 1, 3, 3), (1, 1, 4), (2, 1.5), "crop_width"),
    ],
)
def test_crop_rejects_bad_arguments(features_shape, rois_shape, crop, match):
    with pytest.raises(ValueError, match=match):
        crop_and_resize(np.zeros(features_shape), np.zeros(rois_shape), *crop)


# ------------------------------------------------------------------ CropAndResize


def test_crop_bilinear_by_hand():
    image = np.array([[[[0, 1], [2, 3]]]], F32)  # [1, 1, 2, 2]
    whole = crop_and_resize(image, [[[0, 0, 1, 1]]], 3, 3)
    assert whole.shape == (1, 1, 1, 3, 3)
    np.testing.assert_allclose(whole[0, 0, 0], [[0, 0.5, 1], [1, 1.5, 2], [2, 2.5, 3]])

    center = crop_and_resize(image, [[[0, 0, 1, 1]]], 1, 1)  # samples (0.5, 0.5)
    np.testing.assert_allclose(center[0, 0, 0], [[1.5]])

    # y from -1 to 0: the first row lies outside the image and is 0; shape [B, R, 4, 1] rois.
    outside = crop_and_resize(image, [[[[-1], [0], [0], [1]]]], 2, 2)
    np.testing.assert_allclose(outside[0, 0, 0], [[0, 0], [0, 1]])


def test_crop_samples_its_own_image_and_every_channel():
    features = np.arange(4, dtype=F32).reshape(2, 2, 1, 1) * np.ones((1, 1, 3, 3), F32)
    rois = [[[0, 0, 1, 1]], [[0.2, 0.2, 0.8, 0.8]]]
    out = crop_and_resize(features, rois, 2, 2)
    assert out.shape == (2, 1, 2, 2, 2)
    np.testing.assert_array_equal(out[:, 0, :, 0, 0], [[0, 1], [2, 3]])


@pytest.fixture(scope="module")
def tf():
    return pytest.importorskip("tensorflow")


@pytest.mark.parametrize("crop", [(7, 5), (1, 1), (1, 4), (3, 1)])
@pytest.mark.parametrize("roi_axis", [False, True])
def test_crop_matches_tensorflow(tf, crop, roi_axis):
    rng = np.random.default_rng(sum(crop) + roi_axis)
    batch, channels, height, width, num_rois = 2, 3, 6, 9, 12
    features = rng.normal(size=(batch, channels, height, width)).astype(F32)
    rois = rng.uniform(-0.3, 1.3, size=(batch, num_rois, 4)).astype(F32)  # some flipped too
    rois[0, 0] = [0, 0, 1, 1]
    rois[1, 0] = [0.25, 0.5, 0.75, 1.0]

    want = tf.image.crop_and_resize(
        features.transpose(0, 2, 3, 1),
        rois.reshape(-1, 4),
        np.repeat(np.arange(batch), num_rois),
        crop,
        extrapolation_value=0.0,
    ).numpy()
    want = want.reshape(batch, num_rois, *crop, channels).transpose(0, 1, 4, 2, 3)
    got = crop_and_resize(features, rois[..., None] if roi_axis else rois, *crop)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
