"""eval_coco.py on the 64 real COCO photos and their official annotations: TensorFlow and the
ONNX reference runtime give the same mAP, pycocotools' numbers match expectations computed here
from first principles, and bad input ends in one clear line. A GPU test does the same for a
TensorRT engine against the ONNX reference."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fixtures import converted_onnx, exported_model, have_tensorflow

import create_onnx
import eval_coco
from tfod_trt.detections import Detections
from tfod_trt.evaluate.coco import STATS
from tfod_trt.evaluate.matching import match_detections
from tfod_trt.evaluate.parity import TOLERANCES

MODEL = "ssd_mobilenet_v2"
NUM_CLASSES = 6  # of the fixture model: COCO category ids 1..6 through the test's label map
ANNOTATIONS = "instances_val2017_64.json"
STAT = re.compile(r"^(A[PR]\w*)\s+(-?\d+\.\d+)\s+IoU=", re.M)
SUMMARY = re.compile(r": (\d+) images, (\d+) detections$", re.M)
AREAS = {"small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e10)}
MAP_AGREEMENT = 0.005  # half an AP point


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def stats(self) -> dict[str, float]:
        """The 12 printed numbers by name."""
        found = {name: float(value) for name, value in STAT.findall(self.out)}
        assert list(found) == list(STATS), self.out
        return found

    @property
    def counts(self) -> tuple[int, int]:
        """(images, detections) of the summary line."""
        images, detections = SUMMARY.search(self.out).groups()
        return int(images), int(detections)


def run_cli(*args: str | Path) -> Run:
    """eval_coco.main with its stdout/stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = eval_coco.main([str(a) for a in args])
    return Run(code, out.getvalue(), err.getvalue())


def write_fixture_categories(coco_dir: Path, folder: Path, count: int = NUM_CLASSES,
                             ) -> tuple[Path, Path]:
    """A label map of COCO ids 1..count (the fixture model's classes) and the annotations cut
    to those categories, every image kept: (label map, annotations)."""
    data = json.loads((coco_dir / ANNOTATIONS).read_text())
    data["categories"] = [c for c in data["categories"] if c["id"] <= count]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] <= count]
    annotations = folder / f"instances_{count}_categories.json"
    annotations.write_text(json.dumps(data))
    label_map = folder / f"label_map_{count}.pbtxt"
    label_map.write_text("".join(f'item {{\n  id: {c["id"]}\n  display_name: "{c["name"]}"\n}}\n'
                                 for c in data["categories"]))
    return label_map, annotations


