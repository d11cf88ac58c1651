"""serve_triton.py (a real Triton server started by PyTriton in the serving environment, the
demo model's ONNX on the CPU reference runtime) and the clients infer.py / eval_coco.py
--triton: the same files and scores as the local runtime, with several servers, one of them
killed mid-run or never there; the served callable on its own; stopping; bad input."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fixtures import converted_onnx, shapes_dataset, trained_onnx
from test_eval_coco import run_cli
from test_export_triton import fake_engine
from test_triton_server import assert_same_records
from triton_server import (
    ROOT,
    free_port,
    run_serving,
    run_serving_unchecked,
    run_tool,
    serving_python,
    start_serve_triton,
)

import benchmark
import infer
import serve_triton
from tfod_trt.commands.serve_triton import max_batch
from tfod_trt.detect.batch import detect_folder
from tfod_trt.errors import UsageError
from tfod_trt.io.batcher import ImageBatcher
from tfod_trt.reference.runner import ReferenceRunner
from tfod_trt.serve.client import check_protocol, images_per_request, parse_urls
from tfod_trt.serve.detectors import engine_detector, onnx_detector
from tfod_trt.serve.interface import IMAGES, unpack_answer
from tfod_trt.serve.service import DetectionService

PHOTOS = 8
NOT_AN_IMAGE = "zz_notes.jpg"


def cli(module, *args: str | Path) -> tuple[int, str, str]:
    """A script's main in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = module.main([str(arg) for arg in args])
    return code, out.getvalue(), err.getvalue()


def client(*args: str | Path) -> subprocess.CompletedProcess:
    """A script run by the serving environment's Python, as a user runs the clients."""
    return run_serving_unchecked(*map(str, args))


def detections(output: Path) -> list[dict]:
    return json.loads((output / "detections.json").read_text())


