"""The TensorRT API that the modules of tfod_trt/trt touch exists in
TensorRT 10 and 11 (and the legacy part of it does not exist in 11), checked on the CPU against
the real Python bindings (their API surface without a library behind them), plus the
version logic of trt_compat against fake modules of 8.6, 10.x and 11.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import helper
from trt_surface import SurfaceError, make_surface

import build_engine
from tfod_trt.io.batcher import Batch
from tfod_trt.io.resize import ImageScale
from tfod_trt.trt import compat as trt_compat
from tfod_trt.trt.builder import BuildError, BuildOptions, check_options
from tfod_trt.trt.calibrator import CALIBRATORS, calibrator_class
from tfod_trt.trt.engine_file import metadata_path, read_engine_metadata
from tfod_trt.trt.runner import TrtRunner

ROOT = Path(__file__).resolve().parents[1]
# Every module that calls TensorRT: the version layer, builder, calibrator, runner, pipeline.
SOURCES = tuple(sorted(path.relative_to(ROOT).as_posix()
                       for path in (ROOT / "tfod_trt" / "trt").glob("*.py")))
SURFACE_VERSIONS = ("10.13.3.9", "11.4.0.106")


# ---------------------------------------------------------------------------------------------
# Which TensorRT attributes the code touches (from its AST).


def dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` -> ["a", "b", "c"]; None when the chain does not start at a plain name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def trt_class(annotation: ast.AST | None) -> str | None:
    """``trt.X`` or ``trt.X | None`` -> "X"."""
    if isinstance(annotation, ast.BinOp):
        return trt_class(annotation.left) or trt_class(annotation.right)
    chain = dotted(annotation) if annotation is not None else None
    return chain[1] if chain and len(chain) == 2 and chain[0] == "trt" else None


def annotated_objects(tree: ast.AST) -> dict[str, str]:
    """Names and ``self.x`` attributes annotated with a TensorRT class -> that class."""
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            target, cls = ".".join(dotted(node.target) or []), trt_class(node.annotation)
        elif isinstance(node, ast.arg):
            target, cls = node.arg, trt_class(node.annotation)
        else:
            continue
        if cls:
            assert found.setdefault(target, cls) == cls, f"{target} annotated as two classes"
    return found


def touched_api(path: Path) -> set[str]:
    """"X.Y" for every ``trt.X.Y`` chain, and "Class.attr" for ``obj.attr`` where ``obj`` is
    annotated ``trt.Class``."""
    tree = ast.parse(path.read_text())
    objects = annotated_objects(tree)
    chains = set()
    for node in ast.walk(tree):
        chain = dotted(node) if isinstance(node, ast.Attribute) else None
        if not chain:
            continue
        if chain[0] == "trt":
            chains.add(".".join(chain[1:]))
        owner = ".".join(chain[:-1])
        if owner in objects:
            chains.add(f"{objects[owner]}.{chain[-1]}")
    return chains


def is_legacy(chain: str) -> bool:
    parts = chain.split(".")
    return any(".".join(parts[:i]) in trt_compat.LEGACY_API for i in range(1, len(parts) + 1))


@pytest.fixture(scope="session")
def api() -> set[str]:
    return set().union(*(touched_api(ROOT / name) for name in SOURCES))


def test_calibrator_bases_are_checked_as_legacy_api() -> None:
    # build_engine picks them by name (CALIBRATORS): the AST walk cannot see them
    assert set(CALIBRATORS.values()) <= trt_compat.LEGACY_API


def test_the_ast_walk_finds_the_api(api: set[str]) -> None:
    expected = {"init_libnvinfer_plugins", "Runtime", "ICudaEngine.get_tensor_name",
                "IExecutionContext.execute_async_v3", "IExecutionContext.set_input_shape",
                "IBuilderConfig.set_flag", "OnnxParser", "ParserError.desc",
                "BuilderFlag.FP16", "ILayer.precision",
                "IPluginRegistry.get_creator", "MemoryPoolType.WORKSPACE",
                "IBuilderConfig.builder_optimization_level",
                # dynamic batch: the build's profile, the calibration's, the runner's shapes
                "Builder.create_optimization_profile", "IOptimizationProfile.set_shape",
                "IBuilderConfig.add_optimization_profile",
                "IBuilderConfig.set_calibration_profile", "ICudaEngine.get_tensor_profile_shape"}
    assert expected <= api
    assert {c for c in api if is_legacy(c)} >= {"BuilderFlag.FP16", "ILayer.set_output_type",
                                                "IBuilderConfig.set_calibration_profile"}


# ---------------------------------------------------------------------------------------------
# The real bindings of TensorRT 10 and 11.


@dataclass
class Surface:
    version: str
    folder: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": f"{self.folder}{os.pathsep}{ROOT}",
                "LD_LIBRARY_PATH": str(self.folder / "tensorrt")}


@pytest.fixture(scope="session", params=SURFACE_VERSIONS)
def surface(request: pytest.FixtureRequest) -> Surface:
    try:
        return Surface(request.param, make_surface(request.param))
    except (SurfaceError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"TensorRT {request.param}'s bindings are not to be had here: {err}")


# Probe scripts run in a subprocess with the real bindings: does an attribute chain exist?
EXISTS = r"""
def exists(chain):
    obj = trt
    for part in chain.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True
