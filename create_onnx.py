"""Converts a TFOD SavedModel into an ONNX graph that TensorRT 8.6, 10 and 11 can build.

    python create_onnx.py --pipeline_config pipeline.config --saved_model saved_model \
        --onnx model.onnx [--batch_size 1] [--input_format NHWC|NCHW] [--validate IMAGES_DIR]

TFOD's preprocessor becomes a static input (pixels 0..255, RGB) followed by the feature
extractor's normalisation; TFOD's post-processor becomes EfficientNMS_TRT decoding the boxes
against the anchors. What inference needs later is stored in the ONNX metadata. SSD (MobileNet,
ResNet FPN, EfficientDet D0-D7) is converted here, Faster R-CNN (two stages, CropAndResize
between them; Mask R-CNN's mask stage after them) in faster_rcnn.py; CenterNet is refused. Before
converting, the pipeline config is checked against the SavedModel's graph (class count, input
size, backbone, box coder): a config of another model stops with exit code 2.
"""

import sys

from tfod_trt.commands.create_onnx import main, parse_args  # noqa: F401 (this script's interface)

if __name__ == "__main__":
    sys.exit(main())