@pytest.fixture(scope="module")
def photos(coco_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PHOTOS photos (the last as PNG) and a file that is no image."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    sources = sorted((coco_dir / "images").iterdir())[:PHOTOS]
    for source in sources[:-1]:
        shutil.copy(source, folder / source.name)
    with Image.open(sources[-1]) as image:
        image.save(folder / f"{sources[-1].stem}.png")
    (folder / NOT_AN_IMAGE).write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def local(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """infer.py --onnx's output folder for the photos."""
    output = tmp_path_factory.mktemp("local") / "out"
    code, _, err = cli(infer, "--onnx", trained_onnx(), "--input", photos, "--output", output,
                       "--decode", "threads")
    assert code == 0, err
    return output


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """serve_triton.py --onnx on the demo model, shared by the module's tests."""
    served = start_serve_triton(trained_onnx(), tmp_path_factory.mktemp("server"), "--name",
                                "demo")
    yield served
    served.stop()


def test_infer_through_the_server_writes_what_infer_writes(server, photos: Path, local: Path,
                                                           tmp_path: Path) -> None:
    done = client("infer.py", "--triton", server.url, "--model", "demo", "--input", photos,
                  "--output", tmp_path / "out")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_records(detections(tmp_path / "out"), detections(local))
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(p.name for p in local.iterdir())  # .txt, .png, manifest, json
    assert (f"skipped {photos / NOT_AN_IMAGE}: not an image file (its format is not one "
            "Pillow reads)") in done.stderr
    assert f"{PHOTOS} images," in done.stdout and "1 skipped" in done.stdout


def test_eval_through_the_server_scores_what_eval_scores(server, tmp_path: Path) -> None:
    """On 8 held-out images of the demo model's own shapes data: the 12 numbers of
    eval_coco.py --triton are --onnx's."""
    shapes = shapes_dataset("val", 8, tmp_path / "shapes")
    common = ["--input", shapes / "images", "--annotations", shapes / "annotations.json",
              "--labels", shapes / "label_map.pbtxt"]
    expected = run_cli("--onnx", trained_onnx(), *common)
    assert expected.code == 0, expected.err
    assert expected.stats["AP"] > 0.3  # a model that finds the shapes: equal scores mean something
    done = client("eval_coco.py", "--triton", server.url, "--model", "demo", *common)
    assert done.returncode == 0, done.stderr[-3000:]
    table = expected.out.split("\n", 1)[1]  # the lines after the one naming the model
    assert done.stdout.split("\n", 1)[1] == table


def test_a_server_killed_mid_run_leaves_its_images_to_the_others(
        server, photos: Path, local: Path, tmp_path: Path) -> None:
    """Two servers, one request in flight on each; the second is killed (SIGKILL of all its
    processes) once it has answered its first request: its requests go to the first server,
    every image is answered once, in order."""
    doomed = start_serve_triton(trained_onnx(), tmp_path / "doomed", "--name", "demo",
                                "--verbose")
    command = [str(serving_python()), "infer.py", "--triton", f"{server.url},{doomed.url}",
               "--model", "demo", "--concurrency", "1", "--input", str(photos), "--output",
               str(tmp_path / "out"), "--no_pictures"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          encoding="utf-8") as run:
        try:
            doomed.wait_for_line("answered 1 images of 1 requests", timeout=120)
        finally:
            code, left = doomed.stop(signal.SIGKILL)
        out, err = run.communicate(timeout=300)
    assert code == -signal.SIGKILL and left == []
    assert run.returncode == 0, err[-3000:]
    assert f"{doomed.url} failed" in err  # the kill came while images were left
    assert_same_records(detections(tmp_path / "out"), detections(local))
    assert f"{PHOTOS} images," in out and "failed" not in out


def test_a_server_that_is_not_there_leaves_its_share_to_the_others(
        server, photos: Path, local: Path, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    done = client("infer.py", "--triton", f"{dead},{server.url}", "--model", "demo", "--input",
                  photos, "--output", tmp_path / "out", "--no_pictures")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{dead}: not reachable" in done.stderr
    assert_same_records(detections(tmp_path / "out"), detections(local))


def test_no_server_there_fails_every_image_in_one_line_each(photos: Path,
                                                            tmp_path: Path) -> None:
    urls = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    done = client("infer.py", "--triton", urls, "--model", "demo", "--input", photos,
                  "--output", tmp_path / "out", "--no_pictures")
    assert done.returncode == 1
    failed = [line for line in done.stderr.splitlines() if line.startswith("failed ")]
    assert failed == [f"failed {path}: no server could answer"
                      for path in sorted(photos.iterdir())]
    assert f"infer.py: {PHOTOS + 1} images failed: no server answered them" in done.stderr
    assert detections(tmp_path / "out") == []


def test_requests_that_arrive_together_are_one_batch(photos: Path, tmp_path: Path) -> None:
    """A static batch-4 graph served with a long queue delay: three requests of one image
    sent at once are one batch of the runner (padded to 4), each answered with its own
    image's detections, as the same request alone."""
    files = [str(path) for path in sorted(photos.glob("*.jpg"))[:3]]
    served = start_serve_triton(converted_onnx("ssd_mobilenet_v2", 4, "NCHW"), tmp_path,
                                "--name", "b4", "--queue_delay_us", "3000000", "--verbose")
    try:
        together = run_tool("detect", served.url, "b4", "--together",
                            *[arg for file in files for arg in ("--request", file)])
        alone = run_tool("detect", served.url, "b4", "--request", files[1])
    finally:
        served.stop()
    assert "answered 3 images of 3 requests" in served.output()
    assert [len(answer["images"]) for answer in together] == [1, 1, 1]
    (batched,), (single,) = together[1]["images"], alone[0]["images"]
    assert len(single["scores"]) > 0 and batched["classes"] == single["classes"]
    np.testing.assert_allclose(batched["scores"], single["scores"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(batched["boxes"], single["boxes"], atol=1e-3)


def test_a_model_the_server_does_not_have_is_refused(server, photos: Path,
                                                     tmp_path: Path) -> None:
    done = client("infer.py", "--triton", server.url, "--model", "ssd", "--input", photos,
                  "--output", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr == f"infer.py: error: {server.url}: has no model 'ssd' (--model)\n"
    assert not (tmp_path / "out").exists()


def test_sigterm_stops_the_server_and_its_processes(tmp_path: Path) -> None:
    served = start_serve_triton(trained_onnx(), tmp_path, "--name", "demo")
    code, left = served.stop(signal.SIGTERM)
    assert code == 143, served.output()[-3000:]
    assert left == [], f"processes left running: {left}"
    assert served.output().rstrip().endswith("serve_triton.py: stopped by SIGTERM")


def pytriton_elsewhere(folder: Path, *names: str) -> Path:
    """A folder holding ``names`` of the serving environment's site-packages (links), as
    ``pip install --target folder`` leaves them."""
    site = Path(run_serving("-c", "import pathlib, pytriton; "
                                  "print(pathlib.Path(pytriton.__file__).parent.parent)"
                            ).stdout.strip())
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(site / name)
    return folder


def test_a_pytriton_outside_site_packages_starts_its_server(photos: Path,
                                                            tmp_path: Path) -> None:
    """PyTriton installed outside site-packages (``pip install --target``, a folder on
    PYTHONPATH) takes itself for an editable install and looks for its tritonserver's
    libraries in its source tree: the server never started. serve_triton.py finds them beside
    the package, and answers as infer.py does."""
    target = pytriton_elsewhere(tmp_path / "target", "pytriton", "nvidia_pytriton.libs")
    served = start_serve_triton(trained_onnx(), tmp_path / "server", "--name", "demo",
                                extra_env={"PYTHONPATH": str(target)})
    try:
        done = client("infer.py", "--triton", served.url, "--model", "demo", "--input", photos,
                      "--output", tmp_path / "out")
    finally:
        code, left = served.stop()
    assert done.returncode == 0, done.stderr[-2000:]
    assert detections(tmp_path / "out")
    assert code == 143 and left == []


@pytest.mark.slow  # PyTriton waits 120 s for a server that never answers
def test_a_server_that_does_not_start_is_one_line(tmp_path: Path) -> None:
    """A PyTriton whose tritonserver cannot run (its libraries missing): serve_triton.py ends
    with one line after tritonserver's own, and exit status 1."""
    target = pytriton_elsewhere(tmp_path / "target", "pytriton")
    done = subprocess.run(
        [str(serving_python()), "serve_triton.py", "--onnx", str(trained_onnx()),
         "--http_port", str(free_port()), "--grpc_port", str(free_port())], cwd=ROOT,
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(target)})
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "error while loading shared libraries" in done.stdout + done.stderr
    assert done.stdout.rstrip().splitlines()[-1].startswith(
        "serve_triton.py: error: the Triton server did not start (")
    assert done.stdout.rstrip().endswith("the lines of tritonserver above say why")


# ---------------------------------------------------------------------------------------------
# the served callable, without a server


def request(*files: Path) -> dict[str, np.ndarray]:
    return {IMAGES: np.array([[file.read_bytes()] for file in files], dtype=object)}


def test_callable_answers_each_request_of_a_batch_as_infer(photos: Path, tmp_path: Path) -> None:
    """A static batch-4 graph: requests of 2 and 1 images batched together (one batch of the
    runner, padded to 4), and one of an unreadable file: each answered as the local runtime
    finds the same photos."""
    graph = converted_onnx("ssd_mobilenet_v2", 4, "NCHW")
    detector = onnx_detector(graph)
    runner = ReferenceRunner(graph)
    service = DetectionService(runner, detector.preprocess_settings(),
                               detector.postprocess_settings())
    files = sorted(photos.glob("*.jpg"))[:3]
    answers = service([request(*files[:2]), request(files[2]),
                       request(photos / NOT_AN_IMAGE)])
    assert [len(answer["num_detections"]) for answer in answers] == [2, 1, 1]
    served = [image for answer in answers[:2] for image in unpack_answer(answer)]
    folder = tmp_path / "three"
    folder.mkdir()
    for file in files:
        shutil.copy(file, folder / file.name)
    expected = list(detect_folder(runner, ImageBatcher(
        folder, detector.preprocess_settings().preprocessor, batch_size=4, layout="NCHW",
        workers=1)))
    for image, result in zip(served, expected, strict=True):
        assert len(result) > 0 and image.error == ""
        np.testing.assert_allclose(image.boxes, result.boxes, rtol=1e-6, atol=1e-3)
        np.testing.assert_array_equal(image.scores, result.scores)
        assert image.classes.tolist() == result.classes.tolist()
    (unread,) = unpack_answer(answers[2])
    assert unread.error == "not an image file (its format is not one Pillow reads)"


# ---------------------------------------------------------------------------------------------
# bad input: one line, exit status 2


@pytest.mark.parametrize(("args", "message"), [
    (["--onnx", "missing.onnx"], "missing.onnx: ONNX file not found"),
    (["--engine", "missing.engine"],
     "missing.engine: engine file not found: build it with build_engine.py"),
])
def test_serve_triton_refuses_a_missing_model(args: list[str], message: str) -> None:
    code, _, err = cli(serve_triton, *args)
    assert code == 2 and err.startswith(f"serve_triton.py: error: {message}"), err
    assert err.count("\n") == 1


@pytest.mark.parametrize(("flag", "message"), [
    ("--decode_workers", "--decode_workers -1 must be at least 0"),
    ("--queue_delay_us", "--queue_delay_us -1 must be at least 0"),
])
def test_serve_triton_refuses_negative_counts(flag: str, message: str) -> None:
    code, _, err = cli(serve_triton, "--onnx", "model.onnx", flag, "-1")
    assert code == 2 and err.splitlines()[-1] == f"serve_triton.py: error: {message}", err


def test_serve_triton_refuses_more_than_the_model_batches(tmp_path: Path) -> None:
    code, _, err = cli(serve_triton, "--onnx", trained_onnx(), "--max_batch", "2")
    assert code == 2 and err == (f"serve_triton.py: error: --max_batch 2: {trained_onnx()} "
                                 "takes at most 1 images per batch (its static batch)\n")


def test_an_engine_with_a_profile_is_served_up_to_its_max(tmp_path: Path) -> None:
    """An engine whose ENGINE.json has an optimization profile: batches of up to the
    profile's max (8), padded only to its min (1); more is refused."""
    shape = [3, 300, 300]
    engine = fake_engine(tmp_path, converted_onnx("ssd_mobilenet_v2", 4, "NCHW"), {
        "input_tensor": [[1, *shape], [4, *shape], [8, *shape]]})
    detector = engine_detector(engine)
    assert max_batch(serve_triton.parse_args(["--engine", str(engine)]), detector) == 8
    pre = detector.preprocess_settings()
    assert (pre.min_batch, pre.max_batch) == (1, 8)
    code, _, err = cli(serve_triton, "--engine", engine, "--max_batch", "16")
    assert code == 2 and err == (f"serve_triton.py: error: --max_batch 16: {engine} takes at "
                                 "most 8 images per batch (its profile's max)\n")


def test_serve_triton_without_pytriton_says_where_to_run_it() -> None:
    """This environment (TensorFlow's) has no PyTriton."""
    code, _, err = cli(serve_triton, "--onnx", trained_onnx())
    assert code == 2 and err.count("\n") == 1, err
    assert ("serve_triton.py needs nvidia-pytriton, which this Python" in err
            and ".venv-serve/bin/python serve_triton.py" in err
            and "bash tools/install.sh serve" in err), err


def test_serve_triton_refuses_a_port_in_use(server) -> None:
    port = server.url.rsplit(":", 1)[1]
    done = run_serving_unchecked("serve_triton.py", "--onnx", str(trained_onnx()),
                                 "--http_port", port, "--grpc_port", str(free_port()))
    assert done.returncode == 2
    assert done.stderr == (f"serve_triton.py: error: --http_port {port}: in use by another "
                           "program: choose another port\n")


def test_clients_without_tritonclient_say_where_to_run_them(photos: Path,
                                                            tmp_path: Path) -> None:
    code, _, err = cli(infer, "--triton", "localhost:8000", "--model", "demo", "--input",
                       photos, "--output", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1, err
    assert "--triton needs tritonclient" in err and ".venv-serve/bin/python infer.py" in err
    assert not (tmp_path / "out").exists()


def test_benchmark_loads_the_server_with_concurrent_clients(server, photos: Path,
                                                           tmp_path: Path) -> None:
    """benchmark.py --triton: one measure per number of clients, each client sending one photo
    per request; every answer counted, latencies of the requests made."""
    images = tmp_path / "images"
    images.mkdir()
    for photo in sorted(photos.iterdir())[:3]:
        if photo.name != NOT_AN_IMAGE:
            shutil.copy(photo, images / photo.name)
    report = tmp_path / "served.json"
    done = client("benchmark.py", "--triton", server.url, "--model", "demo", "--images", images,
                  "--concurrency", "1", "3", "--warmup", "0.2", "--duration", "1", "--json",
                  report)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(report.read_text())["results"]
    assert [(r["kind"], r["concurrency"], r["errors"]) for r in results] == [
        ("triton", 1, []), ("triton", 3, [])]
    for entry in results:
        assert entry["images"] > 0 and entry["images_per_s"] > 0
        stats = entry["latency_ms"]
        assert 0 < stats["median"] <= stats["p99"] <= stats["max"]
    assert "3 clients" in done.stdout + done.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--triton", "localhost:8000", "--images", "x"], "--triton and --model go together"),
    (["--triton", "localhost:8000", "--model", "demo"], "--triton needs --images"),
    (["--triton", "h:1", "--model", "d", "--images", "x", "--concurrency", "0"],
     "--concurrency: at least 1 client"),
])
def test_benchmark_checks_the_triton_flags(args: list[str], message: str,
                                           capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as raised:
        benchmark.parse_args(args)
    assert raised.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--triton", "localhost:8000"], "--triton needs --model NAME"),
    (["--onnx", "m.onnx", "--model", "demo"], "--model goes with --triton"),
    (["--triton", "localhost:8000", "--model", "d", "-b", "2"],
     "-b/--batch_size: not with --triton"),
])
def test_infer_checks_the_triton_flags(args: list[str], message: str, tmp_path: Path) -> None:
    code, _, err = cli(infer, *args, "--input", tmp_path, "--output", tmp_path / "out")
    assert code == 2 and message in err, err


@pytest.mark.parametrize(("text", "message"), [
    ("", "--triton '': name one or more servers, e.g. localhost:8000"),
    ("localhost", "--triton 'localhost': not HOST:PORT of a server's HTTP endpoint"),
    ("grpc://h:8001", "--triton 'grpc://h:8001': not HOST:PORT"),
    ("h:1,http://h:1/", "--triton 'h:1,http://h:1/': names a server twice"),
])
def test_server_lists_are_checked(text: str, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_urls(text)
    assert str(raised.value).startswith(message)


def test_urls_take_an_http_prefix() -> None:
    assert parse_urls("http://a:8000/, b:9000") == ["a:8000", "b:9000"]



@pytest.mark.parametrize(("config", "size"), [
    ({"max_batch_size": 8}, 8),  # a batching model (serve_triton.py, a dynamic engine's)
    ({"max_batch_size": 0, "parameters": {"max_images": {"string_value": "4"}}}, 4),
    ({"max_batch_size": 0}, 1),  # no word of it: one image per request
])
def test_requests_carry_what_the_model_takes(config: dict, size: int) -> None:
    assert images_per_request(config) == size


def test_a_model_of_another_protocol_is_refused() -> None:
    config = {"input": [{"name": "input_tensor"}], "output": [{"name": "num_detections"}]}
    with pytest.raises(UsageError) as raised:
        check_protocol("h:8000", "ssd_detector", config)
    assert str(raised.value) == (
        "h:8000: the model 'ssd_detector' takes ['input_tensor'] and gives ['num_detections'], "
        "not encoded images in and detections out: serve it with serve_triton.py or "
        "export_triton.py")
