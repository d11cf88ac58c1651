"""gpu_decode (infer.py --decode nvjpeg): the routing and the errors on the CPU; on the GPU
machine the resize kernel against image_batcher's resize, nvJPEG's pixels against Pillow's,
and infer.py's folder path with photos of every kind."""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_trt_gpu import TEST_IMAGES, describe, fp32_engine, image_folder, onnx_path  # noqa: F401

import cuda_ctypes
import gpu_decode
import infer
from gpu_decode import (
    RESIZE_JOB_DTYPE,
    RESIZE_KERNEL,
    EncodedBatch,
    takes_on_gpu,
)
from image_batcher import (
    ImageBatcher,
    ImageError,
    ImageScale,
    Preprocessor,
    find_images,
    load_image,
    resized_size,
)
from parity import SCORE_FLOOR, Detections, MatchResult, match_detections

# ---------------------------------------------------------------------------------------------
# CPU


def test_job_table_matches_the_kernel_struct() -> None:
    body = re.search(r"struct ResizeJob \{(.*?)\};", RESIZE_KERNEL, re.S).group(1)
    declared = re.findall(r"(\w+)(?:,|;)", re.sub(r"//[^\n]*", "", body))
    assert declared == list(RESIZE_JOB_DTYPE.names)
    assert RESIZE_JOB_DTYPE.itemsize == 40 and RESIZE_JOB_DTYPE.fields["src"][1] == 0


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
    assert takes_on_gpu(jpeg_bytes(**options)) == expected


def test_files_that_are_not_jpegs_go_to_pillow() -> None:
    whole = jpeg_bytes()
    for data in (b"\x89PNG\r\n not a jpeg", b"\xff\xd8\xff\xe0 not a whole jpeg", whole[:20],
                 b""):
        assert takes_on_gpu(data) is None
    exif = whole[:2] + b"\xff\xe1\x00\x08Exif\x00\x00" + whole[2:]  # a segment to skip
    assert takes_on_gpu(exif) == (30, 40)
    adobe = whole[:2] + b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00" + whole[2:]
    assert takes_on_gpu(adobe) is None  # untransformed RGB: Pillow reads it right
    frame = gpu_decode.jpeg_frame(jpeg_bytes(subsampling=2))
    assert frame.marker == 0xC0 and frame.sampling == [(2, 2), (1, 1), (1, 1)]


def test_reader_keeps_jpeg_bytes_and_decodes_the_rest_once(tmp_path: Path) -> None:
    pre = Preprocessor.keep_aspect_ratio(20, 60)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    Image.new("RGB", (40, 30), (1, 2, 3)).save(tmp_path / "b.png")
    source, scale = gpu_decode.read_source(tmp_path / "a.jpg", pre)
    assert source == jpeg_bytes()
    assert (scale.orig_height, scale.orig_width, scale.resized_height) == (30, 40, 20)
    source, scale = gpu_decode.read_source(tmp_path / "b.png", pre)
    assert source.shape == (30, 40, 3) and (source[0, 0] == (1, 2, 3)).all()
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    with pytest.raises(ImageError, match="c.jpg"):
        gpu_decode.read_source(tmp_path / "c.jpg", pre)


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
        self.copy_stream = backend.stream
        self._device = backend.malloc(4 * math.prod(shape))

    def device_input(self, slot: int) -> int:
        return self._device

    def read(self) -> np.ndarray:
        host = np.full(self.input_shape, np.nan, np.float32)
        self.backend.copy_dtoh_async(host, self._device, self.copy_stream)
        self.backend.synchronize()
        return host


def staged(paths: list[Path], pre: Preprocessor, layout: str, batch_size: int,
           on_gpu: bool) -> np.ndarray:
    """The input GpuStage writes for ``paths`` (decoded by nvJPEG where ``on_gpu`` and it
    takes the file, else by Pillow)."""
    import trt_runner

    backend = trt_runner.make_backend("cuda-python")
    shape = ImageBatcher(paths[0], pre, batch_size, layout).shape
    target = DeviceInput(backend, shape)
    nvjpeg = gpu_decode.NvJpeg()
    batch = EncodedBatch(np.zeros((batch_size, 0), np.float32), [], [])
    for path in paths:
        source, scale = gpu_decode.read_source(path, pre)
        if not on_gpu and isinstance(source, bytes):
            source = load_image(path)
        batch.paths.append(path)
        batch.scales.append(scale)
        batch.sources.append(source)
    if on_gpu:  # what these tests feed nvJPEG it takes
        assert all(isinstance(source, bytes) for source in batch.sources)
    stage = gpu_decode.GpuStage(target, nvjpeg, pre, layout, skip=lambda *_: None)
    try:
        assert stage.run(0, batch).count == len(paths)
        return target.read()
    finally:
        stage.close()
        nvjpeg.close()
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
    import trt_runner

    images = photo_kinds(coco_dir, tmp_path / "images")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = infer.main(["-e", str(fp32_engine), "-i", str(images), "-o",
                           str(tmp_path / "out"), "-t", "0.01", "--decode", "nvjpeg"])
    assert code == 0
    assert str(images / "corrupt.jpg") in err.getvalue()
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(written) == 2 * (TEST_IMAGES + 4) + 1 and "corrupt.txt" not in written

    with trt_runner.TrtRunner(fp32_engine) as runner:
        results = {}
        for gpu_decode_ in (False, True):
            batcher = infer.make_batcher(runner, images, workers=4, gpu_decode=gpu_decode_)
            results[gpu_decode_] = {r.path.name: r for r in
                                    infer.detect_folder_pipelined(runner, batcher)}
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
    from image_batcher import preprocess

    _, scale = preprocess(image, pre)
    assert resized_size(*image.shape[:2], pre) == (scale.resized_height, scale.resized_width)
    assert isinstance(scale, ImageScale)
