#!/usr/bin/env bash
# The main job on the embedded trained model, from a fresh machine:
#   models/shapes_ssd (an SSD MobileNet v2 trained on synthetic shapes, committed) -> create_onnx.py
#   -> validate the ONNX against TensorFlow -> engine + infer.py + eval_coco.py where TensorRT and
#   a GPU exist, else infer.py + eval_coco.py on the CPU reference runtime -> pictures with boxes
#   in out/demo/detections and a COCO mAP line on the held-out synthetic val set.
# When models/shapes_ssd is absent it is trained first (tools/train_shapes.py, ~15 min on 2 cores).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")" && pwd)
cd "$ROOT"
bash tools/install.sh
PY=${VENV:-$ROOT/.venv}/bin/python
OUT=out/demo
MODEL=${DEMO_MODEL:-models/shapes_ssd}
CONFIG=configs/shapes_ssd_mobilenet_v2_256.config
VAL=${DEMO_VAL:-.cache/shapes/val}
mkdir -p "$OUT"
if [ ! -f "$VAL/annotations.json" ]; then
  echo "== generating the held-out val set (200 images, seed 1000) -> $VAL"
  "$PY" tools/make_shapes_dataset.py --split val --output "$VAL"
fi
if [ ! -f "$MODEL/saved_model/saved_model.pb" ]; then
  echo "== $MODEL is absent: training it from $CONFIG (about 15 minutes on 2 CPU cores)"
  [ -f .cache/shapes/train/annotations.json ] || "$PY" tools/make_shapes_dataset.py --split train
  "$PY" tools/train_shapes.py --pipeline_config "$CONFIG" --data .cache/shapes/train \
    --work .cache/shapes_training --export "$MODEL"
fi
echo "== create_onnx.py (with a parity check against TensorFlow on 8 val images)"
"$PY" create_onnx.py --pipeline_config "$MODEL/pipeline.config" \
  --saved_model "$MODEL/saved_model" --onnx "$OUT/model.onnx" \
  --validate "$VAL/images" --validate_images 8
if "$PY" -c "import tensorrt" 2>/dev/null && command -v nvidia-smi >/dev/null; then
  echo "== build_engine.py + infer.py + eval_coco.py on TensorRT"
  "$PY" build_engine.py --onnx "$OUT/model.onnx" --engine "$OUT/model.engine" --precision fp16
  RUNTIME=(--engine "$OUT/model.engine")
else
  echo "== no TensorRT/GPU here: infer.py + eval_coco.py on the CPU reference runtime"
  RUNTIME=(--onnx "$OUT/model.onnx")
fi
"$PY" infer.py "${RUNTIME[@]}" --input "$VAL/images" --output "$OUT/detections" \
  --labels "$VAL/label_map.pbtxt" --score_threshold 0.4
"$PY" eval_coco.py "${RUNTIME[@]}" --input "$VAL/images" --annotations "$VAL/annotations.json" \
  --labels "$VAL/label_map.pbtxt" | tee "$OUT/eval.txt"
echo "== done: pictures and detection files in $OUT/detections"
awk '/^AP /{a=$2} /^AP50 /{b=$2} END{print "mAP on the synthetic val set: mAP@[.5:.95] " a \
  ", mAP@.5 " b}' "$OUT/eval.txt"
