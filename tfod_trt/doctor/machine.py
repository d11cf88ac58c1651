"""The doctor's checks: what this machine has for converting models and for building and running
TensorRT engines, and what a given ONNX model or engine needs. Each is a :class:`Check` that
carries the one command fixing what is missing. Nothing here imports TensorFlow or a CUDA
back-end module itself: versions come from the installed distributions' metadata."""

from __future__ import annotations

import ctypes
import functools
import importlib.metadata
import importlib.util
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from tfod_trt.cuda_ctypes import (
    CudaUnavailable,
    check_status,
    driver_library,
    load_cuda_library,
)
from tfod_trt.doctor.checks import CONVERTER_PLUGINS, Check, fix
from tfod_trt.trt import compat
from tfod_trt.trt.backends import make_backend
from tfod_trt.trt.cuda_backend import BackendUnavailable, CudaError, NoGpuError

# Converter packages: (label, module, fix).
CONVERTER = (("TensorFlow", "tensorflow", "tf"), ("tf-keras", "tf_keras", "tf"),
             ("tf2onnx", "tf2onnx", "tf"), ("TFOD API", "object_detection", "tfod"))
CC_MAJOR, CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR






# ---------------------------------------------------------------------------------------------
# Python and the converter.


def python_check() -> Check:
    """This interpreter's version (the project needs 3.10 or newer)."""
    ok = sys.version_info >= (3, 10)
    return Check("Python", ok, f"{platform.python_version()} ({sys.executable})",
                 "" if ok else "use Python 3.10 or newer")


def dist_version(*names: str) -> str | None:
    """The version of the first installed distribution among ``names``."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def module_version(module: str) -> str | None:
    """The version of the distribution providing ``module`` (not imported), or None if absent."""
    if importlib.util.find_spec(module) is None:
        return None
    dists = importlib.metadata.packages_distributions().get(module, [])
    return dist_version(*dists) or "unknown version"


def conversion_checks() -> list[Check]:
    """TensorFlow, tf-keras, tf2onnx and the TFOD API: what create_onnx.py needs."""
    checks = []
    for label, module, part in CONVERTER:
        version = module_version(module)
        detail = "not installed" if version is None else version
        if label == "TFOD API" and version:
            detail += f" ({module})"
        checks.append(Check(label, version is not None, detail, fix(part)))
    return checks


# ---------------------------------------------------------------------------------------------
# TensorRT: version, precision route, plugins.


def installed_tensorrt() -> tuple[ModuleType | None, str]:
    """(the usable ``tensorrt`` module or None, why not)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None, "not installed"
    try:
        return compat.require_tensorrt(), ""
    except compat.TensorRTUnavailable as err:
        return None, str(err).split("; ")[0]


def tensorrt_checks(trt: ModuleType | None = None) -> list[Check]:
    """TensorRT's version, the precision route it implies and the converter's plugins;
    ``trt`` defaults to the installed module."""
    problem = ""
    if trt is None:
        trt, problem = installed_tensorrt()
    if trt is None:
        return [Check("TensorRT", False, problem, fix("tensorrt"))]
    return [version_check(trt), precision_route(trt), *plugin_checks(trt)]


def version_check(trt: ModuleType) -> Check:
    """The TensorRT version and where it is installed; older than 8.6 is not supported."""
    where = Path(getattr(trt, "__file__", "") or ".").parent
    try:
        version = compat.trt_version(trt)
    except compat.TensorRTUnavailable as err:
        return Check("TensorRT", False, str(err), fix("tensorrt"))
    if version[:2] < compat.MIN_VERSION:
        return Check("TensorRT", False, f"{trt.__version__} is older than 8.6", fix("tensorrt"))
    return Check("TensorRT", True, f"{trt.__version__} ({where})")


def precision_route(trt: ModuleType) -> Check:
    """How FP16 and INT8 engines are built with this TensorRT (compat's capabilities)."""
    if compat.supports_builder_precision_flags(trt):
        int8 = ("TensorRT's INT8 calibrator" if compat.supports_implicit_int8_calibrator(trt)
                else "a Q/DQ ONNX")
        detail = (f"builder flags: FP16 and INT8 flags on the FP32 ONNX, INT8 scales from {int8}"
                  f" (default --int8_mode {compat.default_int8_mode(trt)}); a typed ONNX "
                  "(FP16 / Q/DQ) builds too")
    else:
        detail = ("strongly typed: no FP16/INT8 builder flags, no calibrator; FP16 through an "
                  "FP16 ONNX, INT8 through a Q/DQ ONNX (build_engine.py makes both)")
    return Check("precision route", True, detail)


