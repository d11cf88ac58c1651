"""Opening the runner a command line asks for: TensorRT for an engine, the CPU runtime for ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from tfod_trt.config.pipeline_config import ModelConfig, load_pipeline_config
from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.convert.options import tensorflow_box_frame
from tfod_trt.convert.tf_graph import ConversionError
from tfod_trt.detect.batch import Runner
from tfod_trt.detect.inputs import resolve_preprocessor
from tfod_trt.errors import UsageError
from tfod_trt.files import FlagPaths
from tfod_trt.reference.runner import ReferenceRunner
from tfod_trt.reference.tensorflow import TensorFlowRunner, have_tensorflow
from tfod_trt.trt.engine_file import metadata_path
from tfod_trt.trt.runner import TrtRunner


def open_runner(args: argparse.Namespace) -> Runner:
    """TrtRunner for --engine, ReferenceRunner for --onnx; a UsageError naming the file when
    it cannot be loaded (no TensorRT, another TensorRT version, not a model)."""
    path, kind = (args.engine, "engine") if args.engine else (args.onnx, "ONNX model")
    if not path.is_file():
        raise UsageError(f"{path}: {kind} file not found")
    loader = TrtRunner if args.engine else ReferenceRunner
    try:
        return loader(path)
    except UsageError:  # says already what is wrong with the file
        raise
    except Exception as err:  # whatever the runtime raises for a file it cannot load
        raise UsageError(f"{path}: cannot load the {kind}: {type(err).__name__}: {err}") from err


def model_inputs(args: argparse.Namespace) -> dict[str, FlagPaths]:
    """The model files a command line names, by flag, for files.check_outputs: --engine with
    its ``<engine>.json``, --onnx, --saved_model (every file below it, and the pipeline.config
    beside its saved_model folder), --pipeline_config."""
    engine, saved = getattr(args, "engine", None), getattr(args, "saved_model", None)
    if saved:  # as saved_model_folder finds it, without its error
        folder = saved if (saved / "saved_model.pb").is_file() else saved / "saved_model"
        saved = [saved, folder.parent / "pipeline.config"]
    return {"--engine": [engine, metadata_path(engine)] if engine else None,
            "--onnx": getattr(args, "onnx", None), "--saved_model": saved,
            "--pipeline_config": getattr(args, "pipeline_config", None)}


def saved_model_folder(path: Path) -> Path:
    """``path`` itself, or the ``saved_model`` folder of a TFOD export folder."""
    for folder in (path, path / "saved_model"):
        if (folder / "saved_model.pb").is_file():
            return folder
    raise UsageError(f"{path}: no saved_model.pb here (pass a TFOD export's saved_model folder)")


def saved_model_config(folder: Path, pipeline_config: Path | None) -> ModelConfig | None:
    """``pipeline_config``, else the pipeline.config beside the saved_model folder where there
    is one, else None."""
    config = pipeline_config or folder.parent / "pipeline.config"
    return load_pipeline_config(config) if pipeline_config or config.is_file() else None


def saved_model_box_frame(config: ModelConfig | None, converted: dict | None = None) -> str:
    """What the SavedModel normalises its boxes to when it resizes a photo itself: what its
    config says; without one, the converted graph's frame where it clips to the true image as
    TFOD does, else TFOD's default (the true image)."""
    if config is not None:
        return tensorflow_box_frame(config)
    if converted and converted.get("true_image_shape"):
        return converted["box_frame"]
    return "true_image"


def saved_model_preprocessor(
    folder: Path, config: ModelConfig | None, preprocessor: str | None
) -> tuple[Preprocessor, int | None]:
    """(resizer, class count) from the SavedModel's ``config``, or the resizer of
    ``preprocessor`` (``-p``) where it has none."""
    if config is not None:
        stored = config.preprocessor
        pre = resolve_preprocessor(preprocessor, stored.to_dict(),
                                   (stored.height, stored.width))
        return pre, config.num_classes
    if preprocessor:
        return Preprocessor.from_string(preprocessor), None
    raise UsageError(f"{folder}: no pipeline.config beside the SavedModel; pass "
                     "--pipeline_config or -p/--preprocessor")


def open_saved_model(folder: Path, pre: Preprocessor, num_classes: int | None = None,
                     batch_size: int = 1, layout: str = "NHWC",
                     box_frame: str = "true_image") -> TensorFlowRunner:
    """The SavedModel on TensorFlow (see TensorFlowRunner: a keep_aspect_ratio model runs on
    the original photos, its boxes normalised to ``box_frame``); a UsageError when TensorFlow
    is absent or cannot load it, or the SavedModel is not TFOD's float-input export."""
    if not have_tensorflow():
        raise UsageError("TensorFlow is not installed in this Python: the SavedModel needs it "
                         "(the converted model runs without it: --onnx or --engine)")
    try:
        return TensorFlowRunner(folder, pre, batch_size, layout, num_classes, box_frame)
    except ConversionError as err:  # says what is wrong and how to export it
        raise UsageError(str(err)) from err
    except Exception as err:  # whatever TensorFlow raises for a folder it cannot load
        raise UsageError(f"{folder}: cannot load the SavedModel: {type(err).__name__}: "
                         f"{err}") from err


def open_model(args: argparse.Namespace) -> Runner:
    """The runner that ``--engine``, ``--onnx`` or ``--saved_model`` asks for (the SavedModel
    at ``--batch_size`` where the command line has one)."""
    if not args.saved_model:
        return open_runner(args)
    folder = saved_model_folder(args.saved_model)
    config = saved_model_config(folder, args.pipeline_config)
    pre, num_classes = saved_model_preprocessor(folder, config, args.preprocessor)
    return open_saved_model(folder, pre, num_classes, getattr(args, "batch_size", None) or 1,
                            box_frame=saved_model_box_frame(config))
