"""NumPy references for the TensorRT plugins EfficientNMS_TRT (v1) and CropAndResize.

Both follow the plugins' behaviour as docs/design.md describes it (read from the TensorRT 8.6
plugin sources).
Everything is computed in float32 with the kernels' operation order, so results match the FP32
plugins up to the GPU's fast exp (~1e-6 relative) and the tie order of its sort (see below).

Two details come from the kernel source (efficientNMSInference.cu/.cuh) beyond those notes:
- box_coding=0 with anchors: the kernel orders the corners of the box and of the anchor
  (BoxCorner::reorder) before adding them; for ordered inputs this is the plain element-wise sum.
- reorder swaps a pair with three float adds, not min/max; the two agree up to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAFE_SCORE_FLOOR = 0.007  # below it the real kernel takes the "dense" path (docs/design.md, step 5)
DENSE_FILL_SCORE = -32768.0  # the dense path's score for removed elements, -(1 << 15)
_HALF = np.float32(0.5)


def efficient_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    anchors: np.ndarray | None = None,
    *,
    score_threshold: float,
    iou_threshold: float,
    max_output_boxes: int,
    background_class: int = -1,
    score_activation: bool = False,
    box_coding: int = 0,
    class_agnostic: bool = False,
    candidate_pool: int = 5000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """EfficientNMS_TRT: returns num_detections [B,1] int32, boxes [B,M,4] float32,
    scores [B,M] float32 and classes [B,M] int32 (M = max_output_boxes), zero-filled.

    boxes: [B,N,4] or [B,N,1,4] shared by all classes, or [B,N,C,4] per class; scores: [B,N,C];
    anchors: None, [1,N,4] or [B,N,4] (given anchors switch the decoder on). box_coding 0 means
    corners, 1 means center-size (y, x, h, w); output boxes are corners, unclipped.

    Candidates are sorted by score, descending; equal scores keep the lower flat index n*C + c
    first (a stable sort). The GPU's tie order is not deterministic: compare ties
    order-insensitively. candidate_pool is the kernel's fixed 5000; change it only in tests.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if anchors is not None:
        anchors = np.asarray(anchors, dtype=np.float32)
    _check_nms_inputs(boxes, scores, anchors, {
        "score_threshold": score_threshold, "iou_threshold": iou_threshold,
        "max_output_boxes": max_output_boxes, "candidate_pool": candidate_pool,
        "background_class": background_class, "box_coding": box_coding,
    })
    if boxes.ndim == 3:
        boxes = boxes[:, :, None, :]
    threshold = _kernel_threshold(score_threshold, score_activation)
    kernel = _NmsKernel(
        threshold=threshold,
        dense=bool(threshold < _kernel_threshold(SAFE_SCORE_FLOOR, score_activation)),
        iou_threshold=np.float32(iou_threshold), max_output_boxes=int(max_output_boxes),
        background_class=background_class, score_activation=score_activation,
        box_coding=box_coding, class_agnostic=class_agnostic, candidate_pool=int(candidate_pool),
    )
    return _zero_filled([
        _nms_image(boxes[b], scores[b], None if anchors is None else
                   anchors[b if len(anchors) > 1 else 0], kernel)  # [1,N,4]: shared
        for b in range(scores.shape[0])
    ], kernel.max_output_boxes)


def crop_and_resize(
    features: np.ndarray, rois: np.ndarray, crop_height: int, crop_width: int
) -> np.ndarray:
    """CropAndResize: features NCHW [B,C,H,W]; rois [B,R,4] or [B,R,4,1] normalised
    (y1, x1, y2, x2) -> [B,R,C,crop_height,crop_width].

    Bilinear sampling as tf.image.crop_and_resize on the CPU, extrapolation value 0; ROIs of
    image b sample image b. A crop size of 1 samples the ROI's center.
    """
    features = np.asarray(features, dtype=np.float32)
    rois = np.asarray(rois, dtype=np.float32)
    if features.ndim != 4:
        raise ValueError(f"features must be NCHW [B,C,H,W], got shape {features.shape}")
    valid_rois = rois.ndim == 3 or (rois.ndim == 4 and rois.shape[3] == 1)
    if not valid_rois or rois.shape[2] != 4 or rois.shape[0] != features.shape[0]:
        raise ValueError(
            f"rois must be [B,R,4] or [B,R,4,1] with B={features.shape[0]}, got {rois.shape}"
        )
    for name, size in (("crop_height", crop_height), ("crop_width", crop_width)):
        if int(size) != size or size < 1:
            raise ValueError(f"{name} must be a positive integer, got {size}")

    rois = rois.reshape(rois.shape[:3])
    height, width = features.shape[2:]
    in_y = _sample_positions(rois[..., 0], rois[..., 2], height, int(crop_height))
    in_x = _sample_positions(rois[..., 1], rois[..., 3], width, int(crop_width))
    return np.stack([_bilinear(f, y, x) for f, y, x in zip(features, in_y, in_x, strict=True)])


