"""Reading photos for the GPU decoder (gpu_decode): which JPEGs nvJPEG takes, and reader
processes that put each batch's files into one region of a shared buffer.

Why processes and a shared buffer: at the 9000 photos/s the GPU path aims at, reading the
files and parsing their headers on a thread held the GIL that the threads feeding the GPU
need (measured: every Python step of the pipeline ran 2-10x slower than alone). A reader
process writes a whole batch's bytes into a region of a memory-mapped file (in /dev/shm) and
answers with one small message per batch; nvJPEG reads the bytes where they lie.

This module imports no CUDA library: the reader processes import it.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import mmap
import os
import queue
import struct
import tempfile
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.io.images import load_image
from tfod_trt.io.processes import decode_processes
from tfod_trt.io.resize import ImageScale, resized_size

# Start-of-frame markers (SOF0-15 without DHT C4, JPG C8, DAC CC)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
ALIGNMENT = 256  # each file's bytes start on this boundary of its region
SHARED_FOLDERS = ("/dev/shm", tempfile.gettempdir())
MAX_BUFFER_BYTES = 2 << 30
# Files whose sizes set a region's: a stat of every file cost 4.5 us each, 37 ms for 8192
# photos before the first batch could be read (docs/results/2026-11-25-interpreter-lock)
SIZE_SAMPLE = 256
# A reader's job is several batches: each job's messages cost the main process 0.3-0.4 ms of
# the GIL that the threads feeding the GPU need (docs/results/2026-11-25-interpreter-lock)
BATCHES_PER_JOB = 4
JOBS_AHEAD = 3  # jobs being read at once
# ... but the first jobs are smaller: a job's batches come back together, and the GPU waits
# for the first
FIRST_JOBS = (1, 2)
READ_AHEAD = JOBS_AHEAD * BATCHES_PER_JOB  # batches being read at once
REGION_WAIT_S = 120  # a region comes back when its batch is decoded: far sooner than this


@dataclass(frozen=True)
class JpegFrame:
    """What the headers before a JPEG's first scan say."""

    marker: int  # the start-of-frame marker: 0xC0 baseline, 0xC2 progressive, ...
    height: int
    width: int
    sampling: list[tuple[int, int]]  # per component (horizontal, vertical) factors
    adobe: bool  # an Adobe APP14 segment (CMYK, YCCK or untransformed RGB)


def jpeg_frame(data: bytes | memoryview) -> JpegFrame | None:
    """The frame of a JPEG from its segment headers (a byte scan of the whole file costs 100x
    more); None for a file that is not a well-formed JPEG up to its frame header."""
    if data[:2] != b"\xff\xd8":
        return None
    position, end, adobe = 2, len(data), False
    while position + 4 <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        if marker == 0xEE and data[position + 4:position + 9] == b"Adobe":
            adobe = True
        elif marker in SOF_MARKERS:
            if position + 10 > end:
                return None
            height, width, count = struct.unpack_from(">HHB", data, position + 5)
            factors = data[position + 11:position + 10 + 3 * count:3]  # byte 2 of each component
            return JpegFrame(marker, height, width, [(f >> 4, f & 15) for f in factors], adobe)
        elif marker in (0xDA, 0xD9):  # a scan or the end before any frame
            return None
        position += 2 + length
    return None


def takes_on_gpu(data: bytes | memoryview) -> tuple[int, int] | None:
    """(height, width) where nvJPEG decodes the file as Pillow would: a baseline or extended
    sequential (Huffman) JPEG with three components in a subsampling the hardware decoder
    has (4:4:4, 4:2:2, 4:4:0, 4:2:0) and no Adobe segment; else None (progressive, grayscale,
    CMYK, not a JPEG: Pillow decodes it)."""
    frame = jpeg_frame(data)
    if (frame is None or frame.adobe or frame.marker not in (0xC0, 0xC1)
            or len(frame.sampling) != 3 or min(frame.height, frame.width) < 1):
        return None
    luma, *chroma = frame.sampling
    if luma not in ((1, 1), (2, 1), (1, 2), (2, 2)) or any(c != (1, 1) for c in chroma):
        return None
    return frame.height, frame.width


# ---------------------------------------------------------------------------------------------
# The shared buffer and the reader's job


