"""Writing files safely: atomically, with the user's umask, never over the command's inputs."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from tfod_trt.errors import UsageError
from tfod_trt.stopping import stop_deferred

# A command-line flag's paths: one path, several, or None where the flag was not given.
FlagPaths = Path | Iterable[Path] | None


class WriteError(OSError):
    """A file that could not be written (disk full, read-only, no permission), named."""

    def __str__(self) -> str:
        return f"{self.filename}: cannot write it: {self.strerror}"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes a file through a temporary sibling and a rename: readers never see half a file.
    The file gets the user's umask, as with open(); a device or pipe (/dev/null, /dev/stdout)
    is written in place, since it cannot be replaced. Raises WriteError, naming the file."""
    path = Path(path)
    try:
        with stop_deferred():  # a stop signal waits for the rename: no temporary file is left
            if _is_device_or_pipe(path):
                with open(path, "wb") as handle:
                    handle.write(data)
            else:
                _replace(path, data)
    except OSError as err:
        raise WriteError(err.errno, err.strerror or str(err), str(path)) from err


def _is_device_or_pipe(path: Path) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:  # not there (yet): a new file
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = _create_sibling(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_sibling(path: Path) -> tuple[int, Path]:
    """A new hidden file beside ``path``, opened for writing. Created with mode 0666 so that
    the kernel applies the umask (tempfile.mkstemp's files are 0600 whatever the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def check_outputs(inputs: Mapping[str, FlagPaths], outputs: Mapping[str, FlagPaths]) -> None:
    """Refuses (UsageError) an output file that is one of the inputs: the same path, or the
    same file through a symlink or a hard link (an input folder stands for every file below
    it); and a file that two outputs would both write. Keys are the flags, for the message."""
    known: dict[tuple, tuple[str, Path]] = {}
    for flag, path in _flagged(inputs):
        for file in _files_below(path):
            known.setdefault(_identity(file), (flag, file))
    claimed: dict[tuple, str] = {}
    for flag, path in _flagged(outputs):
        key = _identity(path)
        if key in known:
            source_flag, source = known[key]
            raise UsageError(f"{path} would overwrite {source} (the {source_flag} input); "
                             "choose another path")
        if claimed.setdefault(key, flag) != flag:
            raise UsageError(f"{path} is both the {claimed[key]} and the {flag} output; "
                             "choose another path")


def check_output_folder(folder: Path, inputs: Mapping[str, FlagPaths]) -> None:
    """Refuses (UsageError) an output folder that is an input folder, lies inside one, or
    holds an input: results would mix with the inputs, and a later run would read them."""
    where = Path(os.path.realpath(folder))
    for flag, path in _flagged(inputs):
        real = Path(os.path.realpath(path))
        if real == where:
            raise UsageError(f"{folder} is the {flag} folder {path}; choose another folder")
        if real in where.parents:
            raise UsageError(f"{folder} is inside {path} (the {flag} folder); choose a folder "
                             "outside it")
        if where in real.parents:
            kind = "folder" if real.is_dir() else "input"
            raise UsageError(f"{folder} contains {path} (the {flag} {kind}); choose another "
                             "folder")


def _flagged(paths: Mapping[str, FlagPaths]) -> Iterator[tuple[str, Path]]:
    for flag, value in paths.items():
        if value is None:
            continue
        for path in [value] if isinstance(value, (str, os.PathLike)) else value:
            yield flag, Path(path)


def _files_below(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from (file for file in sorted(path.rglob("*")) if not file.is_dir())
    else:
        yield path


def _identity(path: Path) -> tuple:
    """The file a path names (device and inode), or its resolved path where there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return (os.path.realpath(path),)
    return (info.st_dev, info.st_ino)


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
