"""What the runner needs of CUDA (memory, copies, streams, events, graphs), as an interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call."""


class NoGpuError(RuntimeError):
    """No usable NVIDIA GPU (or driver) on this machine."""


class BackendUnavailable(ImportError):
    """The requested CUDA Python back-end is not installed."""


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
