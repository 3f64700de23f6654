"""shapes: a generated detection dataset, small enough to train on a CPU.

Five classes of filled shapes (circle, square, triangle, star, cross) in varied
colours, sizes (from about min_object_size px, a star's box a little less, up
to max_object_fraction of the shorter side), aspect ratios and small
rotations, 1..4 per image, overlapping and partly occluding each other (a
shape may hide up to 40% of an earlier one's box), on backgrounds of smooth
colour fields, stripes, thin clutter lines and pixel noise. Images are
224..288 px on the shorter side. The defaults (1000 train, 250 test images)
take about 40 s to generate on one core and 33 MB of disk.

Each image is drawn from its own generator seeded by (seed, split, index), so
image k of a split is the same whatever the split's size. The dataset is
written once, in the VOC devkit layout (JPEGImages/, Annotations/,
ImageSets/Main/{train,test}.txt, classes.txt), to
<cache_dir>/shapes_<hash of the settings>/, and read back by the VOC loader.
It is written to a temporary folder whose marker file `.complete` is written
last and which is then renamed into place, so an interrupted generation is
never used; a folder without the marker is generated again. Two generations
with the same settings give byte-identical files.
"""

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import uuid

import numpy as np
from PIL import Image, ImageDraw

from pyfrcnn.errors import DataError

from .voc import open_voc

