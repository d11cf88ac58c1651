"""Conversion-time benchmark: create_onnx.py vs the plain tf2onnx CLI on a zoo SSD.

    python tools/benchmark_conversion.py [--config ssd_mobilenet_v2_320x320_coco17_tpu-8.config]
        [--num_classes 90] [--repeats 3] [--with-tf2onnx-cli]

Builds the model once (cached like the test fixtures), then times whole `create_onnx.py`
processes (Python start, TensorFlow import, SavedModel load, conversion, write) and prints a
summary; measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="ssd_mobilenet_v2_320x320_coco17_tpu-8.config")
    parser.add_argument("--num_classes", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--with-tf2onnx-cli", action="store_true")
    args = parser.parse_args()
    from fixtures import MODELS, SHARED, build_model

    name = f"bench_{Path(args.config).stem}_{args.num_classes}"
    model = build_model(SHARED / "tfod_configs" / args.config, MODELS / name,
                        ["--num_classes", str(args.num_classes)])
    with tempfile.TemporaryDirectory() as tmp:
        ours = [
            timed([sys.executable, str(ROOT / "create_onnx.py"), "-p",
                   str(model / "pipeline.config"), "-m", str(model / "saved_model"),
                   "-o", str(Path(tmp) / "m.onnx")])
            for _ in range(args.repeats)
        ]
        print(f"{args.config} ({args.num_classes} classes), {os.cpu_count()} CPUs")
        print(f"create_onnx.py wall time: median {statistics.median(ours):.1f} s, "
              f"runs {', '.join(f'{t:.1f}' for t in ours)} s")
        if args.with_tf2onnx_cli:
            cli = timed([sys.executable, "-m", "tf2onnx.convert", "--saved-model",
                         str(model / "saved_model"), "--opset", "17",
                         "--output", str(Path(tmp) / "raw.onnx")])
            print(f"tf2onnx CLI (whole SavedModel, no TensorRT surgery): {cli:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
