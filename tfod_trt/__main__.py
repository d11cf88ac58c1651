"""``python -m tfod_trt COMMAND [ARGS ...]``: the package's sub-commands, dispatched on the first
argument through COMMANDS (add a command there)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from tfod_trt.commands import (
    benchmark,
    build_engine,
    compare_tf,
    create_onnx,
    doctor,
    eval_coco,
    export_triton,
    infer,
    quantize,
    serve_triton,
)

PROG = "python -m tfod_trt"


@dataclass(frozen=True)
class Command:
    main: Callable[[list[str] | None], int]
    summary: str


# The workflow's order; each also runs as its script (python infer.py) and console command.
COMMANDS: dict[str, Command] = {
    "create-onnx": Command(create_onnx.main, "SavedModel + pipeline.config -> ONNX for TensorRT"),
    "build-engine": Command(build_engine.main, "ONNX -> TensorRT engine (FP32, FP16, INT8)"),
    "quantize": Command(quantize.main, "ONNX -> Q/DQ INT8 or FP16 ONNX (CPU)"),
    "infer": Command(infer.main, "detections and pictures for an image or a folder"),
    "eval-coco": Command(eval_coco.main, "COCO mAP of an engine, ONNX model or SavedModel"),
    "compare-tf": Command(compare_tf.main, "TensorFlow against the converted model"),
    "benchmark": Command(benchmark.main, "latency, profiles and folder throughput"),
    "export-triton": Command(export_triton.main, "engine -> Triton Inference Server model "
                             "repository"),
    "serve-triton": Command(serve_triton.main, "serve an engine with Triton from Python "
                            "(PyTriton)"),
    doctor.PROG: Command(doctor.main, doctor.SUMMARY),
}


def usage() -> str:
    """The usage text, listing the sub-commands."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [ARGS ...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", f"'{PROG} COMMAND --help' describes a command's arguments."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the command named by the first argument; 2 when there is none or it is unknown."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"{PROG}: error: unknown command {argv[0]!r} (choose from "
              f"{', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    return command.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