@functools.cache
def trt_logger(trt: ModuleType) -> Any:
    """One logger per module, kept alive for the plugins and runtimes that hold it."""
    return trt.Logger(trt.Logger.ERROR)


def init_plugins(trt: ModuleType) -> str:
    """Registers TensorRT's own plugins; '' or why that failed."""
    try:
        ok = trt.init_libnvinfer_plugins(trt_logger(trt), "")
    except (AttributeError, RuntimeError, TypeError) as err:
        return f"init_libnvinfer_plugins: {err}"
    return "" if ok else "init_libnvinfer_plugins failed"


def plugin_status(trt: ModuleType, op: str, version: str, namespace: str = ""
                  ) -> tuple[bool, str]:
    """Whether this TensorRT registers plugin ``op`` ``version`` (after compat's renames)."""
    name, wanted = compat.plugin_renames(trt).get((op, version), (op, version))
    label = f"as {name} v{wanted}: " if (name, wanted) != (op, version) else ""
    try:
        if trt.get_plugin_registry() is None:
            return False, f"{label}no plugin registry (TensorRT's library is not usable here)"
        found = compat.find_plugin_creator(name, wanted, namespace, trt) is not None
    except (AttributeError, RuntimeError, TypeError) as err:
        return False, f"{label}cannot ask the plugin registry ({err})"
    return found, label + ("registered" if found else f"not registered by {trt.__version__}")


def plugin_checks(trt: ModuleType) -> list[Check]:
    """The plugins create_onnx.py writes, registered or not here."""
    problem = init_plugins(trt)
    checks = []
    for (op, version), users in CONVERTER_PLUGINS.items():
        ok, detail = plugin_status(trt, op, version)
        if not ok and problem:
            detail += f"; {problem}"
        checks.append(Check(f"{op} v{version}", ok, f"{detail} (for {users})", fix("plugins")))
    return checks


# ---------------------------------------------------------------------------------------------
# CUDA: the driver, the GPUs, the back-end, nvJPEG and NVRTC.


@dataclass
class Driver:
    """What the CUDA driver says: its CUDA version, the GPUs, or why there is none."""

    cuda: tuple[int, int] | None = None
    gpus: list[str] = field(default_factory=list)
    problem: str = ""


def _cu(lib: ctypes.CDLL, call: str, *args: Any) -> None:
    """Calls the driver function ``call``; CudaUnavailable with its error text if it fails."""
    check_status(getattr(lib, call)(*args), call)


def describe_gpu(lib: ctypes.CDLL, index: int) -> str:
    """"name, compute capability X.Y, N GiB" of GPU ``index``."""
    device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name, memory = ctypes.create_string_buffer(256), ctypes.c_size_t()
    _cu(lib, "cuDeviceGet", ctypes.byref(device), ctypes.c_int(index))
    _cu(lib, "cuDeviceGetName", name, ctypes.c_int(len(name)), device)
    _cu(lib, "cuDeviceGetAttribute", ctypes.byref(major), ctypes.c_int(CC_MAJOR), device)
    _cu(lib, "cuDeviceGetAttribute", ctypes.byref(minor), ctypes.c_int(CC_MINOR), device)
    _cu(lib, "cuDeviceTotalMem_v2", ctypes.byref(memory), device)
    return (f"{name.value.decode(errors='replace')}, compute capability "
            f"{major.value}.{minor.value}, {memory.value / 2**30:.0f} GiB")