"""

PROBE = r"""
import contextlib, io, json, sys, tempfile
from pathlib import Path
import tensorrt as trt
from onnx import helper, save
import build_engine
from tfod_trt.trt import compat as trt_compat
from tfod_trt.trt.calibrator import CALIBRATORS, calibrator_class

""" + EXISTS + r"""
def cli(precision, *extra, batch=None):
    err = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(err):
        onnx = Path(tmp, "model.onnx")
        relu = helper.make_node("Relu", ["x"], ["y"])
        x, y = ([helper.make_tensor_value_info(n, 1, [batch, 3])] if batch else [] for n in "xy")
        save(helper.make_model(helper.make_graph([relu], "g", x, y)), onnx)
        Path(tmp, "photo.jpg").write_bytes(b"")  # --calib_input {tmp} is a folder of images
        code = build_engine.main(["-o", str(onnx), "-e", str(Path(tmp, "e.engine")),
                                  "-p", precision, *[a.format(tmp=tmp) for a in extra]])
    return code, err.getvalue().strip().splitlines()[-1]

report = {
    "version": trt.__version__,
    "exists": {chain: exists(chain) for chain in json.loads(sys.argv[1])},
    "trt_version": trt_compat.trt_version(trt),
    "network_flags": trt_compat.network_flags(trt),
    "precision_flags": trt_compat.supports_builder_precision_flags(trt),
    "layer_precision": trt_compat.supports_layer_precision(trt),
    "calibrator": trt_compat.supports_implicit_int8_calibrator(trt),
    "renames": sorted([list(k), list(v)] for k, v in trt_compat.plugin_renames(trt).items()),
    "cli_fp32": cli("fp32"),
    "cli_fp16": cli("fp16"),
    "cli_int8_calibrator": cli("int8", "--int8_mode", "calibrator", "--calib_input", "{tmp}"),
    "cli_int8_qdq": cli("int8", "--int8_mode", "qdq", "--calib_input", "{tmp}"),
    "cli_fp16_keep_none": cli("fp16", "--keep_fp32", "none"),
    "cli_fp16_onnx_keep_nms": cli("fp16", "--fp16_onnx", "--keep_fp32", "nms"),
    "cli_dynamic_batch": cli("fp32", "--batch_profile", "1,2,4", batch="batch"),
    "cli_dynamic_int8": cli("int8", "--int8_mode", "calibrator", "--calib_input", "{tmp}",
                            batch="batch"),
    "int8_default": trt_compat.default_int8_mode(trt),
    "typed_onnx_fp16": trt_compat.needs_typed_onnx("fp16", trt),
    "typed_flags": {p: trt_compat.typed_onnx_flags(p, trt) for p in ("fp16", "int8")},
}
if report["calibrator"]:
    for method in CALIBRATORS:
        calibrator = calibrator_class(trt, method)(iter(()), 2, None)
        report[f"calibrator_{method}"] = [calibrator.get_batch_size(),
                                          isinstance(calibrator, trt.IInt8Calibrator),
                                          calibrator.get_batch(["input_tensor"])]
