"""Regenerates the TFOD API's *_pb2.py modules for the installed protobuf.

The PyPI TFOD package ships pb2 modules generated for protobuf 3, which protobuf >= 4 refuses
("Descriptors cannot be created directly"). It ships no .proto files, but every old module embeds
its serialized FileDescriptorProto: collect them into a FileDescriptorSet and let grpc_tools.protoc
(matched to the installed protobuf) write fresh modules from it.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path


def embedded_descriptor(pb2_file: Path) -> bytes | None:
    """The serialized FileDescriptorProto inside an old- or new-style generated module."""
    tree = ast.parse(pb2_file.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg == "serialized_pb" and isinstance(kw.value, ast.Constant):
                return kw.value.value
        name = getattr(node.func, "attr", None)
        if name == "AddSerializedFile" and node.args and isinstance(node.args[0], ast.Constant):
            return node.args[0].value
    return None


def main() -> int:
    from google.protobuf import descriptor_pb2

    spec = importlib.util.find_spec("object_detection")
    if spec is None or not spec.submodule_search_locations:
        print("object_detection is not installed", file=sys.stderr)
        return 1
    package_root = Path(list(spec.submodule_search_locations)[0]).parent
    descriptors = descriptor_pb2.FileDescriptorSet()
    names = []
    for pb2 in sorted((package_root / "object_detection" / "protos").glob("*_pb2.py")):
        blob = embedded_descriptor(pb2)
        if blob is None:
            continue
        proto = descriptor_pb2.FileDescriptorProto.FromString(blob)
        descriptors.file.append(proto)
        names.append(proto.name)
    if not names:
        print("no embedded descriptors found; nothing regenerated", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        set_path = Path(tmp) / "tfod.pb"
        set_path.write_bytes(descriptors.SerializeToString())
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"--descriptor_set_in={set_path}",
             f"--python_out={package_root}", *names],
            check=True,
        )
    print(f"regenerated {len(names)} TFOD protobuf modules for the installed protobuf")
    return 0


if __name__ == "__main__":
    sys.exit(main())
