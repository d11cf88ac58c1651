"""Compares the TFOD SavedModel (TensorFlow) with its TensorRT engine, or its ONNX model on the
CPU reference runtime, on the same preprocessed images.

    python compare_tf.py -s exported/saved_model -e model.engine -i images/ -o compare/ \
        [-a instances_val2017.json] [-l label_map.pbtxt] [-n 16] [-t 0.3] [--iou 0.5]
    python compare_tf.py -s exported/saved_model --onnx model.onnx -i images/ -o compare/

Writes per image ``<stem>.png`` (TensorFlow | TensorRT or ONNX | ground truth, the last with
``-a``) and ``report.json``: per image and overall, the detections (score >= ``-t``) matched
across the two (same class, IoU >= ``--iou``), those left unmatched on each side and the score
differences of the matched pairs; with ``-a`` also the COCO mAP of each side (all detections).
TensorFlow and the runtime must be importable in one Python (TensorRT: also a GPU).
"""

import sys

from tfod_trt.commands.compare_tf import main, parse_args  # noqa: F401 (this script's interface)

if __name__ == "__main__":
    sys.exit(main())
