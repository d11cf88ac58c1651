"""Finding and reading image files into RGB arrays (Pillow), with one clear error per bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class ImageError(ValueError):
    """An image file that cannot be read or decoded."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason

    def __reduce__(self) -> tuple:  # raised in a worker process, re-raised here
        return ImageError, (self.path, self.reason)


def load_image(path: str | Path, data: bytes | None = None) -> np.ndarray:
    """Decode an image file (or ``data``, its bytes already read) to HxWx3 RGB uint8.

    Grayscale is replicated, alpha is dropped (not composited), palette and CMYK are converted,
    16-bit grayscale keeps its high byte. EXIF orientation is NOT applied, like TF's
    ``decode_jpeg``/``decode_image`` that the TFOD tools use. JPEG pixels equal TF's
    ``decode_jpeg(dct_method="INTEGER_ACCURATE")``; TF's default (INTEGER_FAST) IDCT differs by
    a few levels. Raises :class:`ImageError` for missing, unreadable, corrupt or truncated files.
    """
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as image:
            image.load()  # decodes fully: truncated files fail here
            return _to_rgb(image)
    except Image.UnidentifiedImageError as err:  # its message names a file object for bytes
        raise ImageError(path, "not an image file (its format is not one Pillow reads)") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(path, str(err) or type(err).__name__) from err


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grayscale PNG
        gray = (np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def find_images(input: str | Path) -> list[Path]:
    """One image file, or the sorted images of a folder (not recursive, any extension case)."""
    path = Path(input)
    accepted = ", ".join(IMAGE_EXTENSIONS)
    if not path.exists():
        raise FileNotFoundError(f"image path {path} does not exist")
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"{path} is not an image file (accepted extensions: {accepted})")
        return [path]
    images = sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not images:
        raise ValueError(f"no images in folder {path} (accepted extensions: {accepted})")
    return images


def images_read_from(path: Path | None) -> list[Path]:
    """The images :func:`find_images` reads from ``path``; none where it would fail (for the
    output checks, which must not report a problem of the input before its own check does)."""
    try:
        return find_images(path) if path is not None else []
    except (OSError, ValueError):
        return []
