#!/usr/bin/env bash
# On the GPU machine, from the checkout: the served detector against the engine alone
# (docs/benchmarks.md, "Served through Triton"). Needs the serving wheels installed
# (dev/gpu/gpu_serve_setup.sh), the dynamic-batch graph in /tmp/onnx_big (carry
# .cache/gpu_big/ssd_mobilenet_v2_bdyn_nhwc.half.onnx, then dev/gpu/gpu_unpack_big.sh) and photos
# (carry .cache/gpu_carry/shared/data/coco_val2017_64):
#
#   bash dev/gpu/gpu_serve_bench.sh OUT
#
# Builds the FP16 engine with profile 1,16,16, times it alone (benchmark.py at batch 16:
# compute and infer.py's pipelined folder path), serves it (serve_triton.py, dynamic batching up
# to 16) and loads the server with 1, 8 and 64 single-image clients (benchmark.py --triton).
# Environment: INSTANCES (2), QUEUE_DELAY_US (500), DURATION (5 s per measure), LEVEL (builder
# optimization level, 1).
set -uo pipefail
OUT=$(realpath -m "${1:?usage: gpu_serve_bench.sh OUT}")
IMAGES=${IMAGES:-.cache/gpu_carry/shared/data/coco_val2017_64/images}
GRAPH=/tmp/onnx_big/ssd_mobilenet_v2_bdyn_nhwc.onnx
ENGINE=/tmp/serve/ssd_mobilenet_v2_fp16_b1-16.engine
source .gpu/tools/env.sh
export PYTHONPATH=/opt/serve-site:$PYTHONPATH
mkdir -p "$OUT" /tmp/serve
log() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/run.log"; }
[ -d "$IMAGES" ] || { echo "$IMAGES: no photos (carry them)" >&2; exit 3; }
if [ ! -f "$ENGINE" ]; then
  log "build $ENGINE"
  $PY build_engine.py -o "$GRAPH" -e "$ENGINE" -p fp16 --batch_profile 1,16,16 \
    --optimization_level "${LEVEL:-1}" \
    > "$OUT/build.log" 2>&1 || { tail -5 "$OUT/build.log"; exit 3; }
fi
log "engine alone, batch 16"
$PY benchmark.py -e "$ENGINE" -b 16 --duration "${DURATION:-5}" --images "$IMAGES" \
  --pipeline "$IMAGES" --json "$OUT/engine.json" > "$OUT/engine.log" 2>&1
tail -8 "$OUT/engine.log"
log "serve"
( exec $PY serve_triton.py -e "$ENGINE" -n ssd --max_batch 16 --instances "${INSTANCES:-2}" \
  --queue_delay_us "${QUEUE_DELAY_US:-500}" > "$OUT/server.log" 2>&1 ) &
server=$!
for _ in $(seq 180); do
  $PY -c "import urllib.request as u; u.urlopen('http://localhost:8000/v2/models/ssd/ready', timeout=1)" \
    2>/dev/null && break
  kill -0 $server 2>/dev/null || break
  sleep 1
done
log "served, 1 / 8 / 64 clients"
$PY benchmark.py --triton localhost:8000 --model ssd --images "$IMAGES" --concurrency 1 8 64 \
  --duration "${DURATION:-5}" --json "$OUT/served.json" > "$OUT/served.log" 2>&1
tail -6 "$OUT/served.log"
kill -TERM $server; wait $server; log "server exit status $?"
pgrep -fa tritonserver >> "$OUT/run.log" && log "a tritonserver process was left" || log "no process left"
tail -5 "$OUT/server.log"
