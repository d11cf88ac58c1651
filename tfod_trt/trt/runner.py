"""Runs a TensorRT engine (8.6, 10.x or 11.x) with the same interface as reference_runner:
``TrtRunner(engine).infer(batch) -> {output name: array}``.

Tensor-name API only, static or dynamic (optimization profile 0) input shapes, pinned host
buffers, asynchronous copies and execution on one CUDA stream, optional CUDA graph replay.
CUDA is reached through a small back-end interface implemented with cuda-python or pycuda.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tfod_trt.metadata import TRUE_IMAGE_SHAPE
from tfod_trt.trt import compat as trt_compat
from tfod_trt.trt.backends import make_backend
from tfod_trt.trt.cuda_backend import CudaError
from tfod_trt.trt.engine_file import REBUILD, EngineError, read_engine_metadata
from tfod_trt.trt.pipeline import TrtPipeline

if TYPE_CHECKING:
    import tensorrt as trt
log = logging.getLogger(__name__)


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
        # build_engine.py's <engine>.json; {} for an engine built elsewhere (trtexec, NVIDIA's
        # sample), which runs all the same: only preprocessing photos needs the metadata
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
