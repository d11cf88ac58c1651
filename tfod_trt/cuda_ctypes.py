"""CUDA through ctypes, for gpu_decode: finding the libraries (the CUDA toolkit or pip's
nvidia-* wheels), NVRTC to compile a kernel at run time, and the few driver calls the GPU
decode path makes itself (so that it works with either CUDA back-end of trt_runner, and from
any thread)."""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import site
import sys

import numpy as np

from tfod_trt.errors import UsageError


class CudaUnavailable(UsageError):
    """A CUDA library (nvJPEG, NVRTC, the driver) cannot be loaded or used here; the scripts
    report it as one line."""


# The pip wheels that ship a library, for CUDA 12 (CUDA 13: the same names without -cu12).
PIP_WHEELS = {"nvjpeg": "nvidia-nvjpeg-cu12", "nvrtc": "nvidia-cuda-nvrtc-cu12"}


def library_dirs() -> list[str]:
    """Where CUDA libraries may be: $CUDA_HOME / $CUDA_PATH, the toolkits in /usr/local (the
    newest first; Jetson's targets/ layout too), pip's nvidia-* wheels, the system folders."""
    dirs = [os.path.join(os.environ[name], "lib64") for name in ("CUDA_HOME", "CUDA_PATH")
            if os.environ.get(name)]
    for pattern in ("/usr/local/cuda*/lib64", "/usr/local/cuda*/targets/*/lib"):
        dirs += sorted(glob.glob(pattern), reverse=True)
    for packages in [*site.getsitepackages(), site.getusersitepackages(), *sys.path]:
        dirs += sorted(glob.glob(os.path.join(packages, "nvidia", "*", "lib")))
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64"]
    return list(dict.fromkeys(d for d in dirs if os.path.isdir(d)))


def load_cuda_library(stem: str) -> ctypes.CDLL:
    """``lib<stem>.so`` (the newest version found first): the loader's own search, then
    :func:`library_dirs`. Raises CudaUnavailable naming the places it looked."""
    folders = library_dirs()
    candidates = [f"lib{stem}.so"]
    for folder in folders:
        candidates += sorted(glob.glob(os.path.join(folder, f"lib{stem}.so*")), reverse=True)
    errors = []
    for candidate in candidates:
        try:
            return ctypes.CDLL(candidate)
        except OSError as err:
            errors.append(str(err))
    raise CudaUnavailable(
        f"lib{stem}.so not found or not loadable (looked in {', '.join(folders)}; "
        f"last error: {errors[-1] if errors else 'none'}); install the CUDA toolkit's {stem} "
        f"or the pip wheel {PIP_WHEELS.get(stem, 'of the CUDA toolkit')}, or use --decode "
        "processes")


@functools.cache
def compile_ptx(source: str, name: str, options: tuple[str, ...] = ("--fmad=false",)) -> bytes:
    """CUDA C -> PTX with NVRTC; compiler errors raise CudaUnavailable with the log."""
    nvrtc = load_cuda_library("nvrtc")
    void_p = ctypes.c_void_p
    program = void_p()
    nvrtc.nvrtcGetErrorString.restype = ctypes.c_char_p

    def check(status: int, call: str) -> None:
        if status != 0:
            reason = nvrtc.nvrtcGetErrorString(status).decode(errors="replace")
            raise CudaUnavailable(f"NVRTC {call}: {reason}")

    check(nvrtc.nvrtcCreateProgram(ctypes.byref(program), source.encode(), name.encode(), 0,
                                   None, None), "nvrtcCreateProgram")
    try:
        flags = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        status = nvrtc.nvrtcCompileProgram(program, len(options), flags)
        if status != 0:
            size = ctypes.c_size_t()
            nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
            text = ctypes.create_string_buffer(size.value)
            nvrtc.nvrtcGetProgramLog(program, text)
            raise CudaUnavailable(f"NVRTC cannot compile {name}: "
                                  f"{text.value.decode(errors='replace')}")
        size = ctypes.c_size_t()
        check(nvrtc.nvrtcGetPTXSize(program, ctypes.byref(size)), "nvrtcGetPTXSize")
        ptx = ctypes.create_string_buffer(size.value)
        check(nvrtc.nvrtcGetPTX(program, ptx), "nvrtcGetPTX")
        return ptx.raw
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


CU_STREAM_NON_BLOCKING = 1
CU_EVENT_DISABLE_TIMING = 2

