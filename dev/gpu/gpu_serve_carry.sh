#!/usr/bin/env bash
# Here: the serving wheels for the GPU machine's Python 3.10 (nvidia-pytriton with its
# tritonserver, tritonclient[http] and their dependencies; numpy and ml_dtypes come with the
# bundle; async_timeout named since pip evaluates aiohttp's `python_version < "3.11"` for this
# machine's Python, not the target's) in parts small enough for one call each:
# .cache/gpu_serve/partNN and .cache/gpu_serve/parts.
# On the GPU machine, dev/gpu/gpu_serve_setup.sh installs them once all parts have arrived.
set -euo pipefail
ROOT=$(git rev-parse --show-toplevel)
DOWNLOADS=$ROOT/.cache/gpu_serve_downloads
PARTS=$ROOT/.cache/gpu_serve
mkdir -p "$DOWNLOADS"
python3 -m pip download -q --only-binary=:all: --python-version 3.10 --implementation cp \
  --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d "$DOWNLOADS" nvidia-pytriton==0.7.0 "tritonclient[http]==2.73.0" numpy==1.26.4 async_timeout \
  2>&1 | grep -v "WARNING: Location" || true
rm -rf "$PARTS" && mkdir -p "$PARTS"
( cd "$DOWNLOADS" && ls ./*.whl | grep -v -e '/numpy-' -e '/ml_dtypes-' | tar -cf - -T - ) |
  split -b "${GPU_PART_MB:-40}M" -d -a 2 - "$PARTS/part"
ls "$PARTS"/part[0-9]* | wc -l > "$PARTS/parts"
echo "$PARTS: $(cat "$PARTS/parts") parts ($(du -sh "$PARTS" | cut -f1)); carry one per call with .cache/gpu_serve/parts"