log = logging.getLogger(__name__)

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross")
GENERATOR_VERSION = 1
MARKER = ".complete"
GENERATOR_THREADS = 2
SPLIT_CODES = {"train": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    train_images: int = 1000
    test_images: int = 250
    min_side: int = 224              # shorter image side, drawn uniformly in [min_side, max_side]
    max_side: int = 288
    max_aspect: float = 1.5          # longer side / shorter side at most
    min_objects: int = 1
    max_objects: int = 4
    min_object_size: int = 28        # shorter side of an object's box, px
    max_object_fraction: float = 0.6  # longer side of a box, as a share of the image's shorter side
    image_format: str = "jpg"        # jpg or png
    jpeg_quality: int = 90
    seed: int = 1

    def images(self, split):
        return self.train_images if split == "train" else self.test_images


def open_shapes(split, images=None, cache_dir=None, settings=None):
    """The shapes Dataset of `split` ('train' or 'test'), generated on first use.
    `images` overrides the split's size in `settings`."""
    settings = settings or ShapesConfig()
    if images:
        settings = dataclasses.replace(settings, **{f"{split}_images": int(images)})
    folder = ensure_generated(cache_dir or os.path.join("data", "cache"), settings)
    return open_voc(folder, split, name=f"shapes_{split}")


def settings_key(settings):
    text = json.dumps([GENERATOR_VERSION, dataclasses.asdict(settings)], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def ensure_generated(cache_dir, settings):
    """The folder holding the dataset for `settings`, generating it if absent or incomplete."""
    folder = os.path.join(cache_dir, f"shapes_{settings_key(settings)}")
    if os.path.exists(os.path.join(folder, MARKER)):
        return folder
    if os.path.exists(folder):
        log.warning("%s: incomplete shapes dataset (no %s marker); generating it again",
                    folder, MARKER)
        shutil.rmtree(folder, ignore_errors=True)
    tmp = f"{folder}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        log.info("generating the shapes dataset in %s", folder)
        generate(tmp, settings)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not os.path.exists(os.path.join(folder, MARKER)):
                raise
            # Another process finished the same dataset first; theirs is identical.
    except OSError as e:
        raise DataError(f"{folder}: cannot write the shapes dataset: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def generate(folder, settings):
    """Write the whole dataset for `settings` to `folder` (marker last)."""
    problems = settings_problems(settings)
    if problems:
        raise DataError(f"shapes settings: {'; '.join(problems)}")
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    with open(os.path.join(folder, "classes.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(f"{c}\n" for c in SHAPE_CLASSES))
    for split in SPLIT_CODES:
        ids = [f"{split}_{index:06d}" for index in range(settings.images(split))]
        # Each image has its own generator, so the images are the same in any
        # order; numpy's fills and Pillow's drawing and encoding release the GIL,
        # so two threads take about half the time on two cores.
        with concurrent.futures.ThreadPoolExecutor(max_workers=GENERATOR_THREADS) as pool:
            list(pool.map(functools.partial(_write_image, folder, settings, split),
                          range(len(ids))))
        with open(os.path.join(folder, "ImageSets", "Main", f"{split}.txt"), "w",
                  encoding="utf-8", newline="\n") as f:
            f.write("".join(f"{i}\n" for i in ids))
    with open(os.path.join(folder, MARKER), "w", encoding="utf-8", newline="\n") as f:
        json.dump([GENERATOR_VERSION, dataclasses.asdict(settings)], f, sort_keys=True)


def _write_image(folder, settings, split, index):
    image_id = f"{split}_{index:06d}"
    image, objects = render_image(settings, split, index)
    file_name = f"{image_id}.{settings.image_format}"
    path = os.path.join(folder, "JPEGImages", file_name)
    if settings.image_format == "jpg":
        image.save(path, "JPEG", quality=settings.jpeg_quality)
    else:
        image.save(path, "PNG")
    _write_xml(os.path.join(folder, "Annotations", f"{image_id}.xml"), file_name,
               image.size, objects)


def settings_problems(settings):
    """What is wrong with `settings`, as a list of sentences (empty if nothing)."""
    problems = []
    if settings.image_format not in ("jpg", "png"):
        problems.append(f"image_format must be jpg or png, not {settings.image_format!r}")
    if not 16 <= settings.min_side <= settings.max_side:
        problems.append("need 16 <= min_side <= max_side")
    if not 1 <= settings.min_objects <= settings.max_objects:
        problems.append("need 1 <= min_objects <= max_objects")
    if not 0 < settings.max_object_fraction <= 1:
        problems.append("max_object_fraction must be in (0, 1]")
    elif not 4 <= settings.min_object_size <= settings.max_object_fraction * settings.min_side:
        problems.append("need 4 <= min_object_size <= max_object_fraction x min_side")
    if settings.max_aspect < 1:
        problems.append("max_aspect must be >= 1")
    if settings.train_images < 0 or settings.test_images < 0:
        problems.append("image counts must be >= 0")
    if not 1 <= settings.jpeg_quality <= 100:
        problems.append("jpeg_quality must be in 1..100")
    return problems


# -- drawing -------------------------------------------------------------------

def _star(points=5, inner=0.42):
    angles = [-math.pi / 2 + k * math.pi / points for k in range(2 * points)]
    return [((1 if k % 2 == 0 else inner) * math.cos(a), (1 if k % 2 == 0 else inner) * math.sin(a))
            for k, a in enumerate(angles)]


def _cross(t=0.34):
    return [(-t, -1), (t, -1), (t, -t), (1, -t), (1, t), (t, t), (t, 1), (-t, 1), (-t, t),
            (-1, t), (-1, -t), (-t, -t)]


# Outlines in a [-1, 1] square, and the largest rotation (degrees) each is drawn with.
OUTLINES = {
    "circle": (None, 0.0),
    "square": ([(-1, -1), (1, -1), (1, 1), (-1, 1)], 12.0),
    "triangle": ([(0, -1), (1, 1), (-1, 1)], 20.0),
    "star": (_star(), 36.0),
    "cross": (_cross(), 20.0),
}


def render_image(settings, split, index):
    """(PIL RGB image, [(class name, x1, y1, x2, y2)]) with 0-based inclusive boxes."""
    rng = np.random.default_rng([settings.seed, SPLIT_CODES[split], index])
    short = int(rng.integers(settings.min_side, settings.max_side + 1))
    long = int(round(short * math.exp(rng.uniform(0, math.log(settings.max_aspect)))))
    width, height = (long, short) if rng.random() < 0.7 else (short, long)
    background = _background(rng, width, height)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    _clutter(rng, draw, width, height)
    objects = []
    for _ in range(int(rng.integers(settings.min_objects, settings.max_objects + 1))):
        placed = _place(rng, settings, width, height, [o[1:] for o in objects])
        if placed is None:
            continue
        name, polygon, box = placed
        colour = _colour(rng, background, box)
        outline = tuple(int(c) for c in np.clip(np.array(colour) * rng.uniform(0.4, 0.7), 0, 255)) \
            if rng.random() < 0.5 else None
        line = int(rng.integers(1, 4))
        if polygon is None:
            draw.ellipse(box, fill=colour, outline=outline, width=line if outline else 0)
        else:
            draw.polygon(polygon, fill=colour, outline=outline, width=line if outline else 0)
        objects.append((name, *box))
    pixels = np.asarray(image, dtype=np.float32)
    pixels += np.float32(rng.uniform(2, 9)) * rng.standard_normal(pixels.shape, dtype=np.float32)
    return Image.fromarray(_to_uint8(pixels)), objects


def _to_uint8(pixels):
    np.rint(pixels, out=pixels)
    np.clip(pixels, 0, 255, out=pixels)
    return pixels.astype(np.uint8)


def _background(rng, width, height):
    """A smooth random colour field, sometimes with stripes."""
    grid = rng.uniform(30, 225, 3) + rng.normal(0, 35, (int(rng.integers(2, 7)),
                                                        int(rng.integers(2, 7)), 3))
    field = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(field, dtype=np.float32)
    if rng.random() < 0.5:
        theta, period = rng.uniform(0, math.pi), rng.uniform(5, 30)
        # sin(a + b) = sin a cos b + cos a sin b: two outer products instead of a sin per pixel.
        a = 2 * math.pi * np.arange(width) * math.cos(theta) / period
        b = 2 * math.pi * np.arange(height) * math.sin(theta) / period
        wave = np.outer(np.cos(b), np.sin(a)) + np.outer(np.sin(b), np.cos(a))
        pixels = pixels + (rng.uniform(5, 20) * wave).astype(np.float32)[:, :, None]
    return _to_uint8(pixels)


def _clutter(rng, draw, width, height):
    """Thin lines and arcs: edges that are not objects."""
    for _ in range(int(rng.integers(0, 7))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x0, x1 = rng.uniform(0, width, 2)
        y0, y1 = rng.uniform(0, height, 2)
        if rng.random() < 0.5:
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 3)))
        else:
            box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
            start = float(rng.uniform(0, 360))
            draw.arc(box, start, start + float(rng.uniform(30, 120)), fill=colour, width=1)


def _place(rng, settings, width, height, boxes, tries=40):
    """(class name, polygon or None for an ellipse, integer box) not hiding too much of
    the earlier `boxes`, or None."""
    short = min(width, height)
    largest = settings.max_object_fraction * short
    for _ in range(tries):
        name = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
        outline, max_turn = OUTLINES[name]
        size = math.exp(rng.uniform(math.log(settings.min_object_size), math.log(largest)))
        aspect = math.exp(rng.uniform(-math.log(1.4), math.log(1.4)))
        half_w, half_h = size * math.sqrt(aspect) / 2, size / math.sqrt(aspect) / 2
        grow = settings.min_object_size / 2 / min(half_w, half_h)
        if grow > 1:
            half_w, half_h = half_w * grow, half_h * grow
        turn = math.radians(rng.uniform(-max_turn, max_turn))
        if outline is None:
            points = None
            ext_x, ext_y = half_w, half_h
        else:
            c, s = math.cos(turn), math.sin(turn)
            points = [(x * half_w * c - y * half_h * s, x * half_w * s + y * half_h * c)
                      for x, y in outline]
            ext_x = max(abs(p[0]) for p in points)
            ext_y = max(abs(p[1]) for p in points)
        if 2 * ext_x + 2 > width or 2 * ext_y + 2 > height or max(ext_x, ext_y) * 2 > largest * 1.25:
            continue
        cx = rng.uniform(ext_x, width - 1 - ext_x)
        cy = rng.uniform(ext_y, height - 1 - ext_y)
        if points is None:
            box = [int(math.floor(cx - ext_x)), int(math.floor(cy - ext_y)),
                   int(math.ceil(cx + ext_x)), int(math.ceil(cy + ext_y))]
        else:
            points = [(cx + x, cy + y) for x, y in points]
            box = [int(math.floor(min(p[0] for p in points))), int(math.floor(min(p[1] for p in points))),
                   int(math.ceil(max(p[0] for p in points))), int(math.ceil(max(p[1] for p in points)))]
        box = [max(box[0], 0), max(box[1], 0), min(box[2], width - 1), min(box[3], height - 1)]
        if all(_fits(box, other) for other in boxes):
            return name, points, box
    return None


def _area(box):
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def _fits(new, old):
    """The new shape, drawn on top, hides at most 40% of the old box and sits at
    most 60% inside it."""
    iw = min(new[2], old[2]) - max(new[0], old[0]) + 1
    ih = min(new[3], old[3]) - max(new[1], old[1]) + 1
    inter = max(iw, 0) * max(ih, 0)
    return inter <= 0.4 * _area(old) and inter <= 0.6 * _area(new)


def _colour(rng, background, box, tries=12):
    """A saturated colour far from the background under `box`."""
    x1, y1, x2, y2 = box
    under = background[y1:y2 + 1, x1:x2 + 1].reshape(-1, 3).mean(axis=0)
    best, best_distance = None, -1.0
    for _ in range(tries):
        hue, sat, val = rng.uniform(0, 1), rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0)
        rgb = np.array(_hsv_to_rgb(hue, sat, val)) * 255
        distance = float(np.abs(rgb - under).sum())
        if distance > best_distance:
            best, best_distance = rgb, distance
        if distance > 150:
            break
    return tuple(int(round(v)) for v in best)


def _hsv_to_rgb(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _write_xml(path, file_name, size, objects):
    width, height = size
    parts = ["<annotation>\n", "\t<folder>shapes</folder>\n", f"\t<filename>{file_name}</filename>\n",
             f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n"
             "\t\t<depth>3</depth>\n\t</size>\n"]
    for name, x1, y1, x2, y2 in objects:
        # VOC counts pixels from 1.
        parts.append(f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n"
                     "\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n"
                     f"\t\t<bndbox>\n\t\t\t<xmin>{x1 + 1}</xmin>\n\t\t\t<ymin>{y1 + 1}</ymin>\n"
                     f"\t\t\t<xmax>{x2 + 1}</xmax>\n\t\t\t<ymax>{y2 + 1}</ymax>\n\t\t</bndbox>\n"
                     "\t</object>\n")
    parts.append("</annotation>\n")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(parts))