# ---------------------------------------------------------------- EfficientNMS helpers


@dataclass(frozen=True)
class _NmsKernel:
    """efficient_nms's checked parameters, as the kernel uses them (thresholds on raw
    scores, float32)."""

    threshold: np.float32
    dense: bool  # below SAFE_SCORE_FLOOR: the kernel's dense path
    iou_threshold: np.float32
    max_output_boxes: int
    background_class: int
    score_activation: bool
    box_coding: int
    class_agnostic: bool
    candidate_pool: int


def _nms_image(
    boxes: np.ndarray, scores: np.ndarray, anchors: np.ndarray | None, kernel: _NmsKernel
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-4 on one image (boxes [N,1 or C,4], scores [N,C], anchors [N,4] or None): the
    kept boxes (corners), their scores (after the sigmoid if any) and classes, best first."""
    num_classes = scores.shape[1]
    flat, cand_scores = _select_candidates(
        scores.reshape(-1), num_classes, kernel.threshold, kernel.background_class,
        kernel.dense, kernel.candidate_pool,
    )
    anchor_idx, class_idx = np.divmod(flat, num_classes)
    box_class = class_idx if boxes.shape[1] > 1 else 0
    cand_anchors = None if anchors is None else anchors[anchor_idx]
    corners = _decode(boxes[anchor_idx, box_class], cand_anchors, kernel.box_coding)
    kept = _greedy_nms(corners, class_idx, kernel.iou_threshold, kernel.max_output_boxes,
                       kernel.class_agnostic)
    kept_scores = _sigmoid(cand_scores[kept]) if kernel.score_activation else cand_scores[kept]
    return corners[kept], kept_scores, class_idx[kept]


def _zero_filled(
    images: list[tuple[np.ndarray, np.ndarray, np.ndarray]], max_output_boxes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The plugin's four outputs from each image's kept boxes, scores and classes: counts
    [B,1] int32, then [B,M,4], [B,M] float32 and [B,M] int32, zero past each count."""
    batch = len(images)
    num_detections = np.zeros((batch, 1), np.int32)
    out_boxes = np.zeros((batch, max_output_boxes, 4), np.float32)
    out_scores = np.zeros((batch, max_output_boxes), np.float32)
    out_classes = np.zeros((batch, max_output_boxes), np.int32)
    for b, (boxes, scores, classes) in enumerate(images):
        count = len(boxes)
        num_detections[b, 0] = count
        out_boxes[b, :count] = boxes
        out_scores[b, :count] = scores
        out_classes[b, :count] = classes
    return num_detections, out_boxes, out_scores, out_classes


def _check_nms_inputs(
    boxes: np.ndarray,
    scores: np.ndarray,
    anchors: np.ndarray | None,
    params: dict[str, float],
) -> None:
    if scores.ndim != 3:
        raise ValueError(f"scores must be [B,N,C], got shape {scores.shape}")
    batch, num_anchors, num_classes = scores.shape
    box_shapes = [(batch, num_anchors, 4), (batch, num_anchors, 1, 4)]
    if num_classes > 1:
        box_shapes.append((batch, num_anchors, num_classes, 4))
    if boxes.shape not in box_shapes:
        raise ValueError(f"boxes must have one of the shapes {box_shapes}, got {boxes.shape}")
    anchor_shapes = [(1, num_anchors, 4), (batch, num_anchors, 4)]
    if anchors is not None and anchors.shape not in anchor_shapes:
        raise ValueError(
            f"anchors must have one of the shapes {anchor_shapes}, got {anchors.shape}"
        )

    rules = {
        "score_threshold": (lambda v: v >= 0, ">= 0"),
        "iou_threshold": (lambda v: v > 0, "> 0"),
        "max_output_boxes": (lambda v: v >= 1 and int(v) == v, "a positive integer"),
        "candidate_pool": (lambda v: v >= 1 and int(v) == v, "a positive integer"),
        "background_class": (
            lambda v: v == -1 or 0 <= v < num_classes,
            f"-1 or in [0, {num_classes})",
        ),
        "box_coding": (lambda v: v in (0, 1), "0 (corners) or 1 (center-size)"),
    }
    for name, (is_valid, wanted) in rules.items():
        if not is_valid(params[name]):
            raise ValueError(f"{name} must be {wanted}, got {params[name]}")


def _kernel_threshold(threshold: float, score_activation: bool) -> np.float32:
    """The threshold the kernel compares raw scores with: logit(threshold) under the sigmoid."""
    t = np.float32(threshold)
    if not score_activation:
        return t
    if t <= 0:
        return np.float32(DENSE_FILL_SCORE)  # the kernel's stand-in for logit(0)
    if t >= 1:
        return np.float32(np.inf)
    return np.log(t / (np.float32(1) - t))


def _select_candidates(
    flat_scores: np.ndarray,
    num_classes: int,
    threshold: np.float32,
    background_class: int,
    dense: bool,
    pool: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-2 (and the dense quirk of step 5): the best `pool` flat indices and their scores."""
    passed = flat_scores >= threshold
    if background_class >= 0:
        passed[background_class::num_classes] = False
    if dense:  # nothing is removed: failed elements stay in, with a very low score
        index = np.arange(flat_scores.size)
        values = np.where(passed, flat_scores, np.float32(DENSE_FILL_SCORE))
    else:
        index = np.flatnonzero(passed)
        values = flat_scores[index]
    order = _top_k_descending(values, pool)
    return index[order], values[order]


def _top_k_descending(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest values, largest first, equal values by lower position first."""
    if values.size > k:
        kth = np.partition(values, values.size - k)[values.size - k]  # the k-th largest
        above = np.flatnonzero(values > kth)
        tied = np.flatnonzero(values == kth)[: k - above.size]
        chosen = np.sort(np.concatenate([above, tied]))
    else:
        chosen = np.arange(values.size)
    return chosen[np.argsort(-values[chosen], kind="stable")]


def _decode(boxes: np.ndarray, anchors: np.ndarray | None, box_coding: int) -> np.ndarray:
    """Step 3 for candidate rows [K,4]: corners [K,4] (y1, x1, y2, x2 as in the input)."""
    if box_coding == 0:
        return boxes if anchors is None else _reorder(boxes) + _reorder(anchors)
    if anchors is None:
        y, x, h, w = boxes.T
    else:
        dy, dx, dh, dw = boxes.T
        ay, ax, ah, aw = anchors.T
        with np.errstate(over="ignore"):
            y, x, h, w = dy * ah + ay, dx * aw + ax, ah * np.exp(dh), aw * np.exp(dw)
    half_h, half_w = h * _HALF, w * _HALF
    return np.stack([y - half_h, x - half_w, y + half_h, x + half_w], axis=1)


def _reorder(corners: np.ndarray) -> np.ndarray:
    """BoxCorner::reorder on [K,4]: swap y1/y2 and x1/x2 where the first is larger.

    The kernel swaps with a = a - b; b = a + b; a = b - a, which equals min/max up to rounding.
    """
    low, high = corners[:, :2], corners[:, 2:]
    swap = low > high
    diff = low - high
    new_high = np.where(swap, diff + high, high)
    new_low = np.where(swap, new_high - diff, low)
    return np.concatenate([new_low, new_high], axis=1)


def _area(y1: np.ndarray, x1: np.ndarray, y2: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """BoxCorner::area: height * width, 0 when either is <= 0."""
    height, width = y2 - y1, x2 - x1
    return np.where((height > 0) & (width > 0), height * width, np.float32(0))


def _greedy_nms(
    corners: np.ndarray,
    classes: np.ndarray,
    iou_threshold: np.float32,
    max_keep: int,
    class_agnostic: bool,
) -> np.ndarray:
    """Step 4 over candidates sorted best first: positions of the kept boxes, in keep order.

    Greedy in blocks of candidates: the IoU of every pair in a block, and with the boxes kept
    before it, in one array operation, then a loop over booleans. The same float32 operations
    as the kernel's one-box-at-a-time loop, so the same boxes are kept; blocks after the one
    that completes `max_keep` are never looked at."""
    kept: list[int] = []
    kept_boxes = _Boxes.of(corners[:0], classes[:0])
    block = max(2 * max_keep, 64)
    for start in range(0, len(corners), block):
        rows = _Boxes.of(corners[start:start + block], classes[start:start + block])
        alive = ~_suppresses(kept_boxes, rows, iou_threshold, class_agnostic).any(axis=0)
        within = np.triu(_suppresses(rows, rows, iou_threshold, class_agnostic), k=1)
        for i in range(len(alive)):
            if alive[i]:
                kept.append(start + i)
                if len(kept) == max_keep:
                    return np.asarray(kept, dtype=np.intp)
                alive &= ~within[i]
        kept_boxes = _Boxes.of(corners[kept], classes[kept])
    return np.asarray(kept, dtype=np.intp)


@dataclass(frozen=True)
class _Boxes:
    """Reordered corners, areas and classes of some candidates, as the NMS kernel reads them."""

    y1: np.ndarray
    x1: np.ndarray
    y2: np.ndarray
    x2: np.ndarray
    area: np.ndarray
    classes: np.ndarray

    @classmethod
    def of(cls, corners: np.ndarray, classes: np.ndarray) -> _Boxes:
        y1, x1, y2, x2 = _reorder(corners).T
        return cls(y1, x1, y2, x2, _area(y1, x1, y2, x2), classes)


def _suppresses(first: _Boxes, later: _Boxes, iou_threshold: np.float32,
                class_agnostic: bool) -> np.ndarray:
    """[len(first), len(later)] bool: whether box i of `first`, kept, drops box j of `later`
    (IoU >= the threshold, same class unless class-agnostic), as the kernel computes IoU."""
    a, b = (slice(None), None), (None, slice(None))
    inter = _area(np.maximum(first.y1[a], later.y1[b]), np.maximum(first.x1[a], later.x1[b]),
                  np.minimum(first.y2[a], later.y2[b]), np.minimum(first.x2[a], later.x2[b]))
    union = later.area[b] + first.area[a] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where((inter > 0) & (union > 0), inter / union, np.float32(0))
    hit = iou >= iou_threshold
    return hit if class_agnostic else hit & (first.classes[a] == later.classes[b])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(32768) = inf gives exactly 0, as on the GPU
        return np.float32(1) / (np.float32(1) + np.exp(-x))


# ---------------------------------------------------------------- CropAndResize helpers


def _sample_positions(low: np.ndarray, high: np.ndarray, size: int, crop: int) -> np.ndarray:
    """Input coordinates [..., crop] of the crop's rows (or columns), in TF's float32 order."""
    extent = np.float32(size - 1)
    if crop == 1:
        return ((low + high) * _HALF * extent)[..., None]
    step = (high - low) * extent / np.float32(crop - 1)
    return low[..., None] * extent + np.arange(crop, dtype=np.float32) * step[..., None]


def _bilinear(image: np.ndarray, in_y: np.ndarray, in_x: np.ndarray) -> np.ndarray:
    """Samples image [C,H,W] at in_y [R,h] x in_x [R,w] -> [R,C,h,w]; 0 outside [0, H-1]."""
    height, width = image.shape[1:]
    inside_y = (in_y >= 0) & (in_y <= height - 1)
    inside_x = (in_x >= 0) & (in_x <= width - 1)
    in_y = np.where(inside_y, in_y, np.float32(0))
    in_x = np.where(inside_x, in_x, np.float32(0))
    top, left = np.floor(in_y), np.floor(in_x)
    bottom, right = np.ceil(in_y).astype(np.intp), np.ceil(in_x).astype(np.intp)
    y_lerp = (in_y - top)[:, None, :, None]  # [R,1,h,1]
    x_lerp = (in_x - left)[:, None, None, :]  # [R,1,1,w]
    top, left = top.astype(np.intp), left.astype(np.intp)

    def pixels(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:  # -> [R,C,h,w]
        return image[:, rows[:, :, None], cols[:, None, :]].transpose(1, 0, 2, 3)

    top_left, bottom_left = pixels(top, left), pixels(bottom, left)
    upper = top_left + (pixels(top, right) - top_left) * x_lerp
    lower = bottom_left + (pixels(bottom, right) - bottom_left) * x_lerp
    values = upper + (lower - upper) * y_lerp
    inside = inside_y[:, None, :, None] & inside_x[:, None, None, :]
    return np.where(inside, values, np.float32(0))
