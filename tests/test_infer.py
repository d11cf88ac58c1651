"""infer.py, labels.py and visualize.py on real converted fixture models and real photos, with
the CPU reference runtime (--onnx): per-image outputs, the corrupt-file path, batch/layout
independence, label files and the one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import fixtures
import numpy as np
import onnx
import pytest
from fixtures import converted_onnx
from PIL import Image

import infer
from tfod_trt.config.labels import LabelError, label_for, load_labels
from tfod_trt.detect.batch import detect_folder
from tfod_trt.detect.inputs import choose_batch_size, input_layout, make_batcher
from tfod_trt.detect.manifest import MANIFEST
from tfod_trt.detect.pipeline import detect_folder_pipelined
from tfod_trt.detect.results import ImageResult, output_stems, to_image_results
from tfod_trt.detect.writer import ResultWriter
from tfod_trt.detections import Detections
from tfod_trt.evaluate.matching import match_detections
from tfod_trt.io import pictures as visualize
from tfod_trt.io.images import ImageError, load_image
from tfod_trt.io.resize import ImageScale
from tfod_trt.reference.runner import ReferenceRunner

PHOTOS = 6
NUM_CLASSES = 6  # of the ssd_mobilenet_v2 fixture model
CORRUPT = "000000010000_corrupt.jpg"  # sorts between the photos, so it falls inside a batch
SUMMARY = re.compile(r"^(\d+) images, (\d+) detections, (\d+) skipped, [\d.]+ images/s$")


@dataclass
class Run:
    code: int
    out: str
    err: str
    output: Path


def run_cli(*args: str | Path) -> Run:
    """infer.main with its stdout/stderr captured; ``output`` is the -o argument."""
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = infer.main(argv)
    output = Path(argv[argv.index("-o") + 1]) if "-o" in argv else Path()
    return Run(code, out.getvalue(), err.getvalue(), output)


def read_txt(path: Path) -> np.ndarray:
    """A <stem>.txt back as float64 [N, 6], checking it has 6 tab-separated columns."""
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    assert all(len(row) == 6 for row in rows), f"{path}: not 6 columns"
    return np.array([[float(v) for v in row] for row in rows]).reshape(-1, 6)


def as_detections(rows: np.ndarray) -> Detections:
    return Detections(rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64))


@pytest.fixture(scope="module")
def photos(coco_dir: Path) -> list[Path]:
    return sorted((coco_dir / "images").glob("*.jpg"))[:PHOTOS]


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Path:
    """The photos, a truncated JPEG and a non-image file."""
    folder = tmp_path_factory.mktemp("images")
    for photo in photos:
        shutil.copy(photo, folder)
    (folder / CORRUPT).write_bytes(photos[0].read_bytes()[:3000])
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def onnx_b1() -> Path:
    return converted_onnx("ssd_mobilenet_v2")


@pytest.fixture(scope="module")
def onnx_b4() -> Path:
    return converted_onnx("ssd_mobilenet_v2", 4, "NCHW")


@pytest.fixture(scope="module")
def reference(onnx_b1: Path, image_dir: Path) -> list[ImageResult]:
    """Every detection the model keeps, through the reusable loop (no threshold)."""
    runner = ReferenceRunner(onnx_b1)
    return list(detect_folder(runner, make_batcher(runner, image_dir)))


@pytest.fixture(scope="module")
def threshold(reference: list[ImageResult]) -> float:
    """An actual score (the median), so that about half the detections pass."""
    scores = np.sort(np.concatenate([r.scores for r in reference]))
    return float(scores[len(scores) // 2])


@pytest.fixture(scope="module")
def run_b1(onnx_b1: Path, image_dir: Path, tmp_path_factory, threshold: float,
           photo_label_map: Path) -> Run:
    return run_cli("--onnx", onnx_b1, "-i", image_dir, "-o", tmp_path_factory.mktemp("b1"),
                   "-t", repr(threshold), "-l", photo_label_map)


def test_run_summary_and_corrupt_file(run_b1: Run, image_dir: Path) -> None:
    assert run_b1.code == 0, run_b1.err
    summary = SUMMARY.match(run_b1.out.strip().splitlines()[-1])
    assert summary, run_b1.out
    images, detections, skipped = (int(v) for v in summary.groups())
    assert (images, skipped) == (PHOTOS, 1)
    total = sum(len(read_txt(p)) for p in run_b1.output.glob("*.txt"))
    assert detections == total > 0
    corrupt = image_dir / CORRUPT
    with pytest.raises(ImageError) as caught:
        load_image(corrupt)
    assert any(str(corrupt) in line and caught.value.reason in line
               for line in run_b1.err.splitlines()), run_b1.err
    assert not list(run_b1.output.glob(Path(CORRUPT).stem + ".*"))


def test_per_image_outputs(run_b1: Run, photos: list[Path], threshold: float) -> None:
    written = sorted(p.name for p in run_b1.output.iterdir())
    expected = sorted([f"{p.stem}.{ext}" for p in photos for ext in ("txt", "png")]
                      + ["detections.json", MANIFEST])
    assert written == expected
    for photo in photos:
        with Image.open(photo) as image:
            width, height = image.size
        rows = read_txt(run_b1.output / f"{photo.stem}.txt")
        x0, y0, x1, y1, scores, classes = rows.T
        assert np.all((0 <= x0) & (x0 < x1) & (x1 <= width)), photo
        assert np.all((0 <= y0) & (y0 < y1) & (y1 <= height)), photo
        assert np.all(scores >= threshold - 1e-6) and np.all(np.diff(scores) <= 0)
        assert np.all((classes == classes.round()) & (0 <= classes) & (classes < NUM_CLASSES))
        with Image.open(run_b1.output / f"{photo.stem}.png") as picture:
            assert picture.format == "PNG" and picture.size == (width, height)
            drawn = np.asarray(picture.convert("RGB"))
        assert (drawn != load_image(photo)).any(), f"{photo}: nothing drawn"


def test_threshold_keeps_exactly_the_higher_scores(
    run_b1: Run, reference: list[ImageResult], threshold: float
) -> None:
    assert len(reference) == PHOTOS
    for result in reference:
        rows = read_txt(run_b1.output / f"{result.path.stem}.txt")
        kept = result.scores >= np.float32(threshold)
        assert 0 < kept.sum() == len(rows)
        np.testing.assert_allclose(rows[:, :4], result.boxes[kept], atol=1e-4)
        np.testing.assert_allclose(rows[:, 4], result.scores[kept], rtol=1e-5)
        np.testing.assert_array_equal(rows[:, 5], result.classes[kept])
    assert sum(len(r) for r in reference) > sum(
        len(read_txt(p)) for p in run_b1.output.glob("*.txt"))


def test_detections_json(run_b1: Run, photos: list[Path], photo_label_map: Path) -> None:
    records = json.loads((run_b1.output / "detections.json").read_text())
    labels = load_labels(photo_label_map)
    for photo in photos:
        rows = read_txt(run_b1.output / f"{photo.stem}.txt")
        mine = [r for r in records if r["file_name"] == photo.name]
        assert len(mine) == len(rows)
        for record, (x0, y0, x1, y1, score, cls) in zip(mine, rows, strict=True):
            np.testing.assert_allclose(record["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=2e-4)
            assert record["score"] == pytest.approx(score, rel=1e-5)
            assert record["category_id"] == cls + 1
            assert record["category_name"] == labels[int(cls)]
    assert len(records) == sum(len(read_txt(p)) for p in run_b1.output.glob("*.txt"))


def test_batch4_nchw_gives_the_same_detections(
    run_b1: Run, onnx_b4: Path, image_dir: Path, photos: list[Path], threshold: float,
    tmp_path: Path,
) -> None:
    run_b4 = run_cli("--onnx", onnx_b4, "-i", image_dir, "-o", tmp_path, "-t", repr(threshold),
                     "--no_pictures")
    assert run_b4.code == 0, run_b4.err
    assert not list(tmp_path.glob("*.png"))
    for photo in photos:
        one = read_txt(run_b1.output / f"{photo.stem}.txt")
        four = read_txt(tmp_path / f"{photo.stem}.txt")
        assert len(one) == len(four) > 0
        match = match_detections(as_detections(one), as_detections(four), 0.9999, 1e-5)
        assert match.matched == len(one) and match.unmatched_test == 0, photo


def test_single_image_and_no_metadata_model(
    onnx_b1: Path, photos: list[Path], run_b1: Run, threshold: float, tmp_path: Path
) -> None:
    """An ONNX file without metadata needs -p; given it, it detects what the original does."""
    model = onnx.load(str(onnx_b1))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    args = ["--onnx", bare, "-i", photos[0], "-o", tmp_path / "out", "-t", repr(threshold)]
    failed = run_cli(*args)
    assert failed.code == 2 and str(bare) in failed.err and "--preprocessor" in failed.err
    wrong_size = run_cli(*args, "-p", "fixed_shape:320x320")
    assert wrong_size.code == 2 and "300x300" in wrong_size.err
    for preprocessor in ("fixed_shape:300x300", "fixed_shape_resizer"):
        done = run_cli(*args, "-p", preprocessor)
        assert done.code == 0, done.err
        assert sorted(p.name for p in done.output.iterdir()) == sorted(
            ["detections.json", MANIFEST, f"{photos[0].stem}.png", f"{photos[0].stem}.txt"])
        name = f"{photos[0].stem}.txt"
        assert (done.output / name).read_text() == (run_b1.output / name).read_text()


def test_keep_aspect_ratio_model(image_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    """Padded inputs: boxes in the padding are dropped, the rest map back inside the image;
    an explicit -p keeps the model's padding value and so changes nothing."""
    model = converted_onnx("ssd_mobilenet_v2_keep_aspect", 1, "NCHW")
    from_metadata = run_cli("--onnx", model, "-i", image_dir, "-o", tmp_path / "meta")
    explicit = run_cli("--onnx", model, "-i", image_dir, "-o", tmp_path / "p", "--no_pictures",
                       "-p", "keep_aspect_ratio:320:320")
    assert from_metadata.code == explicit.code == 0, from_metadata.err + explicit.err
    for photo in photos:
        with Image.open(photo) as image:
            width, height = image.size
        rows = read_txt(from_metadata.output / f"{photo.stem}.txt")
        x0, y0, x1, y1 = rows[:, :4].T
        assert len(rows) > 0 and np.all((0 <= x0) & (x0 < x1) & (x1 <= width)), photo
        assert np.all((0 <= y0) & (y0 < y1) & (y1 <= height)), photo
        with Image.open(from_metadata.output / f"{photo.stem}.png") as picture:
            assert picture.size == (width, height)
        assert (explicit.output / f"{photo.stem}.txt").read_text() == (
            from_metadata.output / f"{photo.stem}.txt").read_text()


