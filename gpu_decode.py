"""JPEG decoding and TFOD's resize on the GPU, for infer.py's ``--decode nvjpeg``.

The CPU path (image_batcher) spends about 8.5 ms of CPU per photo on the JPEG decode and the
bilinear resize, so 16 cores feed an SSD engine at under a fifth of what it runs. Here the
photos' bytes go to nvJPEG (the GPU's hardware JPEG decoder where it has one, e.g. A100 /
H100, else nvJPEG's CUDA decoder) and one CUDA kernel resizes and pads the whole batch straight
into the engine's input buffer.

* The kernel computes what ``image_batcher.resize_bilinear`` computes, in the same float32
  operations and order, compiled without fused multiply-add: the same pixels in give the same
  input bits out (tested on the GPU).
* nvJPEG's pixels equal Pillow's (and TensorFlow's) for 4:4:4 JPEGs; with 4:2:0 chroma its
  upsampling differs (after the resize: mean 0.5 levels, p99 6; docs/benchmarks.md), so
  detections may move slightly. That is why the CPU path stays the default.
* PNG, BMP, grayscale, CMYK, Adobe-transform and progressive JPEGs are decoded by Pillow and
  uploaded; a batch nvJPEG refuses is decoded the same way. What Pillow cannot read is reported
  and skipped, as on the CPU path.

The libraries (libnvjpeg, libnvrtc, libcuda) are loaded with ctypes (cuda_ctypes), from the
CUDA install or pip's nvidia-* wheels; both CUDA back-ends of trt_runner work with it: the
stage makes its own driver calls on the runner's context and stream.
"""

from __future__ import annotations

import ctypes
import logging
import struct
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cuda_ctypes import CudaDriver, CudaUnavailable, compile_ptx, load_cuda_library
from image_batcher import (
    Batch,
    ImageBatcher,
    ImageError,
    ImageScale,
    Preprocessor,
    load_image,
    resized_size,
)

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# nvJPEG

NVJPEG_BACKEND_DEFAULT, NVJPEG_BACKEND_HARDWARE = 0, 3
NVJPEG_OUTPUT_RGBI = 5
# Start-of-frame markers (SOF0-15 without DHT C4, JPG C8, DAC CC)
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
NVJPEG_STATUS = {1: "not initialized", 2: "invalid parameter", 3: "bad JPEG",
                 4: "JPEG not supported", 5: "allocator failure", 6: "execution failed",
                 7: "architecture mismatch", 8: "internal error",
                 9: "implementation not supported", 10: "incomplete bitstream"}


class NvJpegImage(ctypes.Structure):
    """nvjpegImage_t: up to four planes; interleaved RGB uses the first."""

    _fields_ = [("channel", ctypes.c_void_p * 4), ("pitch", ctypes.c_size_t * 4)]


class NvJpegError(RuntimeError):
    """An nvJPEG call failed."""


