"""gpu_decode (infer.py --decode nvjpeg): the routing and the errors on the CPU; on the GPU
machine the resize kernel against image_batcher's resize, nvJPEG's pixels against Pillow's,
and infer.py's folder path with photos of every kind."""

from __future__ import annotations

import contextlib
import ctypes
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_trt_gpu import TEST_IMAGES, describe, fp32_engine, image_folder, onnx_path  # noqa: F401

import infer
from tfod_trt import cuda_ctypes
from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.detect.inputs import make_batcher
from tfod_trt.detect.pipeline import detect_folder_pipelined
from tfod_trt.detections import Detections
from tfod_trt.evaluate.matching import SCORE_FLOOR, MatchResult, match_detections
from tfod_trt.io import jpeg_reader
from tfod_trt.io import nvjpeg as gpu_decode
from tfod_trt.io.batcher import ImageBatcher
from tfod_trt.io.images import find_images, load_image
from tfod_trt.io.nvjpeg import RESIZE_JOB_DTYPE, RESIZE_KERNEL
from tfod_trt.io.resize import ImageScale, resized_size

# ---------------------------------------------------------------------------------------------
# CPU


def test_job_table_matches_the_kernel_struct() -> None:
    body = re.search(r"struct ResizeJob \{(.*?)\};", RESIZE_KERNEL, re.S).group(1)
    declared = re.findall(r"(\w+)(?:,|;)", re.sub(r"//[^\n]*", "", body))
    assert declared == list(RESIZE_JOB_DTYPE.names)
    assert RESIZE_JOB_DTYPE.itemsize == 40 and RESIZE_JOB_DTYPE.fields["src"][1] == 0


def test_image_table_matches_nvjpeg_image_t() -> None:
    """nvjpegImage_t: unsigned char* channel[4], then size_t pitch[4] (nvjpeg.h)."""
    layout = gpu_decode.NVJPEG_IMAGE_DTYPE
    assert layout.itemsize == 64
    assert layout.fields["channel"][1] == 0 and layout.fields["pitch"][1] == 32


def jpeg_bytes(**save_options) -> bytes:
    buffer = io.BytesIO()
    mode = save_options.pop("mode", "RGB")
    image = Image.new("RGB", (40, 30), (200, 80, 20)).convert(mode)
    image.save(buffer, "JPEG", **save_options)
    return buffer.getvalue()


@pytest.mark.parametrize(("options", "expected"), [
    ({}, (30, 40)),
    ({"subsampling": 0}, (30, 40)),  # 4:4:4
    ({"subsampling": 1}, (30, 40)),  # 4:2:2
    ({"progressive": True}, None),
    ({"mode": "L"}, None),
    ({"mode": "CMYK"}, None),
], ids=str)
def test_which_jpegs_nvjpeg_takes(options: dict, expected: tuple | None) -> None:
    assert jpeg_reader.takes_on_gpu(jpeg_bytes(**options)) == expected


def test_files_that_are_not_jpegs_go_to_pillow() -> None:
    whole = jpeg_bytes()
    for data in (b"\x89PNG\r\n not a jpeg", b"\xff\xd8\xff\xe0 not a whole jpeg", whole[:20],
                 b""):
        assert jpeg_reader.takes_on_gpu(data) is None
    exif = whole[:2] + b"\xff\xe1\x00\x08Exif\x00\x00" + whole[2:]  # a segment to skip
    assert jpeg_reader.takes_on_gpu(exif) == (30, 40)
    adobe = whole[:2] + b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00" + whole[2:]
    assert jpeg_reader.takes_on_gpu(adobe) is None  # untransformed RGB: Pillow reads it right
    frame = jpeg_reader.jpeg_frame(jpeg_bytes(subsampling=2))
    assert frame.marker == 0xC0 and frame.sampling == [(2, 2), (1, 1), (1, 1)]


def bytes_at(address: int, result: jpeg_reader.ReadResult, row: int) -> bytes:
    offset, size = result.table[row, jpeg_reader.OFFSET:jpeg_reader.SIZE + 1]
    return ctypes.string_at(address + int(offset), int(size))


