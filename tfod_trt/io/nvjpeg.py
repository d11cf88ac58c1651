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

Who does what: reader processes (jpeg_reader) put each batch's files into a shared buffer and
parse their headers; the pipeline's producer thread hands each batch to one of DECODERS
threads, which runs nvJPEG (its call returns once the photos are with the hardware decoder)
and enqueues the kernel on the slot's own stream; the pipeline's consumer then enqueues the
engine behind that work, ordered on the GPU by an event: no thread waits for the decoding.

The libraries (libnvjpeg, libnvrtc, libcuda) are loaded with ctypes (cuda_ctypes), from the
CUDA install or pip's nvidia-* wheels; both CUDA back-ends of trt_runner work with it: the
stage makes its own driver calls on the runner's context, on streams of its own.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.cuda_ctypes import CudaDriver, CudaUnavailable, compile_ptx, load_cuda_library
from tfod_trt.io.batcher import Batch, ImageBatcher
from tfod_trt.io.images import ImageError, load_image
from tfod_trt.io.jpeg_reader import HEIGHT, OFFSET, SIZE, WIDTH, PhotoReader, ReadBatch

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# nvJPEG

NVJPEG_BACKEND_DEFAULT, NVJPEG_BACKEND_HARDWARE = 0, 3
NVJPEG_OUTPUT_RGBI = 5
NVJPEG_STATUS = {1: "not initialized", 2: "invalid parameter", 3: "bad JPEG",
                 4: "JPEG not supported", 5: "allocator failure", 6: "execution failed",
                 7: "architecture mismatch", 8: "internal error",
                 9: "implementation not supported", 10: "incomplete bitstream"}

# nvjpegImage_t: up to four planes' pointers, then their pitches; interleaved RGB uses the first
NVJPEG_IMAGE_DTYPE = np.dtype([("channel", "<u8", 4), ("pitch", "<u8", 4)])


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
        lib.nvjpegDecodeBatched.argtypes = [void_p] * 6
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

    def add_states(self, count: int) -> None:
        """Batched-decode states up to ``count``, one per pipeline slot (a state serves one
        thread at a time; the handle is shared)."""
        while len(self._states) < count:
            state = ctypes.c_void_p()
            self._check(self._lib.nvjpegJpegStateCreate(self.handle, ctypes.byref(state)),
                        "nvjpegJpegStateCreate")
            self._states.append(state)
            self._initialized.append(0)

    def decode_batch(self, slot: int, sources: np.ndarray, sizes: np.ndarray,
                     outputs: np.ndarray, widths: np.ndarray, stream: int) -> None:
        """Decodes the JPEGs of ``sizes`` bytes at the host addresses ``sources`` to
        interleaved RGB at the device addresses ``outputs`` (pitch 3 x width) on ``stream``,
        with the slot's state (see :meth:`add_states`). Raises NvJpegError."""
        count, state = len(sources), self._states[slot]
        if self._initialized[slot] != count:
            self._initialized[slot] = 0  # re-initialised after a failure too
            self._check(self._lib.nvjpegDecodeBatchedInitialize(
                self.handle, state, count, 1, NVJPEG_OUTPUT_RGBI), "nvjpegDecodeBatchedInitialize")
        images = np.zeros(count, NVJPEG_IMAGE_DTYPE)
        images["channel"][:, 0] = outputs
        images["pitch"][:, 0] = 3 * widths
        sources, sizes = (np.ascontiguousarray(a, np.uint64) for a in (sources, sizes))
        status = self._lib.nvjpegDecodeBatched(self.handle, state, sources.ctypes.data,
                                               sizes.ctypes.data, images.ctypes.data, stream)
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
# Batches nvJPEG decodes at once: one call of 16 COCO photos did 8-11k photos/s on the H100's
# hardware decoder, two threads 13k (docs/benchmarks.md)
DECODERS = 2


# ---------------------------------------------------------------------------------------------
# The batcher (files -> encoded batches, read by reader processes) and the GPU stage (encoded
# batch -> the engine's input buffer, on decoder threads)


@dataclass
class EncodedBatch(Batch):
    """A batch before decoding: per image a row of ``table`` (jpeg_reader's columns: the
    JPEG's bytes at ``address`` + offset for nvJPEG, or offset -1 and its RGB pixels, decoded
    by Pillow, in ``pixels``). ``data`` is a placeholder of shape [batch_size, 0]; ``release``
    hands the batch's region of the shared buffer back (the GPU stage calls it once the bytes
    are decoded)."""

    table: np.ndarray = field(default_factory=lambda: np.zeros((0, 6), np.int64))
    pixels: dict[int, np.ndarray] = field(default_factory=dict)
    address: int = 0
    release: Callable[[], None] = field(default=lambda: None)


