"""Shared pytest options and fixtures: the reference data folder (TF2 zoo configs, COCO photos),
and the marker switches."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--data", "--shared", dest="data",
        default=os.environ.get("TFOD_TRT_SHARED", str(ROOT.parent / "shared")),
        help="the reference data folder: tfod_configs/ (TF2 zoo configs) and "
             "data/coco_val2017_64/ (COCO photos); tests needing it skip without it",
    )
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def shared_dir(pytestconfig: pytest.Config) -> Path:
    path = Path(pytestconfig.getoption("data"))
    if not path.is_dir():
        pytest.skip(f"reference data folder {path} is absent")
    return path


@pytest.fixture(scope="session")
def tfod_configs(shared_dir: Path) -> Path:
    path = shared_dir / "tfod_configs"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def coco_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "coco_val2017_64"
    if not (path / "images").is_dir():
        pytest.skip(f"{path} is absent")
    return path


# GPU tests (marker gpu): shared by tests/test_trt_gpu*.py and the GPU eval test.


@pytest.fixture(scope="session")
def gpu() -> None:
    """Skips unless TensorRT imports and a CUDA back-end finds a GPU."""
    from tfod_trt.trt import compat as trt_compat
    from tfod_trt.trt.backends import make_backend
    from tfod_trt.trt.cuda_backend import CudaError, NoGpuError

    try:
        trt_compat.require_tensorrt()
    except trt_compat.TensorRTUnavailable as err:
        pytest.skip(str(err))
    try:
        backend = make_backend("auto")
    except (ImportError, NoGpuError, CudaError) as err:
        pytest.skip(f"no GPU to run TensorRT on: {err}")
    backend.close()


@pytest.fixture(scope="session")
def work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cached = os.environ.get("TFOD_TRT_ENGINE_CACHE")
    if cached:
        Path(cached).mkdir(parents=True, exist_ok=True)
        return Path(cached)
    return tmp_path_factory.mktemp("trt")
