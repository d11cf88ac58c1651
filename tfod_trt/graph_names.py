"""The fixed tensor names of create_onnx.py's graphs (no ONNX needed to use them: the served
models' pre- and postprocessing import them)."""

INPUT_NAME = "input_tensor"
TRUE_IMAGE_SHAPE = "true_image_shape"
OUTPUT_NAMES = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
# the symbolic batch dimension of a dynamic-batch graph (create_onnx.py --batch_size -1)
BATCH_DIM = "batch"
# Mask R-CNN's fourth output: [B,K,mask_height,mask_width] floats in [0, 1], each in its box
MASKS_OUTPUT = "detection_masks"
