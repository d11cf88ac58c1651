"""Detects objects in images with a converted model: a TensorRT engine (``--engine``) or, with no
TensorRT at all, the ONNX file on the CPU reference runtime (``--onnx``).

    python infer.py -e model.engine -i images/ -o results/ [-l label_map.pbtxt] [-t 0.3]
    python infer.py --onnx model.onnx -i photo.jpg -o results/ --no_pictures

Writes, per image, ``<stem>.txt`` (one tab-separated line per detection, best score first:
``xmin ymin xmax ymax score class``, original-image pixels, 0-based class, as NVIDIA's sample
did) and ``<stem>.png`` (the picture); per run ``detections.json`` (COCO results style) and
``infer_manifest.json`` (the files written: a rerun removes those it does not write again).
The output folder may not be the image folder or lie inside it.

The reusable part is the package: ``tfod_trt.detect.inputs.make_batcher`` and
``tfod_trt.detect.batch.detect_folder`` (or ``tfod_trt.detect.pipeline.detect_folder_pipelined``)
take any runner (``infer(batch) -> dict``, ``metadata``, ``input_shape``) and give detections in
pixels.
"""

import sys

from tfod_trt.commands.infer import main, parse_args  # noqa: F401 (this script's interface)

if __name__ == "__main__":
    sys.exit(main())
