"""image_batcher: TFOD-exact resizing (checked against the real TFOD preprocessor), box mapping,
image loading and batching."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfod_trt.config.preprocessor import Preprocessor
from tfod_trt.io.batcher import ImageBatcher
from tfod_trt.io.images import ImageError, load_image
from tfod_trt.io.processes import decode_processes
from tfod_trt.io.resize import ImageScale, preprocess

TOLERANCE = 1e-3
PHOTOS = 4  # real photos compared against TF


@pytest.fixture(scope="module")
def tfod_preprocessor():
    """object_detection.core.preprocessor, or skip when TF/TFOD are absent."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    pytest.importorskip("tensorflow")
    pytest.importorskip("object_detection")
    from object_detection.core import preprocessor

    return preprocessor


@pytest.fixture(scope="module")
def photos(coco_dir: Path) -> list[Path]:
    return sorted((coco_dir / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def photo_arrays(photos: list[Path]) -> list[np.ndarray]:
    """A few photos of different shapes, decoded with PIL (independent of load_image)."""
    chosen: dict[tuple[int, int], np.ndarray] = {}
    for path in photos:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
        chosen.setdefault(array.shape[:2], array)
        if len(chosen) == PHOTOS:
            break
    assert len(chosen) >= 2, "want photos of several shapes"
    return list(chosen.values())


def synthetic(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def tf_float(image: np.ndarray):
    import tensorflow as tf

    return tf.constant(image.astype(np.float32))


# ---------------------------------------------------------------- TFOD comparison


@pytest.mark.parametrize("height,width", [(300, 300), (320, 320), (640, 640), (200, 300)])
def test_fixed_shape_matches_tfod(tfod_preprocessor, photo_arrays, height, width):
    pre = Preprocessor.fixed_shape(height, width)
    for image in [*photo_arrays, synthetic(37, 501)]:
        expected, shape = tfod_preprocessor.resize_image(
            tf_float(image), new_height=height, new_width=width
        )
        ours, scale = preprocess(image, pre)
        assert ours.dtype == np.float32
        assert ours.shape == tuple(expected.shape) == (height, width, 3)
        assert np.abs(ours - expected.numpy()).max() <= TOLERANCE
        assert (scale.resized_height, scale.resized_width) == tuple(shape.numpy()[:2])


@pytest.mark.parametrize("min_dim,max_dim", [(640, 640), (800, 1333), (512, 512)])
def test_keep_aspect_ratio_matches_tfod(tfod_preprocessor, photo_arrays, min_dim, max_dim):
    pre = Preprocessor.keep_aspect_ratio(min_dim, max_dim)
    # 100x900 and 900x100 are limited by max_dimension, not min_dimension.
    images = [*photo_arrays, synthetic(100, 900), synthetic(900, 100, seed=1), synthetic(64, 64)]
    for image in images:
        expected, true_size = tfod_preprocessor.resize_to_range(
            tf_float(image),
            min_dimension=min_dim,
            max_dimension=max_dim,
            pad_to_max_dimension=True,
        )
        ours, scale = preprocess(image, pre)
        assert ours.shape == tuple(expected.shape) == (max_dim, max_dim, 3)
        assert np.abs(ours - expected.numpy()).max() <= TOLERANCE
        assert (scale.resized_height, scale.resized_width) == tuple(true_size.numpy()[:2])
        assert (scale.orig_height, scale.orig_width) == image.shape[:2]
        assert not ours[scale.resized_height :].any() and not ours[:, scale.resized_width :].any()


def test_keep_aspect_ratio_max_dimension_branch_size():
    # 100x900 to 800:1333: 800/100 = 8 would make the width 7200 > 1333, so the long side
    # becomes 1333 and the short one round(100 * 1333 / 900) = round(148.11) = 148.
    _, scale = preprocess(synthetic(100, 900), Preprocessor.keep_aspect_ratio(800, 1333))
    assert (scale.resized_height, scale.resized_width) == (148, 1333)
    # 480x640 to 800:1333: 640 * 800 / 480 = 1066.67 fits, so the short side becomes 800.
    _, scale = preprocess(synthetic(480, 640), Preprocessor.keep_aspect_ratio(800, 1333))
    assert (scale.resized_height, scale.resized_width) == (800, 1067)


def test_bilinear_hand_computed():
    # 1x2 -> 1x4 with src = dst * 2 / 4: taps at 0, 0.5, 1, 1.5 (clamped to the last pixel).
    image = np.zeros((1, 2, 3), np.uint8)
    image[0, :, 0] = [0, 100]
    out, _ = preprocess(image, Preprocessor.fixed_shape(1, 4))
    np.testing.assert_array_equal(out[0, :, 0], [0, 50, 100, 100])
    assert not out[..., 1:].any()


# ---------------------------------------------------------------- ImageScale


def test_to_pixels_fixed_shape():
    _, scale = preprocess(synthetic(480, 640), Preprocessor.fixed_shape(300, 300))
    assert scale == ImageScale(480, 640, 300, 300, 300, 300)
    boxes = np.array([[0.1, 0.2, 0.5, 0.6], [-0.1, 0.5, 1.2, 1.0]])
    expected = [[128, 48, 384, 240], [320, 0, 640, 480]]
    np.testing.assert_allclose(scale.to_pixels(boxes), expected)


def test_to_pixels_keep_aspect_ratio_with_padding():
    # 300x600 to 512:1024 -> 512x1024 inside a 1024x1024 input; the bottom half is padding.
    _, scale = preprocess(synthetic(300, 600), Preprocessor.keep_aspect_ratio(512, 1024))
    assert scale == ImageScale(300, 600, 512, 1024, 1024, 1024)
    boxes = np.array([[0.25, 0.5, 0.5, 1.0], [0.0, 0.0, 0.9, 0.25]])
    # y: 0.25 * 1024 = 256 input px = 256 * 300 / 512 = 150; 0.5 -> 300; 0.9 -> 540 -> clip 300.
    # x: 0.5 * 1024 = 512 input px = 512 * 600 / 1024 = 300; 0.25 -> 150.
    expected = [[300, 150, 600, 300], [0, 0, 150, 300]]
    np.testing.assert_allclose(scale.to_pixels(boxes), expected)


def test_to_pixels_keep_aspect_ratio_portrait():
    # 800x400 to 640:640 -> 640x320 in a 640x640 input (right half padding).
    _, scale = preprocess(synthetic(800, 400), Preprocessor.keep_aspect_ratio(640, 640))
    assert scale == ImageScale(800, 400, 640, 320, 640, 640)
    # x: 0.25 * 640 = 160 input px = 160 * 400 / 320 = 200; y: 0.5 * 640 = 320 -> 400.
    np.testing.assert_allclose(scale.to_pixels([[0.5, 0.25, 1.0, 0.5]]), [[200, 400, 400, 800]])


# ---------------------------------------------------------------- Preprocessor


def test_preprocessor_strings_and_dicts():
    fixed = Preprocessor.from_string("fixed_shape:200x300")
    assert (fixed.kind, fixed.height, fixed.width) == ("fixed_shape", 200, 300)
    keep = Preprocessor.from_string("keep_aspect_ratio:640:1024")
    assert (keep.min_dimension, keep.max_dimension, keep.height, keep.width) == (
        640,
        1024,
        1024,
        1024,
    )
    for pre in (fixed, keep):
        assert Preprocessor.from_dict(pre.to_dict()) == pre
        assert Preprocessor.from_string(pre.to_string()) == pre
    for bad in ("fixed_shape:300", "fixed_shape:axb", "keep_aspect_ratio:1024:640", "other:1x1"):
        with pytest.raises(ValueError, match="preprocessor|min_dimension"):
            Preprocessor.from_string(bad)
    with pytest.raises(ValueError, match="unknown keys"):
        Preprocessor.from_dict({**fixed.to_dict(), "pad": True})


# ---------------------------------------------------------------- loading


def test_load_image_grayscale_and_rgba(tmp_path):
    gray = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    rgba = synthetic(6, 9)
    rgba = np.dstack([rgba, np.full((6, 9), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")

    loaded = load_image(tmp_path / "gray.png")
    assert loaded.dtype == np.uint8 and loaded.shape == (12, 10, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[..., channel], gray)
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgba[..., :3])


def test_load_image_errors_name_the_file(tmp_path):
    (tmp_path / "x.jpg").write_text("not an image")
    for path in (tmp_path / "x.jpg", tmp_path / "missing.png"):
        with pytest.raises(ImageError, match=path.name) as info:
            load_image(path)
        assert isinstance(info.value, ValueError) and info.value.path == path


# ---------------------------------------------------------------- batching


def copy_photos(photos: list[Path], folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(exist_ok=True)
    for photo, name in zip(photos, names, strict=False):
        shutil.copy(photo, folder / name)
    return [folder / name for name in names]


def test_layouts_padding_and_count(photos, tmp_path):
    copy_photos(photos, tmp_path, [f"{i}.jpg" for i in range(5)])
    pre = Preprocessor.fixed_shape(48, 64)
    nhwc = list(ImageBatcher(tmp_path, pre, batch_size=2, layout="NHWC"))
    nchw = list(ImageBatcher(tmp_path, pre, batch_size=2, layout="NCHW"))
    assert [b.count for b in nhwc] == [b.count for b in nchw] == [2, 2, 1]
    for a, b in zip(nhwc, nchw, strict=True):
        assert a.data.shape == (2, 48, 64, 3) and b.data.shape == (2, 3, 48, 64)
        assert a.data.dtype == b.data.dtype == np.float32
        np.testing.assert_array_equal(a.data.transpose(0, 3, 1, 2), b.data)
        assert a.paths == b.paths and len(a.scales) == a.count
    assert nhwc[-1].data[0].any() and not nhwc[-1].data[1].any()
    batcher = ImageBatcher(tmp_path, pre, batch_size=2, exact_batches=True)
    assert (len(batcher), batcher.num_batches) == (5, 2)
    assert [b.count for b in batcher] == [2, 2]
    assert ImageBatcher(tmp_path, pre, batch_size=2, max_images=3).num_batches == 2


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_order_preserved_with_workers(photos, tmp_path, processes):
    names = [f"{i:02d}.jpg" for i in range(12)]
    paths = copy_photos(photos, tmp_path, names)
    pre = Preprocessor.keep_aspect_ratio(40, 64)
    batches = list(ImageBatcher(tmp_path, pre, batch_size=3, workers=4, processes=processes))
    assert [p for b in batches for p in b.paths] == paths
    for batch in batches:
        for index, path in enumerate(batch.paths):
            with Image.open(path) as image:
                expected, _ = preprocess(np.asarray(image.convert("RGB")), pre)
            np.testing.assert_array_equal(batch.data[index], expected)
    shuffled = ImageBatcher(tmp_path, pre, shuffle=True, max_images=5)
    assert len(shuffled) == 5 and set(shuffled.images) <= set(paths)


def test_processes_that_cannot_start_fall_back_to_threads(photos, tmp_path):
    """A program read from standard input cannot be re-imported by spawned processes: the
    batcher warns once and decodes on threads, with the same batches."""
    copy_photos(photos, tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from image_batcher import ImageBatcher, Preprocessor\n"
        f"batcher = ImageBatcher({str(tmp_path)!r}, Preprocessor.fixed_shape(32, 32), "
        "batch_size=2, workers=2, processes=True)\n"
        "print([b.count for b in batcher], [b.count for b in batcher])\n"
    )
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[2, 1] [2, 1]"
    assert done.stderr.count("decoding on threads instead") == 1


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")
def test_decode_processes_are_all_up_when_returned():
    """decode_processes returns once every process has done its imports: else a folder's
    first batches are all read by the first process while the others still import."""
    pool = decode_processes(5)  # a count no other test asks for: a pool of its own
    assert pool is not None
    processes = list(pool._processes.values())
    assert len(processes) == 5
    for process in processes:  # PIL's C module: mapped once image_batcher is imported
        assert "_imaging" in Path(f"/proc/{process.pid}/maps").read_text(), process.pid


def test_extensions_in_any_case(photos, tmp_path):
    copy_photos(photos, tmp_path, ["a.JPG", "b.Jpeg", "e.txt"])
    with Image.open(photos[2]) as image:
        image.save(tmp_path / "c.Png")
        image.save(tmp_path / "d.BMP")
    (tmp_path / "sub").mkdir()
    shutil.copy(photos[3], tmp_path / "sub" / "f.jpg")  # not recursive
    batcher = ImageBatcher(tmp_path, Preprocessor.fixed_shape(32, 32), batch_size=4)
    expected = [tmp_path / n for n in ("a.JPG", "b.Jpeg", "c.Png", "d.BMP")]
    assert batcher.images == expected
    (batch,) = list(batcher)
    assert batch.count == 4 and batch.paths == expected and not batcher.skipped
    single = ImageBatcher(tmp_path / "c.Png", Preprocessor.fixed_shape(32, 32))
    assert single.images == [tmp_path / "c.Png"]


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_corrupt_images_skipped_and_reported(photos, tmp_path, caplog, processes):
    good = copy_photos(photos, tmp_path, ["a.jpg", "c.jpg", "e.jpg"])
    data = photos[3].read_bytes()
    (tmp_path / "b_truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "d.jpg").write_text("this is not a jpeg\n")
    batcher = ImageBatcher(tmp_path, Preprocessor.fixed_shape(32, 32), batch_size=2, workers=4,
                           processes=processes)
    assert len(batcher) == 5
    with caplog.at_level(logging.WARNING):
        for _ in range(2):  # a second pass reports nothing new
            batches = list(batcher)
            assert [p for b in batches for p in b.paths] == good
            assert [b.count for b in batches] == [2, 1]
    bad = [tmp_path / "b_truncated.jpg", tmp_path / "d.jpg"]
    assert [path for path, _ in batcher.skipped] == bad
    assert all(reason for _, reason in batcher.skipped)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for path, message in zip(bad, warnings, strict=True):
        assert str(path) in message
    assert batcher.num_batches == 2


def test_missing_path_and_empty_folder(tmp_path):
    pre = Preprocessor.fixed_shape(32, 32)
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        ImageBatcher(missing, pre)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"empty_folder.*\.jpg.*\.png") as info:
        ImageBatcher(empty, pre)
    assert str(empty) in str(info.value)
    with pytest.raises(ValueError, match="layout"):
        ImageBatcher(tmp_path / "empty_folder" / "notes.txt", pre, layout="CHW")


def test_batches_fill_supplied_buffers_and_zero_the_padding(photos, tmp_path):
    """batches(allocate): each batch lands in the array allocate() gives (reused buffers, as
    the pipelined infer path does), allocate() runs once per batch, stale data is cleared."""
    for photo in photos[:3]:
        shutil.copy(photo, tmp_path)
    pre = Preprocessor.fixed_shape(24, 32)
    expected = [b.data.copy() for b in ImageBatcher(tmp_path, pre, batch_size=2, layout="NCHW")]
    buffers = [np.full((2, 3, 24, 32), 7.0, np.float32) for _ in range(2)]
    given = []

    def allocate() -> np.ndarray:
        given.append(buffers[len(given) % 2])
        return given[-1]

    batcher = ImageBatcher(tmp_path, pre, batch_size=2, layout="NCHW")
    for index, batch in enumerate(batcher.batches(allocate)):
        assert batch.data is buffers[index % 2]
        np.testing.assert_array_equal(batch.data, expected[index])
    assert len(given) == 2  # no allocation for a batch that never gets an image
    assert not buffers[1][1].any()  # the last batch's padding, 7.0 before
    with pytest.raises(ValueError, match=r"shape \(1, 3, 24, 32\).*\(2, 3, 24, 32\)"):
        next(batcher.batches(lambda: np.zeros((1, 3, 24, 32), np.float32)))
