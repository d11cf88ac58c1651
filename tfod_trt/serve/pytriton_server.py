"""A Triton Inference Server started from Python through PyTriton (the nvidia-pytriton wheel
carries the ``tritonserver`` binary), serving one detector with the protocol of interface.py:
serve_triton.py's server."""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import socket
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tfod_trt.errors import UsageError
from tfod_trt.optional import pytriton
from tfod_trt.serve.interface import IMAGES, NUMPY_TYPES, image_dims, result_dims

EXIT_TIMEOUT_S = 5  # how long a stopping server waits for the requests in flight
ALIVE_POLL_S = 1.0


class ServerError(Exception):
    """The server could not start, or ended by itself."""


@dataclass(frozen=True)
class ServerOptions:
    """What the server is called and how it batches and listens."""

    name: str
    max_batch: int
    queue_delay_us: int = 0
    http_port: int = 8000
    grpc_port: int = 8001


def check_port(port: int, flag: str) -> None:
    """UsageError where ``port`` is taken on this machine (the server listens on every
    address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as err:
            reason = ("in use by another program" if err.errno == errno.EADDRINUSE
                      else err.strerror or str(err))
            raise UsageError(f"{flag} {port}: {reason}: choose another port") from err


def use_this_python() -> None:
    """Has the server's Python models run on this interpreter: its shared libpython found
    first (the wheel's stub links ``libpython3.X.so``, which may otherwise be the system's,
    of another patch release than this standard library) and its environment's bin first on
    PATH (where the stub's embedded Python finds its prefix); and the libraries the wheel's
    ``tritonserver`` links found wherever PyTriton is installed."""
    _on_path("LD_LIBRARY_PATH", sysconfig.get_config_var("LIBDIR") or "", first=True)
    _on_path("PATH", str(Path(sys.executable).parent), first=True)
    _on_path("LD_LIBRARY_PATH", server_libraries() or "", first=False)


def _on_path(variable: str, folder: str, first: bool) -> None:
    """``folder`` put first on the search path ``variable`` (unless it is first already), or
    last where it is not on it at all; nothing for an empty ``folder``."""
    parts = [part for part in os.environ.get(variable, "").split(os.pathsep) if part]
    if not folder or (parts[:1] == [folder] if first else folder in parts):
        return
    os.environ[variable] = os.pathsep.join([folder, *parts] if first else [*parts, folder])


def server_libraries() -> str | None:
    """The folder of the libraries that the wheel's ``tritonserver`` links (libcudart, ...),
    beside the pytriton package. PyTriton finds it itself only in site-packages: installed
    elsewhere (``pip install --target``, a folder on PYTHONPATH) it takes itself for an
    editable install, looks in its source tree, and the server never starts."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.origin:
        return None
    libraries = Path(spec.origin).parent.parent / "nvidia_pytriton.libs"
    return str(libraries) if libraries.is_dir() else None


def _tensors(model_config, specs: dict[str, tuple[str, tuple[int, ...]]]) -> list:
    return [model_config.Tensor(name=name, dtype=NUMPY_TYPES[data_type], shape=dims)
            for name, (data_type, dims) in specs.items()]


class DetectorServer:
    """PyTriton, and the ports checked free, before anything slow is done; then ``serve``."""

    def __init__(self, options: ServerOptions) -> None:
        self.triton, self.model_config = pytriton("serve_triton.py",
                                                  "serve_triton.py --onnx model.onnx")
        check_port(options.http_port, "--http_port")
        check_port(options.grpc_port, "--grpc_port")
        self.options = options

    def serve(self, infer_funcs: Sequence[Callable], max_detections: int,
              on_ready: Callable[[], None], stop: threading.Event | None = None) -> None:
        """Starts tritonserver with the model ``options.name`` (an instance per callable of
        ``infer_funcs``), calls ``on_ready`` once it answers, and serves until ``stop`` is
        set or a stop signal's exception comes; ServerError where it cannot start or ends by
        itself. The server and its model processes are stopped on the way out."""
        use_this_python()
        logging.getLogger("pytriton").setLevel(logging.WARNING)
        options, stop = self.options, stop or threading.Event()
        config = self.triton.TritonConfig(http_port=options.http_port,
                                          grpc_port=options.grpc_port, allow_metrics=False,
                                          exit_timeout_secs=EXIT_TIMEOUT_S)
        server = self.triton.Triton(config=config)
        # the binary's INFO lines (tables of its settings, each model load) stay out of the
        # terminal; its warnings and errors come through. PyTriton has no setting for it.
        server._triton_server_config["log-info"] = False
        with _running(server):
            self._bind(server, infer_funcs, max_detections)
            on_ready()
            while not stop.wait(ALIVE_POLL_S):
                if not server.is_alive():
                    raise ServerError("the Triton server stopped by itself")

    def _bind(self, server, infer_funcs: Sequence[Callable], max_detections: int) -> None:
        """Loads the model: images in, the answer out, batched by Triton's dynamic batcher."""
        options, model_config = self.options, self.model_config
        batching = model_config.ModelConfig(
            batching=True, max_batch_size=options.max_batch,
            batcher=model_config.DynamicBatcher(
                max_queue_delay_microseconds=options.queue_delay_us))
        try:
            server.bind(model_name=options.name, infer_func=list(infer_funcs),
                        inputs=_tensors(model_config, {IMAGES: image_dims()}),
                        outputs=_tensors(model_config, result_dims(max_detections)),
                        config=batching, strict=True)
        except Exception as err:  # whatever PyTriton raises for a model that does not load
            raise ServerError(f"the model could not be loaded: {type(err).__name__}: "
                              f"{err}") from err


@contextlib.contextmanager
def _running(server) -> Iterator[None]:
    """PyTriton's ``with server:``, where a server that does not start is a ServerError (its
    own lines, printed above, say why) and is stopped."""
    try:
        server.__enter__()
    except Exception as err:  # whatever PyTriton raises for a server that never answers
        with contextlib.suppress(Exception):
            server.stop()
        raise ServerError(f"the Triton server did not start ({type(err).__name__}: {err}); "
                          "the lines of tritonserver above say why") from err
    try:
        yield
    finally:
        server.__exit__(None, None, None)