class GpuImageBatcher(ImageBatcher):
    """An ImageBatcher whose workers (processes: :mod:`jpeg_reader`) only read files and parse
    JPEG headers; the pipeline has each batch decoded and resized on the GPU by the stage of
    :meth:`open_stage`. Batches are formed before reading: an unreadable file leaves its
    batch one image short (it is reported and skipped)."""

    # batches decoding: one per decoder thread (two more ready ahead: no faster)
    decoding_ahead = DECODERS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nvjpeg: NvJpeg | None = NvJpeg()  # raises CudaUnavailable here, up front
        self.reader = PhotoReader(self.workers, self.processes)
        self._depth = self.decoding_ahead  # batches the stage may hold (open_stage sets it)

    def open_stage(self, pipeline: Any) -> GpuStage:
        """The GPU stage of ``pipeline`` (a trt_runner.TrtPipeline) for these batches."""
        self._depth = pipeline.depth
        return GpuStage(pipeline, self.nvjpeg, self.pre, self.layout, self._skip)

    def batches(self, allocate: Callable[[], object] | None = None) -> Iterator[Batch]:
        """The :class:`EncodedBatch` es in order; ``allocate()`` (flow control: a pipeline
        slot) is called before each is handed on."""
        size = self.batch_size
        chunks = [self.images[i:i + size] for i in range(0, len(self.images), size)]
        for read in self.reader.read(chunks, self.pre, held=self._depth):
            batch = encoded_batch(read, self.pre, self.batch_size, self._skip)
            if not batch.count:
                batch.release()
                continue
            if allocate is not None:
                allocate()
            yield batch

    def close(self) -> None:
        """Frees nvJPEG's handle and the shared buffer (its stages must be closed)."""
        if self.nvjpeg is not None:
            self.nvjpeg.close()
            self.nvjpeg = None
        self.reader.close()


def encoded_batch(read: ReadBatch, pre: Preprocessor, batch_size: int,
                  skip: Callable[[Path, str], None]) -> EncodedBatch:
    """The batch a reader's ReadBatch makes, without the files it could not read (reported
    through ``skip``)."""
    result = read.result
    for row, reason in result.errors.items():
        skip(read.paths[row], reason)
    rows = [row for row in range(len(read.paths)) if row not in result.errors]
    return EncodedBatch(
        np.zeros((batch_size, 0), np.float32), [read.paths[r] for r in rows],
        [result.scale(row, pre) for row in rows], result.table[rows],
        {new: result.pixels[row] for new, row in enumerate(rows) if row in result.pixels},
        read.address, read.release)


def decoded_on_cpu(batch: EncodedBatch, skip: Callable[[Path, str], None]) -> EncodedBatch:
    """``batch`` with its JPEG bytes decoded by Pillow (what nvJPEG refused), without those
    Pillow cannot read either (reported through ``skip``)."""
    rows, pixels = [], {}
    for row, (offset, size) in enumerate(batch.table[:, OFFSET:SIZE + 1].tolist()):
        path = batch.paths[row]
        try:
            pixels[len(rows)] = batch.pixels.get(row) if offset < 0 else load_image(
                path, ctypes.string_at(batch.address + offset, size))
        except ImageError as err:
            skip(path, err.reason)
            continue
        rows.append(row)
    table = batch.table[rows]
    table[:, OFFSET] = -1
    return EncodedBatch(batch.data, [batch.paths[r] for r in rows],
                        [batch.scales[r] for r in rows], table, pixels)