class NvJpeg:
    """An nvJPEG handle (hardware back-end where the GPU has one) with one batched-decode
    state per pipeline slot."""

    def __init__(self) -> None:
        lib = self._lib = load_cuda_library("nvjpeg")
        void_p, c_int = ctypes.c_void_p, ctypes.c_int
        lib.nvjpegCreateEx.argtypes = [c_int, void_p, void_p, ctypes.c_uint,
                                       ctypes.POINTER(void_p)]
        lib.nvjpegJpegStateCreate.argtypes = [void_p, ctypes.POINTER(void_p)]
        lib.nvjpegDecodeBatchedInitialize.argtypes = [void_p, void_p, c_int, c_int, c_int]
        lib.nvjpegDecodeBatched.argtypes = [void_p, void_p, ctypes.POINTER(ctypes.c_char_p),
                                            ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.POINTER(NvJpegImage), void_p]
        lib.nvjpegJpegStateDestroy.argtypes = [void_p]
        lib.nvjpegDestroy.argtypes = [void_p]
        self.handle = void_p()
        self.backend = ""
        for backend, name in ((NVJPEG_BACKEND_HARDWARE, "hardware"),
                              (NVJPEG_BACKEND_DEFAULT, "cuda")):
            status = lib.nvjpegCreateEx(backend, None, None, 0, ctypes.byref(self.handle))
            if status == 0:
                self.backend = name
                break
        else:
            raise CudaUnavailable(f"nvJPEG cannot start ({NVJPEG_STATUS.get(status, status)}: "
                                  "no usable NVIDIA GPU?); use --decode processes")
        self._states: list[ctypes.c_void_p] = []
        self._initialized: list[int] = []  # the batch size each state was initialised for

    @staticmethod
    def _check(status: int, call: str) -> None:
        if status != 0:
            raise NvJpegError(f"{call}: {NVJPEG_STATUS.get(status, f'status {status}')}")

    def decode_batch(self, slot: int, encoded: list[bytes], outputs: list[int],
                     widths: list[int], stream: int) -> None:
        """Decodes ``encoded`` to interleaved RGB at the device addresses ``outputs`` (pitch
        3 x width) on ``stream``, with the slot's state. Raises NvJpegError."""
        while len(self._states) <= slot:
            state = ctypes.c_void_p()
            self._check(self._lib.nvjpegJpegStateCreate(self.handle, ctypes.byref(state)),
                        "nvjpegJpegStateCreate")
            self._states.append(state)
            self._initialized.append(0)
        count, state = len(encoded), self._states[slot]
        if self._initialized[slot] != count:
            self._initialized[slot] = 0  # re-initialised after a failure too
            self._check(self._lib.nvjpegDecodeBatchedInitialize(
                self.handle, state, count, 1, NVJPEG_OUTPUT_RGBI), "nvjpegDecodeBatchedInitialize")
        images = (NvJpegImage * count)()
        for image, pointer, width in zip(images, outputs, widths, strict=True):
            image.channel[0] = pointer
            image.pitch[0] = 3 * width
        status = self._lib.nvjpegDecodeBatched(
            self.handle, state, (ctypes.c_char_p * count)(*encoded),
            (ctypes.c_size_t * count)(*map(len, encoded)), images, ctypes.c_void_p(stream))
        self._initialized[slot] = count if status == 0 else 0
        self._check(status, "nvjpegDecodeBatched")

    def close(self) -> None:
        """Frees the states and the handle."""
        for state in self._states:
            self._lib.nvjpegJpegStateDestroy(state)
        self._states = []
        if self.handle:
            self._lib.nvjpegDestroy(self.handle)
            self.handle = ctypes.c_void_p()


@dataclass(frozen=True)
class JpegFrame:
    """What the headers before a JPEG's first scan say."""

    marker: int  # the start-of-frame marker: 0xC0 baseline, 0xC2 progressive, ...
    height: int
    width: int
    sampling: list[tuple[int, int]]  # per component (horizontal, vertical) factors
    adobe: bool  # an Adobe APP14 segment (CMYK, YCCK or untransformed RGB)


def jpeg_frame(data: bytes) -> JpegFrame | None:
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


def takes_on_gpu(data: bytes) -> tuple[int, int] | None:
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
# The resize kernel (compiled by NVRTC on first use)

RESIZE_KERNEL = r"""
struct ResizeJob {            // one image of the batch; 40 bytes (RESIZE_JOB_DTYPE)
    const unsigned char* src; // interleaved RGB, `pitch` bytes per row
    int pitch, in_h, in_w;
    int new_h, new_w;         // the resized image, top-left in the out_h x out_w input
    float scale_y, scale_x;   // float32(in) / float32(new), as TF's legacy scaler
    int unused;
};

extern "C" __global__ void resize_bilinear(
    const ResizeJob* jobs, int count, float* out, int out_h, int out_w, int nchw,
    float pad_r, float pad_g, float pad_b)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int b = blockIdx.z;
    if (x >= out_w || y >= out_h) return;
    float rgb[3] = {0.0f, 0.0f, 0.0f};  // the batch's padding images are zeros
    if (b < count) {
        const ResizeJob job = jobs[b];
        if (y < job.new_h && x < job.new_w) {
            // image_batcher.resize_bilinear's operations, one by one (compiled without FMA)
            const float sy = (float)y * job.scale_y, sx = (float)x * job.scale_x;
            const float fy = floorf(sy), fx = floorf(sx);
            const int y0 = max((int)fy, 0), y1 = min((int)ceilf(sy), job.in_h - 1);
            const int x0 = max((int)fx, 0), x1 = min((int)ceilf(sx), job.in_w - 1);
            const float ly = sy - fy, lx = sx - fx;
            const unsigned char* top = job.src + (size_t)y0 * job.pitch;
            const unsigned char* bottom = job.src + (size_t)y1 * job.pitch;
            for (int c = 0; c < 3; ++c) {
                const float tl = top[3 * x0 + c], tr = top[3 * x1 + c];
                const float bl = bottom[3 * x0 + c], br = bottom[3 * x1 + c];
                const float upper = (tr - tl) * lx + tl;
                const float lower = (br - bl) * lx + bl;
                rgb[c] = (lower - upper) * ly + upper;
            }
        } else {
            rgb[0] = pad_r; rgb[1] = pad_g; rgb[2] = pad_b;
        }
    }
    for (int c = 0; c < 3; ++c) {
        const size_t index = nchw
            ? (((size_t)b * 3 + c) * out_h + y) * out_w + x
            : (((size_t)b * out_h + y) * out_w + x) * 3 + c;
        out[index] = rgb[c];
    }
}
"""
RESIZE_JOB_DTYPE = np.dtype([("src", "<u8"), ("pitch", "<i4"), ("in_h", "<i4"),
                             ("in_w", "<i4"), ("new_h", "<i4"), ("new_w", "<i4"),
                             ("scale_y", "<f4"), ("scale_x", "<f4"), ("unused", "<i4")])
