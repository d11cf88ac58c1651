"""Runs a TensorRT engine (8.6, 10.x or 11.x) with the same interface as reference_runner:
``TrtRunner(engine).infer(batch) -> {output name: array}``.

Tensor-name API only, static or dynamic (optimization profile 0) input shapes, pinned host
buffers, asynchronous copies and execution on one CUDA stream, optional CUDA graph replay.
CUDA is reached through a small back-end interface implemented with cuda-python or pycuda.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

import trt_compat
from cuda_ctypes import CudaUnavailable, driver_error, driver_library
from onnx_utils import TRUE_IMAGE_SHAPE

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

REBUILD = "rebuild with build_engine.py"


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call."""


class NoGpuError(RuntimeError):
    """No usable NVIDIA GPU (or driver) on this machine."""


class BackendUnavailable(ImportError):
    """The requested CUDA Python back-end is not installed."""


class EngineError(RuntimeError):
    """The engine file cannot be loaded or run."""


def metadata_path(engine_path: str | Path) -> Path:
    """Where build_engine.py keeps an engine's metadata: ``<engine>.json`` beside it."""
    return Path(f"{engine_path}.json")


def read_engine_metadata(engine_path: str | Path) -> dict:
    """The metadata saved with an engine (the ONNX's, plus an "engine" entry), or {}."""
    path = metadata_path(engine_path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise EngineError(f"{path}: unreadable engine metadata ({err}); {REBUILD}") from err


# ---------------------------------------------------------------------------------------------
# CUDA back-ends: one stream each; device pointers and stream handles are plain ints.


class CudaBackend(ABC):
    """What the runner and the INT8 calibrator need from CUDA, on one stream."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def stream(self) -> int:
        """The stream's handle, as TensorRT's ``execute_async_v3`` takes it."""

    @abstractmethod
    def malloc(self, nbytes: int) -> int: ...

    @abstractmethod
    def free(self, pointer: int) -> None: ...

    @abstractmethod
    def pinned_empty(self, count: int, dtype: np.dtype) -> np.ndarray:
        """A flat page-locked host array of ``count`` elements."""

    @abstractmethod
    def free_pinned(self, array: np.ndarray) -> None: ...

    @abstractmethod
    def copy_htod_async(self, device: int, host: np.ndarray, stream: int | None = None
                        ) -> None:
        """Host -> device on ``stream`` (default: the back-end's own stream)."""

    @abstractmethod
    def copy_dtoh_async(self, host: np.ndarray, device: int, stream: int | None = None
                        ) -> None:
        """Device -> host on ``stream`` (default: the back-end's own stream)."""

    @abstractmethod
    def synchronize(self) -> None: ...

    # Extra streams and events (benchmark timing, the overlapped pipeline). Streams are ints.
    @abstractmethod
    def create_stream(self) -> int: ...

    @abstractmethod
    def destroy_stream(self, stream: int) -> None: ...

    @abstractmethod
    def create_event(self) -> Any:
        """A CUDA event with timing enabled."""

    @abstractmethod
    def record_event(self, event: Any, stream: int | None = None) -> None: ...

    @abstractmethod
    def wait_event(self, event: Any, stream: int | None = None) -> None:
        """Makes ``stream`` (default: the back-end's own) wait for ``event``'s last record."""

    @abstractmethod
    def synchronize_event(self, event: Any) -> None: ...

    @abstractmethod
    def elapsed_ms(self, start: Any, end: Any) -> float:
        """Milliseconds between two recorded (and completed) events."""

    @abstractmethod
    def destroy_event(self, event: Any) -> None: ...

    # CUDA graphs are optional: a back-end without them makes the runner fall back.
    supports_graphs = False

    def _no_graphs(self) -> CudaError:
        return CudaError(f"the {self.name} back-end cannot capture CUDA graphs")

    def begin_capture(self) -> None:
        raise self._no_graphs()

    def end_capture(self) -> Any:
        """Ends the capture begun on the stream; returns an instantiated graph."""
        raise self._no_graphs()

    def launch_graph(self, graph: Any) -> None:
        raise self._no_graphs()

    def destroy_graph(self, graph: Any) -> None:
        raise self._no_graphs()

    @abstractmethod
    def close(self) -> None: ...


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


BACKENDS: dict[str, type[CudaBackend]] = {
    CudaPythonBackend.name: CudaPythonBackend,
    PyCudaBackend.name: PyCudaBackend,
}


def make_backend(name: str = "auto") -> CudaBackend:
    """A CUDA back-end: "cuda-python", "pycuda", or "auto" (cuda-python, else pycuda)."""
    if name != "auto":
        if name not in BACKENDS:
            raise ValueError(f"unknown CUDA back-end {name!r}: use auto, {', '.join(BACKENDS)}")
        return BACKENDS[name]()
    missing = []
    for backend in BACKENDS.values():
        try:
            return backend()
        except BackendUnavailable as err:
            missing.append(str(err))
    raise BackendUnavailable("no CUDA Python back-end: " + "; ".join(missing))


# ---------------------------------------------------------------------------------------------
# The runner.


@dataclass
class _Tensor:
    """One engine input or output: its shape now, pinned host and device buffers."""

    name: str
    dtype: np.dtype
    is_input: bool
    shape: tuple[int, ...] = ()
    host: np.ndarray | None = None  # flat, capacity elements
    device: int = 0

    @property
    def view(self) -> np.ndarray:
        """The host buffer as an array of the current shape."""
        return self.host[: math.prod(self.shape)].reshape(self.shape)


class TrtRunner:
    """``TrtRunner(engine).infer(batch)`` -> every engine output by name, as numpy arrays."""

    def __init__(self, engine_path: str | Path, cuda_backend: str = "auto",
                 use_cuda_graph: bool = False) -> None:
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"engine {self.path} not found: build it with build_engine.py")
        self._trt = trt = trt_compat.require_tensorrt()
        self.metadata = read_engine_metadata(self.path)
        self.backend = make_backend(cuda_backend)
        self.use_cuda_graph = use_cuda_graph
        self._graph: Any = None
        self._tensors: list[_Tensor] = []
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine: trt.ICudaEngine = self._deserialize()
        self.context: trt.IExecutionContext = self.engine.create_execution_context()
        if self.context is None:
            raise EngineError(f"{self.path}: TensorRT could not create an execution context")
        self._tensors = [self._describe(i) for i in range(self.engine.num_io_tensors)]
        self._input = self._image_input()
        self._true_shape = next((t for t in self._tensors if t.name == TRUE_IMAGE_SHAPE), None)
        if not self.is_dynamic:
            self._set_shape(self.input_shape)

    def _deserialize(self) -> trt.ICudaEngine:
        trt = self._trt
        trt.init_libnvinfer_plugins(self.logger, "")
        self._runtime: trt.Runtime = trt.Runtime(self.logger)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise EngineError(f"{self.path}: TensorRT {trt.__version__} cannot load this "
                              f"engine: {self._likely_cause()}; {REBUILD}")
        return engine

    def _likely_cause(self) -> str:
        built = self.metadata.get("engine", {}).get("tensorrt_version")
        if built and built != self._trt.__version__:
            return f"it was built by TensorRT {built}"
        return ("it was built by another TensorRT version or for another GPU, "
                "or the file is damaged")

    def _describe(self, index: int) -> _Tensor:
        trt = self._trt
        name = self.engine.get_tensor_name(index)
        return _Tensor(
            name=name,
            dtype=np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))),
            is_input=self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
        )

    def _image_input(self) -> _Tensor:
        """The image input; besides it an engine may only have ``true_image_shape``."""
        inputs = [t for t in self._tensors if t.is_input and t.name != TRUE_IMAGE_SHAPE]
        if len(inputs) != 1:
            names = [t.name for t in self._tensors if t.is_input]
            raise EngineError(f"{self.path}: expected an image input (and optionally "
                              f"{TRUE_IMAGE_SHAPE}), found inputs {names}")
        return inputs[0]

    # -- what the engine takes and gives -----------------------------------------------------

    @property
    def input_name(self) -> str:
        return self._input.name

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self._tensors if not t.is_input]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The engine's input shape; -1 marks a dimension chosen at run time."""
        return tuple(self.engine.get_tensor_shape(self.input_name))

    @property
    def input_dtype(self) -> np.dtype:
        return self._input.dtype

    @property
    def is_dynamic(self) -> bool:
        return any(d < 0 for d in self.input_shape)

    @property
    def profile_shapes(self) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) input shapes of optimization profile 0 (static: the shape thrice)."""
        if not self.is_dynamic:
            return (self.input_shape,) * 3
        shapes = self.engine.get_tensor_profile_shape(self.input_name, 0)
        return tuple(tuple(shape) for shape in shapes)

    @property
    def batch_size(self) -> int:
        """The static batch size, or the largest one the profile allows."""
        return self.profile_shapes[2][0]

    # -- running --------------------------------------------------------------------------------

    @property
    def needs_true_image_shape(self) -> bool:
        """Whether the engine takes ``true_image_shape`` [B,2] besides the image batch."""
        return self._true_shape is not None

    def infer(self, batch: np.ndarray,
              true_image_shape: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Runs one batch (the engine's input layout) and returns every output by name;
        engines with a ``true_image_shape`` input need it too
        (image_batcher.Batch.true_image_shape)."""
        batch = np.asarray(batch)
        shape = self._check_shape(batch.shape)
        if shape != self._input.shape:
            self._set_shape(shape)
        np.copyto(self._input.view, batch, casting="same_kind")
        self.set_true_image_shape(true_image_shape)
        self.copy_inputs_async()
        if self._graph is not None:
            self.backend.launch_graph(self._graph)
        else:
            self._execute()
        outputs = [t for t in self._tensors if not t.is_input]
        for tensor in outputs:
            self.backend.copy_dtoh_async(tensor.view, tensor.device)
        self.backend.synchronize()
        results = {t.name: t.view.copy() for t in outputs}
        if self.use_cuda_graph and self._graph is None:
            self._capture_graph()
        return results

    # -- pieces of ``infer`` for benchmarks and pipelines (all on the back-end's stream) --------

    def set_input_shape(self, shape: tuple[int, ...]) -> None:
        """Checks ``shape`` against the profile and prepares the buffers for it."""
        shape = self._check_shape(tuple(shape))
        if shape != self._input.shape:
            self._set_shape(shape)

    @property
    def host_input(self) -> np.ndarray:
        """The pinned input buffer at the current shape (what ``copy_inputs_async`` sends)."""
        return self._input.view

    def set_true_image_shape(self, true_image_shape: np.ndarray | None) -> None:
        """Fills the ``true_image_shape`` host buffer (checked against the engine's inputs)."""
        if self._true_shape is None:
            if true_image_shape is not None:
                raise ValueError(f"{self.path}: this engine has no {TRUE_IMAGE_SHAPE} input")
            return
        if true_image_shape is None:
            raise ValueError(f"{self.path}: this engine needs the {TRUE_IMAGE_SHAPE} input "
                             "[B,2] (each image's resized height and width before padding)")
        if np.shape(true_image_shape) != self._true_shape.shape:
            raise ValueError(f"{TRUE_IMAGE_SHAPE} must have shape {self._true_shape.shape}, "
                             f"got {np.shape(true_image_shape)}")
        np.copyto(self._true_shape.view, true_image_shape, casting="same_kind")

    def copy_inputs_async(self) -> None:
        """Enqueues the host -> device copies of the input buffers."""
        for tensor in self._tensors:
            if tensor.is_input:
                self.backend.copy_htod_async(tensor.device, tensor.view)

    def enqueue(self) -> None:
        """Enqueues one inference: the captured CUDA graph if there is one, else
        ``execute_async_v3``."""
        if self._graph is not None:
            self.backend.launch_graph(self._graph)
        else:
            self._execute()

    def copy_outputs_async(self) -> None:
        """Enqueues the device -> host copies of every output."""
        for tensor in self._tensors:
            if not tensor.is_input:
                self.backend.copy_dtoh_async(tensor.view, tensor.device)

    def output_views(self) -> dict[str, np.ndarray]:
        """The pinned output buffers at the current shapes (valid after a synchronize)."""
        return {t.name: t.view for t in self._tensors if not t.is_input}

    def capture_graph(self) -> bool:
        """Captures a CUDA graph for the current shape (after at least one normal run);
        True when ``enqueue`` now replays it, False when the back-end cannot capture."""
        self.use_cuda_graph = True
        if self._graph is None:
            self.backend.synchronize()
            self._capture_graph()
        return self._graph is not None

    def release_graph(self) -> None:
        """Drops the captured graph: ``enqueue`` calls ``execute_async_v3`` again."""
        self._drop_graph()
        self.use_cuda_graph = False

    def pipeline(self, shape: tuple[int, ...], depth: int = 2, cuda_graphs: bool = True,
                 host_input: bool = True) -> TrtPipeline:
        """A :class:`TrtPipeline` with ``depth`` buffer sets for input ``shape``."""
        return TrtPipeline(self, shape, depth, cuda_graphs, host_input)

    def _check_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        low, _, high = self.profile_shapes
        fits = len(shape) == len(high) and all(
            lo <= d <= hi for d, lo, hi in zip(shape, low, high, strict=True))
        if not fits:
            allowed = high if low == high else f"{low} .. {high}"
            raise ValueError(
                f"{self.path}: input {self.input_name} takes shape {allowed} "
                f"({self.input_dtype}), got a batch of shape {shape}"
            )
        return tuple(shape)

    def _set_shape(self, shape: tuple[int, ...]) -> None:
        """New input shape: tells TensorRT, resizes the buffers, drops the captured graph."""
        if self.is_dynamic and not self.context.set_input_shape(self.input_name, shape):
            raise EngineError(f"{self.path}: TensorRT refused input shape {shape}")
        self._drop_graph()
        self._allocate(self._input, shape)
        if self._true_shape is not None:
            true_shape = (shape[0], 2)
            if self.is_dynamic and not self.context.set_input_shape(TRUE_IMAGE_SHAPE, true_shape):
                raise EngineError(f"{self.path}: TensorRT refused {TRUE_IMAGE_SHAPE} {true_shape}")
            self._allocate(self._true_shape, true_shape)
        for tensor in self._tensors:
            if not tensor.is_input:
                out_shape = tuple(self.context.get_tensor_shape(tensor.name))
                if any(d < 0 for d in out_shape):
                    raise EngineError(
                        f"{self.path}: output {tensor.name} has a data-dependent shape "
                        f"{out_shape}, which this runner does not support"
                    )
                self._allocate(tensor, out_shape)

    def _allocate(self, tensor: _Tensor, shape: tuple[int, ...]) -> None:
        """Grows the tensor's buffers when the new shape needs more room."""
        count = math.prod(shape)
        if tensor.host is None or tensor.host.size < count:
            self._free(tensor)
            tensor.host = self.backend.pinned_empty(count, tensor.dtype)
            tensor.device = self.backend.malloc(count * tensor.dtype.itemsize)
            self._set_address(tensor.name, tensor.device)
        tensor.shape = shape

    def _set_address(self, name: str, pointer: int) -> None:
        if not self.context.set_tensor_address(name, pointer):
            raise EngineError(f"{self.path}: TensorRT refused the address of {name}")

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.backend.stream):
            raise EngineError(f"{self.path}: execute_async_v3 failed (see the TensorRT log)")

    def _capture_graph(self) -> None:
        """Captures execute_async_v3 into a CUDA graph (after a normal run has done TensorRT's
        lazy set-up); when capture fails, runs without a graph from then on."""
        self._graph = self._try_capture("running without")
        if self._graph is None:
            self.use_cuda_graph = False

    def _try_capture(self, fallback: str, then: Callable[[], None] | None = None) -> Any:
        """execute_async_v3 with the current addresses (then what ``then`` enqueues on the
        stream) as a CUDA graph, or None with a warning that ends with ``fallback`` (what
        happens instead)."""
        try:
            return self._captured_execute(then)
        except (CudaError, EngineError) as err:
            log.warning("CUDA graph capture failed, %s: %s", fallback, err)
            return None

    def _captured_execute(self, then: Callable[[], None] | None = None) -> Any:
        self.backend.begin_capture()
        try:
            enqueued = self.context.execute_async_v3(self.backend.stream)
            if enqueued and then is not None:
                then()
        finally:
            graph = self.backend.end_capture()
        if not enqueued:
            self.backend.destroy_graph(graph)
            raise EngineError("execute_async_v3 failed while capturing")
        return graph

    def _drop_graph(self) -> None:
        if self._graph is not None:
            self.backend.destroy_graph(self._graph)
            self._graph = None

    # -- clean-up -------------------------------------------------------------------------------

    def _free(self, tensor: _Tensor) -> None:
        if tensor.host is not None:
            self.backend.free_pinned(tensor.host)
            self.backend.free(tensor.device)
            tensor.host, tensor.device = None, 0

    def close(self) -> None:
        """Releases the engine, the buffers and the stream (also on ``with`` exit)."""
        if getattr(self, "backend", None) is None:
            return
        self.backend.synchronize()
        self._drop_graph()
        self.context = self.engine = self._runtime = None
        for tensor in self._tensors:
            self._free(tensor)
        self.backend.close()
        self.backend = None

    def __enter__(self) -> TrtRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone
            pass


