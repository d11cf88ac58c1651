"""The optimization profile of a dynamic-batch graph (create_onnx.py --batch_size -1): the batch
sizes its engine takes (build_engine.py --batch_profile MIN,OPT,MAX), as each input's
(min, opt, max) shapes. Read from the ONNX file alone, so that a bad profile is refused before
TensorRT is looked for."""

from __future__ import annotations

from pathlib import Path

import onnx

from tfod_trt.trt.build_options import BuildError

# MIN, OPT, MAX: single images up to Triton-sized batches; TensorRT tunes its kernels for OPT.
DEFAULT_BATCH_PROFILE = (1, 8, 16)

Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def parse_batch_profile(text: str) -> tuple[int, int, int]:
    """``MIN,OPT,MAX`` -> (min, opt, max); ValueError unless 1 <= MIN <= OPT <= MAX."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise ValueError(f"{text!r}: give three batch sizes MIN,OPT,MAX with 1 <= MIN <= OPT "
                         f"<= MAX, e.g. {','.join(map(str, DEFAULT_BATCH_PROFILE))}")
    return values


def input_dims(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Each graph input's dimensions, None where it is not a fixed size."""
    weights = {init.name for init in model.graph.initializer}
    return {value.name: [d.dim_value if d.dim_value > 0 else None
                         for d in value.type.tensor_type.shape.dim]
            for value in model.graph.input if value.name not in weights}


def profile_shapes(model: onnx.ModelProto, path: str | Path,
                   batch_profile: tuple[int, int, int] | None = None) -> Shapes:
    """(min, opt, max) shapes of the inputs whose batch is dynamic, their batch from
    ``batch_profile`` (default DEFAULT_BATCH_PROFILE); {} for a static graph. BuildError for a
    profile asked of a static graph, and for inputs with other dynamic dimensions (a graph not
    made by create_onnx.py: TensorRT needs a range for each, and nothing here knows one)."""
    inputs = input_dims(model)
    dynamic = {name: dims for name, dims in inputs.items() if None in dims}
    if not dynamic:
        if batch_profile is not None:
            batches = sorted({dims[0] for dims in inputs.values() if dims})
            raise BuildError(
                f"--batch_profile {','.join(map(str, batch_profile))}: {path} has a static "
                f"batch of {', '.join(map(str, batches)) or 'none'}, so its engine takes no "
                "other; convert it with create_onnx.py --batch_size -1 for a dynamic batch")
        return {}
    others = {name: dims for name, dims in dynamic.items() if not dims or None in dims[1:]}
    if others:
        described = ", ".join(f"{name} {['?' if d is None else d for d in dims]}"
                              for name, dims in others.items())
        raise BuildError(
            f"{path}: inputs with dynamic dimensions besides the batch ({described}); "
            "TensorRT needs a range for each and build_engine.py sets only the batch's: "
            "convert the model with create_onnx.py")
    low, opt, high = batch_profile or DEFAULT_BATCH_PROFILE
    return {name: tuple((batch, *dims[1:]) for batch in (low, opt, high))
            for name, dims in dynamic.items()}
