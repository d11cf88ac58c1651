"""The package files a Python model of the repository imports: the modules it names and, in
turn, theirs (the package imports only at module level), with their packages' __init__.py.
The repository carries them, so that it runs the very code that wrote it."""

from __future__ import annotations

import ast
from pathlib import Path

import tfod_trt

PACKAGE = tfod_trt.__name__
PACKAGE_DIR = Path(tfod_trt.__file__).resolve().parent


def module_file(module: str) -> Path | None:
    """The source file of a package module (``tfod_trt.io.resize``), or None when the name is
    no module (``tfod_trt.io.resize.ImageScale``)."""
    parts = module.split(".")[1:]
    candidates = [PACKAGE_DIR.joinpath(*parts, "__init__.py")]
    if parts:
        candidates.insert(0, PACKAGE_DIR.joinpath(*parts[:-1], parts[-1] + ".py"))
    return next((path for path in candidates if path.is_file()), None)


def imported_modules(source: Path) -> set[str]:
    """The package modules a file imports at its top level (``from a.b import c`` names a.b.c
    where that is a module, else a.b); type-checking imports are left out."""
    found = set()
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
            found.add(node.module)
    return {name if module_file(name) else name.rpartition(".")[0] for name in found
            if name.split(".")[0] == PACKAGE}


def needed_files(entry: Path) -> list[Path]:
    """Every package file that ``entry`` (a Python file) needs, sorted."""
    files: set[Path] = set()
    todo = [entry]
    while todo:
        for module in imported_modules(todo.pop()):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # the packages on the way, then the module
                path = module_file(".".join(parts[:depth]))
                if path is not None and path not in files:
                    files.add(path)
                    todo.append(path)
    return sorted(files)


def package_files(entry: Path) -> dict[str, Path]:
    """The files to copy for ``entry``: their paths under the model's folder -> sources."""
    return {(Path(PACKAGE) / path.relative_to(PACKAGE_DIR)).as_posix(): path
            for path in needed_files(entry)}
