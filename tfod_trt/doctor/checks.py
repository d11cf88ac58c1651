"""One line of the doctor's report, and the command that fixes each missing part."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tfod_trt.metadata import NMS_PLUGIN


@dataclass
class Check:
    """One line of the report: what was checked, whether it is fine, and how to fix it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


# The one command that fixes each missing part (a Jetson gets JetPack's instead).
TFOD_API = "tf-models-research-object-detection==2.8.0.post1 tf-models-official==2.20.0"


FIXES = {
    "tfod": f"pip install --no-deps {TFOD_API}",  # as tools/install.sh does
    "tensorrt": "pip install tensorrt-cu12",
    "plugins": "pip install --force-reinstall tensorrt-cu12",  # brings libnvinfer_plugin back
    "foreign_plugin": "load the library that registers it (create_onnx.py writes no such node)",
    "backend": "pip install cuda-python",
    "nvjpeg": "pip install nvidia-nvjpeg-cu12",
    "nvrtc": "pip install nvidia-cuda-nvrtc-cu12",
    "driver": "install the NVIDIA driver (it brings libcuda.so.1)",
    "gpu": "build and run engines on a machine with an NVIDIA GPU "
           "(here: infer.py --onnx runs the ONNX model on the CPU)",
}


JETSON_FIXES = {
    "tensorrt": "use JetPack's TensorRT (apt install python3-libnvinfer)",
    "plugins": "use JetPack's TensorRT with its plugins (apt install nvidia-tensorrt)",
    "nvjpeg": "use JetPack's CUDA (apt install nvidia-jetpack)",
    "nvrtc": "use JetPack's CUDA (apt install nvidia-jetpack)",
    "driver": "use JetPack (apt install nvidia-jetpack)",
}


def is_jetson() -> bool:
    """An NVIDIA Jetson board (JetPack writes /etc/nv_tegra_release)."""
    return Path("/etc/nv_tegra_release").is_file()


def fix(part: str) -> str:
    """The command that installs ``part`` (a key of FIXES, or "tf") on this machine."""
    if part == "tf":
        return tf_extra_command()
    return (JETSON_FIXES if is_jetson() else {}).get(part, FIXES[part])


def tf_extra_command() -> str:
    """pip's command for the `tf` extra of this installation: from the checkout it runs from or
    was installed from, else the extra's own requirements as the installed package lists them."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return f'pip install -e "{checkout}[tf]"'
    try:
        dist = metadata.distribution("tfod-trt")
    except metadata.PackageNotFoundError:
        return 'pip install "tfod-trt[tf]"'
    url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    if url.startswith("file://") and Path(url[7:], "pyproject.toml").is_file():
        return f'pip install "{url[7:]}[tf]"'
    extra = [req.split(";")[0].strip() for req in dist.requires or []
             if 'extra == "tf"' in req]
    return "pip install " + " ".join(f'"{req}"' for req in extra)


# The plugins create_onnx.py writes (op, plugin_version) and the models that need them.
CONVERTER_PLUGINS = {(NMS_PLUGIN, "1"): "every model", ("CropAndResize", "1"): "Faster R-CNN"}
