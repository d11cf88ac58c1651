"""``python -m tfod_trt doctor [MODEL ...]``: whether this machine can convert models and build and
run TensorRT engines, and the one command that installs each missing part; given ONNX models or
engines, whether this TensorRT can build or load them.

Exit status: 0 when engines can be built here (TensorRT imports, its plugins are registered, a
CUDA back-end and a GPU) and every MODEL given passes its checks; 1 otherwise (the report is
printed all the same); 2 for a bad command line or an unreadable model file (one line).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tfod_trt.cli import run_main
from tfod_trt.doctor.checks import Check
from tfod_trt.doctor.machine import MachineReport, machine_report
from tfod_trt.doctor.models import model_checks, read_model

PROG = "doctor"
SUMMARY = "what this machine can do (convert, build and run engines) and what to install"
NAME_WIDTH = 22


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The model files to check, if any."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", type=Path, metavar="MODEL",
                        help="an ONNX model (.onnx: can this TensorRT build it?) or an engine "
                             "(.engine / .plan / .trt, with its ENGINE.json: can it be loaded?)")
    return parser.parse_args(argv)


def format_check(check: Check) -> str:
    """One report line: "ok"/"NO", the name, the detail and, when missing, the fix."""
    line = f"  {'ok' if check.ok else 'NO'}  {check.name:<{NAME_WIDTH}} {check.detail}"
    return line if check.ok or not check.fix else f"{line}  -> fix: {check.fix}"


def yes_no(ok: bool) -> str:
    """"yes" or "no"."""
    return "yes" if ok else "no"


def print_machine(report: MachineReport) -> None:
    """The machine's lines, then whether it can convert and build engines."""
    print("This machine:")
    for check in report.checks:
        print(format_check(check))
    print(f"can convert: {yes_no(report.can_convert)}")
    missing = [c.name for c in [*report.tensorrt, *report.cuda] if not c.ok]
    why = f" (missing: {', '.join(dict.fromkeys(missing))})" if missing else ""
    print(f"can build and run engines: {yes_no(report.can_build)}{why}")


def print_model(path: Path, checks: list[Check]) -> bool:
    """Prints a model's checks; whether all passed."""
    ok = all(check.ok for check in checks)
    print(f"\n{path}:")
    for check in checks:
        print(format_check(check))
    problems = sum(not check.ok for check in checks)
    print(f"{path}: " + ("all checks passed" if ok else f"{problems} problem(s) (the NO lines)"))
    return ok


def run(args: argparse.Namespace) -> int:
    """Reads every model first (2 if one is unreadable), then reports: 0 all good, else 1."""
    models = [read_model(path) for path in args.models]
    report = machine_report()
    print_machine(report)
    models_ok = [print_model(model.path, model_checks(model, report)) for model in models]
    return 0 if report.can_build and all(models_ok) else 1


def main(argv: list[str] | None = None) -> int:
    """``doctor [MODEL ...]`` with one-line errors (exit 2)."""
    return run_main(PROG, parse_args, run, argv)
