"""The one place that knows how TensorRT 8.6, 10.x and 11.x differ (docs/design.md).
Everything else asks these functions instead of comparing versions.

Functions that take a ``trt`` module default to the installed one; passing a module lets the
CPU tests run them against the real Python bindings of versions that cannot run here.
"""

from __future__ import annotations

import logging
import re
from types import ModuleType
from typing import TYPE_CHECKING, Any

import onnx

if TYPE_CHECKING:
    import tensorrt as trt
try:
    import tensorrt as _installed_trt
except (ImportError, OSError) as _import_error:  # CPU machines: no TensorRT
    _installed_trt = None
    _IMPORT_ERROR: Exception | None = _import_error
else:
    _IMPORT_ERROR = None
log = logging.getLogger(__name__)


MIN_VERSION = (8, 6)
WHERE_IT_RUNS = (
    "TensorRT runs where an NVIDIA GPU is: install it there (pip install tensorrt, or "
    "JetPack's on a Jetson); without it, run the ONNX model on the CPU with --onnx"
)

# API that TensorRT 8.6-10.x has and 11 removed. Code touching these must be guarded by the
# functions below; tests/test_trt_api_surface.py checks that none of them exist in TensorRT 11.
LEGACY_API = frozenset({
    "BuilderFlag.FP16",
    "BuilderFlag.INT8",
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
    "IInt8EntropyCalibrator2",
    "IInt8MinMaxCalibrator",
    "IBuilderConfig.int8_calibrator",
    "IBuilderConfig.set_calibration_profile",
    "ILayer.precision",
    "ILayer.set_output_type",
    "IPluginRegistry.get_plugin_creator",
})

# (op, plugin_version) in the ONNX -> what TensorRT >= 10.12 registers instead. The static
# CropAndResize and CropAndResizeDynamic v1 are deprecated there and gone in 11.
_CROP_AND_RESIZE_V2 = ("CropAndResizeDynamic", "2")
_RENAMES_FROM_10_12 = {
    ("CropAndResize", "1"): _CROP_AND_RESIZE_V2,
    ("CropAndResizeDynamic", "1"): _CROP_AND_RESIZE_V2,
}


class TensorRTUnavailable(RuntimeError):
    """TensorRT cannot be imported here, or is older than this project supports."""


class PluginUnavailable(RuntimeError):
    """The ONNX graph names a plugin that the installed TensorRT does not register."""


def require_tensorrt() -> ModuleType:
    """The installed ``tensorrt`` module, or a clear error saying where TensorRT runs."""
    if _installed_trt is None:
        raise TensorRTUnavailable(
            f"cannot import tensorrt ({_IMPORT_ERROR}); {WHERE_IT_RUNS}"
        )
    version = trt_version(_installed_trt)
    if version[:2] < MIN_VERSION:
        raise TensorRTUnavailable(
            f"TensorRT {_installed_trt.__version__} is too old: this project needs "
            f"{MIN_VERSION[0]}.{MIN_VERSION[1]} or newer"
        )
    return _installed_trt


def _module(trt: ModuleType | None) -> ModuleType:
    return require_tensorrt() if trt is None else trt


def trt_version(trt: ModuleType | None = None) -> tuple[int, int, int]:
    """(major, minor, patch) of a TensorRT module, from ``__version__`` (e.g. "10.13.3.9")."""
    text = _module(trt).__version__
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        raise TensorRTUnavailable(f"cannot read the TensorRT version {text!r}")
    return tuple(int(part) for part in match.groups())  # type: ignore[return-value]


def version_string(trt: ModuleType | None = None) -> str:
    return _module(trt).__version__


def network_flags(trt: ModuleType | None = None) -> int:
    """``create_network`` flags: EXPLICIT_BATCH where the ONNX parser needs it (8.x), else 0
    (a deprecated no-op in 10, gone in 11)."""
    trt = _module(trt)
    if trt_version(trt)[0] < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def supports_builder_precision_flags(trt: ModuleType | None = None) -> bool:
    """FP16/INT8 builder flags and precision constraints: 8.6-10.x (11 is strongly typed)."""
    return trt_version(trt)[0] < 11


def supports_layer_precision(trt: ModuleType | None = None) -> bool:
    """``layer.precision`` / ``set_output_type``: removed with the precision flags in 11."""
    return supports_builder_precision_flags(trt)


def supports_implicit_int8_calibrator(trt: ModuleType | None = None) -> bool:
    """``IInt8MinMaxCalibrator`` / ``IInt8EntropyCalibrator2`` and ``config.int8_calibrator``:
    8.6-10.x."""
    version = trt_version(trt)
    return MIN_VERSION <= version[:2] and version[0] < 11


INT8_MODES = ("calibrator", "qdq")


def default_int8_mode(trt: ModuleType | None = None) -> str:
    """How INT8 is built by default: TensorRT's entropy calibrator where it exists (8.6-10.x),
    else an explicitly quantized (Q/DQ) ONNX (11)."""
    return "calibrator" if supports_implicit_int8_calibrator(trt) else "qdq"


