"""An engine file's companion ``<engine>.json`` (how it was built) and load errors."""

from __future__ import annotations

import json
from pathlib import Path

REBUILD = "rebuild with build_engine.py"


class EngineError(RuntimeError):
    """The engine file cannot be loaded or run."""


def metadata_path(engine_path: str | Path) -> Path:
    """Where build_engine.py keeps an engine's metadata: ``<engine>.json`` beside it."""
    return Path(f"{engine_path}.json")


def read_engine_metadata(engine_path: str | Path) -> dict:
    """The metadata saved with an engine (the ONNX's, plus an "engine" entry), or {}."""
    path = metadata_path(engine_path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as err:
        raise EngineError(f"{path}: unreadable engine metadata ({err}); {REBUILD}") from err
