"""Where the commands write: no command writes over one of its own inputs (the same path, or the
same file through a symlink or hard link), infer.py's and compare_tf.py's output folders never
mix with the image folder, infer.py's manifest lets a rerun remove only its own stale files,
written files get the user's umask, and a write that fails names its file, on real fixture
models and photos."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures import converted_onnx, exported_model, have_tensorflow
from test_eval_coco import write_fixture_categories

import build_engine
import compare_tf
import create_onnx
import eval_coco
import infer
import quantize
from tfod_trt.commands import benchmark
from tfod_trt.detect.manifest import MANIFEST
from tfod_trt.errors import UsageError
from tfod_trt.files import WriteError, atomic_write_bytes, check_output_folder, check_outputs
from tfod_trt.trt.engine_file import metadata_path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import plot_benchmarks  # noqa: E402

MODEL = "ssd_mobilenet_v2"
PHOTOS = 3
CHOOSE = "; choose another path"
PROGRESS = re.compile(r"^infer\.py:\s+\d+%\|")  # tqdm's bar


def run_main(main: Callable[[list[str]], int], *args: str | Path) -> tuple[int, str, str]:
    """A command's main with stdout/stderr captured: (exit code, out, err)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def contents(path: Path) -> dict[str, bytes] | bytes:
    """A file's bytes, or every file's bytes below a folder (by relative path)."""
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
                if p.is_file()}
    return path.read_bytes()


@pytest.fixture(scope="module")
def photos(coco_dir: Path) -> list[Path]:
    return sorted((coco_dir / "images").glob("*.jpg"))[:PHOTOS]