def needs_typed_onnx(precision: str, trt: ModuleType | None = None) -> bool:
    """Whether ``precision`` must be written into the ONNX itself (FP16 graph or Q/DQ nodes)
    because this TensorRT builds strongly typed networks only (11)."""
    return precision != "fp32" and not supports_builder_precision_flags(trt)


def typed_onnx_flags(precision: str, trt: ModuleType | None = None) -> list[str]:
    """``BuilderFlag`` names to set for an ONNX that already carries its precision (FP16
    graph or Q/DQ nodes): 8.6-10.x need FP16 / INT8 to run such layers in that precision
    (explicit quantization on 8.6 needs the INT8 flag); 11 is strongly typed and has none."""
    if precision == "fp32" or not supports_builder_precision_flags(trt):
        return []
    return [{"fp16": "FP16", "int8": "INT8"}[precision]]


def reduced_precision_unsupported(precision: str, trt: ModuleType | None = None,
                                  int8_mode: str | None = None) -> str | None:
    """Why ``precision`` (and, for int8, ``int8_mode``) cannot be built on this TensorRT, or
    None. FP16 and Q/DQ INT8 build everywhere (on 11 from an FP16 / Q/DQ ONNX, which
    build_engine makes); the calibrator exists only before 11."""
    if precision != "int8" or (int8_mode or default_int8_mode(trt)) != "calibrator":
        return None
    if supports_implicit_int8_calibrator(trt):
        return None
    return (
        f"TensorRT {version_string(trt)} builds strongly typed networks only: it has no "
        "INT8 builder flag and no INT8 calibrator, so INT8 needs an explicitly quantized "
        "(Q/DQ) ONNX: use --int8_mode qdq (the default here)"
    )


def set_workspace(config: trt.IBuilderConfig, nbytes: int, trt: ModuleType | None = None
                  ) -> None:
    """The builder's workspace limit (the same call in 8.6, 10 and 11)."""
    trt = _module(trt)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(nbytes))


def plugin_renames(trt: ModuleType | None = None) -> dict[tuple[str, str], tuple[str, str]]:
    """(op, plugin_version) the converter writes -> (name, version) to use with this TensorRT.
    EfficientNMS_TRT v1 is shipped by every supported version and is never renamed."""
    return dict(_RENAMES_FROM_10_12) if trt_version(trt)[:2] >= (10, 12) else {}


def find_plugin_creator(name: str, version: str, namespace: str = "",
                        trt: ModuleType | None = None) -> Any:
    """The registered creator of a plugin, or None. ``get_creator`` (10+) also finds IPluginV3
    creators such as CropAndResizeDynamic v2; 8.6 has only ``get_plugin_creator``."""
    trt = _module(trt)
    registry: trt.IPluginRegistry = trt.get_plugin_registry()
    if trt_version(trt)[0] >= 10:
        return registry.get_creator(name, version, namespace)
    return registry.get_plugin_creator(name, version, namespace)


def string_attr(node: onnx.NodeProto, name: str, default: str) -> str:
    """A node's string attribute (a plugin's version or namespace), or ``default``."""
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else str(value)
    return default


def _set_string_attr(node: onnx.NodeProto, name: str, value: str) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend([*kept, onnx.helper.make_attribute(name, value)])


def plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes that are no standard ONNX operator: TensorRT resolves them as plugins."""
    return [n for n in model.graph.node if not onnx.defs.has(n.op_type, n.domain or "")]


def adapt_onnx_plugins(model: onnx.ModelProto, trt: ModuleType | None = None) -> onnx.ModelProto:
    """A copy of ``model`` whose plugin nodes name what the installed TensorRT registers.

    Call ``trt.init_libnvinfer_plugins`` first. Raises :class:`PluginUnavailable` naming the
    node and plugin when this TensorRT has no creator for it.
    """
    trt = _module(trt)
    renames = plugin_renames(trt)
    adapted = onnx.ModelProto()
    adapted.CopyFrom(model)
    for node in plugin_nodes(adapted):
        old = (node.op_type, string_attr(node, "plugin_version", "1"))
        name, version = renames.get(old, old)
        namespace = string_attr(node, "plugin_namespace", "")
        if find_plugin_creator(name, version, namespace, trt) is None:
            where = f" in namespace {namespace!r}" if namespace else ""
            raise PluginUnavailable(
                f"the ONNX node {node.name!r} needs the TensorRT plugin {name} version "
                f"{version}{where}, which TensorRT {version_string(trt)} does not register"
            )
        if (name, version) != old:
            log.info("plugin %s v%s -> %s v%s for TensorRT %s (node %s)", *old, name, version,
                     version_string(trt), node.name)
            node.op_type = name
            _set_string_attr(node, "plugin_version", version)
    return adapted
