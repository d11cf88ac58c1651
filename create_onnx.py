"""Converts a TFOD SavedModel into an ONNX graph that TensorRT 8.6, 10 and 11 can build.

    python create_onnx.py --pipeline_config pipeline.config --saved_model saved_model \\
        --onnx model.onnx [--batch_size 1] [--input_format NHWC|NCHW] [--validate IMAGES_DIR]

TFOD's preprocessor becomes a static input (pixels 0..255, RGB) followed by the feature
extractor's normalisation; TFOD's post-processor becomes EfficientNMS_TRT decoding the boxes
against the anchors. What inference needs later is stored in the ONNX metadata. SSD is converted
here, Faster R-CNN (two stages, CropAndResize between them) in faster_rcnn.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tfod_trt.commands.create_onnx import run
from tfod_trt.convert.options import DEFAULT_OPSET


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a TFOD SavedModel to ONNX with EfficientNMS_TRT for TensorRT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-p", "--pipeline_config", required=True, type=Path,
                        help="the pipeline.config exported with the SavedModel")
    parser.add_argument("-m", "--saved_model", required=True, type=Path,
                        help="the exported saved_model folder (input_type float_image_tensor)")
    parser.add_argument("-o", "--onnx", required=True, type=Path, help="the ONNX file to write")
    parser.add_argument("-b", "--batch_size", type=int, default=1, help="static batch size")
    parser.add_argument("--input_format", choices=["NHWC", "NCHW"], default="NHWC")
    parser.add_argument("-t", "--score_threshold", type=float,
                        help="NMS score threshold (default: the config's)")
    parser.add_argument("-u", "--iou_threshold", type=float,
                        help="NMS IoU threshold (default: the config's)")
    parser.add_argument("-d", "--max_detections", type=int,
                        help="detections per image (default: the config's max_total_detections)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--tf2onnx", type=Path, metavar="PATH",
                        help="also keep the raw tf2onnx conversion of the network here")
    parser.add_argument("--debug", action="append", default=[], metavar="NODE",
                        help="add a node's outputs (or a tensor) as extra graph outputs")
    parser.add_argument("--no_true_image_shape", action="store_true",
                        help="keep_aspect_ratio models: no true_image_shape input; the whole "
                        "padded input counts as the image (TFOD differs near the padding)")
    parser.add_argument("--validate", type=Path, metavar="IMAGES",
                        help="compare the SavedModel and the new ONNX on these images (CPU)")
    parser.add_argument("--validate_images", type=int, default=16,
                        help="how many images --validate uses")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1")
    if not 11 <= args.opset <= 21:  # Clip and Slice take their bounds as inputs from 11
        parser.error("--opset must lie in 11..21 (TensorRT 8.6 reads up to 17)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 1 --validate found too few matches, 2 bad command line or input."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