@pytest.fixture(scope="module")
def categories(coco_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_fixture_categories(coco_dir, tmp_path_factory.mktemp("categories"))


@pytest.fixture(scope="module")
def onnx_eval(coco_dir: Path, categories: tuple[Path, Path],
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Path]:
    """The ONNX model on the CPU reference runtime over all 64 photos: (run, --results file)."""
    results = tmp_path_factory.mktemp("onnx") / "detections.json"
    label_map, annotations = categories
    run = run_cli("--onnx", converted_onnx(MODEL), "-i", coco_dir / "images", "-a", annotations,
                  "-l", label_map, "--results", results, "--per_category")
    assert run.code == 0, run.err
    return run, results


def test_tensorflow_and_onnx_map_agree(onnx_eval: tuple[Run, Path], coco_dir: Path,
                                       categories: tuple[Path, Path]) -> None:
    if not have_tensorflow():
        pytest.skip("TensorFlow is absent")
    label_map, annotations = categories
    tf = run_cli("--saved_model", exported_model(MODEL) / "saved_model",
                 "-i", coco_dir / "images", "-a", annotations, "-l", label_map)
    assert tf.code == 0, tf.err
    onnx = onnx_eval[0]
    images, detections = onnx.counts
    assert images == tf.counts[0] == 64
    assert detections >= 20 * images and tf.counts[1] >= 20 * images  # non-trivial
    assert onnx.stats["AR100"] > 0.01, onnx.out  # some boxes are found
    for name, value in onnx.stats.items():
        assert abs(value - tf.stats[name]) <= MAP_AGREEMENT, (name, onnx.out, tf.out)


def test_results_file_and_category_table(onnx_eval: tuple[Run, Path], coco_dir: Path) -> None:
    run, results = onnx_eval
    records = json.loads(results.read_text())
    annotations = json.loads((coco_dir / ANNOTATIONS).read_text())
    ids = {image["file_name"]: image["id"] for image in annotations["images"]}
    assert len(records) == run.counts[1]
    assert {r["image_id"] for r in records} <= set(ids.values())
    assert all(ids[r["file_name"]] == r["image_id"] for r in records)
    assert {r["category_id"] for r in records} <= set(range(1, NUM_CLASSES + 1))
    assert not list(results.parent.glob(".*.tmp"))  # written through a temporary file
    table = run.out.split("ARl")[1].splitlines()[2:]
    assert [int(line.split()[0]) for line in table] == list(range(1, NUM_CLASSES + 1))
    assert annotations["categories"][0]["name"] in table[0]  # COCO's: person


# ---------------------------------------------------------------------------------------------
# keep_aspect_ratio models: TensorFlow runs on the original photos, as its users run it

# model -> (photos, ONNX layout: the one cached for both kinds of fixture source)
KEEP_ASPECT = {"ssd_mobilenet_v2_keep_aspect": (6, "NCHW"), "faster_rcnn_r50_640": (2, "NHWC"),
               "ssd_mobilenet_v2_keep_aspect_256_320": (6, "NHWC")}
# Both runtimes find the same detections (paired below within create_onnx --validate's bounds;
# scores in fact within ~1e-4: float rounding), so COCO ranks and matches the same boxes and its
# numbers agree to the 4 printed digits, but two values a hair apart may round 1e-4 apart.
KEEP_ASPECT_MAP_AGREEMENT = 1.5e-4


def detections_by_image(path: Path) -> dict[int, Detections]:
    """eval_coco.py's --results file as each image's detections (x0, y0, x1, y1 boxes)."""
    rows: dict[int, list[dict]] = defaultdict(list)
    for record in json.loads(path.read_text()):
        rows[record["image_id"]].append(record)
    return {image: Detections(np.array([[x, y, x + w, y + h] for x, y, w, h in
                                        (r["bbox"] for r in found)]).reshape(-1, 4),
                              np.array([r["score"] for r in found], np.float32),
                              np.array([r["category_id"] for r in found]))
            for image, found in rows.items()}


def largest_box_photos(annotations: Path, count: int) -> list[str]:
    """The ``count`` photos whose largest box covers most of them: a model of random weights
    finds some of those, so the numbers compared are not all 0."""
    data = json.loads(annotations.read_text())
    sizes = {image["id"]: image["width"] * image["height"] for image in data["images"]}
    cover: dict[int, float] = defaultdict(float)
    for box in non_crowd(data, set(sizes)):
        cover[box["image_id"]] = max(cover[box["image_id"]], box["area"] / sizes[box["image_id"]])
    names = {image["id"]: image["file_name"] for image in data["images"]}
    return [names[i] for i in sorted(cover, key=lambda i: (-cover[i], i))[:count]]


@pytest.mark.parametrize("model", [
    "ssd_mobilenet_v2_keep_aspect",
    pytest.param("faster_rcnn_r50_640", marks=pytest.mark.slow),  # ~50 s on 2 cores
    pytest.param("ssd_mobilenet_v2_keep_aspect_256_320", marks=pytest.mark.slow),  # a new model
])
def test_keep_aspect_tensorflow_map_equals_onnx(model: str, coco_dir: Path,
                                                tmp_path: Path) -> None:
    """Fed the padded input, TensorFlow took the padding for image (boxes in it, a Faster R-CNN
    AR100 halved); on the photos, through its own resize, it finds what the ONNX graph finds."""
    if not have_tensorflow():
        pytest.skip("TensorFlow is absent")
    label_map, annotations = write_fixture_categories(coco_dir, tmp_path, 4)
    photos, layout = KEEP_ASPECT[model]
    folder = link_images(coco_dir, tmp_path / "images", largest_box_photos(annotations, photos))
    common = ["-i", folder, "-a", annotations, "-l", label_map, "--results"]
    onnx = run_cli("--onnx", converted_onnx(model, 1, layout), *common, tmp_path / "onnx.json")
    tf = run_cli("--saved_model", exported_model(model), *common, tmp_path / "tf.json")
    assert onnx.code == 0 and tf.code == 0, (onnx.err, tf.err)
    assert tf.counts == onnx.counts and onnx.counts[1] >= 50 * onnx.counts[0], (tf.out, onnx.out)
    theirs, ours = detections_by_image(tmp_path / "tf.json"), detections_by_image(
        tmp_path / "onnx.json")
    assert set(theirs) == set(ours)
    min_iou, max_score_diff, min_rate = TOLERANCES[
        "faster_rcnn" if model.startswith("faster_rcnn") else "ssd"]
    for image, found in theirs.items():
        pairs = match_detections(found, ours[image], min_iou, max_score_diff)
        assert pairs.matched >= min_rate * max(len(found), len(ours[image])), (image, pairs)
    assert onnx.stats["AR100"] > 0.01, onnx.out  # not all 0: some boxes are found
    for name, value in onnx.stats.items():
        assert abs(value - tf.stats[name]) <= KEEP_ASPECT_MAP_AGREEMENT, (name, onnx.out, tf.out)


# ---------------------------------------------------------------------------------------------
# pycocotools' numbers against expectations computed here


def non_crowd(annotations: dict, image_ids: set[int]) -> list[dict]:
    return [a for a in annotations["annotations"]
            if a["image_id"] in image_ids and not a["iscrowd"]]


def expected_for_copies(annotations: dict, image_ids: set[int]) -> dict[str, float]:
    """The 12 numbers for detections that copy every (non-crowd) box. Each is found at
    precision 1, so AP and AR at 100 detections are 1, or -1 where no box of that size exists;
    with k detections per image and category, min(k, boxes) of them are found."""
    boxes = non_crowd(annotations, image_ids)

    def sized(area: str) -> float:
        low, high = AREAS[area]
        return 1.0 if any(low <= box["area"] <= high for box in boxes) else -1.0

    per_category: dict[int, Counter] = defaultdict(Counter)
    for box in boxes:
        per_category[box["category_id"]][box["image_id"]] += 1

    def recall(k: int) -> float:
        return float(np.mean([sum(min(k, n) for n in images.values()) / sum(images.values())
                              for images in per_category.values()]))

    return {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "APs": sized("small"), "APm": sized("medium"),
            "APl": sized("large"), "AR1": recall(1), "AR10": recall(10), "AR100": 1.0,
            "ARs": sized("small"), "ARm": sized("medium"), "ARl": sized("large")}


def iou_xywh(a: list[float], b: list[float], crowd: bool = False) -> float:
    """IoU of two x, y, w, h boxes; for a crowd box ``b``: intersection over ``a``'s area."""
    w = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] if crowd else a[2] * a[3] + b[2] * b[3] - w * h
    return w * h / union