class GpuStage:
    """Per pipeline slot: a stream, a device buffer for the decoded photos and a job table;
    nvJPEG decodes into the first, the resize kernel reads both and writes the slot's device
    input. :meth:`start` runs a batch on one of DECODERS threads (ctypes calls release the GIL:
    two batches decode at once); :meth:`order_engine` makes the engine wait for it on the GPU,
    not on the host. Created in the runner's thread."""

    def __init__(self, pipeline: Any, nvjpeg: NvJpeg, pre: Preprocessor, layout: str,
                 skip: Callable[[Path, str], None]) -> None:
        if pipeline.input_dtype != np.float32:
            raise CudaUnavailable(f"--decode nvjpeg needs a float32 image input, the "
                                  f"engine takes {pipeline.input_dtype}")
        self.pipeline, self.nvjpeg, self.pre, self.layout = pipeline, nvjpeg, pre, layout
        self.skip = skip
        driver = self.driver = CudaDriver()
        self._module, self._resize_function = driver.load_function(
            compile_ptx(RESIZE_KERNEL, "resize_bilinear.cu"), "resize_bilinear")
        depth = pipeline.depth
        nvjpeg.add_states(depth)
        table = pipeline.input_shape[0] * RESIZE_JOB_DTYPE.itemsize
        self._streams = [driver.create_stream() for _ in range(depth)]
        self._staging = [(0, 0)] * depth  # (device address, bytes) per slot
        self._jobs_host = [driver.pinned(table) for _ in range(depth)]
        self._jobs_device = [driver.malloc(table) for _ in range(depth)]
        self._written = [driver.create_event() for _ in range(depth)]
        self._held: list[EncodedBatch | None] = [None] * depth  # bytes nvJPEG may still read
        # the resize kernel's arguments per slot, made once: only the image count changes
        self._grid = (-(-pre.width // BLOCK[0]), -(-pre.height // BLOCK[1]),
                      pipeline.input_shape[0])
        self._counts = [ctypes.c_int(0) for _ in range(depth)]
        self._arguments = [
            (ctypes.c_void_p(self._jobs_device[slot]), self._counts[slot],
             ctypes.c_void_p(pipeline.device_input(slot)), ctypes.c_int(pre.height),
             ctypes.c_int(pre.width), ctypes.c_int(layout == "NCHW"),
             *(ctypes.c_float(v) for v in pre.pad_value))
            for slot in range(depth)]
        self._parameters = [driver.kernel_params(*args) for args in self._arguments]
        self._decoders = ThreadPoolExecutor(DECODERS, thread_name_prefix="nvjpeg")

    def start(self, slot: int, batch: EncodedBatch) -> Future[Batch]:
        """:meth:`run` on a decoder thread."""
        return self._decoders.submit(self.run, slot, batch)

    def run(self, slot: int, batch: EncodedBatch) -> Batch:
        """Enqueues the decoding and resizing of ``batch`` into the slot's device input (the
        slot must be idle: its last inference waited for) and returns the batch without the
        images no decoder could read (reported through ``skip``). The GPU may still be at
        work: :meth:`order_engine` before the inference. The batch's bytes are released when
        the slot is next run, or at :meth:`close`."""
        self.driver.bind()
        self._release(slot)  # its last batch: decoded, since the slot's inference is over
        self._held[slot] = batch
        batch = self._write(slot, batch)
        self.driver.record_event(self._written[slot], self._streams[slot])
        return batch

    def order_engine(self, slot: int) -> None:
        """Makes the inferences enqueued from now on wait, on the GPU, until the slot's
        input is written (call it from the thread that enqueues them, before the slot's)."""
        self.driver.stream_wait_event(self.pipeline.stream, self._written[slot])

    def _release(self, slot: int) -> None:
        held, self._held[slot] = self._held[slot], None
        if held is not None:
            held.release()

    def _staging_for(self, slot: int, nbytes: int) -> int:
        pointer, size = self._staging[slot]
        if size < nbytes:  # the slot is idle here: its previous run has been waited for
            if pointer:
                self.driver.free(pointer)
            size = max(nbytes, 2 * size)
            pointer = self.driver.malloc(size)
            self._staging[slot] = (pointer, size)
        return pointer

    def _write(self, slot: int, batch: EncodedBatch) -> EncodedBatch:
        stream, table = self._streams[slot], batch.table
        heights, widths = table[:, HEIGHT], table[:, WIDTH]
        nbytes = -(-(3 * heights * widths) // 256) * 256
        base = self._staging_for(slot, int(nbytes.sum()))
        addresses = (base + np.cumsum(nbytes) - nbytes).astype(np.uint64)
        on_gpu = table[:, OFFSET] >= 0
        if on_gpu.any():
            try:
                self.nvjpeg.decode_batch(slot, batch.address + table[on_gpu, OFFSET],
                                         table[on_gpu, SIZE], addresses[on_gpu],
                                         widths[on_gpu], stream)
            except NvJpegError as err:
                log.warning("nvJPEG refused a batch (%s); decoding it with Pillow", err)
                return self._write(slot, decoded_on_cpu(batch, self.skip))
        for row, pixels in batch.pixels.items():
            self.driver.upload(int(addresses[row]), np.ascontiguousarray(pixels), stream)
        self._resize(slot, batch, addresses)
        return batch

    def _resize(self, slot: int, batch: EncodedBatch, addresses: np.ndarray) -> None:
        jobs = self._jobs_host[slot].view(RESIZE_JOB_DTYPE)[: batch.count]
        sizes = batch.table[:, HEIGHT:].astype(np.int32)
        jobs["src"] = addresses
        jobs["pitch"] = 3 * sizes[:, 1]
        jobs["in_h"], jobs["in_w"], jobs["new_h"], jobs["new_w"] = sizes.T
        jobs["scale_y"] = sizes[:, 0].astype(np.float32) / sizes[:, 2].astype(np.float32)
        jobs["scale_x"] = sizes[:, 1].astype(np.float32) / sizes[:, 3].astype(np.float32)
        stream = self._streams[slot]
        self.driver.copy_htod_async(self._jobs_device[slot], self._jobs_host[slot], stream)
        self._counts[slot].value = batch.count
        self.driver.launch(self._resize_function, self._grid, BLOCK, stream,
                           self._parameters[slot])

    def close(self) -> None:
        """Waits for the decoder threads and the streams; releases the batches' bytes, frees
        the buffers and the kernel's module."""
        self._decoders.shutdown(wait=True, cancel_futures=True)
        driver = self.driver
        driver.bind()
        for stream in self._streams:
            driver.synchronize(stream)
            driver.destroy_stream(stream)
        for slot, event in enumerate(self._written):
            self._release(slot)
            driver.destroy_event(event)
        for pointer, _ in self._staging:
            if pointer:
                driver.free(pointer)
        for pointer in self._jobs_device:
            driver.free(pointer)
        for host in self._jobs_host:
            driver.free_pinned(host)
        self._streams, self._staging, self._jobs_device, self._jobs_host = [], [], [], []
        self._written = []
        driver.unload(self._module)