def bad_cases(tmp: Path, onnx_b1: Path, image_dir: Path) -> dict[str, tuple[list, str]]:
    """name -> (arguments after --onnx/-e, text the error must contain)."""
    (tmp / "empty").mkdir()
    (tmp / "empty" / "readme.txt").write_text("no images here")
    (tmp / "a_file").write_text("")
    (tmp / "dup.pbtxt").write_text("item { id: 1 name: 'a' }\nitem { id: 1 name: 'b' }\n")
    (tmp / "pngs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp / "pngs" / "x.png")
    good = ["-i", image_dir, "-o", tmp / "out"]
    engine = tmp / "model.engine"  # an engine file: the arguments are checked before TensorRT
    engine.write_bytes(b"not an engine")
    return {
        "missing onnx": (["--onnx", tmp / "nope.onnx", *good], str(tmp / "nope.onnx")),
        "missing engine": (["-e", tmp / "nope.engine", *good], str(tmp / "nope.engine")),
        "missing input": (["--onnx", onnx_b1, "-i", tmp / "nowhere", "-o", tmp / "out"],
                          str(tmp / "nowhere")),
        "empty folder": (["--onnx", onnx_b1, "-i", tmp / "empty", "-o", tmp / "out"],
                         f"no images in folder {tmp / 'empty'}"),
        "missing labels": (["--onnx", onnx_b1, *good, "-l", tmp / "nope.txt"],
                           str(tmp / "nope.txt")),
        "bad labels": (["--onnx", onnx_b1, *good, "-l", tmp / "dup.pbtxt"],
                       f"{tmp / 'dup.pbtxt'}: item 2: duplicate id 1"),
        "batch size": (["--onnx", onnx_b1, *good, "--batch_size", "2"], "fixed at 1"),
        "output is a file": (["--onnx", onnx_b1, "-i", image_dir, "-o", tmp / "a_file"],
                             str(tmp / "a_file")),
        "would overwrite input": (["--onnx", onnx_b1, "-i", tmp / "pngs", "-o", tmp / "pngs"],
                                  f"{tmp / 'pngs'} is the --input folder {tmp / 'pngs'}"),
        "threshold": (["--onnx", onnx_b1, *good, "-t", "1.5"], "--score_threshold 1.5"),
        "two models": (["--onnx", onnx_b1, "-e", onnx_b1, *good], "not allowed with"),
        "engine, missing input": (["-e", engine, "-i", tmp / "nowhere", "-o", tmp / "out"],
                                  f"image path {tmp / 'nowhere'} does not exist"),
        "engine, preprocessor typo": (["-e", engine, *good, "-p", "fixed_shape:300"],
                                      "-p/--preprocessor: bad preprocessor 'fixed_shape:300'"),
    }


@pytest.mark.parametrize("case", [
    "missing onnx", "missing engine", "missing input", "empty folder", "missing labels",
    "bad labels", "batch size", "output is a file", "would overwrite input", "threshold",
    "two models", "engine, missing input", "engine, preprocessor typo",
])
def test_bad_input_is_one_line_and_exit_2(
    case: str, onnx_b1: Path, image_dir: Path, tmp_path: Path
) -> None:
    args, expected = bad_cases(tmp_path, onnx_b1, image_dir)[case]
    result = run_cli(*args)
    assert result.code == 2
    assert "infer.py: error: " in result.err and expected in result.err, result.err
    assert "Traceback" not in result.err and result.out == ""
    assert not (tmp_path / "out").exists()


def test_batch_results_best_first_whether_or_not_the_outputs_are_sorted() -> None:
    """Image 0 comes sorted (as from NMS), image 1 not, with a tie, a zero-area box and a score
    under the threshold; boxes map to pixels of a 100 x 200 photo (input = resized size)."""
    scale = ImageScale(100, 200, 50, 50, 50, 50)
    boxes = np.array([[[0.0, 0.0, 0.5, 0.5], [0.1, 0.1, 0.2, 0.2], [0.2, 0.2, 0.4, 0.4],
                       [0.0, 0.0, 1.0, 1.0]],
                      [[0.5, 0.5, 0.5, 0.9], [0.0, 0.0, 0.1, 0.3], [0.3, 0.0, 0.7, 1.2],
                       [-0.2, 0.1, 0.4, 0.2]]], np.float32)
    scores = np.array([[0.9, 0.6, 0.3, 0.0], [0.4, 0.7, 0.1, 0.7]], np.float32)
    classes = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    first, second = to_image_results(
        [Path("a.jpg"), Path("b.jpg")], [scale, scale], boxes, scores, classes,
        np.array([3, 4]), score_threshold=0.2)
    assert first.scores.tolist() == pytest.approx([0.9, 0.6, 0.3])
    assert first.classes.tolist() == [1, 2, 3]
    np.testing.assert_allclose(first.boxes, [[0, 0, 100, 50], [20, 10, 40, 20],
                                             [40, 20, 80, 40]], atol=1e-4)
    # image 1: box 0 has no height (dropped), box 2 is under the threshold; the tie of 0.7
    # keeps the output order (box 1, then box 3, clipped to the photo)
    assert second.scores.tolist() == pytest.approx([0.7, 0.7])
    assert second.classes.tolist() == [6, 8]
    np.testing.assert_allclose(second.boxes, [[0, 0, 60, 10], [20, 0, 40, 40]], atol=1e-4)


def test_batch_size_and_layout_rules() -> None:
    assert choose_batch_size(None, 4) == 4
    assert choose_batch_size(4, 4) == 4
    assert choose_batch_size(None, -1, (1, 8)) == 8
    assert choose_batch_size(3, -1, (2, 8)) == 3
    assert choose_batch_size(None, "batch") == 1
    with pytest.raises(ValueError, match="takes 2 to 8"):
        choose_batch_size(1, -1, (2, 8))
    with pytest.raises(ValueError, match="fixed at 4"):
        choose_batch_size(8, 4)
    assert input_layout([1, 300, 320, 3]) == ("NHWC", 300, 320)
    assert input_layout([-1, 3, 300, 320]) == ("NCHW", 300, 320)
    assert input_layout([1, 3, 300, 320], "NCHW") == ("NCHW", 300, 320)
    with pytest.raises(ValueError, match="layout"):
        input_layout([1, 300, 320, 4])
    assert output_stems([Path("d/a.jpg"), Path("d/a.png"), Path("d/b.jpg")]) == {
        Path("d/a.jpg"): "a.jpg", Path("d/a.png"): "a.png", Path("d/b.jpg"): "b"}


# COCO's 80 categories by id (ids 12, 26, 29, 30, 45, 66, 68, 69, 71 and 83 are unused), as in
# the TFOD API's mscoco_label_map.pbtxt.
COCO_NAMES = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus", 7: "train",
    8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant", 13: "stop sign",
    14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog", 19: "horse", 20: "sheep",
    21: "cow", 22: "elephant", 23: "bear", 24: "zebra", 25: "giraffe", 27: "backpack",
    28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase", 34: "frisbee", 35: "skis",
    36: "snowboard", 37: "sports ball", 38: "kite", 39: "baseball bat", 40: "baseball glove",
    41: "skateboard", 42: "surfboard", 43: "tennis racket", 44: "bottle", 46: "wine glass",
    47: "cup", 48: "fork", 49: "knife", 50: "spoon", 51: "bowl", 52: "banana", 53: "apple",
    54: "sandwich", 55: "orange", 56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza",
    60: "donut", 61: "cake", 62: "chair", 63: "couch", 64: "potted plant", 65: "bed",
    67: "dining table", 70: "toilet", 72: "tv", 73: "laptop", 74: "mouse", 75: "remote",
    76: "keyboard", 77: "cell phone", 78: "microwave", 79: "oven", 80: "toaster", 81: "sink",
    82: "refrigerator", 84: "book", 85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear",
    89: "hair drier", 90: "toothbrush",
}
# The zoo's own label map joins in where the reference data folder has it.
LABEL_MAPS = ["written", *(["zoo"] if fixtures.zoo_file("mscoco_label_map.pbtxt") else [])]


