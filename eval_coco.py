"""COCO mAP (pycocotools) of a detection model on an annotated image folder, the same evaluation
for a TensorRT engine, its ONNX model on the CPU reference runtime, or the TFOD SavedModel.

    python eval_coco.py -e model.engine -i val2017/ -a instances_val2017.json
    python eval_coco.py --onnx model.onnx -i val2017/ -a instances_val2017.json --per_category
    python eval_coco.py --saved_model exported/saved_model -i val2017/ -a instances_val2017.json
    python eval_coco.py --detections detections.json -a instances_val2017.json [-i val2017/]

Every image of the folder that the annotations list is evaluated (found by ``file_name``), also
those the model finds nothing in; images the annotations do not list are reported and skipped.
All three models see the same preprocessed images (network size, pixels 0..255): the SavedModel
gets the resizer of its ``pipeline.config`` (or ``-p``) applied here, as the converted models do.

Class index -> COCO ``category_id``: index + 1, which is TFOD's label map id (0 is background);
with ``-l`` the label map must name exactly the annotations' categories.
"""

import sys

from tfod_trt.commands.eval_coco import main, parse_args  # noqa: F401 (this script's interface)

if __name__ == "__main__":
    sys.exit(main())
