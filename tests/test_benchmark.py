"""benchmark.py and tools/plot_benchmarks.py on the CPU: statistics, timing loops, layer
kinds, the ONNX Runtime baseline end to end, the plot, and the TensorRT API benchmark.py touches
(checked against the real TensorRT 10 and 11 bindings, as tests/test_trt_api_surface.py does).
The GPU measurements themselves are tested in tests/test_trt_gpu.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures import converted_onnx
from PIL import Image
from test_trt_api_surface import EXISTS, Surface, is_legacy, surface, touched_api  # noqa: F401

import benchmark
from tfod_trt.bench.pipeline import steady_state
from tfod_trt.bench.profile import layer_kind
from tfod_trt.bench.timing import latency_stats, timed_loop

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import plot_benchmarks  # noqa: E402


def test_latency_stats() -> None:
    values = list(range(1, 101))  # 1..100 ms
    stats = latency_stats(values)
    assert stats["count"] == 100 and stats["mean"] == 50.5 and stats["median"] == 50.5
    assert stats["p90"] == pytest.approx(90.1) and stats["p99"] == pytest.approx(99.01)
    assert stats["min"] == 1 and stats["max"] == 100
    assert stats["median"] <= stats["p90"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    with pytest.raises(ValueError, match="no measurements"):
        latency_stats([])


def test_timed_loop_honours_warmup_iterations_and_duration() -> None:
    calls = []

    def step() -> float:
        calls.append(time.perf_counter())
        return 1.0

    values = timed_loop(step, warmup_s=0.0, duration_s=0.0, min_iterations=7)
    assert len(values) == 7 and len(calls) == 7
    calls.clear()
    start = time.perf_counter()
    values = timed_loop(lambda: (time.sleep(0.01), step())[1], warmup_s=0.05,
                                  duration_s=0.1, min_iterations=2)
    assert time.perf_counter() - start >= 0.15
    assert len(calls) > len(values) >= 2  # warm-up runs are not recorded


def test_steady_state_is_the_median_later_pass_with_the_first_apart() -> None:
    passes = [{"images": 64, "seconds": 1.0 / rate, "images_per_s": 64.0 * rate}
              for rate in (0.5, 1.25, 1.0, 2.0)]
    summary = steady_state(passes)
    assert summary["images_per_s"] == 80.0  # 80, 64, 128 after the first: the median
    assert summary["first_pass"]["images_per_s"] == 32.0
    assert summary["passes_images_per_s"] == [32.0, 80.0, 64.0, 128.0]
    assert steady_state(passes[:3])["images_per_s"] == 64.0  # of two, the slower
    assert steady_state(passes[:1])["images_per_s"] == 32.0  # one pass: itself


@pytest.mark.parametrize("name,kind", [
    ("Reformatting CopyNode for Input Tensor 0 to Conv__12", "reformat"),
    ("StatefulPartitionedCall/Transpose__1234", "transpose"),
    ("Transpose__5 + (Unnamed Layer* 3) [Shuffle]", "transpose"),
    ("model/tf_op_layer_Cast_3", "cast"),
    ("Cast__77", "cast"),
    ("BroadcastTo_3", "other"),
    ("efficient_nms", "plugin"),
    ("Conv__45 + Relu6__47", "other"),
])
def test_layer_kinds(name: str, kind: str) -> None:
    assert layer_kind(name) == kind


def test_onnx_cpu_baseline_writes_sane_json(coco_dir: Path, tmp_path: Path) -> None:
    model = converted_onnx("ssd_mobilenet_v2")
    out = tmp_path / "out" / "onnx.json"
    code = benchmark.main(["--onnx", str(model), "--images", str(coco_dir / "images"),
                           "--warmup", "0.05", "--duration", "0.3", "--iterations", "3",
                           "--json", str(out)])
    assert code == 0
    assert [p.name for p in out.parent.iterdir()] == ["onnx.json"]  # no temporary left
    report = json.loads(out.read_text())
    assert report["settings"]["min_iterations"] == 3 and "device" in report
    (entry,) = report["results"]
    stats = entry["latency_ms"]
    assert entry["kind"] == "onnxruntime_cpu" and entry["batch"] == 1 and stats["count"] >= 3
    assert 0 < stats["min"] <= stats["median"] <= stats["p90"] <= stats["p95"] <= stats["p99"]
    assert entry["images_per_s"] == pytest.approx(1e3 / stats["mean"])
    assert entry["input_shape"] == [1, 300, 300, 3]


@pytest.mark.parametrize("args,message", [
    ([], "give --engine, --onnx and/or --triton"),
    (["-e", "nowhere.engine"], "nowhere.engine: engine file or folder not found"),
    (["--onnx", "none.onnx"], "none.onnx: ONNX file not found"),
    (["--onnx", "x.onnx", "--pipeline", "imgs"], "--pipeline and --profile need --engine"),
    (["-e", "x.engine", "--pipeline", "imgs", "--pipeline_passes", "0"],
     "--pipeline_passes must be at least 1"),
    (["-e", "x.engine", "--iterations", "0"], "--iterations must be at least 1"),
])
def test_bad_command_lines(args: list[str], message: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
                           ) -> None:
    monkeypatch.chdir(tmp_path)
    assert benchmark.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("args,message", [
    (["--images", "nowhere"], "--images: image path nowhere does not exist"),
    (["--pipeline", "empty"], "--pipeline: no images in folder empty"),
    (["--json", "empty"], "--json empty: is a folder"),
])
def test_arguments_are_checked_before_the_engines_are_opened(
        args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the engine's error (no TensorRT, or a file that is no engine) but the argument's."""
    monkeypatch.chdir(tmp_path)
    Path("x.engine").write_bytes(b"not an engine")
    Path("empty").mkdir()
    assert benchmark.main(["-e", "x.engine", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"benchmark.py: error: {message}"), lines


def test_engine_folder_without_engines(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert benchmark.main(["-e", str(tmp_path)]) == 2
    assert f"{tmp_path}: no *.engine files" in capsys.readouterr().err


def trt_entry(precision: str, batch: int, graph: bool, median: float) -> dict:
    stats = {"count": 10, "mean": median, "median": median, "p90": median * 1.1,
             "p95": median * 1.2, "p99": median * 1.3, "min": median * 0.9,
             "max": median * 1.4, "std": 0.1}
    return {"kind": "tensorrt", "source": f"{precision}_b{batch}.engine", "batch": batch,
            "measure": "compute", "precision": precision, "cuda_graph": graph,
            "latency_ms": stats, "images_per_s": batch * 1e3 / median}


def test_plot_latency_against_batch(tmp_path: Path) -> None:
    entries = [trt_entry(p, b, g, b * (0.1 if p == "fp16" else 0.2) + (0.0 if g else 0.05))
               for p in ("fp32", "fp16") for b in (1, 8, 32) for g in (False, True)]
    report = {"device": {"gpu": "H100", "tensorrt": "8.6.0"}, "results": entries}
    series = plot_benchmarks.series([report])
    assert list(series) == [("fp16", False), ("fp16", True), ("fp32", False), ("fp32", True)]
    assert [e["batch"] for e in series[("fp32", True)]] == [1, 8, 32]
    (tmp_path / "r.json").write_text(json.dumps(report))
    png = tmp_path / "plot.png"
    assert plot_benchmarks.main([str(tmp_path / "r.json"), "-o", str(png)]) == 0
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 1000
        assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 10
    (tmp_path / "cpu.json").write_text(json.dumps({"results": []}))
    assert plot_benchmarks.main([str(tmp_path / "cpu.json"), "-o", str(png)]) == 2


PROBE = r"""
import json, sys
import tensorrt as trt
from tfod_trt.bench.profile import layer_profiler

""" + EXISTS + r"""
profiler = layer_profiler(trt)
profiler.report_layer_time("Conv_1 + Relu_2", 0.25)
profiler.report_layer_time("Conv_1 + Relu_2", 0.5)
print(json.dumps({"version": trt.__version__, "is_profiler": isinstance(profiler, trt.IProfiler),
                  "total": profiler.total, "calls": profiler.calls,
                  "exists": {c: exists(c) for c in json.loads(sys.argv[1])}}))
"""


def test_benchmark_trt_api_exists_in_10_and_11(surface: Surface) -> None:  # noqa: F811
    api = set().union(*(touched_api(path) for path in (ROOT / "tfod_trt" / "bench").glob("*.py")))
    assert {"IProfiler", "IExecutionContext.profiler",
            "IExecutionContext.report_to_profiler"} <= api
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(sorted(api))], cwd=ROOT,
                            env=surface.env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["version"] == surface.version
    assert not [c for c, ok in report["exists"].items() if not ok and not is_legacy(c)]
    assert report["is_profiler"] and report["calls"] == 2
    assert report["total"] == {"Conv_1 + Relu_2": 0.75}
