"""Overlapped execution on one engine: several pinned buffer sets, input copies on a second
stream."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tfod_trt.metadata import TRUE_IMAGE_SHAPE

if TYPE_CHECKING:
    from tfod_trt.trt.runner import TrtRunner


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