def test_reader_puts_jpegs_in_the_region_and_decodes_the_rest(tmp_path: Path) -> None:
    pre = Preprocessor.keep_aspect_ratio(20, 60)
    jpeg = jpeg_bytes()
    (tmp_path / "a.jpg").write_bytes(jpeg)
    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "b.png")
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    (tmp_path / "d.jpg").write_bytes(jpeg)
    (tmp_path / "e.jpg").write_bytes(jpeg_bytes(progressive=True))
    names = ["a.jpg", "b.png", "c.jpg", "d.jpg", "e.jpg", "missing.jpg"]
    buffer = jpeg_reader.SharedBuffer(2, 1 << 20)
    try:  # region 1 of 2
        read = jpeg_reader.read_batch(buffer.path, buffer.region_size, buffer.region_size,
                                      [str(tmp_path / n) for n in names], pre)
        address = buffer.region_address(1)
        offsets = read.table[:, jpeg_reader.OFFSET].tolist()
        aligned = -(-len(jpeg) // jpeg_reader.ALIGNMENT) * jpeg_reader.ALIGNMENT
        assert offsets[:2] == [0, -1] and offsets[3:] == [aligned, -1, -1]
        assert bytes_at(address, read, 0) == jpeg and bytes_at(address, read, 3) == jpeg
        assert read.table[0, jpeg_reader.HEIGHT:].tolist() == [30, 40, 20, 27]
        assert read.scale(0, pre) == ImageScale(30, 40, 20, 27, pre.height, pre.width)
        assert sorted(read.pixels) == [1, 4]  # the PNG and the progressive JPEG: Pillow
        assert read.pixels[1].shape == (30, 40, 3) and (read.pixels[1][0, 0] == (1, 2, 3)).all()
        assert read.table[4, jpeg_reader.HEIGHT:jpeg_reader.WIDTH + 1].tolist() == [30, 40]
        assert sorted(read.errors) == [2, 5] and "No such file" in read.errors[5]
        assert ctypes.string_at(buffer.region_address(0), 4) == bytes(4)  # region 0 untouched
    finally:
        buffer.close()
    assert not Path(buffer.path).exists()


def test_reader_decodes_what_does_not_fit_its_region_with_pillow(tmp_path: Path) -> None:
    jpeg = jpeg_bytes()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(jpeg)
    buffer = jpeg_reader.SharedBuffer(1, len(jpeg) + 10)
    try:
        read = jpeg_reader.read_batch(buffer.path, 0, buffer.region_size,
                                      [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")],
                                      Preprocessor.fixed_shape(8, 8))
        assert read.table[:, jpeg_reader.OFFSET].tolist() == [0, -1]
        assert bytes_at(buffer.address, read, 0) == jpeg
        assert list(read.pixels) == [1] and read.pixels[1].shape == (30, 40, 3)
    finally:
        buffer.close()


def test_regions_fit_a_batch_of_the_largest_files_seen(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.jpg" for i in range(10)]
    for i, path in enumerate(paths):
        path.write_bytes(bytes(100_000 + 30_000 * i))
    batch = 4 * (100_000 + 30_000 * 9 + jpeg_reader.ALIGNMENT)  # the largest file's, aligned
    size = jpeg_reader.region_size_for([*paths, tmp_path / "gone.jpg"], 4, regions=3)
    assert size % jpeg_reader.ALIGNMENT == 0 and batch - jpeg_reader.ALIGNMENT < size <= batch
    assert jpeg_reader.region_size_for(paths[:1], 4, regions=3) == 1 << 20  # the least
    capped = jpeg_reader.region_size_for(paths, 4, regions=1500)  # all within the maximum
    assert 1 << 20 < capped < size and capped * 1500 <= jpeg_reader.MAX_BUFFER_BYTES


def test_reader_jobs_start_small_then_take_several_batches() -> None:
    """Every batch is in one job, in order; jobs have FIRST_JOBS' sizes, then BATCHES_PER_JOB
    (the last may be shorter)."""
    for batches in (0, 1, 2, 3, 13, 30):
        bounds = list(jpeg_reader.job_bounds(batches))
        assert [b for start, end in bounds for b in range(start, end)] == list(range(batches))
        planned = [*jpeg_reader.FIRST_JOBS, *[jpeg_reader.BATCHES_PER_JOB] * batches]
        *whole, last = [end - start for start, end in bounds] or [None]
        assert whole == planned[:len(whole)]
        assert last is None if batches == 0 else 0 < last <= planned[len(whole)]


@pytest.mark.parametrize("processes", [True, False], ids=["processes", "thread"])
def test_photo_reader_reads_ahead_in_order_and_reuses_its_regions(
        tmp_path: Path, processes: bool) -> None:
    paths = []
    for i in range(33):
        paths.append(tmp_path / f"{i:02d}.jpg")
        Image.new("RGB", (40 + i, 30), (10 * i, 80, 20)).save(paths[-1], quality=90)
    paths[5].write_bytes(b"not an image")
    chunks = [paths[i:i + 2] for i in range(0, len(paths), 2)]  # 17 batches, the last of 1
    reader = jpeg_reader.PhotoReader(workers=2, processes=processes)
    try:
        seen = []
        for batch in reader.read(chunks, Preprocessor.fixed_shape(8, 8), held=1):
            seen.append(batch.paths)
            for row, path in enumerate(batch.paths):
                if path == paths[5]:
                    assert list(batch.result.errors) == [row]
                else:
                    assert bytes_at(batch.address, batch.result, row) == path.read_bytes()
                    assert batch.result.table[row, jpeg_reader.WIDTH] == 40 + paths.index(path)
            batch.release()
        assert seen == chunks
        # regions came back and were used again
        assert jpeg_reader.READ_AHEAD + 2 == reader._buffer.regions < len(chunks)
        path = Path(reader._buffer.path)
    finally:
        reader.close()
    assert not path.exists()


def test_batches_leave_out_unreadable_files_and_pillow_redoes_a_refused_batch(
        tmp_path: Path) -> None:
    """What the GPU path does on the CPU: a reader's batch without the files it could not
    read (reported), the Pillow-decoded pixels renumbered; and, as when nvJPEG refuses a
    batch, its JPEG bytes decoded by Pillow, without a JPEG whose header passes but whose
    data is cut (reported)."""
    pre = Preprocessor.fixed_shape(8, 8)
    whole = jpeg_bytes()
    (tmp_path / "a.jpg").write_bytes(whole)
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "c.png")
    (tmp_path / "d.jpg").write_bytes(whole[:len(whole) // 2])  # header fine, data cut
    (tmp_path / "e.jpg").write_bytes(jpeg_bytes(subsampling=0))
    paths = find_images(tmp_path)
    reader = jpeg_reader.PhotoReader(workers=1, processes=False)
    skipped: list[str] = []
    released = []
    try:
        (read,) = reader.read([paths], pre, held=1)
        read.release = lambda: released.append(True)
        batch = gpu_decode.encoded_batch(read, pre, 8, lambda path, _: skipped.append(path.name))
        assert skipped == ["b.jpg"]
        assert [p.name for p in batch.paths] == ["a.jpg", "c.png", "d.jpg", "e.jpg"]
        assert batch.table[:, jpeg_reader.OFFSET].tolist()[1] == -1 and list(batch.pixels) == [1]
        assert (batch.table[[0, 2, 3], jpeg_reader.OFFSET] >= 0).all()
        assert batch.data.shape == (8, 0) and len(batch.scales) == 4
        batch.release()
        assert released == [True]

        redone = gpu_decode.decoded_on_cpu(batch, lambda path, _: skipped.append(path.name))
        assert skipped == ["b.jpg", "d.jpg"]
        assert [p.name for p in redone.paths] == ["a.jpg", "c.png", "e.jpg"]
        assert (redone.table[:, jpeg_reader.OFFSET] == -1).all()
        assert sorted(redone.pixels) == [0, 1, 2]
        for row, path in enumerate(redone.paths):
            assert np.array_equal(redone.pixels[row], load_image(path))
            assert redone.scales[row] == batch.scales[batch.paths.index(path)]
    finally:
        reader.close()


def test_a_missing_library_is_one_clear_error() -> None:
    with pytest.raises(cuda_ctypes.CudaUnavailable,
                       match=r"libnot_a_cuda_lib\.so not found.*--decode"):
        cuda_ctypes.load_cuda_library("not_a_cuda_lib")


def test_infer_refuses_nvjpeg_where_it_cannot_run(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"")
    for extra in (["--onnx", str(model)], ["--serial", "-e", str(model)]):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = infer.main(["-i", str(image), "-o", str(tmp_path / "out"), "--decode",
                               "nvjpeg", *extra])
        assert code == 2 and "--decode nvjpeg runs on the pipelined path" in err.getvalue()


# ---------------------------------------------------------------------------------------------
# GPU


class DeviceInput:
    """What GpuStage uses of a trt_runner.TrtPipeline, over one plain device buffer: the
    kernel's output can be read back without an engine."""

    depth = 1
    input_dtype = np.dtype(np.float32)

    def __init__(self, backend, shape: tuple[int, ...]) -> None:
        self.backend, self.input_shape = backend, shape
        self._device = backend.malloc(4 * math.prod(shape))

    @property
    def stream(self) -> int:
        return self.backend.stream

    def device_input(self, slot: int) -> int:
        return self._device

    def read(self) -> np.ndarray:
        """The buffer, copied on ``stream`` (after what the stage ordered before it)."""
        host = np.full(self.input_shape, np.nan, np.float32)
        self.backend.copy_dtoh_async(host, self._device)
        self.backend.synchronize()
        return host


def staged(paths: list[Path], pre: Preprocessor, layout: str, batch_size: int,
           on_gpu: bool) -> np.ndarray:
    """The input GpuStage writes for ``paths`` (decoded by nvJPEG where ``on_gpu`` and it
    takes the file, else by Pillow)."""
    from tfod_trt.trt.backends import make_backend

    backend = make_backend("cuda-python")
    shape = ImageBatcher(paths[0], pre, batch_size, layout).shape
    target = DeviceInput(backend, shape)
    batcher = gpu_decode.GpuImageBatcher(paths[0], pre, batch_size, layout, processes=False)
    batcher.images = paths
    (batch,) = batcher.batches()
    if on_gpu:  # what these tests feed nvJPEG it takes
        assert (batch.table[:, jpeg_reader.OFFSET] >= 0).all()
    else:
        batch.table[:, jpeg_reader.OFFSET] = -1
        batch.pixels = {row: load_image(path) for row, path in enumerate(paths)}
    stage = gpu_decode.GpuStage(target, batcher.nvjpeg, pre, layout, skip=lambda *_: None)
    try:
        assert stage.run(0, batch).count == len(paths)
        stage.order_engine(0)  # the read waits on the GPU for the stage, as an inference would
        return target.read()
    finally:
        stage.close()
        batcher.close()
        backend.close()


def cpu_input(paths: list[Path], pre: Preprocessor, layout: str, batch_size: int) -> np.ndarray:
    folder = paths[0].parent
    (batch,) = ImageBatcher(folder, pre, batch_size, layout, max_images=len(paths))
    return batch.data


RESIZERS = [
    (Preprocessor.fixed_shape(300, 300), "NHWC"),
    (Preprocessor.fixed_shape(320, 256), "NCHW"),
    (Preprocessor.keep_aspect_ratio(400, 512).with_pad_value((127.5, 0.0, 255.0)), "NHWC"),
]


@pytest.mark.gpu
@pytest.mark.parametrize(("pre", "layout"), RESIZERS, ids=lambda v: str(v)[:40])
def test_resize_kernel_equals_the_cpu_resize_bit_for_bit(
        gpu: None, coco_dir: Path, pre: Preprocessor, layout: str) -> None:
    paths = find_images(coco_dir / "images")[:3]  # batch of 4: one padding image
    expected = cpu_input(paths, pre, layout, 4)
    found = staged(paths, pre, layout, 4, on_gpu=False)
    assert np.array_equal(found, expected), np.abs(found - expected).max()


@pytest.mark.gpu
def test_nvjpeg_pixels_against_pillows(gpu: None, coco_dir: Path, tmp_path: Path) -> None:
    """The COCO photos (4:4:4) decode to Pillow's pixels exactly; JPEGs with 4:2:0 chroma
    (Pillow's own default) differ by nvJPEG's chroma upsampling: measured and bounded."""
    pre = Preprocessor.fixed_shape(300, 300)
    photos = find_images(coco_dir / "images")[:16]
    found = staged(photos, pre, "NHWC", 16, on_gpu=True)
    assert np.array_equal(found, cpu_input(photos, pre, "NHWC", 16))
    folder = tmp_path / "yuv420"
    folder.mkdir()
    for photo in photos:
        Image.open(photo).save(folder / photo.name, quality=90, subsampling=2)
    reencoded = find_images(folder)
    diff = np.abs(staged(reencoded, pre, "NHWC", 16, on_gpu=True)
                  - cpu_input(reencoded, pre, "NHWC", 16))
    print(f"4:2:0 JPEGs, nvJPEG vs Pillow after the resize: mean |diff| {diff.mean():.3f}, "
          f"p99 {np.percentile(diff, 99):.2f}, max {diff.max():.1f} levels")
    assert diff.mean() < 1.0 and np.percentile(diff, 99) < 8


def photo_kinds(coco_dir: Path, folder: Path) -> Path:
    """The test photos plus one of each kind nvJPEG leaves to Pillow, and a corrupt file."""
    folder = image_folder(coco_dir, folder, slice(0, TEST_IMAGES))
    source = Image.open(find_images(coco_dir / "images")[TEST_IMAGES])
    source.save(folder / "kind_png.png")
    source.save(folder / "kind_progressive.jpg", progressive=True, quality=90)
    source.convert("L").save(folder / "kind_gray.jpg", quality=90)
    source.convert("CMYK").save(folder / "kind_cmyk.jpg", quality=90)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    return folder


@pytest.mark.gpu
def test_infer_with_nvjpeg_matches_the_cpu_decode(
        fp32_engine: Path, coco_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """infer.py --decode nvjpeg on a folder with photos of every kind: the corrupt one is
    reported and skipped, the others get their files; the files Pillow decodes give the CPU
    path's detections exactly, nvJPEG's photos nearly."""
    from tfod_trt.trt.runner import TrtRunner

    images = photo_kinds(coco_dir, tmp_path / "images")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = infer.main(["-e", str(fp32_engine), "-i", str(images), "-o",
                           str(tmp_path / "out"), "-t", "0.01", "--decode", "nvjpeg"])
    assert code == 0
    assert str(images / "corrupt.jpg") in err.getvalue()
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(written) == 2 * (TEST_IMAGES + 4) + 2 and "corrupt.txt" not in written

    with TrtRunner(fp32_engine) as runner:
        results = {}
        for gpu_decode_ in (False, True):
            batcher = make_batcher(runner, images, workers=4, gpu_decode=gpu_decode_)
            results[gpu_decode_] = {r.path.name: r for r in
                                    detect_folder_pipelined(runner, batcher)}
            assert [p.name for p, _ in batcher.skipped] == ["corrupt.jpg"]
    cpu, gpu = results[False], results[True]
    assert cpu.keys() == gpu.keys()
    exact, near = MatchResult(), MatchResult()
    for name, mine in gpu.items():
        target, min_iou, max_score_diff = ((exact, 0.99, 1e-3) if name.startswith("kind_")
                                           else (near, 0.9, 0.05))
        theirs = cpu[name]
        target.add(match_detections(
            Detections(theirs.boxes, theirs.scores, theirs.classes).above(SCORE_FLOOR),
            Detections(mine.boxes, mine.scores, mine.classes).above(SCORE_FLOOR - max_score_diff),
            min_iou, max_score_diff))
    print(f"Pillow-decoded files: {describe(exact)}; nvJPEG photos: {describe(near)}")
    assert exact.rate == 1.0
    assert near.rate >= 0.9


def test_resized_size_is_what_preprocess_makes(coco_dir: Path) -> None:
    pre = Preprocessor.keep_aspect_ratio(400, 512)
    image = load_image(find_images(coco_dir / "images")[0])
    from tfod_trt.io.resize import preprocess

    _, scale = preprocess(image, pre)
    assert resized_size(*image.shape[:2], pre) == (scale.resized_height, scale.resized_width)
    assert isinstance(scale, ImageScale)
