"""A repository of export_triton.py run by a real Triton Inference Server (the tritonserver of
the nvidia-pytriton wheel, in the serving environment) on the CPU, the ONNX stand-in in the
engine's place: a client sends photo files' bytes to the ensemble and gets what infer.py --onnx
finds in the same photos; infer.py --triton against it writes what infer.py --onnx writes. The
server is stopped at the end, leaving no process behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures import converted_onnx, trained_onnx
from triton_server import run_serving, run_tool, triton_server

import export_triton
import infer

LABELS = "circle\nsquare\ncarré\n"  # classes 0-2 named, the others "class N"
BOX_TOLERANCE_PX = 2e-3  # infer.py's detections.json rounds to 4 decimals; FP32 pixels


def detectors() -> dict[str, tuple[Path, int]]:
    """name -> (ONNX, images per request): the demo model (fixed_shape, NHWC), a
    keep_aspect_ratio one (true_image_shape, NCHW) and a static batch of 4 (a request of 3
    images padded)."""
    return {"demo": (trained_onnx(), 1),
            "keep_aspect": (converted_onnx("ssd_mobilenet_v2_keep_aspect", 1, "NCHW"), 1),
            "batch4": (converted_onnx("ssd_mobilenet_v2", 4, "NCHW"), 3)}


def photo_folder(coco_dir: Path, folder: Path) -> list[Path]:
    """Three photos, the last one as PNG."""
    from PIL import Image

    folder.mkdir()
    sources = sorted((coco_dir / "images").iterdir())[:3]
    for source in sources[:2]:
        shutil.copy(source, folder / source.name)
    with Image.open(sources[2]) as image:
        image.save(folder / f"{sources[2].stem}.png")
    return sorted(folder.iterdir())


def infer_detections(onnx_path: Path, images: Path, labels: Path, output: Path) -> dict:
    """infer.py --onnx's detections.json, per file name."""
    assert infer.main(["--onnx", str(onnx_path), "--input", str(images), "--output",
                       str(output), "--labels", str(labels), "--no_pictures",
                       "--decode", "threads"]) == 0
    found: dict[str, list[dict]] = {}
    for record in json.loads((output / "detections.json").read_text()):
        found.setdefault(record["file_name"], []).append(record)
    return found


def assert_same_records(found: list[dict], expected: list[dict]) -> None:
    """Two detections.json of infer.py: the same detections in the same order, boxes within
    BOX_TOLERANCE_PX."""
    assert [(r["file_name"], r["category_id"], r["category_name"], r["score"]) for r in found] == [
        (r["file_name"], r["category_id"], r["category_name"], r["score"]) for r in expected]
    assert len(expected) > 0
    np.testing.assert_allclose([r["bbox"] for r in found], [r["bbox"] for r in expected],
                               atol=BOX_TOLERANCE_PX)


def assert_same(served: dict, expected: list[dict], image: str) -> None:
    """One image's detections from the server against infer.py's, in order."""
    assert len(served["scores"]) == len(expected), image
    assert len(expected) > 0, f"{image}: no detection to compare"
    boxes = np.array(served["boxes"])
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    np.testing.assert_allclose(xywh, [r["bbox"] for r in expected], atol=BOX_TOLERANCE_PX,
                               err_msg=image)
    np.testing.assert_allclose(served["scores"], [r["score"] for r in expected], rtol=1e-5,
                               atol=1e-7, err_msg=image)
    assert [c + 1 for c in served["classes"]] == [r["category_id"] for r in expected], image
    assert served["labels"] == [r["category_name"] for r in expected], image


@pytest.fixture(scope="module")
def served(coco_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The three detectors exported into one repository and served; the answers to their
    requests and to bad ones, and how the server ended."""
    folder = tmp_path_factory.mktemp("served")
    labels = folder / "labels.txt"
    labels.write_text(LABELS, encoding="utf-8")
    photos = photo_folder(coco_dir, folder / "photos")
    repo = folder / "repo"
    for name, (onnx_path, _) in detectors().items():
        assert export_triton.main(["--onnx", str(onnx_path), "--repo", str(repo),
                                   "--name", name, "--labels", str(labels)]) == 0
    answers = {}
    with triton_server(repo, folder) as server:
        for name, (_, per_request) in detectors().items():
            groups = [photos[i:i + per_request] for i in range(0, len(photos), per_request)]
            requests = [arg for group in groups for arg in ("--request", *map(str, group))]
            answers[name] = run_tool("detect", server.url, name, *requests)
        not_an_image = folder / "notes.txt"
        not_an_image.write_text("not an image")
        answers["bad"] = run_tool("detect", server.url, "demo", "--request", str(not_an_image),
                                  "--request", *map(str, photos[:2]))
        run_serving("infer.py", "--triton", server.url, "--model", "batch4", "--input",
                    str(photos[0].parent), "--output", str(folder / "client"), "--labels",
                    str(labels), "--no_pictures")
    return {"folder": folder, "photos": photos, "labels": labels, "answers": answers,
            "server": server}


@pytest.mark.parametrize("name", ["demo", "keep_aspect", "batch4"])
def test_served_detections_equal_infers(served: dict, name: str) -> None:
    onnx_path, per_request = detectors()[name]
    expected = infer_detections(onnx_path, served["photos"][0].parent, served["labels"],
                                served["folder"] / f"infer-{name}")
    answers = served["answers"][name]
    assert all("images" in answer for answer in answers), answers
    per_image = [image for answer in answers for image in answer["images"]]
    assert len(per_image) == len(served["photos"])
    for photo, detections in zip(served["photos"], per_image, strict=True):
        assert_same(detections, expected[photo.name], photo.name)


def test_bad_requests_get_one_line_errors(served: dict) -> None:
    """An image that cannot be read is answered in its row; a request of too many images is
    refused whole."""
    assert served["answers"]["bad"] == [
        {"images": [{"boxes": [], "scores": [], "classes": [], "labels": [],
                     "error": "not an image file (its format is not one Pillow reads)"}]},
        {"error": "in ensemble 'demo', the request has 2 images; this detector takes at most "
                  "1 per request"}]


def test_infer_through_the_ensemble_writes_what_infer_writes(served: dict) -> None:
    """infer.py --triton against the exported batch-4 ensemble (requests of up to 4 images,
    as its config says): the same detections.json as infer.py --onnx, within the rounding of
    the FP32 boxes the server answers."""
    onnx_path, _ = detectors()["batch4"]
    local = infer_detections(onnx_path, served["photos"][0].parent, served["labels"],
                             served["folder"] / "infer-client-local")
    remote = json.loads((served["folder"] / "client" / "detections.json").read_text())
    assert_same_records(remote, [r for name in sorted(local) for r in local[name]])


def test_server_stops_cleanly(served: dict) -> None:
    server = served["server"]
    assert server.process.returncode == 0, server.log_tail()
    assert server.left == [], f"processes left running: {server.left}"
