"""Benchmarks TensorRT engines (GPU) and their ONNX graphs on ONNX Runtime (CPU baseline).

    python benchmark.py -e engines/ --cuda_graphs both --batch 1 8 32 --json out/latency.json
    python benchmark.py -e model_b16_fp16.engine --pipeline images/ --json out/pipeline.json
    python benchmark.py -e model.engine --profile --json out/profile.json
    python benchmark.py --onnx model_b1.onnx model_b8.onnx --json out/onnx_cpu.json

Timing follows trtexec: warm-up (``--warmup`` s), then at least ``--iterations`` runs and
``--duration`` s; mean, median and 90/95/99th percentiles. Measures (records in the JSON):

* ``compute``: GPU time of one inference, CUDA events around ``execute_async_v3`` (or the CUDA
  graph replay, ``cuda_graph: true``), no copies;
* ``end_to_end``: CUDA events around input copy + inference + output copies;
* ``infer_call``: host wall time of ``TrtRunner.infer`` (also copies into and out of the pinned
  buffers), and for ONNX Runtime the reference runner's ``infer`` (with the NumPy NMS plugin);
* ``pipeline`` (``--pipeline IMAGES``): images/s of infer.py's pipelined folder path (decode
  pool, pinned double buffers, overlapped copies; no file writing), of the serial loop (decode
  -> copy -> infer -> copy per batch, one thing at a time), and the engine-only throughput at
  the engine's batch, all in one run; each pipelined path makes ``--pipeline_passes`` passes
  over the images, its first pass reported apart from its steady state (the median later pass);
* ``profile`` (``--profile``): per-layer times from TensorRT's IProfiler, the top layers, and
  the share of transposes/shuffles, casts and reformats (flagged at >= ``--flag_percent``).

Engines with a static batch run at their batch; dynamic-batch engines at each ``--batch`` that
their optimisation profile allows. ``tools/plot_benchmarks.py`` plots the JSON.

Inputs: ``--images`` (photos preprocessed as infer.py does), ``--inputs FILE.npz`` (arrays
named after the inputs), or by default random values of each input's shape and dtype. An engine
without build_engine.py's metadata (trtexec, NVIDIA's sample) takes photos only with
``--preprocessor`` (e.g. ``fixed_shape``).
"""

import sys

from tfod_trt.commands.benchmark import main, parse_args  # noqa: F401 (this script's interface)

if __name__ == "__main__":
    sys.exit(main())
