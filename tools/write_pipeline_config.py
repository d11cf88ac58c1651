"""Writes the pipeline.config of a preset architecture of tfod_trt.config.writer.

    python tools/write_pipeline_config.py --list
    python tools/write_pipeline_config.py ssd_mobilenet_v2_320 --num_classes 3 -o pipeline.config

The config holds the model's facts only (no checkpoint, no data): build a model from it with
tools/make_tfod_model.py, or train one with your own train_config and input readers.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tfod_trt.config.writer import ARCHITECTURES, Architecture, pipeline_config_text  # noqa: E402
from tfod_trt.files import atomic_write_bytes  # noqa: E402


def describe(arch: Architecture) -> str:
    """One line: meta-architecture, feature extractor and input."""
    resizer = arch.image_resizer
    size = (f"{resizer.height}x{resizer.width}" if hasattr(resizer, "height")
            else f"keep_aspect_ratio {resizer.min_dimension}:{resizer.max_dimension}")
    return f"{arch.meta_arch}, {arch.feature_extractor.type}, {size}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help="a preset (see --list)")
    parser.add_argument("--num_classes", type=int, help="default: the preset's (90, COCO)")
    parser.add_argument("-o", "--output", type=Path, help="the file to write (default: stdout)")
    parser.add_argument("--list", action="store_true", help="list the presets and exit")
    args = parser.parse_args(argv)
    if not args.list and args.name not in ARCHITECTURES:
        parser.error(f"unknown preset {args.name!r}; presets: {', '.join(sorted(ARCHITECTURES))}")
    if args.num_classes is not None and args.num_classes < 1:
        parser.error(f"--num_classes must be >= 1, got {args.num_classes}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name in sorted(ARCHITECTURES):
            print(f"{name:36} {describe(ARCHITECTURES[name])}")
        return 0
    arch = ARCHITECTURES[args.name]
    if args.num_classes:
        arch = replace(arch, num_classes=args.num_classes)
    text = pipeline_config_text(arch)
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(args.output, text.encode())
        print(f"wrote {args.output} ({args.name}, {arch.num_classes} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
