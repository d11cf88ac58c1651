"""Writes a few synthetic photos (shapes on textured backgrounds) for the demo when the shared
COCO photos are not beside the checkout."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main(folder: str, count: int = 6, seed: int = 0) -> int:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        height, width = int(rng.integers(360, 640)), int(rng.integers(360, 640))
        noise = rng.normal(128, 30, (height, width, 3)).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(noise)
        draw = ImageDraw.Draw(image)
        for _ in range(4):
            x, y = int(rng.integers(0, width - 80)), int(rng.integers(0, height - 80))
            size = int(rng.integers(40, 160))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([x, y, x + size, y + size], fill=colour)
        image.save(out / f"synthetic_{i:02d}.jpg", quality=92)
    print(f"wrote {count} synthetic images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
