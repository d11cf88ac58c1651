"""The comparison with NVIDIA's retired sample: tools/nvidia_sample_onnx.py (the sample fetched
from a git repository and run unmodified) and tools/compare_onnx_graphs.py (the graphs side by
side).

The full run (a 90-class model, the sample's create_onnx.py: about 5 minutes) is slow and needs
a local clone of NVIDIA/TensorRT in $TFOD_TRT_TENSORRT_REPO."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import converted_onnx

from tfod_trt.config.writer import ARCHITECTURES, pipeline_config_text
from tfod_trt.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import compare_onnx_graphs  # noqa: E402
import nvidia_sample_onnx  # noqa: E402

SAMPLE = nvidia_sample_onnx.SAMPLE


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def fake_tensorrt(tmp_path: Path) -> tuple[Path, str]:
    """A git repository with a release/8.6 branch holding files at the sample's paths."""
    repo = tmp_path / "TensorRT"
    (repo / SAMPLE).mkdir(parents=True)
    (repo / SAMPLE / "create_onnx.py").write_text("print('the sample')\n")
    (repo / "samples" / "python" / "common.py").write_text("# common\n")
    (repo / "README.md").write_text("not extracted\n")
    git(tmp_path, "init", "-q", "-b", "release/8.6", str(repo))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "sample")
    return repo, git(repo, "rev-parse", "HEAD")


def test_the_sample_is_extracted_from_the_commit_not_the_checkout(
        fake_tensorrt: tuple[Path, str], tmp_path: Path) -> None:
    repo, commit = fake_tensorrt
    (repo / SAMPLE / "create_onnx.py").write_text("print('edited in the checkout')\n")
    sample, found = nvidia_sample_onnx.extract_sample(repo, "release/8.6", tmp_path / "cache")
    assert found == commit
    assert sample == tmp_path / "cache" / f"sample-{commit[:12]}" / SAMPLE
    assert (sample / "create_onnx.py").read_text() == "print('the sample')\n"
    assert (sample.parent / "common.py").is_file()
    assert not (sample.parents[2] / "README.md").exists()


