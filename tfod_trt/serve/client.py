"""The client of served detectors (infer.py and eval_coco.py --triton): image files sent to one
or more Triton servers that answer with the protocol of interface.py (an ensemble of
export_triton.py, or serve_triton.py), results handed on in the files' order.

Each server gets ``concurrency`` worker threads, all pulling requests from one queue. A server
that fails (connection refused or reset, a timeout, a 5xx answer) leaves the pool; its request
in flight goes back on the queue for the others (each request is tried at most MAX_ATTEMPTS
times), and once no server is left the remaining images fail. So every image is answered
once, or named in ``failed``."""

from __future__ import annotations

import argparse
import logging
import queue
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from tfod_trt.detect.results import ImageResult
from tfod_trt.errors import UsageError
from tfod_trt.optional import tritonclient_http
from tfod_trt.serve.interface import (
    IMAGES,
    MAX_IMAGES,
    RESULTS,
    ImageAnswer,
    unpack_answer,
)

log = logging.getLogger("triton")
MAX_ATTEMPTS = 3  # servers a request is sent to before its images fail
DEFAULT_CONCURRENCY = 2  # requests in flight per server
CONNECT_TIMEOUT_S = 10.0
TIMEOUT_S = 120.0  # a server that answers a request later than this has failed


@dataclass
class Request:
    """Images sent together: their positions in the run's list and files."""

    first: int
    paths: list[Path]
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class Server:
    url: str
    failed: str = ""  # why it left the pool


class ServerDown(Exception):
    """The server failed: its requests go to the others."""


class RequestRefused(Exception):
    """The server refused the request itself (4xx): no other server would take it."""


def parse_urls(text: str) -> list[str]:
    """``host:port[,host:port...]`` (``http://`` allowed) -> the servers' host:port."""
    urls = [part.strip() for part in text.split(",") if part.strip()]
    if not urls:
        raise UsageError(f"--triton {text!r}: name one or more servers, e.g. localhost:8000")
    plain = [url.removeprefix("http://").rstrip("/") for url in urls]
    for url, host_port in zip(urls, plain, strict=True):
        host, _, port = host_port.rpartition(":")
        if "://" in host_port or not host or not port.isdigit():
            raise UsageError(f"--triton {url!r}: not HOST:PORT of a server's HTTP endpoint "
                             "(e.g. localhost:8000)")
    if len(set(plain)) != len(plain):
        raise UsageError(f"--triton {text!r}: names a server twice")
    return plain


def images_per_request(config: dict) -> int:
    """The most images a request to the model may carry: its max_batch_size, or the ensemble's
    MAX_IMAGES parameter (a static batch), else 1."""
    if int(config.get("max_batch_size") or 0) > 0:
        return int(config["max_batch_size"])
    value = ((config.get("parameters") or {}).get(MAX_IMAGES) or {}).get("string_value")
    return int(value) if value and value.isdigit() and int(value) > 0 else 1


def check_protocol(url: str, model: str, config: dict) -> None:
    """UsageError where the model does not speak interface.py's protocol."""
    inputs = [tensor["name"] for tensor in config.get("input", [])]
    outputs = {tensor["name"] for tensor in config.get("output", [])}
    if inputs != [IMAGES] or not set(RESULTS) <= outputs:
        raise UsageError(f"{url}: the model {model!r} takes {inputs} and gives "
                         f"{sorted(outputs)}, not encoded images in and detections out: serve "
                         "it with serve_triton.py or export_triton.py")