# ---------------------------------------------------------------------------------------------
# Overlapped execution: several buffer sets, copies in on a second stream.


@dataclass
class _Slot:
    """One buffer set of a pipeline: pinned host and device buffers for every tensor."""

    host: dict[str, np.ndarray]  # name -> pinned array of the tensor's shape
    device: dict[str, int]  # name -> device pointer
    allocations: list[np.ndarray]  # the flat pinned arrays as allocated (freed as such)
    copied_in: Any  # event: the input has reached the device (copy stream)
    done: Any  # event: outputs are back on the host (compute stream)
    graph: Any = None  # execute_async_v3 with this slot's addresses, captured
    runs: int = 0


class TrtPipeline:
    """``depth`` sets of pinned host + device buffers over one TrtRunner (one context).

    ``submit(slot)`` enqueues: the input's host -> device copy on a copy stream, then on the
    runner's stream (after that copy) ``execute_async_v3`` with the slot's addresses and the
    outputs' device -> host copies. So batch N+1's input copy overlaps batch N's inference,
    and the host fills another slot meanwhile. ``wait(slot)`` returns the outputs. All calls
    must come from the thread that created the runner (pycuda's context is per thread);
    other threads may write into ``input_buffer(slot)`` of a slot not in flight. Without
    ``host_input`` the image input has no host buffer: it is written on the device
    (``device_input``, ``submit(input_on_device=True)``), as gpu_decode does.

    With ``cuda_graphs`` each slot's inference and copies out are captured into a CUDA graph
    on its second run (its addresses never change) and replayed from then on: one launch
    instead of TensorRT's per-layer enqueue and a copy per output on the host. Where capture
    fails: one warning, no graphs.
    """

    def __init__(self, runner: TrtRunner, shape: tuple[int, ...], depth: int = 2,
                 cuda_graphs: bool = True, host_input: bool = True) -> None:
        if depth < 1:
            raise ValueError(f"a pipeline needs at least 1 buffer set, got {depth}")
        runner.set_input_shape(shape)
        runner.release_graph()  # a graph would replay the runner's own addresses
        self.runner = runner
        self.depth = depth
        self._backend = backend = runner.backend
        self.cuda_graphs = cuda_graphs and backend.supports_graphs
        self._shapes = {t.name: t.shape for t in runner._tensors}
        self._dtypes = {t.name: t.dtype for t in runner._tensors}
        self._input_name = runner.input_name
        self._input_names = [t.name for t in runner._tensors if t.is_input]
        self.host_input = host_input
        self._copy_stream = backend.create_stream()
        self._slots: list[_Slot] = []
        try:
            for _ in range(depth):
                self._make_slot()
        except BaseException:
            self.close()
            raise

    def _make_slot(self) -> _Slot:
        backend = self._backend
        slot = _Slot({}, {}, [], backend.create_event(), backend.create_event())
        self._slots.append(slot)  # freed by close() even when a later allocation fails
        for name, shape in self._shapes.items():
            count = math.prod(shape)
            if self.host_input or name != self._input_name:
                flat = backend.pinned_empty(count, self._dtypes[name])
                slot.allocations.append(flat)
                slot.host[name] = flat.reshape(shape)
            slot.device[name] = backend.malloc(count * self._dtypes[name].itemsize)
        return slot

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The image input's shape."""
        return tuple(self._shapes[self._input_name])

    @property
    def input_dtype(self) -> np.dtype:
        """The image input's dtype."""
        return np.dtype(self._dtypes[self._input_name])

    @property
    def stream(self) -> int:
        """The stream the inferences are enqueued on."""
        return self._backend.stream

    def device_input(self, slot: int) -> int:
        """The device address of the slot's image input (for ``submit(input_on_device=True)``)."""
        return self._slots[slot].device[self._input_name]

    def input_buffer(self, slot: int, name: str | None = None) -> np.ndarray:
        """The slot's pinned array of an input (default: the image; the pipeline's shape and
        the engine's dtype; none for the image without ``host_input``)."""
        name = name or self._input_name
        if name == self._input_name and not self.host_input:
            raise ValueError("this pipeline takes its image input on the device (host_input "
                             "off): write device_input(slot)")
        return self._slots[slot].host[name]

    def submit(self, slot: int, true_image_shape: np.ndarray | None = None,
               input_on_device: bool = False) -> None:
        """Enqueues copy in, inference and copies out for the slot's input buffers
        (``true_image_shape``: for engines with that input, copied into the slot first;
        ``input_on_device``: the image is in ``device_input(slot)``, or will be, written by
        work :attr:`stream` was made to wait for, e.g. gpu_decode.GpuStage.order_engine)."""
        backend, s = self._backend, self._slots[slot]
        if not (input_on_device or self.host_input):
            raise ValueError("this pipeline takes its image input on the device (host_input "
                             "off): submit with input_on_device=True")
        if (TRUE_IMAGE_SHAPE in s.host) != (true_image_shape is not None):
            needs = "needs" if TRUE_IMAGE_SHAPE in s.host else "has no"
            raise ValueError(f"{self.runner.path}: this engine {needs} {TRUE_IMAGE_SHAPE} input")
        if true_image_shape is not None:
            np.copyto(s.host[TRUE_IMAGE_SHAPE], true_image_shape, casting="same_kind")
        copies = [name for name in self._input_names
                  if not (input_on_device and name == self._input_name)]
        if copies:  # else nothing to order: the input was written before this call
            backend.wait_event(s.done, self._copy_stream)  # the slot's previous run is over
            for name in copies:
                backend.copy_htod_async(s.device[name], s.host[name], self._copy_stream)
            backend.record_event(s.copied_in, self._copy_stream)
            backend.wait_event(s.copied_in)
        if s.graph is None:
            for name, pointer in s.device.items():
                self.runner._set_address(name, pointer)
            if self.cuda_graphs and s.runs:  # TensorRT's lazy set-up is done: capture
                s.graph = self.runner._try_capture("the pipeline runs without",
                                                   then=lambda: self._copy_outputs(s))
                self.cuda_graphs = s.graph is not None
        if s.graph is not None:  # the inference and the copies out, in one launch
            backend.launch_graph(s.graph)
        else:
            self.runner._execute()
            self._copy_outputs(s)
        s.runs += 1
        backend.record_event(s.done)

    def _copy_outputs(self, s: _Slot) -> None:
        for name, host in s.host.items():
            if name not in self._input_names:
                self._backend.copy_dtoh_async(host, s.device[name])

    def wait(self, slot: int) -> dict[str, np.ndarray]:
        """Waits for the slot's last submission; returns copies of its outputs."""
        s = self._slots[slot]
        self._backend.synchronize_event(s.done)
        return {name: host.copy() for name, host in s.host.items()
                if name not in self._input_names}

    def close(self) -> None:
        """Waits for the GPU, frees the slots and gives the runner its own buffers back."""
        if self._backend is None:
            return
        backend = self._backend
        backend.synchronize()
        for s in self._slots:
            backend.synchronize_event(s.done)
            for flat in s.allocations:
                backend.free_pinned(flat)
            for pointer in s.device.values():
                backend.free(pointer)
            backend.destroy_event(s.copied_in)
            backend.destroy_event(s.done)
            if s.graph is not None:
                backend.destroy_graph(s.graph)
        self._slots = []
        backend.destroy_stream(self._copy_stream)
        for tensor in self.runner._tensors:  # the runner's own buffers again
            self.runner.context.set_tensor_address(tensor.name, tensor.device)
        self._backend = None

    def __enter__(self) -> TrtPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
