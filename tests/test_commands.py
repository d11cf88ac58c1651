"""One program per step: the top-level script, ``python -m tfod_trt COMMAND`` and the console
command (declared in pyproject.toml) run the same entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# script -> sub-command of python -m tfod_trt
STEPS = {"create_onnx": "create-onnx", "build_engine": "build-engine", "quantize": "quantize",
         "infer": "infer", "eval_coco": "eval-coco", "compare_tf": "compare-tf",
         "benchmark": "benchmark", "export_triton": "export-triton",
         "serve_triton": "serve-triton"}
CONSOLE_NAMES = {"serve_triton": "serve"}  # tfod-serve, not tfod-serve-triton


def help_text(*command: str) -> str:
    result = subprocess.run([sys.executable, *command, "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("script", sorted(STEPS))
def test_script_and_module_command_are_one_program(script: str) -> None:
    by_script = help_text(f"{script}.py")
    assert by_script.startswith("usage: ") and "--help" in by_script
    assert help_text("-m", "tfod_trt", STEPS[script]) == by_script


def console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts] (read by hand: tomllib is Python 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text().split("[project.scripts]\n", 1)[1]
    lines = text.split("\n[", 1)[0].strip().splitlines()
    return dict((part.strip().strip('"') for part in line.split("=", 1)) for line in lines)


def test_console_commands_point_at_the_commands() -> None:
    scripts = console_scripts()
    expected = {f"tfod-{CONSOLE_NAMES.get(script, command)}": f"tfod_trt.commands.{script}:main"
                for script, command in STEPS.items()}
    expected["tfod-doctor"] = "tfod_trt.commands.doctor:main"
    assert scripts == expected
