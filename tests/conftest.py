"""Shared pytest options and fixtures: the reference data folder (TF2 zoo configs, COCO photos),
and the marker switches.

The data folder is an extra: without it the fixture models are built from the configs that
tfod_trt.config.writer writes (tests/fixtures.py) and `coco_dir` is a synthetic stand-in
(tools/make_stand_in_photos.py); the run's header and summary say which were used."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COCO = Path("data") / "coco_val2017_64"  # in the reference data folder


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--data", "--shared", dest="data",
        default=os.environ.get("TFOD_TRT_SHARED", str(ROOT.parent / "shared")),
        help="the reference data folder: tfod_configs/ (TF2 zoo configs) and "
             "data/coco_val2017_64/ (COCO photos); an extra: without it the tests use "
             "configs and photos of their own",
    )
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def pytest_configure(config: pytest.Config) -> None:
    import fixtures

    fixtures.use_data_folder(Path(config.getoption("data")))


def data_sources(data: Path) -> str:
    """Which configs and photos this run's tests use."""
    configs = ("TF2 zoo configs" if (data / "tfod_configs").is_dir()
               else "configs written by tfod_trt.config.writer")
    photos = ("COCO photos" if (data / COCO / "images").is_dir()
              else "synthetic stand-in photos (tools/make_stand_in_photos.py)")
    return f"fixture models from {configs}; tests on {photos}"


def pytest_report_header(config: pytest.Config) -> str:
    data = Path(config.getoption("data"))
    state = "present" if data.is_dir() else "absent"
    return f"reference data folder {data} ({state}): {data_sources(data)}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    import fixtures

    if fixtures.USED:
        terminalreporter.write_sep("-", "fixture models used")
        for name, source in sorted(fixtures.USED.items()):
            terminalreporter.write_line(f"{name}: {source}")


@pytest.fixture(autouse=True)
def _record_sources(record_property, pytestconfig: pytest.Config):
    """Each test's report (e.g. --junitxml) names the data it ran on and the fixture models it
    asked for."""
    import fixtures

    fixtures.TOUCHED.clear()
    yield
    record_property("data_sources", data_sources(Path(pytestconfig.getoption("data"))))
    for name in sorted(fixtures.TOUCHED):
        record_property(f"fixture {name}", fixtures.USED[name])



@pytest.fixture(scope="session")
def coco_dir(pytestconfig: pytest.Config) -> Path:
    """The 64 COCO photos (images/, instances_val2017_64.json), else a synthetic stand-in in
    the same layout, with a label map of its own (label_map.pbtxt), made once in the cache."""
    path = Path(pytestconfig.getoption("data")) / COCO
    if (path / "images").is_dir():
        return path
    import fixtures

    return fixtures.stand_in_photos()


@pytest.fixture(scope="session")
def first_photos(coco_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """first_photos(count): a folder with links to the first `count` photos of coco_dir, made
    once per count."""
    from tfod_trt.io.images import find_images

    folders: dict[int, Path] = {}

    def folder_of(count: int) -> Path:
        if count not in folders:
            folders[count] = tmp_path_factory.mktemp(f"photos{count}")
            for photo in find_images(coco_dir / "images")[:count]:
                (folders[count] / photo.name).symlink_to(photo.resolve())
        return folders[count]

    return folder_of


@pytest.fixture(scope="session")
def photo_label_map(coco_dir: Path, pytestconfig: pytest.Config) -> Path:
    """The label map of coco_dir's categories: the stand-in's own, or COCO's of the zoo."""
    if (coco_dir / "label_map.pbtxt").is_file():
        return coco_dir / "label_map.pbtxt"
    path = Path(pytestconfig.getoption("data")) / "tfod_configs" / "mscoco_label_map.pbtxt"
    if not path.is_file():
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
