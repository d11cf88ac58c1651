"""The results manifest of an output folder: the files infer.py wrote there, so that a rerun
removes its own stale results (of an image now skipped or gone) and never anything else."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from tfod_trt.errors import UsageError
from tfod_trt.files import atomic_write_bytes

MANIFEST = "infer_manifest.json"


def read_manifest(folder: Path) -> set[str]:
    """The file names the previous run's manifest in ``folder`` lists (none without one)."""
    path = folder / MANIFEST
    if not path.exists():
        return set()
    try:
        names = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{path}: not a results manifest of infer.py ({err}); remove it or "
                         "choose another --output") from err
    if not isinstance(names, list) or not all(map(_plain_name, names)):
        raise UsageError(f"{path}: its \"files\" must be a list of file names in that folder; "
                         "remove it or choose another --output")
    return set(names)


def claim_files(folder: Path, previous: set[str], planned: Iterable[str]) -> set[str]:
    """Before a run writes: lists in the manifest the previous run's files and the planned
    ones that do not exist yet (an existing file not listed is not ours, and stays), so that
    a run that dies leaves nothing unlisted. Returns that list."""
    present = set(os.listdir(folder))
    claimed = previous | {name for name in planned if name not in present}
    write_manifest(folder, claimed)
    return claimed


def finish_files(folder: Path, claimed: set[str], written: set[str]) -> None:
    """After a run: removes the claimed files it did not write, then lists exactly ``written``."""
    for name in sorted(claimed - written):
        _remove_regular_file(folder / name)
    write_manifest(folder, written)


def write_manifest(folder: Path, names: Iterable[str]) -> None:
    """``folder``'s manifest listing ``names``, written atomically."""
    text = json.dumps({"written_by": "infer.py", "files": sorted(names)}, indent=1)
    atomic_write_bytes(folder / MANIFEST, (text + "\n").encode())


def _plain_name(name: object) -> bool:
    """A file name in the folder itself: no path, nothing that leads out of it."""
    return (isinstance(name, str) and name not in ("", ".", "..", MANIFEST)
            and "/" not in name and (os.altsep is None or os.altsep not in name)
            and os.sep not in name)


def _remove_regular_file(path: Path) -> None:
    """Only a plain file: what the run wrote; a folder, link or device there now is not."""
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
