#!/usr/bin/env bash
# The main job on the embedded default model, from a fresh machine:
#   build the demo SSD from configs/ -> export a SavedModel -> create_onnx.py -> validate the ONNX
#   against TensorFlow on real photos -> engine + infer.py where TensorRT and a GPU exist, else
#   infer.py on the CPU reference runtime -> pictures and detections in out/demo/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
cd "$ROOT"
bash tools/install.sh
PY=${VENV:-$ROOT/.venv}/bin/python
OUT=out/demo
IMAGES=${DEMO_IMAGES:-../shared/data/coco_val2017_64/images}
mkdir -p "$OUT"
if [ ! -d "$IMAGES" ]; then
  IMAGES=$OUT/images
  "$PY" tools/make_demo_images.py "$IMAGES"
fi
if [ ! -f "$OUT/model/saved_model/saved_model.pb" ]; then
  echo "== building and exporting the demo model (configs/demo_ssd_mobilenet_v2_320.config)"
  "$PY" tools/make_tfod_model.py --pipeline_config configs/demo_ssd_mobilenet_v2_320.config \
    --output "$OUT/model" --calibration_images "$IMAGES"
fi
echo "== create_onnx.py (with a parity check against TensorFlow on 8 photos)"
"$PY" create_onnx.py --pipeline_config "$OUT/model/pipeline.config" \
  --saved_model "$OUT/model/saved_model" --onnx "$OUT/model.onnx" \
  --validate "$IMAGES" --validate_images 8
if "$PY" -c "import tensorrt" 2>/dev/null && command -v nvidia-smi >/dev/null; then
  echo "== build_engine.py + infer.py on TensorRT"
  "$PY" build_engine.py --onnx "$OUT/model.onnx" --engine "$OUT/model.engine" --precision fp16
  RUNTIME=(--engine "$OUT/model.engine")
else
  echo "== no TensorRT/GPU here: infer.py on the CPU reference runtime (ONNX Runtime + NumPy NMS)"
  RUNTIME=(--onnx "$OUT/model.onnx")
fi
"$PY" infer.py "${RUNTIME[@]}" --input "$IMAGES" --output "$OUT/detections" \
  --score_threshold 0.3
echo "== done: pictures and detection files in $OUT/detections"