# Driver calls that return as soon as the work is enqueued (see driver_library)
ENQUEUE_CALLS = ("cuCtxSetCurrent", "cuLaunchKernel", "cuMemcpyHtoDAsync_v2", "cuEventRecord",
                 "cuStreamWaitEvent", "cuGraphLaunch")


def _driver_signatures() -> dict[str, list]:
    void_p, size_t, pointer = ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER
    return {
        "cuGetErrorString": [ctypes.c_int, pointer(ctypes.c_char_p)],
        "cuCtxGetCurrent": [pointer(void_p)],
        "cuCtxSetCurrent": [void_p],
        "cuModuleLoadData": [pointer(void_p), ctypes.c_char_p],
        "cuModuleGetFunction": [pointer(void_p), void_p, ctypes.c_char_p],
        "cuModuleUnload": [void_p],
        "cuLaunchKernel": [void_p, *[ctypes.c_uint] * 7, void_p, pointer(void_p), void_p],
        "cuMemAlloc_v2": [pointer(ctypes.c_uint64), size_t],
        "cuMemFree_v2": [ctypes.c_uint64],
        "cuMemAllocHost_v2": [pointer(void_p), size_t],
        "cuMemFreeHost": [void_p],
        "cuMemcpyHtoDAsync_v2": [ctypes.c_uint64, void_p, size_t, void_p],
        "cuStreamSynchronize": [void_p],
        "cuStreamCreate": [pointer(void_p), ctypes.c_uint],
        "cuStreamDestroy_v2": [void_p],
        "cuStreamWaitEvent": [void_p, void_p, ctypes.c_uint],
        "cuEventCreate": [pointer(void_p), ctypes.c_uint],
        "cuEventRecord": [void_p, void_p],
        "cuEventDestroy_v2": [void_p],
        "cuGraphLaunch": [void_p, void_p],
    }


@functools.cache
def driver_library() -> tuple[ctypes.CDLL, ctypes.PyDLL]:
    """libcuda twice: a CDLL handle (its calls release the GIL) and a ``ctypes.PyDLL`` one for
    ENQUEUE_CALLS, which keep it. An enqueue takes microseconds, but a call that releases the
    GIL must win it back, which behind the pipeline's other threads took far longer than the
    call (docs/results/2026-11-25-interpreter-lock). Raises CudaUnavailable without a driver."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        raise CudaUnavailable(f"no CUDA driver (libcuda.so.1): {err}") from err
    enqueue = ctypes.PyDLL(lib._name)
    for name, argtypes in _driver_signatures().items():
        getattr(lib, name).argtypes = argtypes
        if name in ENQUEUE_CALLS:
            getattr(enqueue, name).argtypes = argtypes
    return lib, enqueue


def driver_error(status: int) -> str:
    """The driver's text for a CUresult."""
    text = ctypes.c_char_p()
    driver_library()[0].cuGetErrorString(status, ctypes.byref(text))
    return text.value.decode() if text.value else f"error {status}"


def check_status(status: int, what: str) -> None:
    """Raises CudaUnavailable ("WHAT: the driver's text") for a failed driver call."""
    if status != 0:
        raise CudaUnavailable(f"{what}: {driver_error(status)}")


