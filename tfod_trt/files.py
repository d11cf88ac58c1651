"""Writing files so that readers never see half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tfod_trt.errors import UsageError
from tfod_trt.stopping import stop_deferred


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes a file through a temporary sibling and a rename: readers never see half a file,
    and a stop signal arriving meanwhile waits for the rename (no temporary file is left)."""
    path = Path(path)
    with stop_deferred():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def check_writable_file(path: str | Path, flag: str = "") -> None:
    """Refuses, before any work, a file that could not be written at the end: an existing
    folder, or a path below a file (a UsageError naming it, after ``flag`` when given)."""
    path = Path(path)
    name = f"{flag} {path}" if flag else str(path)
    if path.is_dir():
        raise UsageError(f"{name}: is a folder; name the file to write")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{name}: {parent} is a file, not a folder")
            return