def average_precision(boxes: list[dict], detections: list[dict], threshold: float) -> float:
    """COCO's AP at one IoU threshold (all sizes), from its definition: per image, detections in
    score order take the unmatched box of their category with the highest IoU >= threshold;
    unmatched ones are false positives unless they lie on a crowd box; precision made
    non-increasing, read at recall 0, 0.01, ..., 1; mean over the categories with boxes."""
    truth, found = defaultdict(list), defaultdict(list)
    for box in boxes:
        truth[box["category_id"], box["image_id"]].append(box)
    for detection in detections:
        found[detection["category_id"], detection["image_id"]].append(detection)
    outcomes, totals = defaultdict(list), Counter()
    for (category, image), mine in truth.items():
        real = [b["bbox"] for b in mine if not b["iscrowd"]]
        crowd = [b["bbox"] for b in mine if b["iscrowd"]]
        totals[category] += len(real)
        free = set(range(len(real)))
        for d in sorted(found[category, image], key=lambda d: -d["score"]):
            ious = {j: iou_xywh(d["bbox"], real[j]) for j in free}
            best = max(ious, key=ious.get, default=None)
            if best is not None and ious[best] >= threshold:
                free.discard(best)
                outcomes[category].append((d["score"], 1))
            elif not any(iou_xywh(d["bbox"], c, crowd=True) >= threshold for c in crowd):
                outcomes[category].append((d["score"], 0))
    aps = []
    for category in (c for c, total in totals.items() if total):
        hits = np.array([hit for _, hit in sorted(outcomes[category], key=lambda o: -o[0])])
        tp = np.cumsum(hits)
        recall = tp / totals[category]
        precision = np.maximum.accumulate((tp / np.arange(1, len(hits) + 1))[::-1])[::-1]
        at = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
        aps.append(np.mean([precision[i] if i < len(hits) else 0.0 for i in at]))
    return float(np.mean(aps))