def copy_photos(photos: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copy(photo, folder)
    return folder


def copy_model(tmp: Path) -> tuple[Path, Path]:
    """A copy of the exported fixture model (a failing check could only harm the copy):
    (pipeline.config, saved_model folder)."""
    source = exported_model(MODEL)
    shutil.copytree(source / "saved_model", tmp / "exported" / "saved_model")
    shutil.copy(source / "pipeline.config", tmp / "exported")
    return tmp / "exported" / "pipeline.config", tmp / "exported" / "saved_model"


def copy_onnx(tmp: Path) -> Path:
    return Path(shutil.copy(converted_onnx(MODEL), tmp / "model.onnx"))


# -- refused outputs, script by script: (main, arguments, the error line, inputs kept) ---------

Case = tuple[Callable[[list[str]], int], list, str, list[Path]]


def overwrite(prog: str, output: Path, source: Path, flag: str) -> str:
    return f"{prog}: error: {output} would overwrite {source} (the {flag} input){CHOOSE}"


def create_onnx_cases(tmp: Path) -> dict[str, Case]:
    config, saved = copy_model(tmp)
    base = ["-p", config, "-m", saved]
    prog = "create_onnx.py"
    (tmp / "link.onnx").symlink_to(config)
    weights = saved / "variables" / "variables.index"
    os.link(weights, tmp / "hard.onnx")
    return {
        "-o is --pipeline_config": (
            create_onnx.main, [*base, "-o", config],
            overwrite(prog, config, config, "--pipeline_config"), [config]),
        "-o is saved_model.pb": (
            create_onnx.main, [*base, "-o", saved / "saved_model.pb"],
            overwrite(prog, saved / "saved_model.pb", saved / "saved_model.pb", "--saved_model"),
            [saved]),
        "-o is a symlink to --pipeline_config": (
            create_onnx.main, [*base, "-o", tmp / "link.onnx"],
            overwrite(prog, tmp / "link.onnx", config, "--pipeline_config"), [config]),
        "-o is a hard link to the SavedModel's weights": (
            create_onnx.main, [*base, "-o", tmp / "hard.onnx"],
            overwrite(prog, tmp / "hard.onnx", weights, "--saved_model"), [saved]),
        "--tf2onnx is -o": (
            create_onnx.main, [*base, "-o", tmp / "m.onnx", "--tf2onnx", tmp / "m.onnx"],
            f"{prog}: error: {tmp / 'm.onnx'} is both the --onnx and the --tf2onnx output"
            f"{CHOOSE}", [saved, config]),
    }


def eval_coco_cases(tmp: Path, coco_dir: Path, photos: list[Path]) -> dict[str, Case]:
    label_map, annotations = write_fixture_categories(coco_dir, tmp)
    images = copy_photos(photos, tmp / "images")
    base = ["--onnx", converted_onnx(MODEL), "-i", images, "-a", annotations, "-l", label_map]
    prog = "eval_coco.py"
    return {
        "--results is --annotations": (
            eval_coco.main, [*base, "--results", annotations],
            overwrite(prog, annotations, annotations, "--annotations"), [annotations]),
        "--results is --labels": (
            eval_coco.main, [*base, "--results", label_map],
            overwrite(prog, label_map, label_map, "--labels"), [label_map]),
        "--results is an image": (
            eval_coco.main, [*base, "--results", images / photos[0].name],
            overwrite(prog, images / photos[0].name, images / photos[0].name, "--input"),
            [images]),
    }


def quantize_cases(tmp: Path, photos: list[Path]) -> dict[str, Case]:
    model = copy_onnx(tmp)
    calib = copy_photos(photos, tmp / "calib")
    prog = "quantize.py"
    return {
        "--output is --onnx": (
            quantize.main, ["-o", model, "--output", model, "-m", "fp16"],
            overwrite(prog, model, model, "--onnx"), [model]),
        "--calib_cache is --onnx": (
            quantize.main, ["-o", model, "--output", tmp / "q.onnx", "--calib_input", calib,
                            "--calib_cache", model],
            overwrite(prog, model, model, "--onnx"), [model, calib]),
    }


def build_engine_cases(tmp: Path) -> dict[str, Case]:
    model = copy_onnx(tmp)
    engine = tmp / "model.engine"
    prog = "build_engine.py"
    named_json = Path(shutil.copy(model, metadata_path(engine)))
    return {
        "--engine is --onnx": (
            build_engine.main, ["-o", model, "-e", model],
            overwrite(prog, model, model, "--onnx"), [model]),
        "--timing_cache is --onnx": (
            build_engine.main, ["-o", model, "-e", engine, "--timing_cache", model],
            overwrite(prog, model, model, "--onnx"), [model]),
        "the engine's metadata is --onnx": (
            build_engine.main, ["-o", named_json, "-e", engine],
            overwrite(prog, named_json, named_json, "--onnx"), [named_json]),
        "--calib_cache is --engine": (
            build_engine.main, ["-o", model, "-e", engine, "-p", "int8", "--calib_cache", engine],
            f"{prog}: error: {engine} is both the --engine and the --calib_cache output{CHOOSE}",
            [model]),
    }


def other_cases(tmp: Path) -> dict[str, Case]:
    model = copy_onnx(tmp)
    report = tmp / "latency.json"
    report.write_text(json.dumps({"results": []}))
    return {
        "benchmark --json is --onnx": (
            benchmark.main, ["--onnx", model, "--json", model],
            overwrite("benchmark.py", model, model, "--onnx"), [model]),
        "plot_benchmarks -o is its JSON": (
            plot_benchmarks.main, [report, "-o", report],
            overwrite("plot_benchmarks.py", report, report, "JSON"), [report]),
    }


def infer_cases(tmp: Path, photos: list[Path]) -> dict[str, Case]:
    """infer.py's output folder against the image folder, and its files against the inputs."""
    images = copy_photos(photos, tmp / "images")
    labels = tmp / "labels.txt"
    labels.write_text("".join(f"class{i}\n" for i in range(6)))
    (tmp / "out").mkdir()
    (tmp / "out" / "detections.json").symlink_to(labels)
    model = ["--onnx", converted_onnx(MODEL)]
    inside, outer = images / "results", tmp / "outer"
    nested = copy_photos(photos, outer / "images")
    single = outer / photos[0].name
    shutil.copy(photos[0], single)
    return {
        "infer -o is -i": (
            infer.main, [*model, "-i", images, "-o", images],
            f"infer.py: error: {images} is the --input folder {images}; choose another folder",
            [images]),
        "infer -o inside -i": (
            infer.main, [*model, "-i", images, "-o", inside],
            f"infer.py: error: {inside} is inside {images} (the --input folder); choose a "
            "folder outside it", [images]),
        "infer -i inside -o": (
            infer.main, [*model, "-i", nested, "-o", outer],
            f"infer.py: error: {outer} contains {nested} (the --input folder); choose another "
            "folder", [outer]),
        "infer -i an image in -o": (
            infer.main, [*model, "-i", single, "-o", outer],
            f"infer.py: error: {outer} contains {single} (the --input input); choose another "
            "folder", [outer]),
        "infer detections.json links to --labels": (
            infer.main, [*model, "-i", images, "-o", tmp / "out", "-l", labels],
            overwrite("infer.py", tmp / "out" / "detections.json", labels, "--labels"),
            [labels, images]),
    }


def compare_tf_cases(tmp: Path, photos: list[Path]) -> dict[str, Case]:
    if not have_tensorflow():
        pytest.skip("TensorFlow is absent")
    images = copy_photos(photos, tmp / "images")
    inside = images / "results"
    compare = ["-s", exported_model(MODEL), "--onnx", converted_onnx(MODEL)]
    return {
        "compare_tf -o is -i": (
            compare_tf.main, [*compare, "-i", images, "-o", images],
            f"compare_tf.py: error: {images} is the --input folder {images}; choose another "
            "folder", [images]),
        "compare_tf -o inside -i": (
            compare_tf.main, [*compare, "-i", images, "-o", inside],
            f"compare_tf.py: error: {inside} is inside {images} (the --input folder); choose a "
            "folder outside it", [images]),
    }


CASES = {
    "create_onnx": ["-o is --pipeline_config", "-o is saved_model.pb",
                    "-o is a symlink to --pipeline_config",
                    "-o is a hard link to the SavedModel's weights", "--tf2onnx is -o"],
    "eval_coco": ["--results is --annotations", "--results is --labels",
                  "--results is an image"],
    "quantize": ["--output is --onnx", "--calib_cache is --onnx"],
    "build_engine": ["--engine is --onnx", "--timing_cache is --onnx",
                     "the engine's metadata is --onnx", "--calib_cache is --engine"],
    "other": ["benchmark --json is --onnx", "plot_benchmarks -o is its JSON"],
    "infer": ["infer -o is -i", "infer -o inside -i", "infer -i inside -o",
              "infer -i an image in -o", "infer detections.json links to --labels"],
    "compare_tf": ["compare_tf -o is -i", "compare_tf -o inside -i"],
}


def make_cases(group: str, tmp: Path, coco_dir: Path, photos: list[Path]) -> dict[str, Case]:
    return {"create_onnx": lambda: create_onnx_cases(tmp),
            "eval_coco": lambda: eval_coco_cases(tmp, coco_dir, photos),
            "quantize": lambda: quantize_cases(tmp, photos),
            "build_engine": lambda: build_engine_cases(tmp),
            "other": lambda: other_cases(tmp),
            "infer": lambda: infer_cases(tmp, photos),
            "compare_tf": lambda: compare_tf_cases(tmp, photos)}[group]()


@pytest.mark.parametrize(("group", "case"),
                         [(group, case) for group, cases in CASES.items() for case in cases])
def test_an_output_that_is_an_input_is_refused(group: str, case: str, tmp_path: Path,
                                               coco_dir: Path, photos: list[Path]) -> None:
    main, args, line, kept = make_cases(group, tmp_path, coco_dir, photos)[case]
    before = {path: contents(path) for path in kept}
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = run_main(main, *args)
    assert code == 2, err
    assert err.strip().splitlines() == [line]
    assert out == ""
    assert {path: contents(path) for path in kept} == before  # byte for byte
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing  # nothing new


def test_the_checks_on_their_own(tmp_path: Path) -> None:
    """Distinct files pass; a missing input is left to the command's own message."""
    source, other = tmp_path / "in.json", tmp_path / "out.json"
    source.write_text("{}")
    check_outputs({"--in": source, "--none": None}, {"--out": other, "--also": tmp_path / "x"})
    check_outputs({"--in": tmp_path / "missing.json"}, {"--out": other})
    with pytest.raises(UsageError, match="is both the --out and the --also output"):
        check_outputs({}, {"--out": other, "--also": tmp_path / "." / "out.json"})
    check_output_folder(tmp_path / "results", {"--input": source})
    check_output_folder(tmp_path / "results", {"--input": tmp_path / "results-images"})


# -- infer.py's output folder and manifest ------------------------------------------------------


def run_infer(images: Path, output: Path, *extra: str) -> tuple[int, str, str]:
    return run_main(infer.main, "--onnx", converted_onnx(MODEL), "-i", images, "-o", output,
                    "--decode", "threads", *extra)


def manifest_files(output: Path) -> list[str]:
    return json.loads((output / MANIFEST).read_text())["files"]


def test_a_rerun_removes_only_its_own_stale_files(photos: list[Path], tmp_path: Path) -> None:
    """An image now unreadable or gone leaves no result behind; a file the run did not write
    (the user's notes, a .txt of the same name as a skipped image) is never touched."""
    images = copy_photos(photos, tmp_path / "images")
    first, second, third = (photo.stem for photo in photos)
    (images / f"{third}.jpg").write_bytes(b"not a JPEG")  # skipped by the first run
    output = tmp_path / "out"
    output.mkdir()
    users = {"notes.md": b"my notes\n", f"{third}.txt": b"my own file\n"}
    for name, data in users.items():
        (output / name).write_bytes(data)
    code, _, err = run_infer(images, output)
    assert code == 0, err
    ours = {f"{stem}.{ext}" for stem in (first, second) for ext in ("txt", "png")}
    assert manifest_files(output) == sorted({*ours, "detections.json"})
    assert {n: (output / n).read_bytes() for n in users} == users

    (images / f"{second}.jpg").write_bytes(b"not a JPEG either")  # now skipped too
    code, _, err = run_infer(images, output, "--no_pictures")
    assert code == 0, err
    kept = {f"{first}.txt", "detections.json"}
    assert sorted(p.name for p in output.iterdir()) == sorted({*kept, MANIFEST, *users})
    assert manifest_files(output) == sorted(kept)
    assert {n: (output / n).read_bytes() for n in users} == users
    names = {record["file_name"] for record in json.loads((output / "detections.json").read_text())}
    assert names == {f"{first}.jpg"}


@pytest.mark.parametrize("manifest", ['{"files": ["../images/a.jpg"]}', "not JSON"])
def test_a_manifest_that_is_not_one_is_refused(manifest: str, photos: list[Path],
                                               tmp_path: Path) -> None:
    images = copy_photos(photos, tmp_path / "images")
    output = tmp_path / "out"
    output.mkdir()
    (output / MANIFEST).write_text(manifest)
    before = contents(tmp_path)
    code, _, err = run_infer(images, output)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"infer.py: error: {output / MANIFEST}: ") and "remove it" in line
    assert contents(tmp_path) == before


