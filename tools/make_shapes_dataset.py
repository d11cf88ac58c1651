"""Deterministic synthetic detection data: coloured shapes on textured backgrounds, with COCO
annotations and a TFOD label map, so that a model can be trained and evaluated here.

    python tools/make_shapes_dataset.py --output data/shapes_val --count 200 --seed 1000
    python tools/make_shapes_dataset.py --split val      # the same: -> .cache/shapes/val
    python tools/make_shapes_dataset.py --split train    # 3000 images, seed 0

DIR receives `images/NNNNNN.jpg`, `annotations.json` (COCO instances, category ids 1..N) and
`label_map.pbtxt` (ids 1..N, what labels.py and eval_coco.py read). Image i is drawn from
`numpy.random.default_rng([seed, i])` alone, so the same seed gives the same bytes, and a set of
N images is a prefix of a set of N + K images.

Classes (`CLASSES`) are shapes, each with its own base colour (jittered per object). Objects
span 8% to 60% of the image side, may be rotated and stretched, and are drawn in order, so later
objects occlude earlier ones. Occlusion rule: a new object is only placed if every object below
it keeps at least `MIN_VISIBLE` of its pixels visible (otherwise another placement is tried,
then the object is left out), so every drawn object is annotated and none is hidden to a sliver.
An annotation's `bbox` is the box of the object's *visible* pixels (what a detector can see),
`area` their count, and `visible_fraction` the share of the object's own pixels left visible.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
# name -> base RGB colour
CLASSES: dict[str, tuple[int, int, int]] = {
    "circle": (220, 40, 40),
    "square": (40, 190, 60),
    "triangle": (40, 80, 230),
    "star": (240, 210, 30),
    "cross": (200, 50, 210),
}
SPLITS = {  # name -> (count, seed)
    "train": (3000, 0),
    "val": (200, 1000),
}
MIN_VISIBLE = 0.6
SIZE_RANGE = (0.08, 0.6)
MAX_OBJECTS = 6
PLACEMENT_TRIES = 20
JPEG_QUALITY = 92


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random texture (smooth noise, gradient, stripes or checks) in muted colours, HxWx3
    float32 in 0..255."""
    def colour() -> np.ndarray:
        c = rng.uniform(30, 225, 3)
        return 0.5 * c + 0.5 * c.mean()  # halve the saturation: shapes stay the vivid things

    kind = rng.integers(4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 0:  # smooth noise
        cells = int(rng.integers(3, 12))
        coarse = rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32)
        img = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize(
            (width, height), Image.BICUBIC), np.float32) / 255
        a, b = colour(), colour()
        return a + (b - a) * img
    a, b = colour(), colour()
    angle = rng.uniform(0, math.pi)
    proj = xx * math.cos(angle) + yy * math.sin(angle)
    if kind == 1:  # gradient
        t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
    elif kind == 2:  # stripes
        period = rng.uniform(6, 40)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * proj / period)
    else:  # checks
        cell = rng.uniform(8, 40)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    return a + (b - a) * t[..., None]


def _polygon(name: str, rng: np.random.Generator) -> list[tuple[float, float]] | None:
    """Unit-size outline (about -1..1) of a shape, or None for the circle (an ellipse)."""
    if name == "circle":
        return None
    if name == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
    elif name == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in np.deg2rad([-90, 30, 150])]
    elif name == "star":
        inner = rng.uniform(0.38, 0.5)
        pts = [((1 if k % 2 == 0 else inner) * math.cos(math.pi * k / 5 - math.pi / 2),
                (1 if k % 2 == 0 else inner) * math.sin(math.pi * k / 5 - math.pi / 2))
               for k in range(10)]
    elif name == "cross":
        t = rng.uniform(0.3, 0.42)
        pts = [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t),
               (-1, t), (-1, -t), (-t, -t)]
    else:
        raise ValueError(f"unknown shape {name!r}")
    return [(float(x), float(y)) for x, y in pts]


