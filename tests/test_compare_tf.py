"""compare_tf.py: the fixture SavedModel (TensorFlow) against its ONNX model on the CPU reference
runtime, on real photos with their COCO annotations: panels, the report, and the message when
TensorFlow is absent."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from fixtures import converted_onnx, exported_model, have_tensorflow, trained_onnx
from PIL import Image
from test_eval_coco import MODEL, create_onnx_error, write_fixture_categories

import compare_tf
from tfod_trt.commands import compare_tf as compare_command
from tfod_trt.evaluate.coco import STATS
from tfod_trt.io.images import load_image
from tfod_trt.io.pictures import PANEL_GAP

IMAGES = 4
FIELDS = {"tensorflow_detections", "converted_detections", "matched", "unmatched_tensorflow",
          "unmatched_converted", "matched_rate", "score_diff_mean", "score_diff_max"}


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    """compare_tf.main with its stdout/stderr captured: (code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = compare_tf.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def compared(coco_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """compare_tf.py on the first photos with annotations: (output folder, stdout)."""
    if not have_tensorflow():
        pytest.skip("TensorFlow is absent")
    work = tmp_path_factory.mktemp("compare")
    label_map, annotations = write_fixture_categories(coco_dir, work)
    code, out, err = run_cli(
        "--saved_model", exported_model(MODEL) / "saved_model", "--onnx", converted_onnx(MODEL),
        "-i", coco_dir / "images", "-a", annotations, "-l", label_map,
        "--num_images", IMAGES, "-o", work / "out")
    assert code == 0, err
    return work / "out", out


def test_panels_show_tensorflow_onnx_and_ground_truth(compared: tuple[Path, str],
                                                      coco_dir: Path) -> None:
    output, _ = compared
    report = json.loads((output / "report.json").read_text())
    assert len(report["images"]) == IMAGES
    for entry in report["images"]:
        width, height = Image.open(output / entry["panel"]).size
        photo = load_image(coco_dir / "images" / entry["file_name"])
        assert width == 3 * photo.shape[1] + 2 * PANEL_GAP
        assert height > photo.shape[0]  # the title bar above
    assert sorted(p.name for p in output.glob("*.png")) == sorted(
        e["panel"] for e in report["images"])


def test_report_matches_tensorflow_and_onnx(compared: tuple[Path, str]) -> None:
    output, out = compared
    report = json.loads((output / "report.json").read_text())
    assert report["runtime"] == "ONNX" and report["iou"] == 0.5
    for entry in report["images"]:
        assert FIELDS <= set(entry)
        assert entry["matched"] + entry["unmatched_converted"] == entry["converted_detections"]
    overall = report["overall"]
    assert FIELDS <= set(overall) and overall["images"] == IMAGES
    assert overall["tensorflow_detections"] == sum(
        e["tensorflow_detections"] for e in report["images"]) >= 10 * IMAGES
    assert overall["matched_rate"] >= 0.99
    assert overall["score_diff_max"] < 1e-3
    assert overall["unmatched_tensorflow"] + overall["unmatched_converted"] <= 0.01 * (
        overall["tensorflow_detections"])
    maps = report["map"]
    assert list(maps["tensorflow"]) == list(maps["converted"]) == list(STATS)
    for name, value in maps["tensorflow"].items():
        assert abs(value - maps["converted"][name]) <= 0.005, name
    assert f"overall ({IMAGES} images): TensorFlow" in out and "AR100" in out


def test_mismatched_models_fail_the_comparison(coco_dir: Path, tmp_path: Path) -> None:
    """The fixture SavedModel against another model's ONNX (the trained shapes model): few
    detections match, so it exits 1 and says so in one line; report.json is still written."""
    if not have_tensorflow():
        pytest.skip("TensorFlow is absent")
    code, _, err = run_cli(
        "--saved_model", exported_model(MODEL) / "saved_model", "--onnx", trained_onnx(),
        "-i", coco_dir / "images", "--num_images", IMAGES, "-o", tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["overall"]["tensorflow_detections"] >= 10  # something to match
    assert report["overall"]["matched_rate"] < 0.5 and report["min_matched"] == 0.9
    assert code == 1, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("compare_tf.py: the models disagree: "), err
    assert line.endswith(f"of the detections matched, below --min_matched 0.9 (details in "
                         f"{tmp_path / 'out' / 'report.json'})"), line


def test_without_tensorflow_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    coco_dir: Path) -> None:
    monkeypatch.setattr(compare_command, "have_tensorflow", lambda: False)
    code, _, err = run_cli("--saved_model", tmp_path, "--onnx", tmp_path / "model.onnx",
                           "-i", coco_dir / "images", "-o", tmp_path / "out")
    assert code == 2
    assert err.startswith("compare_tf.py: error: TensorFlow is not installed"), err


def test_keep_aspect_tensorflow_runs_on_the_photos(coco_dir: Path, tmp_path: Path) -> None:
    """Fed the padded input, TensorFlow found boxes in the padding; on the photos, through its
    own resize, each of its detections has its ONNX twin."""
    if not have_tensorflow():
        pytest.skip("TensorFlow is absent")
    model = "ssd_mobilenet_v2_keep_aspect"
    code, _, err = run_cli(
        "--saved_model", exported_model(model) / "saved_model",
        "--onnx", converted_onnx(model, 1, "NCHW"), "-i", coco_dir / "images",
        "--num_images", 6, "--score_threshold", 0, "--iou", 0.99, "-o", tmp_path / "out")
    assert code == 0, err
    overall = json.loads((tmp_path / "out" / "report.json").read_text())["overall"]
    assert overall["images"] == 6
    assert overall["tensorflow_detections"] == overall["converted_detections"] == overall[
        "matched"] >= 50 * 6, overall
    assert overall["score_diff_max"] < 1e-3


def test_uint8_saved_model_gets_create_onnx_explanation(coco_dir: Path, tmp_path: Path) -> None:
    if not have_tensorflow():
        pytest.skip("TensorFlow is absent")
    model_dir = exported_model(MODEL, input_type="image_tensor")
    code, _, err = run_cli("--saved_model", model_dir, "--onnx", converted_onnx(MODEL),
                           "-i", coco_dir / "images", "-o", tmp_path / "out")
    assert code == 2
    assert err == "compare_tf.py: error: " + create_onnx_error(model_dir, tmp_path)
    assert "uint8" in err and "--input_type float_image_tensor" in err
