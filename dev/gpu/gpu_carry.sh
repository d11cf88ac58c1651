#!/usr/bin/env bash
# Prepares what a GPU-machine run needs besides the checkout (the device tool sends only the
# checkout; each call carries at most 64 MiB):
#   .cache/gpu_carry/   photos + annotations, pure-Python wheels the bundle lacks, the SSD
#                       fixture ONNX, the trained model's ONNX and its synthetic val set
#   .cache/gpu_big/NAME.half.onnx   more fixture graphs ($BIG_MODELS), the dynamic-batch graphs
#                       ($DYNAMIC_MODELS) and the benchmark's batch variants, with
#                       float16-stored weights (dev/gpu/onnx_half_weights.py);
#                       carry them a few per call (<= 64 MiB with the checkout); files over
#                       40 MiB are split into NAME.half.onnx.partNN (+ NAME.half.onnx.parts,
#                       the count) to carry one per call
# Carry `.gpu/tools` and `.cache/gpu_carry`, then on the device: `bash dev/gpu/gpu_run_all.sh tests` (or other stages).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SHARED=${TFOD_TRT_SHARED:-$ROOT/../shared}
PY=${PY:-$ROOT/.venv/bin/python}
CARRY=$ROOT/.cache/gpu_carry
RECIPE=$(sed -n 's/^ONNX_RECIPE = "\([^"]*\)".*/\1/p' tests/fixtures.py)
rm -rf "$CARRY"
mkdir -p "$CARRY/shared/data" "$CARRY/shared/tfod_configs" "$CARRY/site" "$CARRY/shapes" \
  "$CARRY/fixtures/onnx-$RECIPE" "$CARRY/fixtures/trained"
cp -r "$SHARED/data/coco_val2017_64" "$CARRY/shared/data/"
cp "$SHARED/tfod_configs/mscoco_label_map.pbtxt" "$CARRY/shared/tfod_configs/"
python3 -m pip download -q --no-deps --only-binary=:all: -d "$CARRY/wheels" pygments==2.19.2
python3 -c "import zipfile,glob,sys; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in glob.glob(sys.argv[2]+'/*.whl')]" "$CARRY/site" "$CARRY/wheels"
rm -rf "$CARRY/wheels"
# Fixture graphs are converted here first (the GPU machine has no TensorFlow).
for name in ssd_mobilenet_v2; do
  onnx=$("$PY" -c "import sys; sys.path[:0] = ['tests', '.']; import fixtures; print(fixtures.converted_onnx('$name'))" | tail -n 1)
  cp "$onnx" "$CARRY/fixtures/onnx-$RECIPE/"
done
TRAINED=$("$PY" -c "import sys; sys.path[:0] = ['tests', '.']; import fixtures; print(fixtures.trained_onnx())")
cp "$TRAINED" "$CARRY/fixtures/trained/"
"$PY" -c "import sys; sys.path[:0] = ['tests', '.']; import fixtures; fixtures.shapes_dataset('val')"
cp -r .cache/shapes/val "$CARRY/shapes/"
# Other graphs travel with float16-stored weights (half the size; every GPU test compares the
# engine with ONNX Runtime on the same graph there, and speed does not depend on the values):
# the fixtures in $BIG_MODELS and the batch variants of benchmark.py's sweep.
BIG=$ROOT/.cache/gpu_big
rm -rf "$BIG" && mkdir -p "$BIG"
for spec in ${BIG_MODELS:-faster_rcnn_r50_640 mask_rcnn_r50_320 ssd_fpnlite_320 ssd_resnet50_fpn_640 ssd_mobilenet_v2_keep_aspect ssd_efficientdet_d0}; do
  # the cached path: a model built from a written config has a folder of its own
  onnx=$("$PY" -c "import sys; sys.path[:0] = ['tests', '.']; import fixtures; print(fixtures.converted_onnx('$spec'))" | tail -n 1)
  "$PY" dev/gpu/onnx_half_weights.py pack "$onnx" "$BIG/${spec}_b1_nhwc.half.onnx"
done
# The dynamic-batch graphs of tests/test_trt_gpu_dynamic.py (create_onnx.py --batch_size -1),
# NAME_bdyn_LAYOUT.onnx, also with float16-stored weights.
for spec in ${DYNAMIC_MODELS:-ssd_mobilenet_v2:NHWC ssd_mobilenet_v2_keep_aspect:NCHW}; do
  onnx=$("$PY" -c "import sys; sys.path[:0] = ['tests', '.']; import fixtures; print(fixtures.converted_onnx('${spec%%:*}', -1, '${spec##*:}'))" | tail -n 1)
  "$PY" dev/gpu/onnx_half_weights.py pack "$onnx" "$BIG/$(basename "$onnx" .onnx).half.onnx"
done
FIXTURE=$("$PY" -c "import sys; sys.path[:0] = ['tests', '.']; import fixtures; print(fixtures.exported_model('ssd_mobilenet_v2'))" | tail -1)
for batch in ${BENCH_BATCHES:-8 16 32}; do
  onnx=.cache/bench_onnx/$RECIPE/b$batch/ssd_mobilenet_v2_b${batch}_nhwc.onnx
  mkdir -p "$(dirname "$onnx")"
  [ -f "$onnx" ] || "$PY" create_onnx.py -p "$FIXTURE/pipeline.config" -m "$FIXTURE/saved_model" \
    -o "$onnx" -b "$batch"
  "$PY" dev/gpu/onnx_half_weights.py pack "$onnx" "$BIG/ssd_mobilenet_v2_b${batch}_nhwc.half.onnx"
done
for packed in "$BIG"/*.half.onnx; do
  [ "$(stat -c %s "$packed")" -gt $((40 << 20)) ] || continue
  split -b 40M -d "$packed" "$packed.part"
  ls "$packed".part* | wc -l > "$packed.parts"
  rm "$packed"
done
du -sh "$CARRY" "$BIG"/*
