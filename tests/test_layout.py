"""The package's imports point one way: scripts -> package, and inside the package from high
level to low level (LAYERS), with no cycle and no project import hidden inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "tfod_trt"
# Lower numbers are lower levels; a module may import its own level or lower ones.
LAYERS = {  # README.md's package table, top to bottom
    "tfod_trt": 0, "errors": 0, "files": 0, "metadata": 0, "detections": 0, "cuda_ctypes": 0,
    "optional": 0, "stopping": 0, "graph_names": 0,
    "config": 1, "io": 2, "convert": 3, "quant": 4, "reference": 5, "trt": 6, "detect": 7,
    "evaluate": 8, "serve": 8, "bench": 9, "doctor": 10, "commands": 11, "cli": 11, "__main__": 12,
}
# Optional libraries that may be imported inside a function (they are heavy or absent on many
# machines), each from one module only.
LAZY = {"tensorflow": "optional.py", "tf2onnx": "optional.py", "pytriton": "optional.py",
        "tritonclient": "optional.py",
        "cuda": "trt/cuda_python.py", "pycuda": "trt/pycuda_backend.py"}
SCRIPTS = ("create_onnx", "build_engine", "infer", "eval_coco", "compare_tf", "quantize",
           "benchmark", "export_triton", "serve_triton")
HELPERS = ("onnx_utils", "image_batcher", "visualize")


def package_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def layer(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else parts[0]
    if key not in LAYERS:
        raise AssertionError(f"{module}: not in LAYERS (give its sub-package a level)")
    return LAYERS[key]


def imports(path: Path) -> list[tuple[str, bool, bool]]:
    """(imported module, inside a function, only for type checking) of every import."""
    found = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            function = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            checking = type_checking or (isinstance(child, ast.If)
                                         and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                found.extend((alias.name, function, checking) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                # `from a.b import c` names the module a.b.c where there is one
                found.extend((f"{child.module}.{alias.name}", function, checking)
                             for alias in child.names)
            visit(child, function, checking)

    visit(ast.parse(path.read_text()), False, False)
    return found


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The package module an import names (``from a.b import c``: a.b.c where that is one)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def project_graph() -> dict[str, set[str]]:
    modules = package_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _, checking in imports(path):
            resolved = resolve(target, modules) if target.startswith(PACKAGE) else None
            if resolved and resolved != name and not checking:
                graph[name].add(resolved)
    return graph


def test_no_import_points_upward_or_at_a_script() -> None:
    modules = package_modules()
    wrong = []
    for name, path in modules.items():
        for target, in_function, _ in imports(path):
            top = target.split(".")[0]
            if top in SCRIPTS + HELPERS:
                wrong.append(f"{name} imports the top-level {target}")
            if not target.startswith(PACKAGE + ".") and target != PACKAGE:
                continue
            resolved = resolve(target, modules)
            if in_function:
                wrong.append(f"{name} imports {target} inside a function")
            if resolved and layer(resolved) > layer(name):
                wrong.append(f"{name} (level {layer(name)}) imports {resolved} "
                             f"(level {layer(resolved)})")
    assert not wrong, "\n".join(wrong)


def test_no_cycle() -> None:
    graph = project_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def test_lazy_imports_only_of_optional_libraries_in_one_place() -> None:
    wrong = []
    for name, path in package_modules().items():
        relative = path.relative_to(ROOT / PACKAGE).as_posix()
        for target, in_function, _ in imports(path):
            top = target.split(".")[0]
            if in_function and top != PACKAGE and LAZY.get(top) != relative:
                wrong.append(f"{name} imports {target} inside a function")
    assert not wrong, "\n".join(wrong)


def test_top_level_holds_only_the_scripts_helpers_and_package() -> None:
    modules = {path.stem for path in ROOT.glob("*.py")}
    assert modules == set(SCRIPTS + HELPERS)
    assert (ROOT / PACKAGE / "__init__.py").is_file()


def test_the_checks_see_a_wrong_import(tmp_path: Path) -> None:
    """The parser finds imports inside functions and type-checking blocks."""
    source = tmp_path / "example.py"
    source.write_text("from typing import TYPE_CHECKING\nimport a.b\nif TYPE_CHECKING:\n"
                      "    import c\ndef f():\n    from d import e\n")
    assert imports(source) == [("typing.TYPE_CHECKING", False, False), ("a.b", False, False),
                               ("c", False, True), ("d.e", True, False)]
