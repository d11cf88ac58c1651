"""Pictures of detections: boxes with a label and score on a coloured strip, and side-by-side
panels (e.g. TensorFlow | TensorRT | ground truth). Pillow only; PNG files written atomically."""

from __future__ import annotations

import colorsys
import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tfod_trt.config.labels import label_for
from tfod_trt.files import atomic_write_bytes

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Color = tuple[int, int, int]
PANEL_GAP = 8
PANEL_BACKGROUND: Color = (32, 32, 32)
MASK_OPACITY = 0.45  # how much of a mask's class colour covers the photo


def class_color(index: int) -> Color:
    """A bright colour per class; neighbouring indices get far-apart hues (golden ratio)."""
    hue = (int(index) * 0.6180339887) % 1.0
    return tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.8, 0.95))


def text_color(background: Color) -> Color:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


@lru_cache(maxsize=16)
def load_font(size: int) -> Font:
    """DejaVu Sans when installed, else Pillow's default font (scalable since Pillow 10.1)."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        pass
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: a fixed-size bitmap font
        return ImageFont.load_default()


def label_text(name: str, score: float | None) -> str:
    """A box's label: the class name and the score in whole percent, rounded (0.729: 73%)."""
    return name if score is None else f"{name} {round(100 * score)}%"


def _to_pil(image: np.ndarray) -> Image.Image:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {array.shape} {array.dtype}")
    return Image.fromarray(array)  # HxWx3 uint8: RGB (the mode argument is deprecated)


def annotate(
    image: np.ndarray,
    boxes_xyxy_pixels: np.ndarray,
    scores: np.ndarray | None,
    classes: np.ndarray,
    labels: dict[int, str] | None = None,
) -> np.ndarray:
    """A copy of ``image`` (HxWx3 uint8) with one box, name and score per detection.

    ``scores`` may be None (ground truth: names only). Higher scores are drawn last, on top.
    """
    picture = _to_pil(image)
    boxes = np.asarray(boxes_xyxy_pixels, dtype=np.float64).reshape(-1, 4)
    classes = np.asarray(classes).reshape(-1)
    if len(classes) != len(boxes) or (scores is not None and len(scores) != len(boxes)):
        raise ValueError(
            f"{len(boxes)} boxes, {len(classes)} classes and "
            f"{'no' if scores is None else len(scores)} scores: they must match"
        )
    short_side = min(picture.size)
    line = max(2, round(short_side / 300))
    font = load_font(max(11, round(short_side / 40)))
    draw = ImageDraw.Draw(picture)
    order = np.argsort(scores, kind="stable") if scores is not None else range(len(boxes))
    for i in order:
        color = class_color(classes[i])
        name = label_for(labels or {}, int(classes[i]))
        text = label_text(name, None if scores is None else float(scores[i]))
        x0, y0, x1, y1 = boxes[i]
        draw.rectangle([x0, y0, x1, y1], outline=color, width=line)
        _label_strip(draw, font, text, (x0, y0), color, picture.size)
    return np.asarray(picture)


def _label_strip(
    draw: ImageDraw.ImageDraw, font: Font, text: str, corner: tuple[float, float], color: Color,
    size: tuple[int, int],
) -> None:
    """``text`` on a strip of ``color`` just above the box corner (inside when at the top)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(1, (bottom - top) // 5)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    x = min(max(corner[0], 0), max(size[0] - width, 0))
    y = corner[1] - height if corner[1] >= height else corner[1]
    draw.rectangle([x, y, x + width, y + height], fill=color)
    draw.text((x + pad - left, y + pad - top), text, fill=text_color(color), font=font)


def tint_masks(image: np.ndarray, masks: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """A copy of ``image`` (HxWx3 uint8) with each mask [N,H,W] (bool) tinted in its class's
    colour, the last on top."""
    tinted = np.asarray(image, np.float32).copy()
    for mask, cls in zip(masks, np.asarray(classes).reshape(-1), strict=True):
        color = np.asarray(class_color(int(cls)), np.float32)
        tinted[mask] = (1 - MASK_OPACITY) * tinted[mask] + MASK_OPACITY * color
    return np.round(tinted).astype(np.uint8)


def draw_detections(
    image: np.ndarray,
    boxes_xyxy_pixels: np.ndarray,
    scores: np.ndarray | None,
    classes: np.ndarray,
    labels: dict[int, str] | None,
    out_path: str | Path,
    masks: np.ndarray | None = None,
) -> None:
    """Writes :func:`annotate`'s picture as a PNG of the original image size; ``masks``
    [N,H,W] (bool, Mask R-CNN) are tinted under the boxes, the best score on top."""
    if masks is not None:
        order = np.argsort(scores, kind="stable") if scores is not None else slice(None)
        image = tint_masks(image, masks[order], np.asarray(classes)[order])
    save_png(annotate(image, boxes_xyxy_pixels, scores, classes, labels), out_path)


def save_panels(images: list[np.ndarray], titles: list[str], out_path: str | Path) -> None:
    """Writes the images side by side as one PNG, each under a title bar, top-aligned."""
    if not images or len(images) != len(titles):
        raise ValueError(f"need one title per image: {len(images)} images, {len(titles)} titles")
    panels = [_to_pil(image) for image in images]
    font = load_font(max(14, round(min(min(p.size) for p in panels) / 30)))
    bar = round(font.size * 1.8) if hasattr(font, "size") else 24
    width = sum(p.width for p in panels) + PANEL_GAP * (len(panels) - 1)
    sheet = Image.new("RGB", (width, bar + max(p.height for p in panels)), PANEL_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    x = 0
    for panel, title in zip(panels, titles, strict=True):
        sheet.paste(panel, (x, bar))
        left, top, right, bottom = draw.textbbox((0, 0), title, font=font)
        text_x = x + max(0, (panel.width - (right - left)) // 2) - left
        draw.text((text_x, (bar - (bottom - top)) // 2 - top), title, fill=(255, 255, 255),
                  font=font)
        x += panel.width + PANEL_GAP
    save_png(np.asarray(sheet), out_path)


def save_png(image: np.ndarray, out_path: str | Path) -> None:
    """HxWx3 uint8 -> PNG file, written atomically."""
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, format="PNG")
    atomic_write_bytes(out_path, buffer.getvalue())