# -- the user's umask --------------------------------------------------------------------------


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_files_get_the_users_umask(mask: int, mode: int, coco_dir: Path, photos: list[Path],
                                   tmp_path: Path) -> None:
    images = copy_photos(photos[:1], tmp_path / "images")
    label_map, annotations = write_fixture_categories(coco_dir, tmp_path)
    with umask(mask):
        atomic_write_bytes(tmp_path / "plain.bin", b"x")
        code, _, err = run_infer(images, tmp_path / "infer")
        assert code == 0, err
        code, _, err = run_main(eval_coco.main, "--onnx", converted_onnx(MODEL), "-i", images,
                                "-a", annotations, "-l", label_map,
                                "--results", tmp_path / "eval" / "results.json")
        assert code == 0, err
    assert stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == mode
    written = {**modes(tmp_path / "infer"), **modes(tmp_path / "eval")}
    assert {f"{photos[0].stem}.txt", f"{photos[0].stem}.png", "detections.json", MANIFEST,
            "results.json"} == set(written)
    assert set(written.values()) == {mode}, written


# -- a write that fails ------------------------------------------------------------------------


def test_a_failed_write_names_its_file_and_a_device_is_written_in_place(tmp_path: Path) -> None:
    full, null = tmp_path / "full.json", tmp_path / "null.json"
    full.symlink_to("/dev/full")  # every write there fails: No space left on device
    null.symlink_to("/dev/null")
    with pytest.raises(WriteError) as failed:
        atomic_write_bytes(full, b"[]\n")
    assert str(failed.value) == f"{full}: cannot write it: No space left on device"
    atomic_write_bytes(null, b"[]\n")
    assert full.is_symlink() and null.is_symlink()  # written through, not replaced
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.json", "null.json"]  # no temp


