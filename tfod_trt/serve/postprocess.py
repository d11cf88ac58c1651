"""A served detector's postprocessing: the detector's outputs for a request -> its images'
detections in original pixels with class names, as infer.py reports them (detect.results),
one row per image (interface.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfod_trt.config.labels import label_for
from tfod_trt.detect.results import ImageResult, outputs_results
from tfod_trt.io.resize import BOX_FRAMES
from tfod_trt.serve.interface import (
    ImageAnswer,
    errors_from_rows,
    item_names,
    pack_answer,
    scales_from_rows,
)


@dataclass(frozen=True)
class PostprocessSettings:
    """What the postprocessing needs: the model's class offset and box frame (its metadata),
    the score threshold and the class names."""

    class_offset: int = 0
    box_frame: str = "input"
    score_threshold: float = 0.0
    labels: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.box_frame not in BOX_FRAMES:
            raise ValueError(f"box frame must be one of {BOX_FRAMES}, got {self.box_frame!r}")

    def to_dict(self) -> dict:
        """JSON-able (the postprocessing model's config parameter)."""
        return {"class_offset": self.class_offset, "box_frame": self.box_frame,
                "score_threshold": self.score_threshold,
                "labels": {str(index): name for index, name in sorted(self.labels.items())}}

    @classmethod
    def from_dict(cls, data: dict) -> PostprocessSettings:
        """Inverse of :meth:`to_dict`."""
        return cls(int(data["class_offset"]), data["box_frame"], float(data["score_threshold"]),
                   {int(index): name for index, name in data["labels"].items()})


def postprocess_request(outputs: dict[str, np.ndarray], image_scale: np.ndarray,
                        errors: np.ndarray, settings: PostprocessSettings) -> dict[str, np.ndarray]:
    """The answer to a request (interface.py) from the detector's outputs and the request's
    ``image_scale`` and ``image_error`` rows (one per image; the outputs' other rows are padding),
    padded to the detector's max detections."""
    scales = scales_from_rows(image_scale)
    results = outputs_results(outputs, item_names(len(scales)), scales, settings.class_offset,
                              settings.score_threshold, settings.box_frame)
    answers = [ImageAnswer.unread(error) if error else answer_of(result, settings.labels)
               for result, error in zip(results, errors_from_rows(errors), strict=True)]
    return pack_answer(answers, outputs["detection_scores"].shape[-1])


def answer_of(result: ImageResult, labels: dict[int, str]) -> ImageAnswer:
    """One image's detections as the protocol answers them, with class names."""
    classes = result.classes.astype(np.int32)
    return ImageAnswer(result.boxes.astype(np.float32).reshape(-1, 4),
                       result.scores.astype(np.float32), classes,
                       [label_for(labels, int(c)) for c in classes.tolist()])