@pytest.mark.parametrize("source", LABEL_MAPS)
def test_coco_label_map(source: str, tmp_path: Path) -> None:
    path = fixtures.zoo_file("mscoco_label_map.pbtxt")
    if source == "written":
        path = tmp_path / "mscoco_label_map.pbtxt"
        path.write_text("".join(f'item {{\n  name: "/m/{id:05d}"\n  id: {id}\n'
                                f'  display_name: "{name}"\n}}\n'
                                for id, name in COCO_NAMES.items()))
    labels = load_labels(path)
    assert len(labels) == 80 and labels == {id - 1: name for id, name in COCO_NAMES.items()}
    assert labels[0] == "person" and labels[89] == "toothbrush" and labels[2] == "car"
    assert 11 not in labels and label_for(labels, 11) == "class 11"  # COCO has no id 12


def test_text_labels_and_label_map_details(tmp_path: Path) -> None:
    text = tmp_path / "labels.txt"
    text.write_text("\ufeffperson\n\n  car  \n", encoding="utf-8")
    assert load_labels(text) == {0: "person", 2: "car"}
    assert label_for(load_labels(text), 1) == "class 1"
    label_map = tmp_path / "map.txt"  # a label map whatever the extension
    label_map.write_text(
        '# comment\nitem {\n  id: 3\n  name: "only_name"\n}\n'
        'item { id: 1 display_name: "café" name: "x" }\n'
        'item { id: 2 display_name: "\\303\\251t\\303\\251" }\n', encoding="utf-8")
    assert load_labels(label_map) == {2: "only_name", 0: "café", 1: "été"}


