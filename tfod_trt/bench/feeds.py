"""What a benchmark feeds a model: photos preprocessed as infer.py does (the model's metadata,
or --preprocessor for engines without it), the arrays of an .npz file (--inputs), or random
values of the input's own shape and dtype (what the engine's bindings say)."""

from __future__ import annotations

import argparse
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tfod_trt.detect.batch import dynamic_batch_range
from tfod_trt.detect.inputs import input_layout, make_batcher
from tfod_trt.errors import UsageError
from tfod_trt.metadata import TRUE_IMAGE_SHAPE

PIXEL_RANGE = (0, 255)  # what the graphs' image inputs take (they normalise inside)


@dataclass(frozen=True)
class InputSpec:
    """One model input as its binding describes it."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class Feed:
    """One batch for ``runner.infer``: the image input, and true_image_shape where the graph
    takes it."""

    image: np.ndarray
    true_image_shape: np.ndarray | None = None


def random_input(spec: InputSpec, seed: int = 0) -> np.ndarray:
    """Uniform values of the spec's shape and dtype: floats and integers in the pixel range
    0..255 (an integer type's own range where narrower), booleans 0/1."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, spec.shape).astype(bool)
    if dtype.kind == "f":
        return rng.uniform(*PIXEL_RANGE, spec.shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = max(int(info.min), PIXEL_RANGE[0]), min(int(info.max), PIXEL_RANGE[1])
        return rng.integers(low, high, spec.shape, endpoint=True).astype(dtype)
    raise UsageError(f"input {spec.name}: no random values for dtype {dtype}; give the inputs "
                     "with --inputs FILE.npz")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file (numpy.savez / savez_compressed), by name."""
    if not path.is_file():
        raise UsageError(f"--inputs {path}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise UsageError(f"--inputs {path}: a single array, not an .npz file; save the "
                             "inputs with numpy.savez(FILE, INPUT_NAME=array)")
        with archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise UsageError(f"--inputs {path}: not a readable .npz file ({err})") from err
    if not arrays:
        raise UsageError(f"--inputs {path}: holds no arrays")
    return arrays


def npz_input(arrays: dict[str, np.ndarray], path: Path, spec: InputSpec) -> np.ndarray:
    """The array named after the input, its batch repeated or cut to the spec's (as --images
    repeats photos); refused when it is missing or empty, when its other dimensions differ, or
    when its dtype does not cast to the input's without changing kind (float -> int)."""
    if spec.name not in arrays:
        raise UsageError(f"--inputs {path}: no array named {spec.name!r} (the model's input); "
                         f"it has {sorted(arrays)}")
    array = arrays[spec.name]
    if array.ndim != len(spec.shape) or array.shape[1:] != tuple(spec.shape[1:]) or (
            array.shape[0] == 0):
        wanted = ("N", *spec.shape[1:])
        raise UsageError(f"--inputs {path}: {spec.name!r} has shape {array.shape}; the model "
                         f"takes {wanted} with N >= 1")
    if not np.can_cast(array.dtype, spec.dtype, "same_kind"):
        raise UsageError(f"--inputs {path}: {spec.name!r} is {array.dtype}; the model's input "
                         f"is {np.dtype(spec.dtype)}")
    return np.resize(array, spec.shape).astype(spec.dtype)


def whole_image_shapes(shape: tuple[int, ...], layout: str) -> np.ndarray:
    """The true_image_shape feed [B,2] float32 of a batch whose images fill the input."""
    height, width = shape[2:4] if layout == "NCHW" else shape[1:3]
    return np.tile(np.float32([height, width]), (shape[0], 1))


def image_spec(runner: Any, shape: tuple[int, ...]) -> InputSpec:
    """The image input at ``shape``: TrtRunner's binding, or the ONNX graph's first input."""
    name = getattr(runner, "input_name", None) or runner.input_names[0]
    return InputSpec(name, tuple(shape), np.dtype(getattr(runner, "input_dtype", np.float32)))


def photo_batch(runner: Any, shape: tuple[int, ...], images: Path,
                preprocessor: str | None) -> np.ndarray:
    """Real photos preprocessed as infer.py does, repeated to fill the batch."""
    static = dynamic_batch_range(runner) is None
    batcher = make_batcher(runner, images, preprocessor, None if static else shape[0],
                           max_images=shape[0])
    batch = next(iter(batcher))
    return np.resize(batch.data[: batch.count], shape)


def sample_feed(runner: Any, shape: tuple[int, ...], args: argparse.Namespace,
                images: Path | None = None) -> Feed:
    """The batch to time at ``shape``: ``images`` (default --images) as photos, else the
    arrays of --inputs, else random values; true_image_shape from --inputs when it has one,
    else every image filling the input."""
    spec = image_spec(runner, shape)
    images = images if images is not None else getattr(args, "images", None)
    arrays = read_npz(args.inputs) if getattr(args, "inputs", None) and images is None else {}
    if images is not None:
        image = photo_batch(runner, shape, images, getattr(args, "preprocessor", None))
        image = image.astype(spec.dtype)
    elif arrays:
        image = npz_input(arrays, args.inputs, spec)
    else:
        image = random_input(spec)
    if not getattr(runner, "needs_true_image_shape", False):
        return Feed(image)
    if TRUE_IMAGE_SHAPE in arrays:
        true_spec = InputSpec(TRUE_IMAGE_SHAPE, (shape[0], 2), np.dtype(np.float32))
        return Feed(image, npz_input(arrays, args.inputs, true_spec))
    layout = input_layout(list(shape), (runner.metadata or {}).get("input_format"))[0]
    return Feed(image, whole_image_shapes(shape, layout))