class CudaDriver:
    """The few CUDA driver calls the GPU stage makes itself (ctypes on libcuda), so that it
    works with either back-end of trt_runner and from any thread: both back-ends run on the
    device's primary context, which :meth:`bind` makes current in the calling thread."""

    def __init__(self) -> None:
        self._lib, self._enqueue = driver_library()
        self.context = ctypes.c_void_p()
        self.check(self._lib.cuCtxGetCurrent(ctypes.byref(self.context)), "cuCtxGetCurrent")
        if not self.context:
            raise CudaUnavailable("no current CUDA context (create the runner first)")

    def check(self, status: int, call: str) -> None:
        """Raises CudaUnavailable for a failed driver call."""
        check_status(status, f"CUDA driver {call}")

    def bind(self) -> None:
        """Makes the runner's context current in this thread."""
        self.check(self._enqueue.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    def load_function(self, ptx: bytes, name: str) -> tuple[ctypes.c_void_p, ctypes.c_void_p]:
        """(module, function) of a PTX module."""
        module, function = ctypes.c_void_p(), ctypes.c_void_p()
        self.check(self._lib.cuModuleLoadData(ctypes.byref(module), ptx),
                   "cuModuleLoadData (PTX newer than the driver?)")
        self.check(self._lib.cuModuleGetFunction(ctypes.byref(function), module, name.encode()),
                   "cuModuleGetFunction")
        return module, function

    def unload(self, module: ctypes.c_void_p) -> None:
        self._lib.cuModuleUnload(module)

    @staticmethod
    def kernel_params(*args: ctypes._SimpleCData) -> ctypes.Array:
        """The parameter array :meth:`launch` takes: pointers to ``args`` (ctypes values, in
        the kernel's order), which may be changed between launches and must outlive them."""
        return (ctypes.c_void_p * len(args))(
            *(ctypes.cast(ctypes.byref(arg), ctypes.c_void_p) for arg in args))

    def launch(self, function: ctypes.c_void_p, grid: tuple[int, int, int],
               block: tuple[int, int, int], stream: int, params: ctypes.Array) -> None:
        """Enqueues ``function`` on ``stream`` with ``params`` (:meth:`kernel_params`)."""
        self.check(self._enqueue.cuLaunchKernel(function, *grid, *block, 0,
                                                ctypes.c_void_p(stream), params, None),
                   "cuLaunchKernel")

    def malloc(self, nbytes: int) -> int:
        pointer = ctypes.c_uint64()
        self.check(self._lib.cuMemAlloc_v2(ctypes.byref(pointer), max(nbytes, 1)), "cuMemAlloc")
        return pointer.value

    def free(self, pointer: int) -> None:
        self._lib.cuMemFree_v2(pointer)

    def pinned(self, nbytes: int) -> np.ndarray:
        """Page-locked host memory as a uint8 array (free it with :meth:`free_pinned`)."""
        pointer = ctypes.c_void_p()
        self.check(self._lib.cuMemAllocHost_v2(ctypes.byref(pointer), nbytes), "cuMemAllocHost")
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(pointer.value))

    def free_pinned(self, array: np.ndarray) -> None:
        self._lib.cuMemFreeHost(ctypes.c_void_p(array.ctypes.data))

    def copy_htod_async(self, device: int, host: np.ndarray, stream: int) -> None:
        """Enqueues a copy from page-locked ``host`` memory (:meth:`pinned`)."""
        self.check(self._enqueue.cuMemcpyHtoDAsync_v2(
            device, ctypes.c_void_p(host.ctypes.data), host.nbytes, ctypes.c_void_p(stream)),
            "cuMemcpyHtoDAsync")

    def upload(self, device: int, host: np.ndarray, stream: int) -> None:
        """Copies ordinary (pageable) ``host`` memory on ``stream``; returns once the driver
        has taken the bytes (``host`` may then be freed)."""
        self.check(self._lib.cuMemcpyHtoDAsync_v2(device, ctypes.c_void_p(host.ctypes.data),
                                                  host.nbytes, ctypes.c_void_p(stream)),
                   "cuMemcpyHtoDAsync")

    def synchronize(self, stream: int) -> None:
        self.check(self._lib.cuStreamSynchronize(ctypes.c_void_p(stream)), "cuStreamSynchronize")

    def create_stream(self) -> int:
        """A stream that does not wait for the legacy default stream."""
        stream = ctypes.c_void_p()
        self.check(self._lib.cuStreamCreate(ctypes.byref(stream), CU_STREAM_NON_BLOCKING),
                   "cuStreamCreate")
        return stream.value

    def destroy_stream(self, stream: int) -> None:
        self._lib.cuStreamDestroy_v2(ctypes.c_void_p(stream))

    def create_event(self) -> int:
        """An event for ordering only (no timing)."""
        event = ctypes.c_void_p()
        self.check(self._lib.cuEventCreate(ctypes.byref(event), CU_EVENT_DISABLE_TIMING),
                   "cuEventCreate")
        return event.value

    def record_event(self, event: int, stream: int) -> None:
        """Records ``event`` after the work enqueued on ``stream`` so far."""
        self.check(self._enqueue.cuEventRecord(ctypes.c_void_p(event), ctypes.c_void_p(stream)),
                   "cuEventRecord")

    def stream_wait_event(self, stream: int, event: int) -> None:
        """Work enqueued on ``stream`` from now on waits, on the GPU, for ``event``."""
        self.check(self._enqueue.cuStreamWaitEvent(ctypes.c_void_p(stream),
                                                   ctypes.c_void_p(event), 0),
                   "cuStreamWaitEvent")

    def destroy_event(self, event: int) -> None:
        self._lib.cuEventDestroy_v2(ctypes.c_void_p(event))
