"""The CUDA back-end through cuda-python (preferred: it can capture CUDA graphs)."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from tfod_trt.cuda_ctypes import CudaUnavailable, driver_error, driver_library
from tfod_trt.trt.cuda_backend import BackendUnavailable, CudaBackend, CudaError, NoGpuError


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # cuda-python 12 before cuda.bindings (gone in 13)
        except ImportError as err:
            raise BackendUnavailable(
                f"cuda-python is not installed ({err}): pip install cuda-python"
            ) from err
    return cudart


def _enqueue_driver() -> Any:
    """libcuda's handle whose enqueue calls keep the GIL (cuda_ctypes.driver_library), or None
    where ctypes cannot load libcuda (then cudart's calls, which release it)."""
    try:
        return driver_library()[1]
    except CudaUnavailable:
        return None


class CudaPythonBackend(CudaBackend):
    """NVIDIA's cuda-python runtime bindings: every call returns (error, values...). The calls
    the pipeline makes per batch that only enqueue (event record and wait, graph launch) go to
    the driver without releasing the GIL, as gpu_decode's do (runtime and driver handles are
    the same objects)."""

    name = "cuda-python"

    def __init__(self) -> None:
        self._rt = _import_cudart()
        try:
            count = self._call("cudaGetDeviceCount")
        except CudaError as err:
            raise NoGpuError(f"no usable NVIDIA GPU here: {err}") from err
        if count < 1:
            raise NoGpuError("no usable NVIDIA GPU here: cudaGetDeviceCount found none")
        self._stream = self._call("cudaStreamCreate")
        self._streams: dict[int, Any] = {}  # extra streams: handle -> cudaStream_t
        self._enqueue = _enqueue_driver()

    def _call(self, name: str, *args: Any) -> Any:
        err, *values = getattr(self._rt, name)(*args)
        if int(err) != 0:
            _, text = self._rt.cudaGetErrorString(err)
            raise CudaError(f"{name} failed: {getattr(err, 'name', err)} ({text.decode()})")
        return values[0] if len(values) == 1 else tuple(values)

    def _enqueue_call(self, runtime_name: str, *handles: Any) -> None:
        """An enqueue-only runtime call (cudaX) made as its driver twin (cuX, same arguments)
        through the GIL-keeping handle, or as itself where there is none."""
        if self._enqueue is None:
            self._call(runtime_name, *handles)
            return
        name = "cu" + runtime_name.removeprefix("cuda")
        status = getattr(self._enqueue, name)(*(int(handle) for handle in handles))
        if status != 0:
            raise CudaError(f"{name} failed: {driver_error(status)}")

    @property
    def stream(self) -> int:
        return int(self._stream)

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", max(nbytes, 1)))

    def free(self, pointer: int) -> None:
        self._call("cudaFree", pointer)

    def pinned_empty(self, count: int, dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(count * dtype.itemsize, 1)
        pointer = int(self._call("cudaMallocHost", nbytes))
        raw = (ctypes.c_uint8 * nbytes).from_address(pointer)
        return np.frombuffer(raw, np.uint8)[: count * dtype.itemsize].view(dtype)

    def free_pinned(self, array: np.ndarray) -> None:
        self._call("cudaFreeHost", array.ctypes.data)

    def _stream_object(self, stream: int | None) -> Any:
        return self._stream if stream is None or stream == self.stream else self._streams[stream]

    def _copy(self, dst: int, src: int, nbytes: int, kind: str, stream: int | None) -> None:
        self._call("cudaMemcpyAsync", dst, src, nbytes, getattr(self._rt.cudaMemcpyKind, kind),
                   self._stream_object(stream))

    def copy_htod_async(self, device: int, host: np.ndarray, stream: int | None = None
                        ) -> None:
        self._copy(device, host.ctypes.data, host.nbytes, "cudaMemcpyHostToDevice", stream)

    def copy_dtoh_async(self, host: np.ndarray, device: int, stream: int | None = None
                        ) -> None:
        self._copy(host.ctypes.data, device, host.nbytes, "cudaMemcpyDeviceToHost", stream)

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self._stream)

    def create_stream(self) -> int:
        stream = self._call("cudaStreamCreate")
        self._streams[int(stream)] = stream
        return int(stream)

    def destroy_stream(self, stream: int) -> None:
        self._call("cudaStreamDestroy", self._streams.pop(stream))

    def create_event(self) -> Any:
        return self._call("cudaEventCreate")

    def record_event(self, event: Any, stream: int | None = None) -> None:
        self._enqueue_call("cudaEventRecord", event, self._stream_object(stream))

    def wait_event(self, event: Any, stream: int | None = None) -> None:
        self._enqueue_call("cudaStreamWaitEvent", self._stream_object(stream), event, 0)

    def synchronize_event(self, event: Any) -> None:
        self._call("cudaEventSynchronize", event)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("cudaEventElapsedTime", start, end))

    def destroy_event(self, event: Any) -> None:
        self._call("cudaEventDestroy", event)

    supports_graphs = True

    def begin_capture(self) -> None:
        mode = self._rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call("cudaStreamBeginCapture", self._stream, mode)

    def end_capture(self) -> Any:
        try:
            graph = self._call("cudaStreamEndCapture", self._stream)
        except CudaError:
            self._rt.cudaGetLastError()  # clears the failed capture's error; not sticky
            raise
        try:
            return self._call("cudaGraphInstantiate", graph, 0)
        finally:
            self._call("cudaGraphDestroy", graph)

    def launch_graph(self, graph: Any) -> None:
        self._enqueue_call("cudaGraphLaunch", graph, self._stream)

    def destroy_graph(self, graph: Any) -> None:
        self._call("cudaGraphExecDestroy", graph)

    def close(self) -> None:
        for handle in list(self._streams):
            self.destroy_stream(handle)
        if self._stream is not None:
            self._call("cudaStreamDestroy", self._stream)
            self._stream = None