@pytest.mark.parametrize("name,content,message", [
    ("missing.pbtxt", None, "label file not found"),
    ("empty.txt", "\n\n", "no class names"),
    ("no_items.pbtxt", "# nothing\n", "no 'item"),
    ("dup.pbtxt", "item { id: 2 name: 'a' }\nitem { id: 2 name: 'b' }", "duplicate id 2"),
    ("zero.pbtxt", "item { id: 0 name: 'background' }", "id must be an integer >= 1"),
    ("nameless.pbtxt", "item { id: 1 }", "has no display_name or name"),
    ("broken.pbtxt", "item { id: 1 name: 'a'", "cannot parse the label map"),
])
def test_bad_label_files(tmp_path: Path, name: str, content: str | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(LabelError, match=re.escape(message)) as caught:
        load_labels(path)
    assert str(caught.value).startswith(str(path))


def test_drawing_and_panels(photos: list[Path], tmp_path: Path) -> None:
    image, other = load_image(photos[0]), load_image(photos[1])
    box = np.array([[40.0, 60.0, 200.0, 180.0]])
    out = tmp_path / "boxes.png"
    visualize.draw_detections(image, box, np.array([0.9]), np.array([5]), {5: "kite"}, out)
    drawn = np.asarray(Image.open(out).convert("RGB"))
    assert drawn.shape == image.shape
    color = visualize.class_color(5)
    assert tuple(drawn[120, 40]) == color and tuple(drawn[179, 120]) == color  # box edges
    assert (drawn[100:140, 100:140] == image[100:140, 100:140]).all()  # inside untouched
    panels = tmp_path / "panels.png"
    visualize.save_panels([image, drawn, other], ["TensorFlow", "TensorRT", "truth"], panels)
    sheet = np.asarray(Image.open(panels).convert("RGB"))
    width = image.shape[1] * 2 + other.shape[1] + 2 * visualize.PANEL_GAP
    bar = sheet.shape[0] - max(image.shape[0], other.shape[0])
    assert sheet.shape[1] == width and bar > 0
    assert (sheet[bar:bar + image.shape[0], : image.shape[1]] == image).all()
    x = image.shape[1] + visualize.PANEL_GAP
    assert (sheet[bar:bar + image.shape[0], x:x + image.shape[1]] == drawn).all()
    assert len(np.unique(sheet[:bar, : image.shape[1]].reshape(-1, 3), axis=0)) > 1  # title
    with pytest.raises(ValueError, match="one title per image"):
        visualize.save_panels([image], [], panels)


@pytest.mark.parametrize(("score", "text"), [
    (0.729, "kite 73%"), (0.724, "kite 72%"), (np.float32(0.999), "kite 100%"),
    (0.004, "kite 0%"), (None, "kite"),
])
def test_label_text_rounds_the_score(score: float | None, text: str) -> None:
    assert visualize.label_text("kite", score) == text


# ---------------------------------------------------------------------------------------------
# The pipelined folder path (the default) against the serial one (--serial).


@pytest.mark.parametrize("decode", ["processes", "threads"])
def test_pipelined_cli_writes_exactly_what_the_serial_path_writes(
    onnx_b4: Path, image_dir: Path, threshold: float, tmp_path: Path, photo_label_map: Path,
    decode: str,
) -> None:
    common = ["--onnx", onnx_b4, "-i", image_dir, "-t", repr(threshold), "-l", photo_label_map]
    serial = run_cli(*common, "-o", tmp_path / "serial", "--serial")
    piped = run_cli(*common, "-o", tmp_path / "piped", "--workers", "3", "--writers", "2",
                    "--pipeline_depth", "2", "--decode", decode)
    assert serial.code == piped.code == 0, serial.err + piped.err
    names = sorted(p.name for p in serial.output.iterdir())
    assert names == sorted(p.name for p in piped.output.iterdir())
    assert len(names) == 2 * PHOTOS + 2  # and detections.json, the manifest
    for name in names:
        assert (serial.output / name).read_bytes() == (piped.output / name).read_bytes(), name
    counts = [SUMMARY.match(r.out.strip().splitlines()[-1]).groups()[:3] for r in (serial, piped)]
    assert counts[0] == counts[1] == (str(PHOTOS), counts[0][1], "1")
    assert str(image_dir / CORRUPT) in piped.err


@pytest.mark.parametrize(("depth", "processes"), [(1, False), (2, False), (3, False), (2, True)])
def test_pipelined_results_in_order_with_bad_images_skipped(
    onnx_b4: Path, image_dir: Path, depth: int, processes: bool
) -> None:
    runner = ReferenceRunner(onnx_b4)
    serial_batcher = make_batcher(runner, image_dir)
    expected = list(detect_folder(runner, serial_batcher))
    batcher = make_batcher(runner, image_dir, workers=3, processes=processes)
    found = list(detect_folder_pipelined(runner, batcher, depth=depth))
    assert [r.path for r in found] == [r.path for r in expected] and len(found) == PHOTOS
    for mine, theirs in zip(found, expected, strict=True):
        np.testing.assert_array_equal(mine.boxes, theirs.boxes)
        np.testing.assert_array_equal(mine.scores, theirs.scores)
        np.testing.assert_array_equal(mine.classes, theirs.classes)
    assert [p.name for p, _ in batcher.skipped] == [CORRUPT]
    assert not [t for t in threading.enumerate() if t.name == "infer-producer"]


class FailingRunner(ReferenceRunner):
    """The reference runner, failing on its ``fail_at``-th call (fault injection)."""

    def __init__(self, path: Path, fail_at: int) -> None:
        super().__init__(path)
        self.calls, self.fail_at = 0, fail_at

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("runner failed on purpose")
        return super().infer(batch)


def test_pipeline_stops_cleanly_on_errors_and_early_exit(onnx_b4: Path, image_dir: Path
                                                         ) -> None:
    failing = FailingRunner(onnx_b4, fail_at=2)
    results = detect_folder_pipelined(failing, make_batcher(failing, image_dir))
    with pytest.raises(RuntimeError, match="on purpose"):
        list(results)
    runner = ReferenceRunner(onnx_b4)
    early = detect_folder_pipelined(runner, make_batcher(runner, image_dir))
    first = next(early)
    early.close()  # the consumer leaves after one image
    assert first.path.name == sorted(p.name for p in image_dir.glob("*.jpg"))[0]
    assert not [t for t in threading.enumerate()
                if t.name.startswith(("infer-producer", "host-pipeline", "image-batcher"))]


def test_result_writer_keeps_order_and_reports_errors(
    reference: list[ImageResult], tmp_path: Path
) -> None:
    stems = {r.path: r.path.stem for r in reference}
    writer = ResultWriter(tmp_path, stems, {}, pictures=False, threads=3)
    for result in reference:
        writer.put(result)
    records = writer.close()
    assert [r["file_name"] for r in records] == [
        r.path.name for r in reference for _ in range(len(r))]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{r.path.stem}.txt" for r in reference)
    broken = ResultWriter(tmp_path / "missing_folder", stems, {}, False, threads=2)
    with pytest.raises(OSError):
        for result in reference:
            broken.put(result)
        broken.close()
