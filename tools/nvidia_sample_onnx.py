"""Makes the graphs of the speed comparison with NVIDIA's retired TensorRT sample
(`samples/python/tensorflow_object_detection_api` of TensorRT's release/8.6 branch): the
sample's own `create_onnx.py`, fetched and run unmodified, and this project's `create_onnx.py`
on the same SavedModel.

    python tools/nvidia_sample_onnx.py --output DIR [--trt_repo GIT_DIR] [--batch_size 1 16]
        [--saved_model DIR --pipeline_config FILE | --model_config FILE]
        [--variant NAME="CREATE_ONNX FLAGS"]...

The sample comes from a git repository of NVIDIA/TensorRT: `--trt_repo` (a clone or a mirror;
its files are taken from the commit of `--trt_ref` with `git archive`, whatever the checkout
holds), else a sparse, blob-less clone of https://github.com/NVIDIA/TensorRT made once in
`--cache_dir`. Without `--saved_model`, a random-weight SSD MobileNet v2 300x300 with 90 classes
is built with tools/make_tfod_model.py (the sample handles 90 classes only).

DIR receives `model/` (the built model), `nvidia_bB.onnx`, `ours_bB.onnx`,
`ours-NAME_bB.onnx` (one per `--variant`, e.g. `--variant "t001=--score_threshold 0.01"`),
`logs/` and `graphs.json` (the sample's commit, the library versions, each command and its
time). Graphs already in DIR are kept (`--force`: made again); a DIR holding graphs of another
model is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from importlib import metadata as package_metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tfod_trt.cli import run_main  # noqa: E402
from tfod_trt.config.pipeline_config import load_pipeline_config  # noqa: E402
from tfod_trt.config.writer import ARCHITECTURES, pipeline_config_text  # noqa: E402
from tfod_trt.errors import UsageError  # noqa: E402
from tfod_trt.files import atomic_write_bytes, check_output_folder  # noqa: E402

PROG = "nvidia_sample_onnx.py"
TRT_URL = "https://github.com/NVIDIA/TensorRT"
TRT_REF = "release/8.6"
SAMPLE = "samples/python/tensorflow_object_detection_api"
SAMPLE_FILES = (SAMPLE, "samples/python/common.py")  # common.py: the sample's build_engine.py
SAMPLE_CLASSES = 90  # the sample slices class columns 1..90
PRESET = "ssd_mobilenet_v2_320"  # the zoo's ssd_mobilenet_v2_320x320_coco17_tpu-8.config
VERSIONS = ("tensorflow", "tf2onnx", "onnx", "onnx-graphsurgeon", "onnxruntime",
            "tf-models-research-object-detection")


def git(repo: Path, *args: str) -> str:
    """`git -C repo ARGS` -> its stdout; a UsageError with git's last line on failure."""
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UsageError(f"{repo}: git {args[0]} failed: {reason}")
    return done.stdout.strip()


def clone_tensorrt(cache: Path, ref: str) -> Path:
    """A sparse, blob-less, shallow clone of TensorRT's `ref` with the sample folder, made once."""
    repo = cache / "TensorRT"
    if (repo / ".git").is_dir():
        return repo
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"TensorRT.partial-{os.getpid()}"
    done = subprocess.run(["git", "clone", "--depth", "1", "--branch", ref, "--filter=blob:none",
                           "--sparse", TRT_URL, str(partial)], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UsageError(f"cannot clone {TRT_URL} ({reason}); pass --trt_repo with a local "
                         "clone of NVIDIA/TensorRT")
    git(partial, "sparse-checkout", "set", SAMPLE)
    partial.rename(repo)
    return repo


def extract_sample(repo: Path, ref: str, cache: Path) -> tuple[Path, str]:
    """(the sample folder, the commit it came from): `git archive` of `ref`'s commit, so the
    files are the commit's whatever a checkout holds; one folder per commit in `cache`."""
    if not repo.exists():
        raise UsageError(f"--trt_repo {repo}: no such folder")
    commit = ""
    for candidate in (ref, f"origin/{ref}"):
        try:
            commit = git(repo, "rev-parse", "--verify", f"{candidate}^{{commit}}")
            break
        except UsageError:
            continue
    if not commit:
        raise UsageError(f"{repo}: has no {ref} (or origin/{ref}); is it a clone of "
                         f"NVIDIA/TensorRT? (--trt_ref)")
    target = cache / f"sample-{commit[:12]}"
    if not (target / SAMPLE / "create_onnx.py").is_file():
        partial = cache / f"sample-{commit[:12]}.partial-{os.getpid()}"
        partial.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit, *SAMPLE_FILES],
                                 capture_output=True)
        if archive.returncode != 0:
            raise UsageError(f"{repo}: git archive {commit[:12]} failed: "
                             f"{archive.stderr.decode(errors='replace').strip()[-300:]}")
        unpacked = subprocess.run(["tar", "-x", "-C", str(partial)], input=archive.stdout,
                                  capture_output=True)
        if unpacked.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise UsageError(f"{cache}: cannot unpack the sample: "
                             f"{unpacked.stderr.decode(errors='replace').strip()[-300:]}")
        partial.rename(target)
    return target / SAMPLE, commit


