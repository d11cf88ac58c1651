#!/usr/bin/env bash
# On the GPU machine: NVIDIA's retired sample against create_onnx.py, side by side
# (docs/benchmarks.md, "Against NVIDIA's sample"). Carry `.gpu/tools` and `.cache/gpu_versus`
# (made by dev/gpu/gpu_versus_carry.sh), then:
#
#   bash dev/gpu/gpu_versus_nvidia.sh OUT
#
# For each batch of $BATCHES and each row of $ROWS (GRAPH:PRECISION[:FLAGS], FLAGS being
# build_engine.py flags joined by commas) it builds the engine from GRAPH_bBATCH.onnx (builder
# level $LEVEL, one shared timing cache), times it right after its build (benchmark.py latency
# with and without a CUDA graph, then --profile, both on the 64 photos) and rewrites
# OUT/table.md (dev/gpu/versus_table.py). Rows already measured in OUT are skipped, so a call
# stopped by its time limit keeps its rows and the next call goes on. The first "nvidia" row
# of each precision is the anchor the others are compared with.
# SAMPLE_BUILD=1 adds NVIDIA's graph at batch 1 built by the sample's own build_engine.py
# (unmodified; TensorRT's default builder level 3, several minutes per engine; no metadata).
# Environment: BATCHES ("1 16"), ROWS (below), LEVEL (1), DURATION (2 s per measure),
# ENGINES (/tmp/versus/engines), VERSUS (.cache/gpu_versus), PY.
set -uo pipefail
OUT=$(realpath -m "${1:?usage: gpu_versus_nvidia.sh OUT}")
if [ -z "${PY:-}" ] && [ -f .gpu/tools/env.sh ]; then
  source dev/gpu/gpu_env.sh
fi
PY=${PY:-python3}
VERSUS=${VERSUS:-.cache/gpu_versus}
[ -f "$VERSUS/graphs.json" ] || { echo "$VERSUS/graphs.json: not found (carry .cache/gpu_versus and run from the checkout, before gpu_env.sh moves to /tmp/work)" >&2; exit 3; }
BATCHES=${BATCHES:-1 16}
LEVEL=${LEVEL:-1}
DURATION=${DURATION:-2}
ENGINES=${ENGINES:-/tmp/versus/engines}
ONNX=/tmp/versus/onnx
IMAGES=$VERSUS/images
# The sample's builds (TF32 on at FP32, nothing pinned at FP16) first, then ours with our
# default builds, at the config's score threshold and at the sample's (0.01), then the same
# graphs with the sample's build flags, then our graphs with one NMS over all classes
# (--nms single, the sample's form).
ROWS=${ROWS:-nvidia:fp32:--tf32 ours:fp32 ours-t001:fp32 ours:fp32:--tf32 \
ours-t001:fp32:--tf32 nvidia:fp16:--keep_fp32=none ours:fp16 ours-t001:fp16 \
ours:fp16:--keep_fp32=none ours-t001:fp16:--keep_fp32=none ours-single:fp32:--tf32 \
ours-single-t001:fp32:--tf32 ours-single:fp16:--keep_fp32=none \
ours-single-t001:fp16:--keep_fp32=none}
mkdir -p "$OUT" "$ENGINES"
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/run.log"; }

if [ ! -f "$ONNX/ours_b1.onnx" ]; then
  $PY dev/gpu/onnx_shared_weights.py unpack "$VERSUS/graphs" "$ONNX" > /dev/null || exit 3
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
$PY -c "import tensorrt; print('TensorRT', tensorrt.__version__)" > "$OUT/versions.txt" 2>&1
cp "$VERSUS/graphs.json" "$OUT/" 2>/dev/null || true

measure() {  # measure NAME ENGINE BATCH GRAPH PRECISION BUILD ORDER ANCHOR
  local dir=$OUT/$1
  mkdir -p "$dir"
  $PY benchmark.py -e "$2" --cuda_graphs both --duration "$DURATION" --images "$IMAGES" \
    --preprocessor fixed_shape --json "$dir/latency.json" > "$dir/latency.log" 2>&1
  $PY benchmark.py -e "$2" --skip_latency --profile --images "$IMAGES" \
    --preprocessor fixed_shape --json "$dir/profile.json" > "$dir/profile.txt" 2>&1
  printf '{"batch": %s, "graph": "%s", "precision": "%s", "build": "%s", "order": %s, "anchor": %s}\n' \
    "$3" "$4" "$5" "$6" "$7" "$8" > "$dir/row.json"
  $PY dev/gpu/versus_table.py "$OUT" > "$OUT/table.md"
  log "measured $1: $(tail -1 "$dir/latency.log" | cut -c1-150)"
}

declare -A anchored
for batch in $BATCHES; do
  order=0
  for row in $ROWS; do
    order=$((order + 1))
    IFS=: read -r graph precision flags <<< "$row"
    build=${flags:-default}
    name=${graph}_b${batch}_${precision}${flags:+_$(tr -d '-' <<< "$flags" | tr ',=' '_-')}
    anchor=false
    if [ "$graph" = nvidia ] && [ -z "${anchored[$batch$precision]:-}" ]; then
      anchor=true
      anchored[$batch$precision]=1
    fi
    [ -f "$OUT/$name/latency.json" ] && continue  # measured already
    engine=$ENGINES/$name.engine
    if [ ! -f "$engine" ]; then
      log "build $name"
      start=$SECONDS
      # shellcheck disable=SC2046  # the flags are split on purpose
      $PY build_engine.py -o "$ONNX/${graph}_b$batch.onnx" -e "$engine" -p "$precision" \
        --workspace 4 --optimization_level "$LEVEL" --timing_cache "$ENGINES/timing.cache" \
        $(tr ',' ' ' <<< "$flags") > "$OUT/$name.build.log" 2>&1 \
        || { log "build FAILED: $name ($(tail -1 "$OUT/$name.build.log"))"; continue; }
      log "built $name in $((SECONDS - start)) s"
    fi
    measure "$name" "$engine" "$batch" "$graph" "$precision" "$build" "$order" "$anchor"
  done
done

if [ -n "${SAMPLE_BUILD:-}" ]; then
  for precision in fp32 fp16; do
    name=nvidia_b1_${precision}_samplebuild
    [ -f "$OUT/$name/latency.json" ] && continue  # measured already
    engine=$ENGINES/$name.engine
    if [ ! -f "$engine" ]; then
      log "build $name with the sample's build_engine.py"
      (cd "$VERSUS/sample/tensorflow_object_detection_api" && \
        $PY build_engine.py -o "$ONNX/nvidia_b1.onnx" -e "$engine" -p "$precision") \
        > "$OUT/$name.build.log" 2>&1 || { log "build FAILED: $name"; continue; }
    fi
    measure "$name" "$engine" 1 nvidia "$precision" "the sample's build_engine.py" 99 false
  done
fi
$PY dev/gpu/versus_table.py "$OUT" > "$OUT/table.md"
log "done: $OUT/table.md"
cat "$OUT/table.md"