def test_a_repository_without_the_branch_is_refused(fake_tensorrt: tuple[Path, str],
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    repo, _ = fake_tensorrt
    code = nvidia_sample_onnx.main(["-o", str(tmp_path / "out"), "--trt_repo", str(repo),
                                    "--trt_ref", "release/10.0",
                                    "--cache_dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [
        f"nvidia_sample_onnx.py: error: {repo}: has no release/10.0 (or origin/release/10.0); "
        "is it a clone of NVIDIA/TensorRT? (--trt_ref)"]


def test_a_model_of_other_than_90_classes_is_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "pipeline.config"
    config.write_text(pipeline_config_text(dataclasses.replace(
        ARCHITECTURES["ssd_mobilenet_v2_320"], num_classes=6)))
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "not_a_clone").mkdir()  # never looked at: the config is checked first
    code = nvidia_sample_onnx.main(["-o", str(tmp_path / "out"), "-m",
                                    str(tmp_path / "saved_model"), "-p", str(config),
                                    "--trt_repo", str(tmp_path / "not_a_clone")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"nvidia_sample_onnx.py: error: {config}: num_classes is 6; "
                                 "NVIDIA's sample handles 90 classes only"]


@pytest.mark.parametrize("script,message", [
    ("import sys\nprint('boom')\nsys.exit(1)\n", "failed (exit 1); log {log}: boom"),
    ("print('done, but nothing written')\n", "wrote no graph; log {log}"),
])
def test_a_failing_sample_is_reported_with_its_log(
        script: str, message: str, fake_tensorrt: tuple[Path, str], tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    repo, _ = fake_tensorrt
    (repo / SAMPLE / "create_onnx.py").write_text(script)
    git(repo, "commit", "-q", "-am", "a sample that fails")
    config = tmp_path / "pipeline.config"
    config.write_text(pipeline_config_text(ARCHITECTURES["ssd_mobilenet_v2_320"]))
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_bytes(b"not read by the fake sample")
    out = tmp_path / "out"
    code = nvidia_sample_onnx.main(["-o", str(out), "-m", str(tmp_path / "saved_model"), "-p",
                                    str(config), "--trt_repo", str(repo), "--cache_dir",
                                    str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    log = out / "logs" / "nvidia_b1.log"
    assert code == 2 and err == ["nvidia_sample_onnx.py: error: the sample create_onnx.py for "
                                 f"nvidia_b1 {message.format(log=log)}"]
    assert [p.name for p in out.iterdir()] == ["logs"]  # no partial graph left


def test_graphs_of_another_model_are_not_kept(tmp_path: Path) -> None:
    """The graphs stay for the same model (the same saved_model.pb, also moved elsewhere),
    not for another one unless --force."""
    def model(folder: str, graph: bytes) -> dict[str, Path]:
        (tmp_path / folder / "saved_model").mkdir(parents=True)
        (tmp_path / folder / "saved_model" / "saved_model.pb").write_bytes(graph)
        return {"saved_model": tmp_path / folder / "saved_model",
                "pipeline_config": tmp_path / folder / "pipeline.config"}

    first, moved, other = model("a", b"graph a"), model("moved", b"graph a"), model("b", b"b")
    record = tmp_path / "graphs.json"
    made = nvidia_sample_onnx.load_record(record, first, force=False)
    record.write_text(json.dumps({**made, "graphs": {"nvidia_b1": {"seconds": 1.0}}}))
    assert nvidia_sample_onnx.load_record(record, moved, force=False)["graphs"] == {
        "nvidia_b1": {"seconds": 1.0}}
    with pytest.raises(UsageError) as err:
        nvidia_sample_onnx.load_record(record, other, force=False)
    assert str(err.value) == (f"{tmp_path} holds graphs of another model "
                              f"({tmp_path / 'a' / 'saved_model'}); choose another --output, "
                              "or --force to make them all again")
    assert nvidia_sample_onnx.load_record(record, other, force=True)["graphs"] == {}


@pytest.mark.parametrize("args,message", [
    (["-m", "sm"], "--saved_model and --pipeline_config go together"),
    (["--variant", "t001"], "expected NAME=FLAGS with a NAME of letters, digits, - and _"),
    (["--variant", "a b=-t 0.01"], "expected NAME=FLAGS"),
    (["--variant", "x=-t 0.01", "--variant", "x=-t 0.02"], "--variant names must differ"),
    (["-b", "0"], "--batch_size must be at least 1"),
])
def test_bad_command_lines(args: list[str], message: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture) -> None:
    assert nvidia_sample_onnx.main(["-o", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err


def test_variant_flags_are_split_as_a_shell_would() -> None:
    assert nvidia_sample_onnx.variant("t001=--score_threshold 0.01") == (
        "t001", ["--score_threshold", "0.01"])


def test_graph_report_finds_the_post_processing(tmp_path: Path) -> None:
    """On the converter's own fixture graph (score threshold 1e-8): the preprocessing before
    the first Conv, the box decoding, score slicing and per-class layout between the heads and
    the NMS, and the merge of the classes after it (threshold, clip, prune, TopK)."""
    (report,) = [compare_onnx_graphs.report(converted_onnx("ssd_mobilenet_v2"))]
    assert report["ops"]["EfficientNMS_TRT"] == 1 and report["ops"]["Conv"] > 50
    assert [n["op"] for n in report["preprocessing"]] == ["Mul", "Add", "Transpose"]
    before = {n["name"]: n for n in report["heads_to_nms"]}
    assert {"class_logits/Slice", "box_deltas/Div", "logits_by_class/Transpose",
            "logits_per_class/Reshape", "box_deltas_each_class/Expand",
            "box_deltas_per_class/Reshape"} <= set(before)
    assert before["box_deltas/Div"]["inputs"][1] == {"constant": [4],
                                                     "values": [10.0, 10.0, 5.0, 5.0]}
    after = [n["op"] for n in report["nms_and_after"]]
    assert after[0] == "EfficientNMS_TRT"
    assert {"GreaterOrEqual", "Min", "Max", "TopK", "GatherElements"} <= set(after)
    nms = report["nms_and_after"][0]["attributes"]
    assert nms["score_threshold"] == pytest.approx(1e-8) and nms["box_coding"] == 1
    out = tmp_path / "report.json"
    assert compare_onnx_graphs.main([str(converted_onnx("ssd_mobilenet_v2")), "--json",
                                     str(out)]) == 0
    assert json.loads(out.read_text())[0]["ops"] == report["ops"]


@pytest.mark.slow
def test_the_sample_runs_unmodified_and_matches_ours_at_its_threshold(tmp_path: Path) -> None:
    """The whole tool on a local TensorRT clone: the sample's graph and ours with
    --score_threshold 0.01 give the same detections on the CPU reference runtime, up to the
    Clip that the sample leaves out."""
    repo = os.environ.get("TFOD_TRT_TENSORRT_REPO")
    if not repo:
        pytest.skip("set TFOD_TRT_TENSORRT_REPO to a local clone of NVIDIA/TensorRT")
    from fixtures import calibration_photos, stand_in_photos

    from tfod_trt.config.preprocessor import Preprocessor
    from tfod_trt.io.batcher import ImageBatcher
    from tfod_trt.reference.runner import ReferenceRunner

    out = tmp_path / "graphs"
    assert nvidia_sample_onnx.main([
        "-o", str(out), "--trt_repo", repo, "--cache_dir", str(tmp_path / "cache"),
        "--calibration_images", str(calibration_photos()),
        "--variant", "t001=--score_threshold 0.01"]) == 0
    theirs = ReferenceRunner(out / "nvidia_b1.onnx", detector=False)
    ours = ReferenceRunner(out / "ours-t001_b1.onnx")
    pre = Preprocessor.from_dict(ours.metadata["preprocessor"])
    for batch in list(ImageBatcher(stand_in_photos() / "images", pre, batch_size=1))[:4]:
        a, b = theirs.infer(batch.data), ours.infer(batch.data)
        count = int(b["num_detections"][0, 0])
        assert int(a["num_detections"][0, 0]) == count
        np.testing.assert_array_equal(a["detection_classes"][0], b["detection_classes"][0])
        np.testing.assert_allclose(a["detection_scores"][0], b["detection_scores"][0],
                                   atol=1e-6)
        np.testing.assert_allclose(np.clip(a["detection_boxes"][0, :count], 0, 1),
                                   b["detection_boxes"][0, :count], atol=1e-6)
