"""What a given ONNX model or engine needs of this machine: plugins, builder flags, metadata, the
TensorRT version it was built with."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import onnx

from tfod_trt.convert.onnx_file import read_onnx
from tfod_trt.doctor.checks import CONVERTER_PLUGINS, Check, fix
from tfod_trt.doctor.machine import MachineReport, init_plugins, plugin_status, trt_logger
from tfod_trt.errors import UsageError
from tfod_trt.metadata import METADATA_KEY, read_metadata
from tfod_trt.quant.sensitive import has_qdq, is_fp16
from tfod_trt.trt import compat
from tfod_trt.trt.engine_file import EngineError, metadata_path, read_engine_metadata

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass
class ModelFile:
    path: Path
    onnx: onnx.ModelProto | None = None  # an ONNX model
    metadata: dict | None = None  # an engine's <engine>.json ({} when it has none)


def read_model(path: Path) -> ModelFile:
    """The ONNX model or engine at ``path``; UsageError "FILE: problem" when unreadable."""
    suffix = path.suffix.lower()
    if suffix != ".onnx" and suffix not in ENGINE_SUFFIXES:
        raise UsageError(f"{path}: unknown kind of model file (expected .onnx or "
                         f"{' / '.join(ENGINE_SUFFIXES)})")
    try:
        if path.stat().st_size == 0:
            raise UsageError(f"{path}: empty file")
        with path.open("rb"):
            pass
    except OSError as err:
        raise UsageError(f"{path}: {err.strerror or err}") from err
    if suffix == ".onnx":
        return ModelFile(path, onnx=read_onnx(path, load_external_data=False))
    try:
        return ModelFile(path, metadata=read_engine_metadata(path))
    except EngineError as err:
        raise UsageError(str(err)) from err


def model_checks(model: ModelFile, report: MachineReport) -> list[Check]:
    """The checks of an ONNX model or an engine against this machine."""
    if model.onnx is not None:
        return [metadata_check(model.onnx), onnx_precision_check(model.onnx, report.trt),
                *onnx_plugin_checks(model.onnx, report.trt)]
    return engine_checks(model, report.trt, report.gpu_found)


def metadata_check(model: onnx.ModelProto) -> Check:
    """The converter's metadata (tfod_trt key): present, and what it says."""
    name, remake = "converter metadata", "make the ONNX with create_onnx.py"
    try:
        meta = read_metadata(model)
    except ValueError as err:
        return Check(name, False, f"{METADATA_KEY}: unreadable ({err})", remake)
    if not meta:
        return Check(name, False, f"no {METADATA_KEY} entry: not made by create_onnx.py "
                     "(infer.py needs it)", remake)
    summary = ", ".join(f"{key} {meta[key]}" for key in
                        ("meta_arch", "feature_extractor", "num_classes") if key in meta)
    return Check(name, True, f"{METADATA_KEY}: {summary or 'present'}")


def onnx_precision_check(model: onnx.ModelProto, trt: ModuleType | None) -> Check:
    """The graph's own precision and the builder flags it needs on this TensorRT."""
    precision = "int8" if has_qdq(model) else "fp16" if is_fp16(model) else "fp32"
    if precision == "fp32":
        return Check("precision", True, "FP32 graph (build_engine.py -p fp16/int8 adds "
                     "reduced precision)")
    label = {"int8": "Q/DQ (INT8) graph", "fp16": "FP16 graph"}[precision]
    if trt is None:
        return Check("precision", True, f"{label}: TensorRT 8.6-10.x builds it with the "
                     f"{precision.upper()} builder flag, 11.x with none (strongly typed)")
    flags = compat.typed_onnx_flags(precision, trt)
    if flags:
        how = f"the {flags[0]} builder flag (build_engine.py -p {precision} sets it)"
    else:
        how = "no builder flag (strongly typed)"
    return Check("precision", True, f"{label}: TensorRT {trt.__version__} builds it with {how}")



def onnx_plugin_checks(model: onnx.ModelProto, trt: ModuleType | None) -> list[Check]:
    """Each plugin the graph names (op, plugin_version), registered here or not."""
    counts = Counter((node.op_type, compat.string_attr(node, "plugin_version", "1"),
                      compat.string_attr(node, "plugin_namespace", ""))
                     for node in compat.plugin_nodes(model))
    if not counts:
        return [Check("plugins", True, "none")]
    problem = init_plugins(trt) if trt is not None else ""
    checks = []
    for (op, version, namespace), count in sorted(counts.items()):
        nodes = f"{count} node{'s' if count > 1 else ''}"
        if trt is None:
            ok, detail, remedy = False, "no TensorRT here to check it", fix("tensorrt")
        else:
            ok, detail = plugin_status(trt, op, version, namespace)
            detail += f"; {problem}" if problem and not ok else ""
            ours = (op, version) in CONVERTER_PLUGINS
            remedy = fix("plugins" if ours else "foreign_plugin")
        checks.append(Check(f"{op} v{version}", ok, f"plugin, {nodes}: {detail}", remedy))
    return checks


def rebuild_command(engine: Path, built: dict) -> str:
    """The build_engine.py command line that makes ``engine`` again, from its metadata."""
    onnx_path = built.get("onnx") or "MODEL.onnx"
    return f"python build_engine.py -o {onnx_path} -e {engine} -p {built.get('precision', 'fp32')}"


def engine_checks(model: ModelFile, trt: ModuleType | None, gpu_found: bool) -> list[Check]:
    """Which TensorRT built the engine, against the one here; deserializing it where it can."""
    built = (model.metadata or {}).get("engine", {})
    version, rebuild = built.get("tensorrt_version"), rebuild_command(model.path, built)
    if version:
        checks = [Check("built with", True, f"TensorRT {version} ({built.get('precision')}, "
                        f"from {built.get('onnx')})")]
    else:
        checks = [Check("built with", False, f"unknown TensorRT: no "
                        f"{metadata_path(model.path).name} beside it", rebuild)]
    if trt is None:
        return [*checks, Check("TensorRT here", False, "absent: it cannot be loaded here",
                               fix("tensorrt"))]
    if version and version != trt.__version__:
        return [*checks, Check("TensorRT here", False, f"built with {version}, this is "
                               f"{trt.__version__}: rebuild with build_engine.py", rebuild)]
    return [*checks, deserialize_check(model.path, trt, gpu_found, rebuild)]


def deserialize_check(path: Path, trt: ModuleType, gpu_found: bool, rebuild: str) -> Check:
    """Whether this TensorRT deserializes the engine (needs a GPU)."""
    if not gpu_found:
        return Check("loads here", False, "no GPU to deserialize it on", fix("gpu"))
    init_plugins(trt)
    try:
        runtime = trt.Runtime(trt_logger(trt))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
    except (RuntimeError, TypeError) as err:
        return Check("loads here", False, f"TensorRT {trt.__version__}: {err}", rebuild)
    if engine is None:
        return Check("loads here", False, f"TensorRT {trt.__version__} cannot deserialize it "
                     "(another TensorRT version or GPU, or a damaged file)", rebuild)
    tensors = engine.num_io_tensors
    del engine, runtime
    return Check("loads here", True, f"deserialized by TensorRT {trt.__version__} "
                 f"({tensors} I/O tensors)")
