"""A stand-in for the reference data folder's COCO photos: synthetic shapes drawn by
tools/make_shapes_dataset.py, in the sizes of COCO photos (landscape, portrait and square), with
COCO annotations and a TFOD label map, for the tests where the real photos are absent.

    python tools/make_stand_in_photos.py --output DIR [--count 64] [--seed 7]
        [--annotations instances_val2017_64.json]

DIR receives `images/NNNNNN.jpg`, the annotations file (COCO instances) and `label_map.pbtxt`.
A category is a shape and its size, small or large (the larger box side under or over 40%
of the image's shorter side), so that there are more categories (10) than the test models have
classes, as with COCO; ids 1..5 are the small shapes, 6..10 the large ones. Objects are larger
than in the shapes set (SIZE_RANGE).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_shapes_dataset as shapes  # noqa: E402

# (height, width) in turn: common COCO photo sizes, one square.
SIZES = [(480, 640), (427, 640), (640, 480), (375, 500), (512, 512), (640, 427), (500, 375),
         (360, 640)]
LARGE = 0.4  # larger box side / shorter image side from which a shape counts as large
# Objects span 20% to 80% of the shorter side (the shapes set: 8% to 60%): like COCO's many
# large objects, they let the tests' randomly weighted models find a few of them.
SIZE_RANGE = (0.2, 0.8)


def categories() -> list[dict]:
    """COCO categories: the small shapes (ids 1..5), then the large ones."""
    names = [f"{size} {shape}" for size in ("small", "large") for shape in shapes.CLASSES]
    return [{"id": i, "name": name, "supercategory": "shape"}
            for i, name in enumerate(names, 1)]


def category_id(obj: dict, height: int, width: int) -> int:
    """The category of one drawn object (make_shapes_dataset.make_image)."""
    shape = list(shapes.CLASSES).index(obj["category"]) + 1
    large = max(obj["bbox"][2:]) >= LARGE * min(height, width)
    return shape + len(shapes.CLASSES) * large


def write_stand_in(output: Path, count: int, seed: int, annotations: str) -> dict:
    """Writes `count` images, the annotations and the label map under `output`; the
    annotations file comes last, so its presence means a whole set."""
    (output / "images").mkdir(parents=True, exist_ok=True)
    shapes.SIZE_RANGE = SIZE_RANGE
    coco: dict = {"info": {"description": f"synthetic shapes stand-in, seed {seed}"},
                  "images": [], "annotations": [], "categories": categories()}
    for index in range(count):
        height, width = SIZES[index % len(SIZES)]
        pixels, objects = shapes.make_image(seed, index, height, width)
        name = f"{index:06d}.jpg"
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "JPEG", quality=shapes.JPEG_QUALITY)
        (output / "images" / name).write_bytes(buffer.getvalue())
        coco["images"].append({"id": index + 1, "file_name": name, "height": height,
                               "width": width})
        for obj in objects:
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": index + 1,
                "category_id": category_id(obj, height, width), "bbox": obj["bbox"],
                "area": obj["area"], "iscrowd": 0})
    (output / "label_map.pbtxt").write_text("".join(
        f"item {{\n  id: {c['id']}\n  name: '{c['name']}'\n  display_name: '{c['name']}'\n}}\n"
        for c in coco["categories"]))
    (output / annotations).write_text(json.dumps(coco, indent=1))
    return coco


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--annotations", default="instances_val2017_64.json",
                        help="file name of the COCO annotations in OUTPUT")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    coco = write_stand_in(args.output, args.count, args.seed, args.annotations)
    print(f"{args.output}: {len(coco['images'])} images, {len(coco['annotations'])} objects, "
          f"{len(coco['categories'])} categories")
    return 0


if __name__ == "__main__":
    sys.exit(main())