def model_config(args: argparse.Namespace, output: Path) -> Path:
    """The pipeline config the random-weight model is built from: --model_config, else the
    written preset (the zoo config's facts, 90 classes)."""
    if args.model_config is not None:
        return args.model_config
    path = output / "model_config" / f"{PRESET}.config"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, pipeline_config_text(ARCHITECTURES[PRESET]).encode())
    return path


def check_sample_can_read(config_path: Path) -> None:
    """The sample handles 90 classes only (it slices class columns 1..90)."""
    config = load_pipeline_config(config_path)
    if config.num_classes != SAMPLE_CLASSES:
        raise UsageError(f"{config_path}: num_classes is {config.num_classes}; NVIDIA's sample "
                         f"handles {SAMPLE_CLASSES} classes only")


def build_model(config: Path, output: Path, calibration: Path | None, log_dir: Path) -> Path:
    """tools/make_tfod_model.py's random-weight model in output/model (kept once built)."""
    model = output / "model"
    if (model / "saved_model" / "saved_model.pb").is_file():
        return model
    partial = output / f"model.partial-{os.getpid()}"
    command = [sys.executable, str(ROOT / "tools" / "make_tfod_model.py"), "--pipeline_config",
               str(config), "--output", str(partial),
               *(["--calibration_images", str(calibration)] if calibration else [])]
    try:
        run_logged(command, log_dir / "model.log", "tools/make_tfod_model.py", ROOT)
    except UsageError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(model)
    return model


def run_logged(command: list[str], log: Path, what: str, cwd: Path) -> float:
    """Runs `command` in `cwd` with its output in `log`; its time in seconds; a UsageError
    with the log's last line when it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise UsageError(f"{what} failed (exit {code}); log {log}: {last[:300]}")
    return time.perf_counter() - start


def graph_jobs(args: argparse.Namespace) -> list[tuple[str, str, int, list[str]]]:
    """(graph name, converter, batch, extra flags): "nvidia" or "ours", per batch size."""
    jobs = []
    for batch in args.batch_size:
        jobs.append((f"nvidia_b{batch}", "nvidia", batch, []))
        jobs.append((f"ours_b{batch}", "ours", batch, []))
        jobs += [(f"ours-{name}_b{batch}", "ours", batch, flags)
                 for name, flags in args.variant]
    return jobs


def convert(job: tuple[str, str, int, list[str]], sample: Path, model: dict[str, Path],
            output: Path) -> dict:
    """Runs one converter into output/NAME.onnx (written under a temporary name, then renamed)."""
    name, converter, batch, flags = job
    target = output / f"{name}.onnx"
    partial = output / f".{name}.partial-{os.getpid()}.onnx"
    script = sample / "create_onnx.py" if converter == "nvidia" else ROOT / "create_onnx.py"
    # Absolute paths: the sample runs in its own folder (it imports its onnx_utils from there).
    command = [sys.executable, str(script), "-p", str(model["pipeline_config"].resolve()),
               "-m", str(model["saved_model"].resolve()), "-o", str(partial.resolve()),
               "-b", str(batch), *flags]
    log = output / "logs" / f"{name}.log"
    what = f"{'the sample' if converter == 'nvidia' else 'our'} create_onnx.py for {name}"
    try:
        seconds = run_logged(command, log, what, sample if converter == "nvidia" else ROOT)
    except UsageError:
        partial.unlink(missing_ok=True)
        raise
    if not partial.is_file():
        raise UsageError(f"{what} wrote no graph; log {log}")
    partial.rename(target)
    shown = [*command[:7], str(target), *command[8:]]
    return {"converter": converter, "batch_size": batch, "flags": flags, "seconds":
            round(seconds, 1), "command": shlex.join(shown)}


def versions() -> dict[str, str | None]:
    found = {}
    for name in VERSIONS:
        try:
            found[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            found[name] = None
    return {"python": sys.version.split()[0], **found}


def model_paths(args: argparse.Namespace, config: Path, output: Path) -> dict[str, Path]:
    """The SavedModel and its pipeline.config: the given ones, or the model built in output."""
    if args.saved_model is not None:
        return {"saved_model": args.saved_model, "pipeline_config": args.pipeline_config}
    built = build_model(config, output, args.calibration_images, output / "logs")
    return {"saved_model": built / "saved_model", "pipeline_config": built / "pipeline.config"}


def model_digest(model: dict[str, Path]) -> str:
    """What identifies the model whatever folder it lies in: its saved_model.pb's digest."""
    graph = Path(model["saved_model"]) / "saved_model.pb"
    if not graph.is_file():
        raise UsageError(f"{model['saved_model']}: no saved_model.pb (not a SavedModel folder)")
    return hashlib.sha256(graph.read_bytes()).hexdigest()[:16]