print(json.dumps(report))
"""


@pytest.fixture(scope="session")
def probe(surface: Surface, api: set[str]) -> dict:
    chains = sorted(api | trt_compat.LEGACY_API)
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(chains)], cwd=ROOT,
                            env=surface.env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["version"] == surface.version
    return report


def test_every_touched_attribute_exists(probe: dict, api: set[str]) -> None:
    missing = sorted(c for c in api if not is_legacy(c) and not probe["exists"][c])
    assert not missing, f"TensorRT {probe['version']} lacks {missing}"


def test_legacy_api_exists_only_before_11(probe: dict, api: set[str]) -> None:
    legacy = sorted(c for c in api | trt_compat.LEGACY_API if is_legacy(c))
    present = {c for c in legacy if probe["exists"][c]}
    if probe["trt_version"][0] < 11:
        assert present == set(legacy), f"missing in {probe['version']}: {set(legacy) - present}"
    else:
        marked = {c for c in present if c in trt_compat.LEGACY_API}
        assert not marked, f"TensorRT {probe['version']} still has {sorted(marked)}"


def test_version_logic_matches_the_real_module(probe: dict) -> None:
    exists = probe["exists"]
    assert probe["trt_version"] == [int(p) for p in probe["version"].split(".")[:3]]
    assert probe["network_flags"] == 0
    assert probe["precision_flags"] == exists["BuilderFlag.FP16"] == exists["BuilderFlag.INT8"]
    assert probe["layer_precision"] == exists["ILayer.precision"]
    assert probe["calibrator"] == exists["IInt8EntropyCalibrator2"] == exists[
        "IInt8MinMaxCalibrator"]
    assert probe["renames"] == [[["CropAndResize", "1"], ["CropAndResizeDynamic", "2"]],
                                [["CropAndResizeDynamic", "1"], ["CropAndResizeDynamic", "2"]]]


def test_calibrator_subclasses_the_real_base(probe: dict) -> None:
    """Where TensorRT has the implicit INT8 calibrator (10.x), ours subclasses its real base;
    where it has none (11.x), the probe made none (the builder refuses that route earlier)."""
    for method in CALIBRATORS:  # batch size, a real IInt8Calibrator, no batches
        made = probe.get(f"calibrator_{method}")
        assert made == ([2, True, None] if probe["calibrator"] else None), method


def test_build_engine_fails_cleanly_without_gpu(probe: dict) -> None:
    code, line = probe["cli_fp32"]
    assert code == 2 and line.startswith("build_engine.py: error: ")
    assert "no usable NVIDIA GPU" in line


def test_reduced_precision_on_11_explains_what_is_needed(probe: dict) -> None:
    """FP16 and Q/DQ INT8 get as far as the builder everywhere (no GPU here); the INT8
    calibrator only before 11, where the error names the way that works."""
    for key in ("cli_fp16", "cli_int8_qdq", "cli_int8_calibrator"):
        code, line = probe[key]
        assert code == 2 and line.startswith("build_engine.py: error: "), (key, line)
        if key == "cli_int8_calibrator" and probe["trt_version"][0] >= 11:
            assert "strongly typed" in line and "--int8_mode qdq" in line
        else:
            assert "no usable NVIDIA GPU" in line, (key, line)


def test_dynamic_batch_gets_as_far_as_the_builder(probe: dict) -> None:
    """A dynamic-batch ONNX with --batch_profile (and INT8 with the calibrator, which needs a
    calibration profile) passes every check before the builder (no GPU here); on 11 the
    calibrator is refused as for a static graph."""
    code, line = probe["cli_dynamic_batch"]
    assert code == 2 and "no usable NVIDIA GPU" in line, line
    code, line = probe["cli_dynamic_int8"]
    expected = "--int8_mode qdq" if probe["trt_version"][0] >= 11 else "no usable NVIDIA GPU"
    assert code == 2 and expected in line, line


def test_keep_fp32_needs_the_precision_flags(probe: dict) -> None:
    """--keep_fp32 other than the default gets as far as the builder where TensorRT takes
    precision flags (10.x: no GPU here), and is refused where the precision comes from a
    typed ONNX (--fp16_onnx; TensorRT 11 always)."""
    refused = ("build_engine.py: error: --keep_fp32 {} chooses layer precisions, which this "
               "build takes from a typed ONNX instead")
    code, line = probe["cli_fp16_onnx_keep_nms"]
    assert code == 2 and line.startswith(refused.format("nms")), line
    code, line = probe["cli_fp16_keep_none"]
    if probe["trt_version"][0] >= 11:
        assert code == 2 and line.startswith(refused.format("none")), line
    else:
        assert code == 2 and "no usable NVIDIA GPU" in line, line


def test_typed_onnx_choices_match_the_real_module(probe: dict) -> None:
    """Strongly typed 11: FP16 and INT8 come from the ONNX and no builder flag is set; before
    11 the flags set for a typed ONNX exist in the real bindings."""
    strongly_typed = not probe["exists"]["BuilderFlag.FP16"]
    assert probe["typed_onnx_fp16"] == strongly_typed
    assert probe["int8_default"] == ("qdq" if strongly_typed else "calibrator")
    for precision, flags in probe["typed_flags"].items():
        assert flags == ([] if strongly_typed else [precision.upper()])
        assert all(probe["exists"][f"BuilderFlag.{flag}"] for flag in flags)


# ---------------------------------------------------------------------------------------------
# Version logic against fake modules (8.6 cannot be imported here at all).


class FakeRegistry:
    """Plugin registry of a fake TensorRT: 8.6 has get_plugin_creator, 11 only get_creator."""

    def __init__(self, creators: set[tuple[str, str]], major: int) -> None:
        self.creators = creators
        if major >= 10:
            self.get_creator = self._find
        if major < 11:
            self.get_plugin_creator = self._find

    def _find(self, name: str, version: str, namespace: str = "") -> object | None:
        return object() if (name, version) in self.creators else None


def fake_trt(version: str, creators: set[tuple[str, str]] = frozenset()) -> SimpleNamespace:
    registry = FakeRegistry(set(creators), int(version.split(".")[0]))
    return SimpleNamespace(
        __version__=version, get_plugin_registry=lambda: registry,
        NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0),
    )


NMS, CROP, CROP_DYNAMIC, CROP_V2 = (("EfficientNMS_TRT", "1"), ("CropAndResize", "1"),
                                   ("CropAndResizeDynamic", "1"), ("CropAndResizeDynamic", "2"))
REGISTERED = {  # docs/design.md, the plugins each TensorRT version registers
    "8.6.0": {NMS, CROP, CROP_DYNAMIC},
    "10.11.0.33": {NMS, CROP, CROP_DYNAMIC},
    "10.12.0.36": {NMS, CROP, CROP_DYNAMIC, CROP_V2},
    "11.4.0.106": {NMS, CROP_V2},
}


def plugin_model(op: str = "CropAndResize", version: str | None = "1") -> onnx.ModelProto:
    attrs = {"crop_width": 7, "crop_height": 7}
    if version is not None:
        attrs["plugin_version"] = version
    nodes = [
        helper.make_node(op, ["features", "rois"], ["crops"], name="crop", **attrs),
        helper.make_node("EfficientNMS_TRT", ["boxes", "scores"], ["num"], name="nms",
                         plugin_version="1"),
        helper.make_node("Relu", ["crops"], ["out"], name="relu"),
    ]
    graph = helper.make_graph(nodes, "g", [], [])
    return helper.make_model(graph)


def ops(model: onnx.ModelProto) -> list[tuple[str, str | None]]:
    def version(node: onnx.NodeProto) -> str | None:
        attr = next((a for a in node.attribute if a.name == "plugin_version"), None)
        return helper.get_attribute_value(attr).decode() if attr else None

    return [(n.op_type, version(n)) for n in model.graph.node]


def test_versions_and_flags() -> None:
    assert trt_compat.trt_version(fake_trt("8.6.1")) == (8, 6, 1)
    assert trt_compat.network_flags(fake_trt("8.6.1")) == 1  # EXPLICIT_BATCH
    assert trt_compat.network_flags(fake_trt("10.0.1.6")) == 0
    assert trt_compat.supports_implicit_int8_calibrator(fake_trt("8.6.0"))
    assert trt_compat.supports_implicit_int8_calibrator(fake_trt("10.16.1.11"))
    assert not trt_compat.supports_implicit_int8_calibrator(fake_trt("11.0.0.1"))
    assert not trt_compat.supports_implicit_int8_calibrator(fake_trt("8.5.3"))
    assert trt_compat.reduced_precision_unsupported("fp16", fake_trt("10.13.3.9")) is None
    assert "Q/DQ" in trt_compat.reduced_precision_unsupported("int8", fake_trt("11.4.0.106"),
                                                              "calibrator")
    assert trt_compat.reduced_precision_unsupported("int8", fake_trt("11.4.0.106")) is None
    assert trt_compat.reduced_precision_unsupported("fp16", fake_trt("11.4.0.106")) is None
    assert trt_compat.reduced_precision_unsupported("int8", fake_trt("8.6.1"), "qdq") is None
    assert trt_compat.typed_onnx_flags("int8", fake_trt("8.6.1")) == ["INT8"]
    assert trt_compat.typed_onnx_flags("fp16", fake_trt("10.16.1.11")) == ["FP16"]
    assert trt_compat.typed_onnx_flags("int8", fake_trt("11.4.0.106")) == []
    assert trt_compat.default_int8_mode(fake_trt("8.6.1")) == "calibrator"
    assert trt_compat.default_int8_mode(fake_trt("11.0.0.1")) == "qdq"


@pytest.mark.parametrize("version", REGISTERED)
@pytest.mark.parametrize("op", ["CropAndResize", "CropAndResizeDynamic"])
def test_adapt_onnx_plugins_renames_crop_and_resize(version: str, op: str) -> None:
    model = plugin_model(op)
    adapted = trt_compat.adapt_onnx_plugins(model, fake_trt(version, REGISTERED[version]))
    renamed = tuple(int(part) for part in version.split(".")[:2]) >= (10, 12)
    crop = CROP_V2 if renamed else (op, "1")
    assert ops(adapted) == [crop, ("EfficientNMS_TRT", "1"), ("Relu", None)]
    assert ops(model)[0] == (op, "1"), "the input model must not change"


def test_adapt_onnx_plugins_defaults_to_version_1() -> None:
    adapted = trt_compat.adapt_onnx_plugins(plugin_model(version=None),
                                            fake_trt("11.4.0.106", REGISTERED["11.4.0.106"]))
    assert ops(adapted)[0] == ("CropAndResizeDynamic", "2")


def test_adapt_onnx_plugins_names_the_missing_plugin() -> None:
    trt = fake_trt("10.13.3.9", {CROP, CROP_DYNAMIC, CROP_V2})
    with pytest.raises(trt_compat.PluginUnavailable, match=r"'nms'.*EfficientNMS_TRT version 1"):
        trt_compat.adapt_onnx_plugins(plugin_model(), trt)


# ---------------------------------------------------------------------------------------------
# Errors and helpers that need neither TensorRT nor a GPU.


def test_runner_reports_a_missing_engine(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="build_engine.py"):
        TrtRunner(tmp_path / "missing.engine")


def test_metadata_lives_beside_the_engine(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    assert metadata_path(engine) == tmp_path / "model.engine.json"
    assert read_engine_metadata(engine) == {}
    metadata_path(engine).write_text(json.dumps({"num_classes": 3}))
    assert read_engine_metadata(engine) == {"num_classes": 3}


def test_build_engine_missing_onnx(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = build_engine.main(["-o", str(tmp_path / "none.onnx"), "-e", str(tmp_path / "e")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines == [f"build_engine.py: error: {tmp_path}/none.onnx: ONNX file "
                                   "not found"]


@pytest.mark.parametrize(("case", "message"), [
    ("not an ONNX", "{dir}/text.onnx: not an ONNX model (cannot parse"),
    ("engine is the ONNX", "{dir}/model.onnx would overwrite {dir}/model.onnx (the --onnx input)"),
    ("engine is a folder", "-e {dir}: is a folder; name the file to write"),
    ("engine below a file", "-e {dir}/text.onnx/e: {dir}/text.onnx is a file, not a folder"),
    ("INT8, no calibration", "INT8 needs calibration images (--calib_input) or an existing "
                             "calibration cache (--calib_cache)"),
    ("INT8, missing images", "--calib_input {dir}/none: no such image file or folder"),
    ("INT8, no images", "--calib_input: no images in folder {dir}/empty"),
])
def test_arguments_are_checked_before_tensorrt(case: str, message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    """Each argument's own error, not TensorRT's (absent here, or unable to build)."""
    onnx_path, text = tmp_path / "model.onnx", tmp_path / "text.onnx"
    onnx.save(plugin_model(), onnx_path)
    text.write_text("not an ONNX graph")
    (tmp_path / "empty").mkdir()
    engine = ["-e", str(tmp_path / "model.engine")]
    args = {
        "not an ONNX": ["-o", str(text), *engine],
        "engine is the ONNX": ["-o", str(onnx_path), "-e", str(onnx_path)],
        "engine is a folder": ["-o", str(onnx_path), "-e", str(tmp_path)],
        "engine below a file": ["-o", str(onnx_path), "-e", str(text / "e")],
        "INT8, no calibration": ["-o", str(onnx_path), *engine, "-p", "int8"],
        "INT8, missing images": ["-o", str(onnx_path), *engine, "-p", "int8", "--calib_input",
                                 str(tmp_path / "none")],
        "INT8, no images": ["-o", str(onnx_path), *engine, "-p", "int8", "--calib_input",
                            str(tmp_path / "empty")],
    }[case]
    assert build_engine.main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    expected = "build_engine.py: error: " + message.format(dir=tmp_path)
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_without_tensorrt_says_where_it_runs(tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    if importlib.util.find_spec("tensorrt"):
        pytest.skip("TensorRT is installed here")
    onnx_path = tmp_path / "model.onnx"
    onnx.save(plugin_model(), onnx_path)
    assert build_engine.main(["-o", str(onnx_path), "-e", str(tmp_path / "e")]) == 2
    assert "NVIDIA GPU is: install it there" in capsys.readouterr().err
    with pytest.raises(trt_compat.TensorRTUnavailable, match="NVIDIA GPU is: install it there"):
        TrtRunner(onnx_path)


def test_int8_needs_images_or_a_cache(tmp_path: Path) -> None:
    trt = fake_trt("10.13.3.9")
    options = BuildOptions(precision="int8", calib_cache=tmp_path / "none.cache")
    with pytest.raises(BuildError, match="--calib_input.*--calib_cache"):
        check_options(options, trt)
    (tmp_path / "none.cache").write_bytes(b"cache")
    check_options(options, trt)
    options.calib_input = tmp_path / "no-images"
    with pytest.raises(BuildError, match="no such image"):
        check_options(options, trt)


class FakeBackend:
    """Records what the calibrator copies to the 'device'."""

    def __init__(self) -> None:
        self.device: dict[int, np.ndarray] = {}
        self.allocations = 0

    def malloc(self, nbytes: int) -> int:
        self.allocations += 1
        return 4096 * self.allocations

    def pinned_empty(self, count: int, dtype: np.dtype) -> np.ndarray:
        return np.empty(count, dtype)

    def copy_htod_async(self, device: int, host: np.ndarray) -> None:
        self.device[device] = host.copy()

    def synchronize(self) -> None:
        pass


def test_calibrator_feeds_batches_and_writes_its_cache_atomically(tmp_path: Path) -> None:
    class Base:
        def __init__(self) -> None:
            pass

    scale = ImageScale(8, 8, 4, 2, 4, 4)  # a tall image padded on the right
    batches = [Batch(np.full((2, 4, 4, 3), i, np.float32), [Path("a.jpg")], [scale])
               for i in range(2)]
    backend = FakeBackend()
    cache = tmp_path / "calib.cache"
    calibrator = calibrator_class(SimpleNamespace(IInt8MinMaxCalibrator=Base))(
        iter(batches), 2, cache, backend)
    assert calibrator.read_calibration_cache() is None
    names = ["input_tensor", "true_image_shape"]
    image, true_shape = calibrator.get_batch(names)
    assert backend.device[image].reshape(2, 4, 4, 3).tolist() == batches[0].data.tolist()
    assert backend.device[true_shape].reshape(2, 2).tolist() == [[4, 2], [4, 4]]
    assert calibrator.get_batch(names) == [image, true_shape]
    assert backend.device[image].reshape(2, 4, 4, 3).tolist() == batches[1].data.tolist()
    assert calibrator.get_batch(names) is None
    calibrator.write_calibration_cache(memoryview(b"scales"))
    assert cache.read_bytes() == b"scales" and calibrator.read_calibration_cache() == b"scales"
    assert [p.name for p in tmp_path.iterdir()] == ["calib.cache"]
