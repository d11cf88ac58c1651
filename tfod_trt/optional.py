"""TensorFlow and tf2onnx, imported on first use and only here: they are large, slow to import
and absent where engines are only built and run (TensorRT machines, Jetson boards)."""

from __future__ import annotations

import os
from types import ModuleType

INSTALL_HINT = "install the conversion extras: pip install -r requirements-tf.txt"


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
