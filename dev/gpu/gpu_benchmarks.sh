#!/usr/bin/env bash
# The speed measurement set on the GPU machine, in one command (docs/benchmarks.md):
#
#   bash dev/gpu/gpu_benchmarks.sh ENGINE_DIR IMAGES OUT
#
# ENGINE_DIR  engines (*.engine with their *.engine.json); missing ones are first built from
#             every $ONNX_DIR/**/*.onnx at each of $PRECISIONS (skipped when ONNX_DIR is unset;
#             a build killed by a time limit leaves no engine behind: run the step again)
# IMAGES      photos (e.g. .cache/gpu_carry/shared/data/coco_val2017_64/images)
# OUT         results: latency.json, profile.json/.txt, pipeline.json, onnx_cpu.json,
#             latency_vs_batch.png, e2e_vs_batch.png, nvidia-smi.txt, logs
#
# Environment: ONNX_DIR, PRECISIONS ("fp32 fp16"; int8 calibrates on IMAGES), STEPS ("build latency profile pipeline
# onnx plot": run a subset, e.g. to keep each device call under its time limit),
# PIPELINE_ENGINE (default: the fp16 engine with batch 16 in ENGINE_DIR), PIPELINE_IMAGES
# (8192), WORKSPACE (GiB per build, 4), TIMING_CACHE (default ENGINE_DIR/timing.cache), LEVEL (builder optimization level, TensorRT's default), DURATION (3 s per measure), BATCHES ("1 8 32", for dynamic-batch engines), PY.
# With the TensorRT 8.6 bundle (../shared/gpu) carried in .gpu/tools, it is set up first.
set -euo pipefail
shopt -s globstar nullglob
ENGINES=${1:?usage: gpu_benchmarks.sh ENGINE_DIR IMAGES OUT}
IMAGES=${2:?usage: gpu_benchmarks.sh ENGINE_DIR IMAGES OUT}
OUT=${3:?usage: gpu_benchmarks.sh ENGINE_DIR IMAGES OUT}
STEPS=${STEPS:-build latency profile pipeline onnx plot}
PRECISIONS=${PRECISIONS:-fp32 fp16}
DURATION=${DURATION:-3}
BATCHES=${BATCHES:-1 8 32}
PIPELINE_IMAGES=${PIPELINE_IMAGES:-8192}  # the nvJPEG path does 2048 in 0.3 s
if [ -z "${PY:-}" ] && [ -f .gpu/tools/env.sh ]; then
    source dev/gpu/gpu_env.sh
fi
PY=${PY:-python3}
mkdir -p "$OUT" "$ENGINES"
has() { [[ " $STEPS " == *" $1 "* ]]; }
log() { echo "== $(date -u +%H:%M:%S) $*"; }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
$PY -c "import tensorrt; print('TensorRT', tensorrt.__version__)" 2>&1 | tee "$OUT/versions.txt" || true

if has build && [ -n "${ONNX_DIR:-}" ]; then
    for onnx in "$ONNX_DIR"/**/*.onnx; do
        for precision in $PRECISIONS; do
            engine=$ENGINES/$(basename "$onnx" .onnx)_$precision.engine
            [ -f "$engine" ] && continue
            log "build $engine"
            start=$SECONDS
            calib=()
            [ "$precision" = int8 ] && calib=(--calib_input "$IMAGES" --calib_num_images 256 \
                --calib_cache "$ENGINES/$(basename "$onnx" .onnx).calib")
            $PY build_engine.py -o "$onnx" -e "$engine" -p "$precision" "${calib[@]}" \
                --workspace "${WORKSPACE:-4}" ${LEVEL:+--optimization_level "$LEVEL"} \
                --timing_cache "${TIMING_CACHE:-$ENGINES/timing.cache}" 2>&1 | tail -3 | tee -a "$OUT/build.log" \
                || echo "build FAILED: $engine" | tee -a "$OUT/build.log"
            echo "$engine: $((SECONDS - start)) s" | tee -a "$OUT/build.log"
        done
    done
fi
if has latency || has profile || has pipeline; then
    engines=("$ENGINES"/*.engine)
    [ ${#engines[@]} -gt 0 ] || { echo "no engines in $ENGINES" >&2; exit 2; }
fi

if has latency; then
    log "latency sweep"
    $PY benchmark.py -e "$ENGINES" --cuda_graphs both --batch $BATCHES --duration "$DURATION" \
        --images "$IMAGES" --json "$OUT/latency.json" 2>&1 | tee "$OUT/latency.log"
fi
if has profile; then
    log "per-layer profiles"
    $PY benchmark.py -e "$ENGINES" --skip_latency --profile --images "$IMAGES" \
        --json "$OUT/profile.json" 2>&1 | tee "$OUT/profile.txt"
fi
if has pipeline; then
    engine=${PIPELINE_ENGINE:-$($PY - "$ENGINES" <<'EOF'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("*.engine")):
    meta = json.loads(Path(f"{path}.json").read_text())
    if meta.get("engine", {}).get("precision") == "fp16" and meta.get("batch_size") == 16:
        print(path)
        break
EOF
)}
    if [ -z "$engine" ]; then
        echo "no fp16 batch-16 engine in $ENGINES: set PIPELINE_ENGINE" >&2
    else
        log "pipeline on $engine"
        $PY benchmark.py -e "$engine" --skip_latency --pipeline "$IMAGES" \
            --pipeline_images "$PIPELINE_IMAGES" --duration "$DURATION" \
            --json "$OUT/pipeline.json" 2>&1 | tee "$OUT/pipeline.log"
    fi
fi
if has onnx && [ -n "${ONNX_DIR:-}" ]; then
    log "ONNX Runtime CPU baseline"
    $PY benchmark.py --onnx "$ONNX_DIR"/**/*.onnx --images "$IMAGES" --duration "$DURATION" \
        --json "$OUT/onnx_cpu.json" 2>&1 | tee "$OUT/onnx_cpu.log"
fi
if has plot && [ -f "$OUT/latency.json" ]; then
    $PY tools/plot_benchmarks.py "$OUT/latency.json" -o "$OUT/latency_vs_batch.png"
    $PY tools/plot_benchmarks.py "$OUT/latency.json" --measure end_to_end \
        -o "$OUT/e2e_vs_batch.png"
fi
log "done: $OUT"
