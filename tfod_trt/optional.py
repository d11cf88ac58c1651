"""Optional libraries, imported on first use and only here: TensorFlow and tf2onnx are large,
slow to import and absent where engines are only built and run (TensorRT machines, Jetson
boards); PyTriton and tritonclient live in the serving environment only (their NumPy 1.x and
protobuf 6 cannot join TensorFlow's)."""

from __future__ import annotations

import os
import sys
from types import ModuleType

from tfod_trt.errors import UsageError

INSTALL_HINT = "install the conversion extras: pip install -r requirements-tf.txt"
SERVE_HINT = ("run it with the serving environment's Python, .venv-serve/bin/python (made by "
              "bash tools/install.sh serve), e.g. .venv-serve/bin/python {example}")


def _missing(name: str, err: ImportError) -> ImportError:
    return ImportError(f"{name} is not installed in this Python ({err}); {INSTALL_HINT}")


def tensorflow() -> ModuleType:
    """The ``tensorflow`` module, its C++ log limited to warnings and errors."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow
    except ImportError as err:
        raise _missing("TensorFlow", err) from err
    return tensorflow


def tensorflow_constants() -> ModuleType:
    """TensorFlow's ``convert_to_constants`` (freezes a function's variables into constants)."""
    tensorflow()
    from tensorflow.python.framework import convert_to_constants

    return convert_to_constants


def tf2onnx() -> tuple[ModuleType, ModuleType, ModuleType]:
    """tf2onnx's ``optimizer``, ``tf_loader`` and ``tfonnx`` modules."""
    try:
        from tf2onnx import optimizer, tf_loader, tfonnx
    except ImportError as err:
        raise _missing("tf2onnx", err) from err
    return optimizer, tf_loader, tfonnx


def _serving_missing(package: str, what: str, example: str, err: ImportError) -> UsageError:
    return UsageError(f"{what} needs {package}, which this Python ({sys.executable}) lacks "
                      f"({err}); {SERVE_HINT.format(example=example)}")


def tritonclient_http(what: str, example: str) -> tuple[ModuleType, ModuleType]:
    """``tritonclient.http`` and ``tritonclient.utils``; a UsageError saying how to run
    ``example`` where they are absent."""
    try:
        import tritonclient.http as http
        import tritonclient.utils as utils
    except ImportError as err:
        raise _serving_missing("tritonclient", what, example, err) from err
    return http, utils


def pytriton(what: str, example: str) -> tuple[ModuleType, ModuleType]:
    """PyTriton's ``pytriton.triton`` and ``pytriton.model_config``; a UsageError saying how to
    run ``example`` where they are absent."""
    try:
        import pytriton.model_config as model_config
        import pytriton.triton as triton
    except ImportError as err:
        raise _serving_missing("nvidia-pytriton", what, example, err) from err
    return triton, model_config
