"""Comparing two models' detections as sets: two graphs that sum in another order may swap
near-tied scores, so ranks are no identity; each detection must find a partner instead."""

from __future__ import annotations

import numpy as np


def unmatched_detections(first: dict[str, np.ndarray], second: dict[str, np.ndarray],
                         atol: float) -> list[str]:
    """Per image, each of ``first``'s valid detections (``num_detections``) paired greedily with
    an unused one of ``second`` of the same class whose box and score lie within ``atol``; a
    line for every detection left without a partner on either side (empty: the same sets)."""
    problems = []
    counts = (np.asarray(first["num_detections"]).reshape(-1),
              np.asarray(second["num_detections"]).reshape(-1))
    for image, (count_a, count_b) in enumerate(zip(*counts, strict=True)):
        rows_a, rows_b = (_rows(outputs, image, int(count))
                          for outputs, count in ((first, count_a), (second, count_b)))
        used = np.zeros(len(rows_b), bool)
        for index, row in enumerate(rows_a):
            close = (~used & (rows_b[:, 0] == row[0])
                     & (np.abs(rows_b[:, 1:] - row[1:]) <= atol).all(axis=1))
            if close.any():
                used[np.argmax(close)] = True
            else:
                problems.append(f"image {image}: first's detection {index} {row.tolist()} "
                                "has no partner")
        problems += [f"image {image}: second's detection {i} {rows_b[i].tolist()} has no partner"
                     for i in np.flatnonzero(~used)]
    return problems


def _rows(outputs: dict[str, np.ndarray], image: int, count: int) -> np.ndarray:
    """[count, 6] rows of (class, ymin, xmin, ymax, xmax, score) of one image."""
    return np.column_stack([
        outputs["detection_classes"][image, :count].astype(np.float64),
        outputs["detection_boxes"][image, :count].astype(np.float64),
        outputs["detection_scores"][image, :count].astype(np.float64)])