def test_eval_results_on_a_full_disk(coco_dir: Path, photos: list[Path], tmp_path: Path) -> None:
    images = copy_photos(photos[:1], tmp_path / "images")
    label_map, annotations = write_fixture_categories(coco_dir, tmp_path)
    results = tmp_path / "results.json"
    results.symlink_to("/dev/full")
    code, _, err = run_main(eval_coco.main, "--onnx", converted_onnx(MODEL), "-i", images,
                            "-a", annotations, "-l", label_map, "--results", results)
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        f"eval_coco.py: error: {results}: cannot write it: No space left on device")


def test_infer_on_a_full_disk_names_the_file_and_exits_cleanly(photos: list[Path],
                                                               tmp_path: Path) -> None:
    """The real script in its own process (messages at interpreter exit count too), with the
    default pipelined path: one result file's writes fail with ENOSPC."""
    images = copy_photos(photos, tmp_path / "images")
    output = tmp_path / "out"
    output.mkdir()
    failing = output / f"{photos[1].stem}.txt"
    failing.symlink_to("/dev/full")
    run = subprocess.run([sys.executable, str(ROOT / "infer.py"), "--onnx",
                          str(converted_onnx(MODEL)), "-i", str(images), "-o", str(output),
                          "--workers", "2"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not PROGRESS.match(line)]
    assert lines == [f"infer.py: error: {failing}: cannot write it: No space left on device"]
    assert failing.is_symlink()
    # the manifest was written first: it lists what this run may have left, not the link
    assert f"{photos[0].stem}.txt" in manifest_files(output)
    assert failing.name not in manifest_files(output)