def link_images(coco_dir: Path, folder: Path, names: list[str]) -> Path:
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to((coco_dir / "images" / name).resolve())
    return folder


@pytest.mark.parametrize("subset", ["all images", "no small boxes"])
def test_copied_ground_truth_scores_as_expected(coco_dir: Path, tmp_path: Path,
                                                subset: str) -> None:
    annotations = json.loads((coco_dir / ANNOTATIONS).read_text())
    names = {image["id"]: image["file_name"] for image in annotations["images"]}
    if subset == "all images":
        folder, ids = coco_dir / "images", set(names)
    else:  # a few photos without small boxes: those numbers are -1
        boxes = non_crowd(annotations, set(names))
        small = {box["image_id"] for box in boxes if box["area"] <= AREAS["small"][1]}
        ids = set(sorted(set(names) - small)[:3])
        folder = link_images(coco_dir, tmp_path / "images", [names[i] for i in ids])
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                   "score": 1.0} for a in non_crowd(annotations, set(names))]
    path = tmp_path / "copies.json"
    path.write_text(json.dumps(detections))
    run = run_cli("--detections", path, "-a", coco_dir / ANNOTATIONS, "-i", folder)
    assert run.code == 0, run.err
    expected = expected_for_copies(annotations, ids)
    assert run.stats == pytest.approx(expected, abs=1e-4)
    assert run.counts[0] == len(ids)
    if subset == "all images":
        assert expected["AR1"] < 0.99  # several boxes per image and category: a real check
    else:
        assert expected["APs"] == -1.0


