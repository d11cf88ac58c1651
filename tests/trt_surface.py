"""The real Python API of TensorRT 10.x / 11.x, importable where TensorRT cannot run: NVIDIA's
bindings wheel from PyPI (`tensorrt-cuXX-bindings`), unpacked as the package `tensorrt`, beside
stub libnvinfer / plugin / parser libraries whose factory functions return NULL. Classes, enums,
methods and docstrings are the real ones; creating a builder, runtime or parser gives nothing.
Made once per version and Python in ~/.cache/trt-surface (or $TRT_SURFACE_DIR)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

CACHE = Path(os.environ.get("TRT_SURFACE_DIR", Path.home() / ".cache" / "trt-surface"))
# What the bindings module resolves in libnvinfer, libnvinfer_plugin and libnvonnxparser.
STUB_SOURCE = """
#include <stddef.h>
void* createInferBuilder_INTERNAL(void* logger, int version) { return NULL; }
void* createInferRefitter_INTERNAL(void* engine, void* logger, int version) { return NULL; }
void* createInferRuntime_INTERNAL(void* logger, int version) { return NULL; }
void* getBuilderPluginRegistry(int capability) { return NULL; }
void* getPluginRegistry(void) { return NULL; }
int initLibNvInferPlugins(void* logger, const char* namespace_) { return 0; }
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { return NULL; }
void* createNvOnnxParserRefitter_INTERNAL(void* refitter, void* logger, int version) {
    return NULL;
}
int getNvOnnxParserVersion(void) { return 0; }
int getInferLibVersion(void) { return 0; }
int getInferLibMajorVersion(void) { return 0; }
int getInferLibMinorVersion(void) { return 0; }
int getInferLibPatchVersion(void) { return 0; }
int getInferLibBuildVersion(void) { return 0; }
"""


class SurfaceError(RuntimeError):
    """The bindings could not be fetched or made importable (no network, no compiler)."""


def make_surface(version: str) -> Path:
    """The folder to put on PYTHONPATH (and its tensorrt/ on LD_LIBRARY_PATH) for `version`."""
    python = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    folder = CACHE / f"{version}-{python}"
    if (folder / "tensorrt" / ".ok").is_file():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_bindings(version, Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(Path(tmp) / "unpacked")
        package = folder / "tensorrt"
        folder.mkdir(parents=True, exist_ok=True)
        if package.exists():
            subprocess.run(["rm", "-rf", str(package)], check=True)
        (Path(tmp) / "unpacked" / "tensorrt_bindings").rename(package)
        _write_stubs(package, version.split(".")[0], Path(tmp))
    _check_import(folder, version)
    (folder / "tensorrt" / ".ok").touch()
    return folder


def _download_bindings(version: str, into: Path) -> Path:
    cuda = "cu12" if int(version.split(".")[0]) < 11 else "cu13"
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
               "-d", str(into), f"tensorrt-{cuda}-bindings=={version}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    wheels = sorted(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise SurfaceError(f"pip download tensorrt-{cuda}-bindings=={version} failed: "
                           f"{result.stderr[-500:]}")
    return wheels[0]


def _write_stubs(package: Path, major: str, tmp: Path) -> None:
    source = tmp / "stub.c"
    source.write_text(STUB_SOURCE)
    for name in ("libnvinfer", "libnvinfer_plugin", "libnvonnxparser"):
        library = f"{name}.so.{major}"
        result = subprocess.run(["gcc", "-shared", "-fPIC", f"-Wl,-soname,{library}",
                                 str(source), "-o", str(package / library)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SurfaceError(f"gcc could not build the {library} stub: {result.stderr[-500:]}")


def _check_import(folder: Path, version: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(folder), "LD_LIBRARY_PATH": str(folder / "tensorrt")}
    probe = "import tensorrt; print(tensorrt.__version__)"
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0 or result.stdout.strip() != version:
        raise SurfaceError(f"the bindings of {version} do not import over the stubs: "
                           f"{(result.stderr or result.stdout)[-500:]}")