class SharedBuffer:
    """``regions`` regions of ``region_size`` bytes in a file mapped here and, by path, in
    the reader processes; in /dev/shm where it has room, else in the temporary folder (its
    pages stay in memory just the same). The file is removed by :meth:`close` (or when the
    buffer is collected, or at exit)."""

    def __init__(self, regions: int, region_size: int) -> None:
        self.regions, self.region_size = regions, region_size
        size = regions * region_size
        reasons = []
        for folder in SHARED_FOLDERS:
            try:
                descriptor, path = tempfile.mkstemp(prefix="tfod-trt-photos-", dir=folder)
            except OSError as err:
                reasons.append(f"{folder}: {err}")
                continue
            try:
                # the space now: a full tmpfs would otherwise kill a reader with SIGBUS later
                os.posix_fallocate(descriptor, 0, size)
                self.map = mmap.mmap(descriptor, size)
                break
            except OSError as err:
                reasons.append(f"{folder}: {err}")
                os.unlink(path)
            finally:
                os.close(descriptor)
        else:
            raise OSError(f"no room for a {size >> 20} MiB photo buffer ({'; '.join(reasons)})")
        self.path = path
        self._anchor = ctypes.c_char.from_buffer(self.map)
        self.address = ctypes.addressof(self._anchor)  # of region 0, for nvJPEG
        self._remove = weakref.finalize(self, os.unlink, path)

    def region_address(self, region: int) -> int:
        """The address of a region's first byte in this process."""
        return self.address + region * self.region_size

    def close(self) -> None:
        """Unmaps the buffer and removes its file (nothing may still read it)."""
        if self._anchor is not None:
            self._anchor = None
            self.map.close()
            self._remove()


