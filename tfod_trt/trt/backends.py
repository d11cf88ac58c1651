"""Choosing the CUDA back-end: cuda-python where installed, else pycuda."""

from __future__ import annotations

from tfod_trt.trt.cuda_backend import BackendUnavailable, CudaBackend
from tfod_trt.trt.cuda_python import CudaPythonBackend
from tfod_trt.trt.pycuda_backend import PyCudaBackend

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
