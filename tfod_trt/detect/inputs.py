"""Fitting images to a runner: its input layout and size, the resizer, the batch size and
the batcher."""

from __future__ import annotations

import argparse
from pathlib import Path

from tfod_trt.config.preprocessor import FIXED_SHAPE, Preprocessor
from tfod_trt.detect.batch import Runner, dynamic_batch_range
from tfod_trt.io.batcher import ImageBatcher
from tfod_trt.io.nvjpeg import GpuImageBatcher


def _positive_int(value: object) -> int | None:
    """A static dimension, or None for a dynamic one (-1, None, a symbolic name)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def input_layout(input_shape: list, declared: str | None = None) -> tuple[str, int, int]:
    """(layout, height, width) of an image input: the declared layout, else the 3-channel axis."""
    shape = [_positive_int(v) for v in input_shape]
    if len(shape) != 4:
        raise ValueError(f"expected a 4-D image input, the model takes {list(input_shape)}")
    layout = declared or ("NHWC" if shape[3] == 3 else "NCHW" if shape[1] == 3 else None)
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"cannot tell the layout of the input {list(input_shape)}")
    height, width = shape[2:] if layout == "NCHW" else shape[1:3]
    if height is None or width is None:
        raise ValueError(f"the input {list(input_shape)} has no fixed height and width")
    return layout, height, width


def _bare_fixed_shape(text: str) -> bool:
    """``fixed_shape`` (or NVIDIA's sample's ``fixed_shape_resizer``) without a size: the
    model's input size."""
    return text.strip().removesuffix("_resizer") == FIXED_SHAPE


def preprocessor_argument(text: str) -> str:
    """The argparse type of ``-p/--preprocessor``: the text, checked as
    :func:`resolve_preprocessor` reads it, so that a typo is reported before a model is
    opened."""
    if not _bare_fixed_shape(text):
        try:
            Preprocessor.from_string(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return text


def resolve_preprocessor(
    text: str | None, stored: dict | None, input_hw: tuple[int, int]
) -> Preprocessor:
    """``-p`` (``Preprocessor.from_string`` syntax, or a bare ``fixed_shape`` sized from the
    input) or else the model's metadata; checked against the model's input size."""
    if text is None:
        if not stored:
            raise ValueError(
                "no preprocessor in the model's metadata (not written by create_onnx.py?); pass "
                "-p/--preprocessor, e.g. fixed_shape:300x300 or keep_aspect_ratio:640:1024"
            )
        pre = Preprocessor.from_dict(stored)
    else:
        if _bare_fixed_shape(text):
            text = f"{FIXED_SHAPE}:{input_hw[0]}x{input_hw[1]}"
        pre = Preprocessor.from_string(text)
        if stored:  # the padding value belongs to the model's normalisation
            pre = pre.with_pad_value(Preprocessor.from_dict(stored).pad_value)
    if (pre.height, pre.width) != tuple(input_hw):
        raise ValueError(
            f"the preprocessor {pre.to_string()} makes {pre.height}x{pre.width} inputs but the "
            f"model takes {input_hw[0]}x{input_hw[1]}"
        )
    return pre


def choose_batch_size(
    requested: int | None, batch_dim: object, batch_range: tuple[int, int] | None = None
) -> int:
    """The batch size to run: a static model's own; for a dynamic one (batch dimension -1) the
    request, checked against ``batch_range`` (the engine profile's min, max) when known."""
    static = _positive_int(batch_dim)
    if static is not None:
        if requested not in (None, static):
            raise ValueError(
                f"--batch_size {requested}: the model's batch size is fixed at {static}; use "
                f"--batch_size {static} or convert the model with --batch_size {requested}"
            )
        return static
    low, high = batch_range or (1, None)
    size = requested or high or 1
    if size < low or (high is not None and size > high):
        raise ValueError(
            f"--batch_size {size}: the engine's optimisation profile takes {low} to {high} "
            "images per batch (build_engine.py --batch_profile MIN,OPT,MAX sets it)"
        )
    return size


def make_batcher(
    runner: Runner, images: str | Path, preprocessor: str | None = None,
    batch_size: int | None = None, gpu_decode: bool = False, **batcher_options,
) -> ImageBatcher:
    """An :class:`ImageBatcher` that fits ``runner``'s input (layout, size, batch size); with
    ``gpu_decode`` a gpu_decode.GpuImageBatcher (nvJPEG; TensorRT runners only, for
    :func:`detect_folder_pipelined`).

    A dynamic batch is checked against TrtRunner's ``profile_shapes`` (min, opt, max). Raises
    ValueError (what does not fit, and how to fix it) when the model's input cannot be fed,
    cuda_ctypes.CudaUnavailable where nvJPEG cannot load.
    """
    metadata = runner.metadata or {}
    layout, height, width = input_layout(runner.input_shape, metadata.get("input_format"))
    pre = resolve_preprocessor(preprocessor, metadata.get("preprocessor"), (height, width))
    size = choose_batch_size(batch_size, runner.input_shape[0], dynamic_batch_range(runner))
    if not gpu_decode:
        return ImageBatcher(images, pre, batch_size=size, layout=layout, **batcher_options)
    if not callable(getattr(runner, "pipeline", None)):
        raise ValueError("decoding on the GPU (--decode nvjpeg) needs a TensorRT engine")

    return GpuImageBatcher(images, pre, batch_size=size, layout=layout, **batcher_options)