BLOCK = (32, 8, 1)
READER_THREADS = 1


# ---------------------------------------------------------------------------------------------
# The batcher (files -> encoded batches, on a reader thread) and the GPU stage (encoded batch
# -> the engine's input buffer, run by the pipeline's producer thread)


@dataclass
class EncodedBatch(Batch):
    """A batch before decoding: per image its JPEG bytes (nvJPEG) or its RGB pixels (decoded
    by Pillow). ``data`` is a placeholder of shape [batch_size, 0]."""

    sources: list[bytes | np.ndarray] = field(default_factory=list)


class GpuImageBatcher(ImageBatcher):
    """An ImageBatcher whose worker (a thread) only reads files and parses JPEG headers; the
    pipeline's producer runs each batch through the stage of :meth:`open_stage`, which
    decodes and resizes it on the GPU."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["processes"] = False  # reading files and parsing headers: threads suffice
        super().__init__(*args, **kwargs)
        # More readers only contend for the GIL with the two threads that feed the GPU
        # (measured on the GPU machine: 1 reader 2.9k images/s, 2: 2.5k, none: 2.7k)
        self.workers = min(self.workers, READER_THREADS)
        self.nvjpeg: NvJpeg | None = NvJpeg()  # raises CudaUnavailable here, up front

    def _submit(self, pool: Executor, path: Path) -> Any:
        return pool.submit(read_source, path, self.pre)

    def _start_batch(self, allocate: Callable[[], np.ndarray] | None) -> Batch:
        if allocate is not None:
            allocate()  # a pipeline slot (flow control); the GPU stage fills its device input
        return EncodedBatch(np.zeros((self.batch_size, 0), np.float32), [], [])

    def _place(self, batch: Batch, image: bytes | np.ndarray) -> None:
        batch.sources.append(image)

    def _clear_padding(self, batch: Batch) -> None:
        pass  # the kernel writes the padding images' zeros

    def open_stage(self, pipeline: Any) -> GpuStage:
        """The GPU stage of ``pipeline`` (a trt_runner.TrtPipeline) for these batches."""
        return GpuStage(pipeline, self.nvjpeg, self.pre, self.layout, self._skip)

    def close(self) -> None:
        """Frees nvJPEG's handle (its stages must be closed)."""
        if self.nvjpeg is not None:
            self.nvjpeg.close()
            self.nvjpeg = None


