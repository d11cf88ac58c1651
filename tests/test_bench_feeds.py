"""What benchmark.py feeds a model (tfod_trt/bench/feeds.py), on the CPU: random inputs from
an input's shape and dtype (every dtype the real TensorRT 10 / 11 bindings map to numpy),
--inputs FILE.npz and its checks, --preprocessor for engines without build_engine.py's
metadata, and the ONNX Runtime baseline fed from an .npz. Engines themselves are timed in
tests/test_trt_gpu.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import converted_onnx
from test_trt_api_surface import Surface, surface  # noqa: F401

import benchmark
from tfod_trt.bench.feeds import InputSpec, npz_input, random_input, read_npz, whole_image_shapes
from tfod_trt.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dtype,low,high", [
    (np.float32, 0, 255), (np.float16, 0, 255), (np.int32, 0, 255), (np.int64, 0, 255),
    (np.uint8, 0, 255), (np.int8, 0, 127), (np.bool_, 0, 1),
])
def test_random_input_has_the_inputs_shape_dtype_and_pixel_range(dtype, low, high) -> None:
    spec = InputSpec("input_tensor", (2, 30, 30, 3), np.dtype(dtype))
    values = random_input(spec)
    assert values.shape == (2, 30, 30, 3) and values.dtype == np.dtype(dtype)
    as_float = values.astype(np.float64)
    assert as_float.min() >= low and as_float.max() <= high
    assert len(np.unique(values)) > 1  # not a constant
    np.testing.assert_array_equal(values, random_input(spec))  # the same every run


def test_random_input_refuses_a_dtype_it_cannot_fill() -> None:
    with pytest.raises(UsageError, match="input x: no random values for dtype complex64; give "
                                         "the inputs with --inputs FILE.npz"):
        random_input(InputSpec("x", (1, 2), np.dtype(np.complex64)))


RANDOM_PROBE = r"""
import json
import numpy as np
import tensorrt as trt
from tfod_trt.bench.feeds import InputSpec, random_input

made = {}
for name, value in trt.DataType.__members__.items():
    try:
        dtype = np.dtype(trt.nptype(value))
    except TypeError:  # no numpy type (BF16, FP8, INT4): the runner cannot hold it either
        continue
    array = random_input(InputSpec("x", (2, 3), dtype))
    made[name] = [str(dtype), str(array.dtype), list(array.shape)]