def query_driver() -> Driver:
    """The CUDA driver's version and GPUs, through libcuda (no CUDA back-end needed)."""
    driver = Driver()
    try:
        lib = driver_library()[0]
    except CudaUnavailable:
        driver.problem = "not found (no libcuda.so.1)"
        return driver
    try:
        version = ctypes.c_int()
        _cu(lib, "cuDriverGetVersion", ctypes.byref(version))
        driver.cuda = (version.value // 1000, version.value % 1000 // 10)
        count = ctypes.c_int()
        _cu(lib, "cuInit", ctypes.c_uint(0))
        _cu(lib, "cuDeviceGetCount", ctypes.byref(count))
        driver.gpus = [describe_gpu(lib, index) for index in range(count.value)]
    except CudaUnavailable as err:
        driver.problem = str(err)
    return driver


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver's version (e.g. 580.65.06) from NVML, where there is NVML."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        if nvml.nvmlInit_v2() != 0:
            return None
    except (OSError, AttributeError):
        return None
    try:
        text = ctypes.create_string_buffer(96)
        ok = nvml.nvmlSystemGetDriverVersion(text, ctypes.c_uint(len(text))) == 0
        return text.value.decode() if ok else None
    finally:
        nvml.nvmlShutdown()


def driver_checks(driver: Driver) -> list[Check]:
    """The driver's line and one line per GPU (or one saying there is none)."""
    if driver.cuda is None:
        return [Check("CUDA driver", False, driver.problem, fix("driver")),
                Check("GPU", False, "none visible (no CUDA driver)", fix("gpu"))]
    nvidia = nvidia_driver_version()
    cuda = f"CUDA {driver.cuda[0]}.{driver.cuda[1]}"
    checks = [Check("CUDA driver", True, f"{nvidia} ({cuda})" if nvidia else cuda)]
    if not driver.gpus:
        return [*checks, Check("GPU", False, f"none usable: {driver.problem or 'none found'}",
                               fix("gpu"))]
    return checks + [Check(f"GPU {i}", True, gpu) for i, gpu in enumerate(driver.gpus)]


def backend_check(driver: Driver) -> Check:
    """cuda-python or pycuda installed, and usable where there is a GPU (make_backend)."""
    major = driver.cuda[0] if driver.cuda else None
    install = f'pip install "cuda-python<{major + 1}"' if major else fix("backend")
    installed = [f"{name} {version}" for name, version in (
        ("cuda-python", dist_version("cuda-python", "cuda-bindings")),
        ("pycuda", dist_version("pycuda"))) if version]
    if not installed:
        return Check("CUDA back-end", False, "neither cuda-python nor pycuda is installed",
                     install)
    detail = ", ".join(installed)
    if not driver.gpus:
        return Check("CUDA back-end", True, f"{detail} (no GPU to use it on)")
    try:
        backend = make_backend("auto")
    except (BackendUnavailable, NoGpuError, CudaError) as err:
        return Check("CUDA back-end", False, f"{detail}, but unusable: {err}", install)
    backend.close()
    return Check("CUDA back-end", True, f"{backend.name} in use ({detail})")


def cuda_library_checks() -> list[Check]:
    """nvJPEG and NVRTC (infer.py --decode nvjpeg), found or not."""
    checks = []
    for label, stem in (("nvJPEG", "nvjpeg"), ("NVRTC", "nvrtc")):
        try:
            found = Path(load_cuda_library(stem)._name).name
        except CudaUnavailable:
            checks.append(Check(label, False, f"lib{stem}.so not found (needed only for "
                                "infer.py --decode nvjpeg)", fix(stem)))
        else:
            checks.append(Check(label, True, found))
    return checks


# ---------------------------------------------------------------------------------------------
# The whole machine.


@dataclass
class MachineReport:
    python: Check
    convert: list[Check]
    tensorrt: list[Check]
    cuda: list[Check]
    cuda_libs: list[Check]
    trt: ModuleType | None
    gpu_found: bool

    @property
    def checks(self) -> list[Check]:
        """Every line, in report order."""
        return [self.python, *self.convert, *self.tensorrt, *self.cuda, *self.cuda_libs]

    @property
    def can_convert(self) -> bool:
        """Python, TensorFlow, tf-keras, tf2onnx and the TFOD API."""
        return all(check.ok for check in [self.python, *self.convert])

    @property
    def can_build(self) -> bool:
        """TensorRT, its plugins, a CUDA back-end and a GPU."""
        return all(check.ok for check in [*self.tensorrt, *self.cuda])


def machine_report() -> MachineReport:
    """Every check of this machine."""
    trt, _ = installed_tensorrt()
    driver = query_driver()
    return MachineReport(python_check(), conversion_checks(), tensorrt_checks(trt),
                         [*driver_checks(driver), backend_check(driver)], cuda_library_checks(),
                         trt, bool(driver.gpus))


# ---------------------------------------------------------------------------------------------
# Model files: an ONNX model (can this TensorRT build it?) or an engine (can it load it?).






