def load_record(path: Path, model: dict[str, Path], force: bool) -> dict:
    """graphs.json of an earlier run, refused when its graphs (which would be kept) were made
    from another model (another saved_model.pb; the folder may have moved)."""
    record = json.loads(path.read_text()) if path.is_file() else {}
    now = {k: str(Path(v).resolve()) for k, v in model.items()}
    digest = model_digest(model)
    if record.get("graphs") and not force and record.get("model_digest") != digest:
        raise UsageError(f"{path.parent} holds graphs of another model "
                         f"({record.get('model', {}).get('saved_model')}); choose another "
                         "--output, or --force to make them all again")
    return {**record, "model": now, "model_digest": digest,
            "graphs": {} if force else record.get("graphs", {})}


def run(args: argparse.Namespace) -> int:
    output = args.output
    given = {"--saved_model": args.saved_model, "--pipeline_config": args.pipeline_config,
             "--model_config": args.model_config, "--trt_repo": args.trt_repo,
             "--calibration_images": args.calibration_images}
    for flag, path in given.items():
        if path is not None and not path.exists():
            raise UsageError(f"{flag} {path}: no such file or folder")
    check_output_folder(output, given)
    output.mkdir(parents=True, exist_ok=True)
    config = args.pipeline_config or model_config(args, output)
    check_sample_can_read(config)
    repo = args.trt_repo or clone_tensorrt(args.cache_dir, args.trt_ref)
    sample, commit = extract_sample(repo, args.trt_ref, args.cache_dir)
    model = model_paths(args, config, output)
    record_path = output / "graphs.json"
    record = load_record(record_path, model, args.force)
    record["nvidia_sample"] = {"repository": TRT_URL, "ref": args.trt_ref, "commit": commit,
                               "folder": SAMPLE, "extracted": str(sample.resolve())}
    for job in graph_jobs(args):
        if (output / f"{job[0]}.onnx").is_file() and not args.force:
            print(f"{job[0]}.onnx: kept (--force makes it again)")
            continue
        record["graphs"][job[0]] = {**convert(job, sample, model, output),
                                    "sample_commit": commit, "versions": versions()}
        atomic_write_bytes(record_path, (json.dumps(record, indent=1) + "\n").encode())
        print(f"{output / job[0]}.onnx: {record['graphs'][job[0]]['seconds']} s")
    atomic_write_bytes(record_path, (json.dumps(record, indent=1) + "\n").encode())
    return 0


def variant(text: str) -> tuple[str, list[str]]:
    """NAME=FLAGS -> (NAME, the flags split as a shell would)."""
    name, sep, flags = text.partition("=")
    if not sep or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=FLAGS with a NAME of letters, digits, - and _, e.g. "
            "\"t001=--score_threshold 0.01\"")
    try:
        return name, shlex.split(flags)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="the folder for the model, the graphs, logs and graphs.json")
    parser.add_argument("--trt_repo", type=Path,
                        help="a local clone or mirror of NVIDIA/TensorRT (default: clone it "
                             "into --cache_dir)")
    parser.add_argument("--trt_ref", default=TRT_REF,
                        help=f"the branch, tag or commit (default: {TRT_REF})")
    parser.add_argument("--cache_dir", type=Path, default=ROOT / ".cache" / "nvidia_trt_sample",
                        help="where the clone and the extracted sample are kept (default: "
                             ".cache/nvidia_trt_sample in this checkout)")
    parser.add_argument("-m", "--saved_model", type=Path,
                        help="a SavedModel with 90 classes (default: build one)")
    parser.add_argument("-p", "--pipeline_config", type=Path,
                        help="the pipeline.config exported with --saved_model")
    parser.add_argument("--model_config", type=Path,
                        help="without --saved_model: the config to build the random-weight "
                             "model from (default: the project's ssd_mobilenet_v2_320 preset, "
                             "the zoo's ssd_mobilenet_v2_320x320_coco17_tpu-8.config)")
    parser.add_argument("--calibration_images", type=Path,
                        help="without --saved_model: photos that set the random model's "
                             "BatchNorm statistics (tools/make_tfod_model.py)")
    parser.add_argument("-b", "--batch_size", type=int, nargs="+", default=[1],
                        help="static batch sizes, one graph each (default: 1)")
    parser.add_argument("--variant", type=variant, action="append", default=[],
                        metavar="NAME=FLAGS",
                        help="also our create_onnx.py with these flags -> ours-NAME_bB.onnx")
    parser.add_argument("--force", action="store_true", help="make existing graphs again")
    args = parser.parse_args(argv)
    if (args.saved_model is None) != (args.pipeline_config is None):
        parser.error("--saved_model and --pipeline_config go together")
    if args.saved_model is not None and (args.model_config or args.calibration_images):
        parser.error("--model_config and --calibration_images build a model: not with "
                     "--saved_model")
    if min(args.batch_size) < 1:
        parser.error("--batch_size must be at least 1")
    names = [name for name, _ in args.variant]
    if len(set(names)) != len(names):
        parser.error(f"--variant names must differ: {names}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit code: 0 done, 2 bad command line or input, or a converter failed."""
    return run_main(PROG, parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
