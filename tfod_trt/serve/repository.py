"""A detector's models in a Triton model repository: ``NAME`` (the ensemble a client calls),
``NAME_preprocess``, ``NAME_detector`` (the engine, or its ONNX on the CPU) and
``NAME_postprocess``, each a folder with its config.pbtxt and version 1.

Each model folder is written beside its final place and then swapped in, so that a repository
never holds half a model, and a re-export replaces the folders of the same name."""

from __future__ import annotations

import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tfod_trt.errors import UsageError
from tfod_trt.files import check_output_folder
from tfod_trt.serve import model_configs
from tfod_trt.serve.detectors import Detector
from tfod_trt.serve.interface import ONNX_FILE
from tfod_trt.serve.package_copy import package_files
from tfod_trt.serve.pbtxt import to_text
from tfod_trt.stopping import stop_deferred

MODELS_DIR = Path(__file__).resolve().parent / "triton_models"
VERSION = "1"
PLAN_FILE = "model.plan"  # Triton's default file name of a tensorrt_plan model
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class ModelFolder:
    """One model of the repository: its config and the files of its version folder
    (relative path -> the file to copy)."""

    name: str
    config: dict
    files: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class ServingOptions:
    name: str
    labels: dict[int, str] = field(default_factory=dict)
    score_threshold: float = 0.0
    instances: int = 1
    pre_post_instances: int = 1


def model_names(name: str) -> dict[str, str]:
    """The repository's model names of a detector called ``name``."""
    if not NAME.fullmatch(name):
        raise UsageError(f"--name {name!r}: use letters, digits, '_', '-' and '.' (not first)")
    return {"ensemble": name, "preprocess": f"{name}_preprocess",
            "detector": f"{name}_detector", "postprocess": f"{name}_postprocess"}


def python_files(model: str) -> dict[str, Path]:
    """A Python model's version folder: ``model.py`` and the package files it imports."""
    source = MODELS_DIR / f"{model}_model.py"
    return {"model.py": source, **package_files(source)}


def model_folders(detector: Detector, options: ServingOptions) -> list[ModelFolder]:
    """The four models serving ``detector``."""
    names = model_names(options.name)
    io = detector.io
    if io.dynamic and io.min_batch > 1:
        raise UsageError(f"{detector.model_file}: its optimization profile starts at a batch of "
                         f"{io.min_batch}, but Triton's batcher sends batches from 1 image: "
                         "build the engine with a profile from batch 1")
    pre = detector.preprocess_settings()
    post = detector.postprocess_settings(options.score_threshold, options.labels)
    runner_files = ({PLAN_FILE: detector.model_file} if detector.plan
                    else {ONNX_FILE: detector.model_file, **python_files("onnx")})
    runner = ModelFolder(names["detector"], model_configs.detector_config(
        names["detector"], io, options.instances, detector.plan), runner_files)
    return [
        ModelFolder(names["preprocess"], model_configs.preprocess_config(
            names["preprocess"], io, pre.to_dict(), options.pre_post_instances),
            python_files("preprocess")),
        runner,
        ModelFolder(names["postprocess"], model_configs.postprocess_config(
            names["postprocess"], io, post.to_dict(), options.pre_post_instances),
            python_files("postprocess")),
        ModelFolder(names["ensemble"], model_configs.ensemble_config(
            names["ensemble"], io, names["preprocess"], names["detector"],
            names["postprocess"])),
    ]


def check_targets(repo: Path, folders: list[ModelFolder], inputs: dict) -> None:
    """Refuses (UsageError) a model folder to be replaced that holds one of the inputs, or
    whose place a file takes."""
    for folder in folders:
        target = repo / folder.name
        if target.exists() and not target.is_dir():
            raise UsageError(f"{target}: is a file where the model folder {folder.name} goes; "
                             "move it or choose another --name")
        check_output_folder(target, inputs)


def write_repository(repo: Path, folders: list[ModelFolder]) -> None:
    """Writes every model folder beside its place in ``repo``, then swaps them in."""
    repo.mkdir(parents=True, exist_ok=True)
    with _staged(repo, folders) as staged:
        with stop_deferred():  # all four models or none
            for folder, new in zip(folders, staged, strict=True):
                _swap(new, repo / folder.name)


@contextmanager
def _staged(repo: Path, folders: list[ModelFolder]) -> Iterator[list[Path]]:
    """Each folder written under a hidden name in ``repo``; whatever is left is removed."""
    staged: list[Path] = []
    try:
        for folder in folders:
            staged.append(repo / f".{folder.name}.{secrets.token_hex(4)}.tmp")
            _write_folder(staged[-1], folder)
        yield staged
    finally:
        for path in staged:
            shutil.rmtree(path, ignore_errors=True)


def _write_folder(target: Path, folder: ModelFolder) -> None:
    version = target / VERSION
    version.mkdir(parents=True)
    (target / "config.pbtxt").write_text(to_text(folder.config), encoding="utf-8")
    for relative, source in folder.files.items():
        destination = version / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)


def _swap(new: Path, target: Path) -> None:
    """``new`` takes the place of ``target`` (the old folder, if any, is removed)."""
    old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
    if target.is_dir():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