class TritonPool:
    """The servers of ``--triton``, checked at the start: a server that does not answer is
    left out (``servers[i].failed`` says why); one that answers without the model, or with a
    model of another protocol, is a UsageError."""

    def __init__(self, urls: list[str], model: str, concurrency: int = DEFAULT_CONCURRENCY,
                 what: str = "--triton", example: str = "infer.py --triton ...") -> None:
        self.http, self.utils = tritonclient_http(what, example)
        self.model, self.concurrency = model, concurrency
        self.servers = [Server(url) for url in urls]
        sizes = [self._check(server) for server in self.servers]
        # what every server takes: a request may go to any of them
        self.per_request = min((size for size in sizes if size), default=1)

    def client(self, url: str):
        """A client of one server (HTTP; one per thread)."""
        return self.http.InferenceServerClient(url, connection_timeout=CONNECT_TIMEOUT_S,
                                               network_timeout=TIMEOUT_S)

    def _check(self, server: Server) -> int:
        """The most images the server takes per request; 0 where it does not answer."""
        client = self.client(server.url)
        size = 0
        try:
            if not client.is_server_live():
                raise ServerDown("not live")
            config = client.get_model_config(self.model)
        except self.utils.InferenceServerException as err:
            if str(err.status()) in ("400", "404"):
                raise UsageError(f"{server.url}: has no model {self.model!r} (--model)") from err
            server.failed = f"not ready ({err.message()})"
        except (OSError, ServerDown) as err:
            server.failed = f"not reachable ({err})"
        else:
            check_protocol(server.url, self.model, config)
            size = images_per_request(config)
        finally:
            client.close()
        if server.failed:
            log.warning("%s: %s: the other servers take its share", server.url, server.failed)
        return size

    def send(self, client, paths: list[Path]) -> list[ImageAnswer]:
        """Each file's answer (one that cannot be read here is not sent: its answer says
        why); ServerDown or RequestRefused where the server gives none."""
        files = [read_file(path) for path in paths]
        sent = [data for data in files if isinstance(data, bytes)]
        answers = iter(self.infer_bytes(client, sent) if sent else [])
        return [next(answers) if isinstance(data, bytes) else ImageAnswer.unread(data)
                for data in files]

    def infer_bytes(self, client, files: list[bytes]) -> list[ImageAnswer]:
        """The answers to one request of encoded image files (ServerDown or RequestRefused
        where the server gives none)."""
        data = np.array([[content] for content in files], dtype=object)
        tensor = self.http.InferInput(IMAGES, list(data.shape), "BYTES")
        tensor.set_data_from_numpy(data)
        try:
            result = client.infer(self.model, [tensor])
        except self.utils.InferenceServerException as err:
            status = str(err.status() or "")
            if status.startswith("4"):
                raise RequestRefused(err.message()) from err
            raise ServerDown(err.message() or f"status {status}") from err
        except Exception as err:  # the connection's errors: refused, reset, timed out
            raise ServerDown(f"{type(err).__name__}: {err}") from err
        answers = unpack_answer({name: result.as_numpy(name) for name in RESULTS})
        if len(answers) != len(files):
            raise ServerDown(f"answered {len(answers)} images for {len(files)}")
        return answers