print(json.dumps({"version": trt.__version__, "made": made}))
"""


def test_random_inputs_for_every_dtype_of_the_real_bindings(surface: Surface) -> None:  # noqa: F811
    """TrtRunner takes an input's dtype from ``trt.nptype(engine.get_tensor_dtype(name))``:
    every dtype the real bindings map gets random values of that dtype."""
    result = subprocess.run([sys.executable, "-c", RANDOM_PROBE], cwd=ROOT, env=surface.env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["version"] == surface.version
    made = report["made"]
    assert {"FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8"} <= set(made)
    for name, (dtype, got, shape) in made.items():
        assert got == dtype and shape == [2, 3], name


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_input_repeats_or_cuts_the_batch(tmp_path: Path) -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    arrays = read_npz(save_npz(tmp_path / "in.npz", input_tensor=images))
    spec = InputSpec("input_tensor", (5, 4, 4, 3), np.dtype(np.float32))
    fed = npz_input(arrays, tmp_path / "in.npz", spec)
    assert fed.shape == (5, 4, 4, 3)
    for i, source in enumerate([0, 1, 0, 1, 0]):  # whole images, in turn
        np.testing.assert_array_equal(fed[i], images[source])
    cut = npz_input(arrays, tmp_path / "in.npz", InputSpec("input_tensor", (1, 4, 4, 3),
                                                           np.dtype(np.float16)))
    assert cut.dtype == np.float16 and cut.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(cut[0], images[0].astype(np.float16))


@pytest.mark.parametrize("arrays,message", [
    ({"other": np.zeros((1, 4, 4, 3), np.float32)},
     "no array named 'input_tensor' (the model's input); it has ['other']"),
    ({"input_tensor": np.zeros((1, 3, 4, 4), np.float32)},
     "'input_tensor' has shape (1, 3, 4, 4); the model takes ('N', 4, 4, 3) with N >= 1"),
    ({"input_tensor": np.zeros((0, 4, 4, 3), np.float32)},
     "'input_tensor' has shape (0, 4, 4, 3); the model takes ('N', 4, 4, 3) with N >= 1"),
    ({"input_tensor": np.zeros((1, 4, 4, 3), np.float64)}, None),  # float64 -> float32: fine
    ({"input_tensor": np.zeros((1, 4, 4, 3), np.float32)}, None),
])
def test_npz_input_checks(arrays: dict, message: str | None, tmp_path: Path) -> None:
    path = save_npz(tmp_path / "in.npz", **arrays)
    spec = InputSpec("input_tensor", (1, 4, 4, 3), np.dtype(np.float32))
    if message is None:
        assert npz_input(read_npz(path), path, spec).dtype == np.float32
        return
    with pytest.raises(UsageError) as err:
        npz_input(read_npz(path), path, spec)
    assert str(err.value) == f"--inputs {path}: {message}"


def test_npz_input_refuses_floats_for_an_integer_input(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "in.npz", image=np.zeros((1, 2), np.float32))
    with pytest.raises(UsageError, match=r"'image' is float32; the model's input is uint8"):
        npz_input(read_npz(path), path, InputSpec("image", (1, 2), np.dtype(np.uint8)))


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    (b"not a zip file at all", "not a readable .npz file"),
    ("npy", "a single array, not an .npz file; save the inputs with numpy.savez"),
    ("empty", "holds no arrays"),
])
def test_read_npz_refuses_what_is_no_npz(content, message: str, tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "npy":
        with path.open("wb") as out:
            np.save(out, np.zeros(3))
    elif content == "empty":
        np.savez(path)
    with pytest.raises(UsageError) as err:
        read_npz(path)
    assert str(err.value).startswith(f"--inputs {path}: {message}")


def test_whole_image_shapes_read_the_layout() -> None:
    np.testing.assert_array_equal(whole_image_shapes((2, 300, 320, 3), "NHWC"),
                                  [[300, 320], [300, 320]])
    np.testing.assert_array_equal(whole_image_shapes((1, 3, 300, 320), "NCHW"), [[300, 320]])


# ---------------------------------------------------------------------------------------------
# The command line: checked before any engine is opened (the engine file here is no engine).


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    code = benchmark.main(args)
    return code, capsys.readouterr().err.strip().splitlines()


def test_photos_for_an_engine_without_metadata_need_a_preprocessor(
        coco_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    engine = tmp_path / "nvidia.engine"
    engine.write_bytes(b"an engine built elsewhere")
    code, lines = run_cli(["-e", str(engine), "--images", str(coco_dir / "images")], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == (
        f"benchmark.py: error: {engine}: how to preprocess photos for it is unknown (no "
        "nvidia.engine.json from build_engine.py on a create_onnx.py graph beside it); pass "
        "--preprocessor (e.g. fixed_shape), or time it on --inputs FILE.npz or on random "
        "inputs (no --images)")
    # with --preprocessor the check passes: the next error is the engine's own
    code, lines = run_cli(["-e", str(engine), "--images", str(coco_dir / "images"),
                           "--preprocessor", "fixed_shape"], capsys)
    assert code == 2 and "how to preprocess" not in lines[-1]  # (after the progress bar)
    assert lines[-1].startswith(f"benchmark.py: error: {engine}: ")


@pytest.mark.parametrize("args,message", [
    (["--inputs", "missing.npz"], "benchmark.py: error: --inputs missing.npz: no such file"),
    (["--inputs", "bad.npz"], "benchmark.py: error: --inputs bad.npz: not a readable .npz"),
    (["--inputs", "bad.npz", "--images", "photos"],
     "argument --images: not allowed with argument --inputs"),
    (["--preprocessor", "squash:300"], "argument -p/--preprocessor:"),
])
def test_bad_feed_arguments(args: list[str], message: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("x.engine").write_bytes(b"not an engine")
    Path("bad.npz").write_bytes(b"not an npz")
    Path("photos").mkdir()
    code, lines = run_cli(["-e", "x.engine", *args], capsys)
    assert code == 2 and any(message in line for line in lines), lines
    assert not any("Traceback" in line for line in lines)


def test_onnx_baseline_runs_on_npz_inputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The CPU reference runtime fed from an .npz (its batch repeated to the graph's); a file
    of another input size is refused with the file named."""
    model = converted_onnx("ssd_mobilenet_v2")
    good = save_npz(tmp_path / "good.npz", input_tensor=np.full((1, 300, 300, 3), 128, np.uint8))
    out = tmp_path / "onnx.json"
    code = benchmark.main(["--onnx", str(model), "--inputs", str(good), "--warmup", "0",
                           "--duration", "0", "--iterations", "2", "--json", str(out)])
    assert code == 0
    (entry,) = json.loads(out.read_text())["results"]
    assert entry["kind"] == "onnxruntime_cpu" and entry["latency_ms"]["count"] >= 2
    wrong = save_npz(tmp_path / "wrong.npz", input_tensor=np.zeros((1, 320, 320, 3), np.float32))
    code, lines = run_cli(["--onnx", str(model), "--inputs", str(wrong), "--duration", "0"],
                          capsys)
    assert code == 2 and lines[-1] == (
        f"benchmark.py: error: --inputs {wrong}: 'input_tensor' has shape (1, 320, 320, 3); "
        "the model takes ('N', 300, 300, 3) with N >= 1")
