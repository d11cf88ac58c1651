"""The serving environment (.venv-serve, or $VENV_SERVE: made by tools/install.sh, as
run_tests.sh does before the tests) and a Triton Inference Server run from its nvidia-pytriton
wheel on the CPU, for the tests.

The wheel's tritonserver is run as PyTriton runs it: the Python backend's stub built for the
serving interpreter's version is put beside the backend, and the process finds that
interpreter's own libpython first (its LIBDIR on LD_LIBRARY_PATH) and its venv on PATH.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVE_VENV = Path(os.environ.get("VENV_SERVE", ROOT / ".venv-serve"))
TOOL = Path(__file__).with_name("triton_tool.py")  # what the tests run in the serving env
READY_TIMEOUT_S = 180  # generous: 2 busy cores start a dozen Python models
GONE_TIMEOUT_S = 20  # for the processes that end by themselves after serve_triton.py
STOP_TIMEOUT_S = 60

# Where the wheel keeps the server, its libraries and the stubs; the interpreter's libpython.
SERVER_PATHS = """
import json, sys, sysconfig
from pathlib import Path
import pytriton
package = Path(pytriton.__file__).parent
server = package / "tritonserver"
print(json.dumps({
    "binary": str(server / "bin" / "tritonserver"),
    "backend": str(server / "backends" / "python"),
    "stub": str(server / "python_backend_stubs" / f"{sys.version_info[0]}.{sys.version_info[1]}"
                / "triton_python_backend_stub"),
    "libs": str(package.parent / "nvidia_pytriton.libs"),
    "libpython": sysconfig.get_config_var("LIBDIR"),
    "bin": str(Path(sys.executable).parent),
}))
"""


@functools.cache
def serving_python() -> Path:
    """The serving environment's interpreter, made or brought up to date by
    ``tools/install.sh serve`` (a no-op where it is up to date); the test fails where it
    cannot be made."""
    done = subprocess.run(["bash", str(ROOT / "tools" / "install.sh"), "serve"], cwd=ROOT,
                          capture_output=True, encoding="utf-8", errors="replace", timeout=1800)
    if done.returncode != 0:
        pytest.fail("tools/install.sh serve could not make the serving environment:\n"
                    + (done.stdout + done.stderr)[-3000:])
    return SERVE_VENV / "bin" / "python"


def run_serving(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` in the serving environment, in the checkout; fails the test where it
    fails."""
    done = subprocess.run([str(serving_python()), *args], cwd=ROOT, capture_output=True,
                          encoding="utf-8", errors="replace", timeout=timeout)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def run_tool(*args: str) -> object:
    """tests/triton_tool.py in the serving environment: its JSON answer."""
    return json.loads(run_serving(str(TOOL), *args).stdout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    """A running tritonserver: its URL (host:port), process and log."""

    url: str
    process: subprocess.Popen
    log: Path
    left: list[int] = field(default_factory=list)  # processes found running after the stop

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def backend_directory(paths: dict, folder: Path) -> Path:
    """A backend directory whose Python backend has the stub of the serving interpreter."""
    python = folder / "backends" / "python"
    python.mkdir(parents=True)
    stub = Path(paths["stub"])
    if not stub.is_file():
        pytest.fail(f"the nvidia-pytriton wheel has no Python backend stub {stub} for the "
                    "serving environment's Python version")
    for source in [*Path(paths["backend"]).iterdir(), stub]:
        (python / source.name).symlink_to(source)
    return folder / "backends"


def server_environment(paths: dict) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{paths['bin']}{os.pathsep}{env.get('PATH', '')}"
    libraries = [paths["libpython"], paths["libs"], env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(part for part in libraries if part)
    return env


def wait_until_ready(server: Server, timeout: float = READY_TIMEOUT_S) -> None:
    """Polls the readiness endpoint until every model is loaded; fails the test with the log
    where the server exits or is not ready in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"tritonserver exited ({server.process.returncode}):\n"
                        + server.log_tail())
        try:
            with urllib.request.urlopen(f"http://{server.url}/v2/health/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"tritonserver not ready after {timeout} s:\n{server.log_tail()}")


def group_members(group: int) -> list[int]:
    """The processes of a process group still running (not zombies), from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(stat.parent.name))
    return members


def stop(server: Server) -> list[int]:
    """Stops the server as a container stop does (SIGTERM: it unloads its models, whose
    stub processes end); returns the processes of its group still running afterwards (they
    are killed)."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    left = group_members(server.process.pid)
    if left:
        os.killpg(server.process.pid, signal.SIGKILL)
    return left


@contextmanager
def triton_server(repo: Path, folder: Path) -> Iterator[Server]:
    """tritonserver on ``repo`` (HTTP only, on a free port), ready; stopped at the end (then
    ``server.process.returncode`` and ``server.left`` tell how it ended)."""
    paths = json.loads(run_serving("-c", SERVER_PATHS).stdout)
    port = free_port()
    command = [paths["binary"], "--model-repository", str(repo),
               "--backend-directory", str(backend_directory(paths, folder)),
               "--http-port", str(port), "--allow-grpc", "false",
               "--allow-metrics", "false", "--disable-auto-complete-config",
               "--exit-timeout-secs", "30"]
    log = folder / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                   env=server_environment(paths), start_new_session=True)
    server = Server(f"127.0.0.1:{port}", process, log)
    try:
        wait_until_ready(server)
        yield server
    finally:
        server.left = stop(server)


# ---------------------------------------------------------------------------------------------
# serve_triton.py in the serving environment

MARKER = "TFOD_TRT_TEST_SERVER"  # in the environment of a test's server and of all its children
# where tritonserver writes the folder of a model loaded with its files (PyTriton's), whatever
# TMPDIR says; removed when the model is unloaded
TRITON_TMP = Path("/tmp")


def run_serving_unchecked(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python ARGS`` in the serving environment, in the checkout, whatever its exit status."""
    return subprocess.run([str(serving_python()), *args], cwd=ROOT, capture_output=True,
                          encoding="utf-8", errors="replace", timeout=timeout)


@dataclass
class ServeTriton:
    """A running serve_triton.py: its HTTP URL (host:port), process (leader of its own
    process group, which tritonserver and its model processes join), output file and the
    marker of its processes."""

    url: str
    process: subprocess.Popen
    log: Path
    marker: str
    scratch: Path  # its PyTriton workspace and temporary files (removed at the stop)
    model_folders: set[Path] = field(default_factory=set)  # TRITON_TMP's before its start

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_line(self, text: str, timeout: float = READY_TIMEOUT_S) -> None:
        """Until a line of its output contains ``text``; fails the test where it exits
        first or not in time."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve_triton.py printed no {text!r} "
                            f"(exit {self.process.poll()}):\n{self.output()[-4000:]}")
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, list[int]]:
        """Sends ``signum`` to serve_triton.py alone (SIGKILL: to its whole group, as a crash
        of the machine's processes would); its exit status, and the processes of the marker
        still running afterwards (they are killed)."""
        if self.process.poll() is None:
            if signum == signal.SIGKILL:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.send_signal(signum)
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        # processes that end by themselves once serve_triton.py is gone (multiprocessing's
        # resource tracker) get a moment
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while (left := marked_processes(self.marker)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.scratch, ignore_errors=True)
        if signum == signal.SIGKILL:  # a killed tritonserver leaves its model's folder
            for folder in set(TRITON_TMP.glob("folder*")) - self.model_folders:
                if (folder / "config.pbtxt").is_file():
                    shutil.rmtree(folder, ignore_errors=True)
        return code, left


def marked_processes(marker: str) -> list[int]:
    """The processes (not zombies) whose environment holds MARKER=marker, from /proc: a
    server's children, wherever they were re-parented."""
    entry = f"{MARKER}={marker}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if entry in environ.read_bytes().split(b"\0"):
                state = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def start_serve_triton(model: Path, folder: Path, *args: str,
                       extra_env: dict[str, str] | None = None) -> ServeTriton:
    """serve_triton.py --onnx MODEL ARGS on free ports, ready (it printed its URLs and the
    readiness endpoint answers), its output in ``folder``. Its PyTriton workspace and
    temporary files go to a short folder of their own (they hold Unix sockets, whose paths
    must stay under 108 bytes)."""
    serving_python()
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="serve-"))
    (scratch / "tmp").mkdir()
    http_port, grpc_port = free_port(), free_port()
    while grpc_port == http_port:
        grpc_port = free_port()
    marker = f"{os.getpid()}-{http_port}"
    env = {**os.environ, MARKER: marker, "XDG_CACHE_HOME": str(scratch / "cache"),
           "TMPDIR": str(scratch / "tmp"), **(extra_env or {})}
    log = folder / "serve_triton.log"
    before = set(TRITON_TMP.glob("folder*"))
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(serving_python()), "serve_triton.py", "--onnx", str(model), "--http_port",
             str(http_port), "--grpc_port", str(grpc_port), *args], cwd=ROOT, stdout=output,
            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = ServeTriton(f"127.0.0.1:{http_port}", process, log, marker, scratch, before)
    try:
        server.wait_for_line("Ctrl-C stops it")
        wait_until_ready(Server(server.url, process, log))
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server