def read_file(path: Path) -> bytes | str:
    """The file's bytes, or why it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as err:
        return f"cannot read it ({err.strerror or err})"


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header; (0, 0) where Pillow cannot tell."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError):
        return 0, 0


def to_result(path: Path, answer: ImageAnswer, score_threshold: float) -> ImageResult:
    """An answered image as the local runtimes give it, scores under the threshold dropped."""
    keep = answer.scores >= score_threshold
    width, height = image_size(path)
    return ImageResult(path, width, height, answer.boxes[keep].astype(np.float64),
                       answer.scores[keep], answer.classes[keep].astype(np.int64))


@dataclass
class RemoteRun:
    """One run over the pool: ``results()`` yields each answered image in the files' order;
    then ``skipped`` lists the images that could not be read, ``failed`` those no server
    answered (path, reason)."""

    pool: TritonPool
    paths: list[Path]
    score_threshold: float = 0.0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        size = self.pool.per_request
        self._todo: queue.Queue[Request | None] = queue.Queue()
        for first in range(0, len(self.paths), size):
            self._todo.put(Request(first, self.paths[first:first + size]))
        self._pending = self._todo.qsize()
        self._done: queue.Queue[tuple[Request, list[ImageAnswer] | str]] = queue.Queue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def results(self) -> Iterator[ImageResult]:
        """Starts the workers; yields the answered images in the files' order, whatever order
        the answers come in."""
        answered: dict[int, ImageAnswer | str] = {}
        following = 0
        self._start()
        try:
            while self._pending:
                request, outcome = self._next()
                self._pending -= 1
                for offset in range(len(request.paths)):
                    answered[request.first + offset] = (
                        outcome[offset] if isinstance(outcome, list) else outcome)
                while following in answered:
                    result = self._settle(self.paths[following], answered.pop(following))
                    following += 1
                    if result is not None:
                        yield result
        finally:
            self.close()

    def _settle(self, path: Path, outcome: ImageAnswer | str) -> ImageResult | None:
        """An image's result, or None with the image recorded as failed or skipped."""
        if isinstance(outcome, str):
            self.failed.append((path, outcome))
        elif outcome.error:
            self.skipped.append((path, outcome.error))
        else:
            return to_result(path, outcome, self.score_threshold)
        return None

    def _next(self) -> tuple[Request, list[ImageAnswer] | str]:
        """The next finished request; once no server is left, the requests still queued
        fail."""
        while True:
            try:
                return self._done.get(timeout=0.1)
            except queue.Empty:
                if not any(thread.is_alive() for thread in self._threads):
                    self._fail_queued()

    def _fail_queued(self) -> None:
        while True:
            try:
                request = self._todo.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                self._done.put((request, self._no_server(request)))

    def _no_server(self, request: Request) -> str:
        last = f" (last: {request.errors[-1]})" if request.errors else ""
        return f"no server could answer{last}"

    def _start(self) -> None:
        for server in self.pool.servers:
            if server.failed:
                continue
            for index in range(self.pool.concurrency):
                thread = threading.Thread(target=self._work, args=(server,), daemon=True,
                                          name=f"triton-{server.url}-{index}")
                self._threads.append(thread)
                thread.start()

    def _work(self, server: Server) -> None:
        """A worker: sends requests until the queue is empty or its server has failed."""
        client = self.pool.client(server.url)
        try:
            while not server.failed and not self._stop.is_set():
                try:
                    request = self._todo.get(timeout=0.1)
                except queue.Empty:
                    continue
                if request is None:
                    return
                self._send(client, server, request)
        finally:
            client.close()

    def _send(self, client, server: Server, request: Request) -> None:
        request.attempts += 1
        try:
            self._done.put((request, self.pool.send(client, request.paths)))
        except RequestRefused as err:
            self._done.put((request, f"refused by {server.url}: {err}"))
        except ServerDown as err:
            request.errors.append(f"{server.url}: {err}")
            self._leave(server, str(err))
            if request.attempts >= MAX_ATTEMPTS:
                self._done.put((request, self._no_server(request)))
            else:
                self._todo.put(request)

    def _leave(self, server: Server, reason: str) -> None:
        with self._lock:
            if server.failed:
                return
            server.failed = reason
        log.warning("%s failed (%s): its requests go to the other servers", server.url, reason)

    def close(self) -> None:
        """Stops the workers (a request in flight is abandoned)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=1.0)



def report_failures(prog: str, failed: list[tuple[Path, str]]) -> None:
    """One line per image that no server answered, then their count (stderr)."""
    for path, reason in failed:
        print(f"failed {path}: {reason}", file=sys.stderr)
    if failed:
        print(f"{prog}: {len(failed)} images failed: no server answered them", file=sys.stderr)


def add_triton_arguments(parser: argparse.ArgumentParser) -> None:
    """--model and --concurrency, which go with --triton."""
    parser.add_argument("--model", help="with --triton: the name of the served model")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="with --triton: requests in flight per server")


def check_triton_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace,
                           local_only: dict[str, object]) -> None:
    """--triton needs --model; --model and --concurrency need --triton, which takes none of
    the flags of ``local_only`` (flag -> its value: truthy when given)."""
    if args.triton is None:
        if args.model is not None:
            parser.error("--model goes with --triton (the name of the served model)")
        return
    if not args.model:
        parser.error("--triton needs --model NAME: the name of the served model")
    if args.concurrency < 1:
        parser.error(f"--concurrency {args.concurrency} must be at least 1")
    given = [flag for flag, value in local_only.items() if value]
    if given:
        parser.error(f"{', '.join(given)}: not with --triton (the server preprocesses and "
                     "batches the images)")
