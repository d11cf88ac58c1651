"""A stop signal ends a run cleanly: a real infer.py (ONNX Runtime on the CPU, images decoded in
child processes) stopped by SIGTERM or SIGINT exits with 128 + the signal and one line, leaves
no child process running and no temporary or half-written file; a signal inside a block that
must not be cut waits for its end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures import ROOT, converted_onnx
from PIL import Image

from tfod_trt.stopping import Stopped, stop_deferred, stop_on_signals

IMAGES = 5000  # far more than a run gets through before the signal
START_TIMEOUT_S = 120  # for the first result file: imports and process start on a busy machine
STOP_TIMEOUT_S = 60
GONE_TIMEOUT_S = 20
TAG = "TFOD_TRT_TEST_RUN"  # an environment variable marking a run and the processes it starts

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")


def process_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process from /proc, None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def running(pid: int, start: int) -> bool:
    """Whether the process that started at ``start`` still runs (a zombie does not; a new
    process under the same pid is another one)."""
    stat = process_stat(pid)
    return stat is not None and stat[0] not in "ZX" and stat[2] == start


def live_processes(
    keep: Callable[[int, Path], bool]
) -> dict[int, tuple[int, str]]:
    """The running processes for which ``keep(parent pid, /proc entry)`` holds: pid -> (start
    time, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        stat = process_stat(int(entry.name)) if entry.name.isdigit() else None
        try:
            if stat and stat[0] not in "ZX" and keep(stat[1], entry):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found[int(entry.name)] = (stat[2], command)
        except OSError:  # ended meanwhile, or not ours
            continue
    return found


def children(pid: int) -> dict[int, tuple[int, str]]:
    return live_processes(lambda parent, _: parent == pid)


def tagged_processes(tag: str) -> dict[int, tuple[int, str]]:
    """The processes whose environment holds ``TAG=tag``: a run and every process it started,
    children of children included."""
    marker = f"{TAG}={tag}".encode()
    return live_processes(lambda _, entry: marker in (entry / "environ").read_bytes())


def still_running_after(tag: str, timeout_s: float) -> dict[int, tuple[int, str]]:
    """The processes tagged ``tag`` still running after up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (left := tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def ignores_stop_signals(pid: int) -> bool:
    """Whether the process ignores SIGINT and SIGTERM and blocks neither (/proc's SigIgn and
    SigBlk masks: bit n - 1 for signal n)."""
    masks = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("SigIgn", "SigBlk"):
            masks[name] = int(value, 16)
    both = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    return masks["SigIgn"] & both == both and not masks["SigBlk"] & both


@pytest.fixture(scope="module")
def busy_folder(tmp_path_factory: pytest.TempPathFactory, coco_dir: Path) -> Path:
    """IMAGES links to the photos: a folder that takes minutes on the CPU."""
    photos = sorted((coco_dir / "images").glob("*.jpg"))
    folder = tmp_path_factory.mktemp("busy")
    for index in range(IMAGES):
        photo = photos[index % len(photos)]
        (folder / f"{index:05d}_{photo.name}").symlink_to(photo)
    return folder


def wait_until(process: subprocess.Popen, condition: Callable[[], bool], log: Path) -> None:
    """Returns once ``condition()`` holds (polled), failing when the run ends first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        assert process.poll() is None, f"infer.py ended before the signal:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"not reached in {START_TIMEOUT_S} s"
        time.sleep(0.02)


def decode_processes(pid: int) -> list[int]:
    return [child for child, (_, command) in children(pid).items() if "spawn_main" in command]


def check_results_whole(output: Path) -> None:
    """No temporary file, no detections.json (the run did not finish), and every image's
    .txt (six tab-separated columns a line) with its whole .png."""
    names = sorted(path.name for path in output.iterdir()) if output.is_dir() else []
    assert not [name for name in names if name.endswith(".tmp")], names
    assert "detections.json" not in names
    texts = {path.stem for path in output.glob("*.txt")}
    assert texts == {path.stem for path in output.glob("*.png")}
    for stem in texts:
        for line in (output / f"{stem}.txt").read_text().splitlines():
            assert len(line.split("\t")) == 6, f"{stem}.txt: {line!r}"
        with Image.open(output / f"{stem}.png") as picture:
            picture.load()  # a truncated PNG fails here


def kill_left(processes: dict[int, tuple[int, str]]) -> None:
    """Kills what a failed run left running (so that a failure does not outlive the test)."""
    for pid, (start, _) in processes.items():
        if running(pid, start):
            os.kill(pid, signal.SIGKILL)


CASES = {  # id: (signal, sent to the process group as a terminal's Ctrl-C is, when)
    "SIGTERM-while-detecting": (signal.SIGTERM, False, "detecting"),
    "SIGINT-while-starting": (signal.SIGINT, False, "starting"),
    "SIGINT-to-the-group-while-detecting": (signal.SIGINT, True, "detecting"),
    "SIGTERM-to-the-group-while-starting": (signal.SIGTERM, True, "starting"),
}


@needs_proc
@pytest.mark.parametrize(("signum", "to_group", "when"), CASES.values(), ids=CASES.keys())
def test_a_signal_stops_infer_with_no_child_left(
    signum: signal.Signals, to_group: bool, when: str, busy_folder: Path, tmp_path: Path
) -> None:
    """``starting``: as soon as the first decode process exists; ``detecting``: once the
    first result file is written. Sent to the process group, the decode processes get it
    too."""
    output, log = tmp_path / "out", tmp_path / "stderr.txt"
    command = [sys.executable, str(ROOT / "infer.py"), "--onnx", str(converted_onnx(
        "ssd_mobilenet_v2")), "-i", str(busy_folder), "-o", str(output), "--workers", "2"]
    with log.open("w") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True, env={**os.environ, TAG: str(tmp_path)})
    try:
        if when == "starting":
            wait_until(process, lambda: bool(decode_processes(process.pid)), log)
        else:
            wait_until(process, lambda: any(output.glob("*.txt")), log)
            decoders = decode_processes(process.pid)
            assert len(decoders) == 2 and all(ignores_stop_signals(pid) for pid in decoders)
        commands = [command for _, command in children(process.pid).values()]
        assert any("resource_tracker" in command for command in commands), commands
        if to_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        code = process.wait(STOP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        left = still_running_after(str(tmp_path), GONE_TIMEOUT_S)
        kill_left(left)
    err = log.read_text()
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert code == 128 + signum, err
    assert lines[-1] == f"infer.py: stopped by {signum.name}", err
    assert "Traceback" not in err and sum("stopped by" in line for line in lines) == 1, err
    assert not left, (left, err)
    check_results_whole(output)


def test_a_signal_inside_a_deferred_block_is_raised_at_its_end() -> None:
    done = []
    with stop_on_signals():
        with pytest.raises(Stopped, match="stopped by SIGTERM") as caught:
            with stop_deferred():
                signal.raise_signal(signal.SIGTERM)
                done.append("the block went on")
            done.append("after the block")
    assert done == ["the block went on"] and caught.value.signum == signal.SIGTERM


def test_stop_handlers_are_put_back() -> None:
    before = [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)]
    with stop_on_signals():
        with pytest.raises(Stopped, match="stopped by SIGINT"):
            signal.raise_signal(signal.SIGINT)
    assert [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)] == before