def read_source(path: Path, pre: Preprocessor) -> tuple[bytes | np.ndarray, ImageScale]:
    """A worker's job: the file's bytes when nvJPEG takes them, else Pillow's pixels; and the
    image's scale. Raises ImageError (unreadable file) or ValueError (too thin to resize)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(path, str(err)) from err
    size = takes_on_gpu(data)
    if size is not None:
        source: bytes | np.ndarray = data
        height, width = size
    else:
        source = load_image(path, data)
        height, width = source.shape[:2]
    new_height, new_width = resized_size(height, width, pre)
    return source, ImageScale(height, width, new_height, new_width, pre.height, pre.width)


class GpuStage:
    """Per pipeline slot: a device buffer for the decoded photos and a job table; nvJPEG
    decodes into the first, the resize kernel reads both and writes the slot's device input,
    all on the pipeline's copy stream. Created in the runner's thread; :meth:`run` may be
    called from another (the pipeline's producer)."""

    def __init__(self, pipeline: Any, nvjpeg: NvJpeg, pre: Preprocessor, layout: str,
                 skip: Callable[[Path, str], None]) -> None:
        if pipeline.input_dtype != np.float32:
            raise CudaUnavailable(f"--decode nvjpeg needs a float32 image input, the "
                                  f"engine takes {pipeline.input_dtype}")
        self.pipeline, self.nvjpeg, self.pre, self.layout = pipeline, nvjpeg, pre, layout
        self.skip = skip
        self.stream = pipeline.copy_stream
        driver = self.driver = CudaDriver()
        self._module, self._resize_function = driver.load_function(
            compile_ptx(RESIZE_KERNEL, "resize_bilinear.cu"), "resize_bilinear")
        table = pipeline.input_shape[0] * RESIZE_JOB_DTYPE.itemsize
        self._staging = [(0, 0)] * pipeline.depth  # (device address, bytes) per slot
        self._jobs_host = [driver.pinned(table) for _ in range(pipeline.depth)]
        self._jobs_device = [driver.malloc(table) for _ in range(pipeline.depth)]

    def _staging_for(self, slot: int, nbytes: int) -> int:
        pointer, size = self._staging[slot]
        if size < nbytes:  # the slot is idle here: its previous run has been waited for
            if pointer:
                self.driver.free(pointer)
            size = max(nbytes, 2 * size)
            pointer = self.driver.malloc(size)
            self._staging[slot] = (pointer, size)
        return pointer

    def run(self, slot: int, batch: EncodedBatch) -> Batch:
        """Decodes and resizes ``batch`` into the slot's device input (the slot must be idle:
        its last run waited for); returns the batch without the images no decoder could read
        (reported through ``skip``)."""
        self.driver.bind()
        sizes = [(scale.orig_height, scale.orig_width) for scale in batch.scales]
        offsets = np.cumsum([0] + [256 * -(-(3 * h * w) // 256) for h, w in sizes])
        base = self._staging_for(slot, int(offsets[-1]))
        addresses = [base + int(offset) for offset in offsets[:-1]]
        encoded = [i for i, source in enumerate(batch.sources) if isinstance(source, bytes)]
        if encoded:
            try:
                self.nvjpeg.decode_batch(slot, [batch.sources[i] for i in encoded],
                                         [addresses[i] for i in encoded],
                                         [sizes[i][1] for i in encoded], self.stream)
            except NvJpegError as err:
                log.warning("nvJPEG refused a batch (%s); decoding it with Pillow", err)
                return self.run(slot, self._decode_on_cpu(batch))
        for i, source in enumerate(batch.sources):
            if isinstance(source, np.ndarray):
                self.driver.copy_htod_async(addresses[i], np.ascontiguousarray(source),
                                            self.stream)
        self._resize(slot, batch, addresses)
        return batch

    def _decode_on_cpu(self, batch: EncodedBatch) -> EncodedBatch:
        """The batch with its JPEG bytes decoded by Pillow, without those it cannot read."""
        kept = EncodedBatch(batch.data, [], [])
        for path, scale, source in zip(batch.paths, batch.scales, batch.sources, strict=True):
            if isinstance(source, bytes):
                try:
                    source = load_image(path, source)
                except ImageError as err:
                    self.skip(path, err.reason)
                    continue
            kept.paths.append(path)
            kept.scales.append(scale)
            kept.sources.append(source)
        return kept

    def _resize(self, slot: int, batch: EncodedBatch, addresses: list[int]) -> None:
        jobs = self._jobs_host[slot].view(RESIZE_JOB_DTYPE)[: batch.count]
        sizes = np.array([(s.orig_height, s.orig_width, s.resized_height, s.resized_width)
                          for s in batch.scales], np.int32).reshape(-1, 4)
        jobs["src"] = addresses
        jobs["pitch"] = 3 * sizes[:, 1]
        jobs["in_h"], jobs["in_w"], jobs["new_h"], jobs["new_w"] = sizes.T
        jobs["scale_y"] = sizes[:, 0].astype(np.float32) / sizes[:, 2].astype(np.float32)
        jobs["scale_x"] = sizes[:, 1].astype(np.float32) / sizes[:, 3].astype(np.float32)
        self.driver.copy_htod_async(self._jobs_device[slot], self._jobs_host[slot], self.stream)
        size, height, width = self.pipeline.input_shape[0], self.pre.height, self.pre.width
        grid = (-(-width // BLOCK[0]), -(-height // BLOCK[1]), size)
        pad = [ctypes.c_float(v) for v in self.pre.pad_value]
        self.driver.launch(
            self._resize_function, grid, BLOCK, self.stream,
            ctypes.c_void_p(self._jobs_device[slot]), ctypes.c_int(batch.count),
            ctypes.c_void_p(self.pipeline.device_input(slot)), ctypes.c_int(height),
            ctypes.c_int(width), ctypes.c_int(self.layout == "NCHW"), *pad)

    def close(self) -> None:
        """Waits for the stream; frees the buffers and the kernel's module."""
        driver = self.driver
        driver.bind()
        driver.synchronize(self.stream)
        for pointer, _ in self._staging:
            if pointer:
                driver.free(pointer)
        for pointer in self._jobs_device:
            driver.free(pointer)
        for host in self._jobs_host:
            driver.free_pinned(host)
        self._staging, self._jobs_device, self._jobs_host = [], [], []
        driver.unload(self._module)