def test_no_detections_score_zero(coco_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "none.json"
    path.write_text("[]")
    run = run_cli("--detections", path, "-a", coco_dir / ANNOTATIONS)
    assert run.code == 0, run.err
    annotations = json.loads((coco_dir / ANNOTATIONS).read_text())
    expected = expected_for_copies(annotations, {image["id"] for image in annotations["images"]})
    assert run.stats == {name: min(value, 0.0) for name, value in expected.items()}


def test_perturbed_detections_score_as_computed_here(coco_dir: Path, tmp_path: Path) -> None:
    """Per category, of every three boxes one is copied, one dropped and one shifted by 60% of
    its width (IoU 0.25: a false positive); distinct random scores interleave them."""
    annotations = json.loads((coco_dir / ANNOTATIONS).read_text())
    names = {image["id"]: image["file_name"] for image in annotations["images"]}
    seen: Counter = Counter()
    detections = []
    for box in non_crowd(annotations, set(names)):
        turn = seen[box["category_id"]] % 3
        seen[box["category_id"]] += 1
        x, y, w, h = box["bbox"]
        if turn != 1:
            detections.append({"image_id": box["image_id"], "category_id": box["category_id"],
                               "bbox": [x + 0.6 * w if turn == 2 else x, y, w, h]})
    for detection, rank in zip(detections, np.random.default_rng(0).permutation(len(detections)),
                               strict=True):
        detection["score"] = float(rank + 1) / (len(detections) + 1)
    # As infer.py writes them: file names, not image ids.
    records = [{"file_name": names[d.pop("image_id")], **d} for d in map(dict, detections)]
    path = tmp_path / "perturbed.json"
    path.write_text(json.dumps(records))
    run = run_cli("--detections", path, "-a", coco_dir / ANNOTATIONS)
    assert run.code == 0, run.err
    assert run.counts == (len(names), len(detections))
    boxes = annotations["annotations"]
    ap = {t: average_precision(boxes, detections, t) for t in np.linspace(0.5, 0.95, 10)}
    assert 0.2 < ap[0.5] < 0.8
    assert run.stats["AP50"] == pytest.approx(ap[0.5], abs=1e-4)
    assert run.stats["AP75"] == pytest.approx(ap[0.75], abs=1e-4)
    assert run.stats["AP"] == pytest.approx(np.mean(list(ap.values())), abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2 and one line naming the file


def expect_error(run: Run, *parts: object) -> None:
    assert run.code == 2, (run.out, run.err)
    line = run.err.strip().splitlines()[-1]
    assert line.startswith("eval_coco.py: error: "), run.err
    for part in parts:
        assert str(part) in line, line


@pytest.mark.parametrize(("flags", "message"), [
    (["-p", "300x300"], "-p/--preprocessor: bad preprocessor '300x300'"),
    (["--results", "."], "--results .: is a folder"),
])
def test_arguments_are_checked_before_the_engine_is_opened(
        flags: list[str], message: str, tmp_path: Path, coco_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the engine's error (no TensorRT, or a file that is no engine) but the argument's."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.engine").write_bytes(b"not an engine")
    run = run_cli("-e", "model.engine", "-i", coco_dir / "images", "-a", coco_dir / ANNOTATIONS,
                  *flags)
    expect_error(run, message)


def test_missing_annotations(tmp_path: Path, coco_dir: Path) -> None:
    missing = tmp_path / "nowhere.json"
    expect_error(run_cli("--onnx", converted_onnx(MODEL), "-i", coco_dir / "images",
                         "-a", missing), missing, "not found")


def test_images_absent_from_the_annotations(tmp_path: Path, coco_dir: Path,
                                            categories: tuple[Path, Path]) -> None:
    label_map, annotations = categories
    photos = sorted((coco_dir / "images").glob("*.jpg"))[:2]
    folder = link_images(coco_dir, tmp_path / "images", [p.name for p in photos])
    shutil.copy(photos[0], folder / "holiday.jpg")  # not in the annotations
    run = run_cli("--onnx", converted_onnx(MODEL), "-i", folder, "-a", annotations,
                  "-l", label_map)
    assert run.code == 0, run.err
    assert run.counts[0] == 2
    assert "holiday.jpg" in run.err and str(annotations) in run.err
    for photo in photos:
        (folder / photo.name).unlink()
    expect_error(run_cli("--onnx", converted_onnx(MODEL), "-i", folder, "-a", annotations,
                         "-l", label_map), annotations, "holiday.jpg")


def test_empty_folder(tmp_path: Path, categories: tuple[Path, Path]) -> None:
    label_map, annotations = categories
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(run_cli("--onnx", converted_onnx(MODEL), "-i", empty, "-a", annotations,
                         "-l", label_map), empty, "no images")


@pytest.mark.parametrize("case", ["default classes", "label map too small", "id not in json",
                                  "label map beyond the model"])
def test_categories_that_do_not_fit(case: str, tmp_path: Path, coco_dir: Path,
                                    photo_label_map: Path) -> None:
    full = coco_dir / ANNOTATIONS
    six, six_json = write_fixture_categories(coco_dir, tmp_path)
    five_json = write_fixture_categories(coco_dir, tmp_path, NUM_CLASSES - 1)[1]
    coco_map = photo_label_map  # all the categories: more than the model's classes
    seventh = next(c["name"] for c in json.loads(full.read_text())["categories"] if c["id"] == 7)
    args, named = {
        "default classes": ([full], [full, f"7 ({seventh})", "6 classes"]),  # COCO's: train
        "label map too small": ([full, "-l", six], [full, f"7 ({seventh})", six]),
        "id not in json": ([five_json, "-l", six], [six, "ids 6", five_json]),
        "label map beyond the model": ([full, "-l", coco_map], [coco_map, "exceed", "6 classes"]),
    }[case]
    assert six_json.is_file()
    run = run_cli("--onnx", converted_onnx(MODEL), "-i", coco_dir / "images", "-a", *args)
    expect_error(run, *named)


def test_detections_of_unknown_images(tmp_path: Path, coco_dir: Path) -> None:
    path = tmp_path / "detections.json"
    path.write_text(json.dumps([{"file_name": "holiday.jpg", "category_id": 1,
                                 "bbox": [0, 0, 10, 10], "score": 0.5}]))
    expect_error(run_cli("--detections", path, "-a", coco_dir / ANNOTATIONS),
                 path, "holiday.jpg")


def create_onnx_error(model_dir: Path, folder: Path) -> str:
    """What create_onnx.py says of the export ``model_dir`` (after 'create_onnx.py: error: ')."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = create_onnx.main(["-p", str(model_dir / "pipeline.config"),
                                 "-m", str(model_dir / "saved_model"),
                                 "-o", str(folder / "x.onnx")])
    assert code == 2, err.getvalue()
    return err.getvalue().removeprefix("create_onnx.py: error: ")


def test_uint8_saved_model_gets_create_onnx_explanation(coco_dir: Path, tmp_path: Path) -> None:
    if not have_tensorflow():
        pytest.skip("TensorFlow is absent")
    model_dir = exported_model(MODEL, input_type="image_tensor")
    run = run_cli("--saved_model", model_dir, "-i", coco_dir / "images",
                  "-a", coco_dir / ANNOTATIONS)
    assert run.code == 2
    assert run.err == "eval_coco.py: error: " + create_onnx_error(model_dir, tmp_path)
    assert f"{model_dir / 'saved_model'}: the input 'input_tensor' is uint8" in run.err
    assert "--input_type float_image_tensor" in run.err


# ---------------------------------------------------------------------------------------------
# TensorRT (where TensorFlow is absent the engine is compared with the ONNX reference)


@pytest.mark.gpu
def test_tensorrt_map_matches_the_onnx_reference(onnx_eval: tuple[Run, Path], coco_dir: Path,
                                                 categories: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    from test_trt_gpu import build  # the TensorRT tests' engine builds (and cache)

    from tfod_trt.trt.backends import make_backend
    from tfod_trt.trt.cuda_backend import CudaError, NoGpuError

    try:
        make_backend("auto").close()
    except (ImportError, NoGpuError, CudaError) as err:
        pytest.skip(f"no GPU to run TensorRT on: {err}")
    work = Path(os.environ.get("TFOD_TRT_ENGINE_CACHE", tmp_path))
    work.mkdir(parents=True, exist_ok=True)
    engine = build(converted_onnx(MODEL), work, "fp32")
    label_map, annotations = categories
    trt = run_cli("--engine", engine, "-i", coco_dir / "images", "-a", annotations,
                  "-l", label_map)
    assert trt.code == 0, trt.err
    onnx = onnx_eval[0]
    assert trt.counts[0] == onnx.counts[0] == 64
    assert abs(trt.counts[1] - onnx.counts[1]) <= 0.01 * onnx.counts[1]
    for name, value in onnx.stats.items():
        assert abs(value - trt.stats[name]) <= MAP_AGREEMENT, (name, onnx.out, trt.out)