def region_size_for(paths: list[Path], batch_size: int, regions: int) -> int:
    """Bytes a region needs for a batch of ``paths``: ``batch_size`` times the largest of up
    to 2 x SIZE_SAMPLE files spread over them, within MAX_BUFFER_BYTES for all ``regions``.
    A batch's files that do not fit all the same are decoded by Pillow in the reader."""
    step = max(1, len(paths) // SIZE_SAMPLE)
    largest = 0
    for path in paths[::step]:
        try:
            largest = max(largest, path.stat().st_size)
        except OSError:
            pass  # reported by its reader
    needed = batch_size * (largest + ALIGNMENT)
    return max(1 << 20, min(needed, MAX_BUFFER_BYTES // regions)) // ALIGNMENT * ALIGNMENT


# A batch's table (int64, one row per file): where its JPEG bytes lie in the region for nvJPEG
# (offset -1: decoded by Pillow or unreadable), its size and its size after the resize.
OFFSET, SIZE, HEIGHT, WIDTH, RESIZED_HEIGHT, RESIZED_WIDTH = range(6)


@dataclass
class ReadResult:
    """What a reader learnt of a batch's files: the table (see OFFSET ...), the pixels of
    those Pillow decoded and why the others cannot be read, by row. Arrays and a few
    strings: one cheap message per batch (16 pickled Paths and ImageScales took 160 us)."""

    table: np.ndarray
    pixels: dict[int, np.ndarray]
    errors: dict[int, str]

    def scale(self, row: int, pre: Preprocessor) -> ImageScale:
        """The row's image scale."""
        height, width, new_height, new_width = self.table[row, HEIGHT:].tolist()
        return ImageScale(height, width, new_height, new_width, pre.height, pre.width)


_mapped: dict[str, mmap.mmap] = {}  # per reader process: the buffer it last wrote to


def _mapping(path: str) -> mmap.mmap:
    if path not in _mapped:
        for old in _mapped.values():  # an earlier batcher's buffer: its file is gone
            old.close()
        _mapped.clear()
        with open(path, "r+b") as file:
            _mapped[path] = mmap.mmap(file.fileno(), 0)
    return _mapped[path]


def read_batch(buffer_path: str, region_start: int, region_size: int, paths: list[str],
               pre: Preprocessor) -> ReadResult:
    """A reader's job: each file's bytes into the region (when nvJPEG takes them and they
    fit), else its pixels from Pillow; and each image's sizes."""
    result = ReadResult(np.full((len(paths), 6), -1, np.int64), {}, {})
    used = 0
    with memoryview(_mapping(buffer_path)) as buffer:
        region = buffer[region_start:region_start + region_size]
        for row, path in enumerate(paths):
            try:
                used = _read_one(path, region, used, pre, result, row)
            except (OSError, ValueError) as err:  # ImageError, or an image too thin to resize
                result.errors[row] = getattr(err, "reason", str(err))
        region.release()
    return result


def read_batches(buffer_path: str, region_starts: list[int], region_size: int,
                 batches: list[list[str]], pre: Preprocessor) -> list[ReadResult]:
    """:func:`read_batch` for consecutive batches, each into its own region: a job."""
    return [read_batch(buffer_path, start, region_size, paths, pre)
            for start, paths in zip(region_starts, batches, strict=True)]


def _read_one(path: str, region: memoryview, used: int, pre: Preprocessor,
              result: ReadResult, row: int) -> int:
    """Reads ``path`` into ``result``'s row; returns the region's bytes used after it."""
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if used + size <= len(region):
            size = file.readinto(region[used:used + size])
            data: bytes | memoryview = region[used:used + size]
            on_gpu = takes_on_gpu(data)
        else:  # no room left in the region
            data, on_gpu = file.read(), None
    if on_gpu is not None:
        height, width = on_gpu
        result.table[row, OFFSET:SIZE + 1] = used, size
        used += -(-size // ALIGNMENT) * ALIGNMENT
    else:
        pixels = result.pixels[row] = load_image(path, bytes(data))
        height, width = pixels.shape[:2]
    result.table[row, HEIGHT:] = height, width, *resized_size(height, width, pre)
    return used


# ---------------------------------------------------------------------------------------------
# Batches read ahead, in order


def job_bounds(batches: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each reader job over ``batches`` batches: FIRST_JOBS' sizes, then
    BATCHES_PER_JOB each."""
    start = 0
    for size in itertools.chain(FIRST_JOBS, itertools.repeat(BATCHES_PER_JOB)):
        if start >= batches:
            return
        yield start, min(start + size, batches)
        start += size


@dataclass
class ReadBatch:
    """One batch as read: its paths, what the reader learnt (``result``), the address of its
    region in this process (the table's offsets start there), and ``release`` to hand the
    region back once its bytes are no longer needed."""

    paths: list[Path]
    result: ReadResult
    address: int
    release: Callable[[], None]


class PhotoReader:
    """Reads batches of files ahead and in order into the regions of a :class:`SharedBuffer`:
    JOBS_AHEAD jobs (:func:`job_bounds`: FIRST_JOBS' sizes, then BATCHES_PER_JOB batches) at a
    time on ``workers`` (at most JOBS_AHEAD) reader processes of image_batcher.decode_processes
    (a thread where processes are off or cannot start)."""

    def __init__(self, workers: int, processes: bool = True) -> None:
        self.workers, self.processes = min(workers, JOBS_AHEAD), processes
        self._buffer: SharedBuffer | None = None

    def read(self, chunks: list[list[Path]], pre: Preprocessor, held: int) -> Iterator[ReadBatch]:
        """A :class:`ReadBatch` per chunk of paths, in order. ``held``: batches the caller
        keeps unreleased at most (besides the one just handed over); a region comes back
        with ``release``, waited for up to REGION_WAIT_S."""
        regions = READ_AHEAD + held + 1
        paths = [path for chunk in chunks for path in chunk]
        buffer = self._buffer_for(regions, region_size_for(paths, max(map(len, chunks),
                                                                      default=1), regions))
        free: queue.Queue[int] = queue.Queue()
        for region in range(regions):
            free.put(region)
        processes = decode_processes(self.workers) if self.processes else None
        readers: Executor = processes or ThreadPoolExecutor(1, thread_name_prefix="jpeg-reader")
        jobs = (chunks[start:end] for start, end in job_bounds(len(chunks)))
        pending: deque[tuple[list[list[Path]], list[int], Future]] = deque()
        try:
            while True:
                while len(pending) < JOBS_AHEAD:
                    job = next(jobs, None)
                    if job is None:
                        break
                    taken = [self._take(free) for _ in job]
                    pending.append((job, taken, readers.submit(
                        read_batches, buffer.path, [r * buffer.region_size for r in taken],
                        buffer.region_size, [[os.fspath(p) for p in chunk] for chunk in job],
                        pre)))
                if not pending:
                    return
                job, taken, future = pending.popleft()
                for chunk, region, result in zip(job, taken, future.result(), strict=True):
                    yield ReadBatch(chunk, result, buffer.region_address(region),
                                    functools.partial(free.put, region))
        finally:
            for *_, future in pending:  # they write into the buffer: let them finish
                future.cancel()
            wait([future for *_, future in pending])
            if readers is not processes:
                readers.shutdown()

    def _buffer_for(self, regions: int, region_size: int) -> SharedBuffer:
        buffer = self._buffer
        if buffer is None or buffer.regions < regions or buffer.region_size < region_size:
            if buffer is not None:  # the pass that used it is over
                buffer.close()
            buffer = self._buffer = SharedBuffer(regions, region_size)
        return buffer

    @staticmethod
    def _take(free: queue.Queue[int]) -> int:
        try:
            return free.get(timeout=REGION_WAIT_S)
        except queue.Empty:
            raise RuntimeError(f"no batch was released for {REGION_WAIT_S} s (every region "
                               "of the photo buffer held)") from None

    def close(self) -> None:
        """Removes the shared buffer (nothing may still read it)."""
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None
