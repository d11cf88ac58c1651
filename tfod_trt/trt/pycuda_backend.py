"""The CUDA back-end through pycuda (the alternative to cuda-python)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tfod_trt.trt.cuda_backend import BackendUnavailable, CudaBackend, CudaError, NoGpuError


class PyCudaBackend(CudaBackend):
    """pycuda on the device's primary context (the one TensorRT's runtime API uses)."""

    name = "pycuda"

    def __init__(self) -> None:
        try:
            import pycuda.driver as cuda
        except ImportError as err:
            raise BackendUnavailable(f"pycuda is not installed ({err})") from err
        self._cuda = cuda
        try:
            self._call("cuInit", cuda.init)
            count = self._call("cuDeviceGetCount", cuda.Device.count)
        except CudaError as err:
            raise NoGpuError(f"no usable NVIDIA GPU here: {err}") from err
        if count < 1:
            raise NoGpuError("no usable NVIDIA GPU here: cuDeviceGetCount found none")
        self._context = self._call("cuDevicePrimaryCtxRetain",
                                   cuda.Device(0).retain_primary_context)
        self._call("cuCtxPushCurrent", self._context.push)
        self._stream_obj = self._call("cuStreamCreate", cuda.Stream)
        self._streams: dict[int, Any] = {}  # extra streams: handle -> pycuda Stream
        self._allocations: dict[int, Any] = {}

    def _call(self, name: str, function: Any, *args: Any) -> Any:
        try:
            return function(*args)
        except self._cuda.Error as err:
            raise CudaError(f"{name} failed: {err}") from err

    @property
    def stream(self) -> int:
        return int(self._stream_obj.handle)

    def malloc(self, nbytes: int) -> int:
        allocation = self._call("cuMemAlloc", self._cuda.mem_alloc, max(nbytes, 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        self._call("cuMemFree", self._allocations.pop(pointer).free)

    def pinned_empty(self, count: int, dtype: np.dtype) -> np.ndarray:
        return self._call("cuMemHostAlloc", self._cuda.pagelocked_empty, (count,), dtype)

    def free_pinned(self, array: np.ndarray) -> None:
        self._call("cuMemFreeHost", array.base.free)

    def _stream_object(self, stream: int | None) -> Any:
        if stream is None or stream == self.stream:
            return self._stream_obj
        return self._streams[stream]

    def copy_htod_async(self, device: int, host: np.ndarray, stream: int | None = None
                        ) -> None:
        self._call("cuMemcpyHtoDAsync", self._cuda.memcpy_htod_async, device, host,
                   self._stream_object(stream))

    def copy_dtoh_async(self, host: np.ndarray, device: int, stream: int | None = None
                        ) -> None:
        self._call("cuMemcpyDtoHAsync", self._cuda.memcpy_dtoh_async, host, device,
                   self._stream_object(stream))

    def synchronize(self) -> None:
        self._call("cuStreamSynchronize", self._stream_obj.synchronize)

    def create_stream(self) -> int:
        stream = self._call("cuStreamCreate", self._cuda.Stream)
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def destroy_stream(self, stream: int) -> None:
        self._call("cuStreamSynchronize", self._streams.pop(stream).synchronize)

    def create_event(self) -> Any:
        return self._call("cuEventCreate", self._cuda.Event)

    def record_event(self, event: Any, stream: int | None = None) -> None:
        self._call("cuEventRecord", event.record, self._stream_object(stream))

    def wait_event(self, event: Any, stream: int | None = None) -> None:
        self._call("cuStreamWaitEvent", self._stream_object(stream).wait_for_event, event)

    def synchronize_event(self, event: Any) -> None:
        self._call("cuEventSynchronize", event.synchronize)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("cuEventElapsedTime", end.time_since, start))

    def destroy_event(self, event: Any) -> None:
        pass  # pycuda frees the event with the object

    def close(self) -> None:
        if self._context is not None:
            self.synchronize()
            for handle in list(self._streams):
                self.destroy_stream(handle)
            self._call("cuCtxPopCurrent", self._context.pop)
            self._context = None