def _shape_mask(name: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A boolean mask of one randomly sized, stretched, rotated and placed shape, fully inside
    the image."""
    side = min(height, width)
    extent = side * math.exp(rng.uniform(*np.log(SIZE_RANGE)))  # the larger box side
    stretch = math.exp(rng.uniform(-0.3, 0.3))
    rx, ry = extent / 2 * min(1.0, stretch), extent / 2 * min(1.0, 1 / stretch)
    angle = rng.uniform(0, 2 * math.pi) if name != "circle" else 0.0
    outline = _polygon(name, rng)
    if outline is None:
        ts = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        outline = list(zip(np.cos(ts), np.sin(ts), strict=True))
    ca, sa = math.cos(angle), math.sin(angle)
    pts = np.array([(x * rx * ca - y * ry * sa, x * rx * sa + y * ry * ca) for x, y in outline])
    lo, hi = pts.min(0), pts.max(0)
    cx = rng.uniform(-lo[0], max(width - hi[0], -lo[0] + 1e-3))
    cy = rng.uniform(-lo[1], max(height - hi[1], -lo[1] + 1e-3))
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).polygon([(float(x + cx), float(y + cy)) for x, y in pts], fill=255)
    return np.asarray(mask) > 0


def make_image(seed: int, index: int, height: int = 320, width: int = 320
               ) -> tuple[np.ndarray, list[dict]]:
    """Image `index` of the set `seed`: HxWx3 uint8 RGB and its objects (`category`, `bbox`
    [x, y, w, h] of the visible pixels, `area`, `visible_fraction`), bottom to top."""
    rng = np.random.default_rng([seed, index])
    img = _background(rng, height, width)
    img += rng.normal(0, rng.uniform(2, 12), img.shape)  # sensor-like noise on the texture
    owner = np.full((height, width), -1, np.int32)
    full_areas: list[int] = []
    names: list[str] = []
    names_list = list(CLASSES)
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        name = names_list[int(rng.integers(len(names_list)))]
        for _try in range(PLACEMENT_TRIES):
            mask = _shape_mask(name, rng, height, width)
            if mask.sum() < 16:
                continue
            trial = np.where(mask, len(full_areas), owner)
            visible = np.bincount(trial[trial >= 0].ravel(), minlength=len(full_areas) + 1)
            if all(visible[k] >= MIN_VISIBLE * full_areas[k] for k in range(len(full_areas))):
                break
        else:
            continue  # no placement keeps the others visible enough: leave this one out
        base = np.array(CLASSES[name], np.float32) + rng.uniform(-25, 25, 3)
        shade = rng.normal(0, 6, (height, width, 1)) + rng.uniform(-15, 15)
        img = np.where(mask[..., None], base + shade, img)
        owner = trial
        full_areas.append(int(mask.sum()))
        names.append(name)
    objects = []
    for k, name in enumerate(names):
        ys, xs = np.nonzero(owner == k)
        x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        objects.append({
            "category": name, "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(len(xs)),
            "visible_fraction": round(len(xs) / full_areas[k], 4),
        })
    return np.clip(img, 0, 255).round().astype(np.uint8), objects


def label_map_text() -> str:
    """The TFOD label map of CLASSES (ids 1..N)."""
    return "".join(f"item {{\n  id: {i}\n  name: '{name}'\n  display_name: '{name}'\n}}\n"
                   for i, name in enumerate(CLASSES, 1))


def write_dataset(output: Path, count: int, seed: int, height: int = 320, width: int = 320,
                  progress: bool = True) -> dict:
    """Writes `count` images, `annotations.json` and `label_map.pbtxt` under `output`; returns
    the COCO dict."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    (output / "images").mkdir(parents=True, exist_ok=True)
    cat_ids = {name: i for i, name in enumerate(CLASSES, 1)}
    coco: dict = {
        "info": {"description": f"synthetic shapes, seed {seed}", "version": "1"},
        "images": [], "annotations": [],
        "categories": [{"id": i, "name": n, "supercategory": "shape"} for n, i in cat_ids.items()],
    }
    for index in tqdm(range(count), desc=f"shapes -> {output}", disable=not progress,
                      unit="img"):
        pixels, objects = make_image(seed, index, height, width)
        name = f"{index:06d}.jpg"
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=JPEG_QUALITY)
        (output / "images" / name).write_bytes(buffer.getvalue())
        image_id = index + 1
        coco["images"].append({"id": image_id, "file_name": name, "height": height,
                               "width": width})
        for obj in objects:
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id,
                "category_id": cat_ids[obj["category"]], "bbox": obj["bbox"],
                "area": obj["area"], "iscrowd": 0, "visible_fraction": obj["visible_fraction"],
            })
    (output / "annotations.json").write_text(json.dumps(coco, indent=1))
    (output / "label_map.pbtxt").write_text(label_map_text())
    return coco


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=sorted(SPLITS),
                        help="preset count and seed, output .cache/shapes/SPLIT by default")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--count", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=320)
    args = parser.parse_args(argv)
    if args.split:
        count, seed = SPLITS[args.split]
        args.count = args.count or count
        args.seed = seed if args.seed is None else args.seed
        args.output = args.output or ROOT / ".cache" / "shapes" / args.split
    if args.output is None or args.count is None or args.seed is None:
        parser.error("give --split, or --output, --count and --seed")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    coco = write_dataset(args.output, args.count, args.seed, args.height, args.width)
    print(f"{args.output}: {len(coco['images'])} images, {len(coco['annotations'])} objects, "
          f"{len(coco['categories'])} classes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
