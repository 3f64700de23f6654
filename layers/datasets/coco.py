"""COCO instances JSON: {'images': [...], 'annotations': [...], 'categories': [...]}.

Categories become labels 1..K in increasing category id (COCO's ids have
gaps); class names are the categories' names. A bbox [x, y, w, h] becomes
(x, y, x + w - 1, y + h - 1), py-faster-rcnn's inclusive pixels. Annotations
with iscrowd set are not objects: they become the image's don't-care regions.
Images come in the file's order, at <image folder>/<file_name>; an image with
no annotations is kept (the roidb decides whether to skip it).

A file that is missing or not JSON, or lacks the 'images' / 'categories'
lists, is a DataError naming it. A bad image entry is skipped (listed in
`failures`); a bad bbox, an unknown category or an annotation of an unknown
image is dropped with a warning and counted. Parsed results are cached in
cache_dir under a key made of the JSON file's path, size and mtime.
"""

import collections
import logging
import numbers
import os

from pyfrcnn.errors import DataError
from pyfrcnn.textfile import read_json

from . import cache
from .base import BACKGROUND, RecordBuilder

log = logging.getLogger(__name__)

PARSER_VERSION = 1


def open_coco(annotation_file, image_folder, cache_dir=None, name=None, strict=False):
    """The Dataset described by COCO annotation file `annotation_file`."""
    annotation_file = os.path.normpath(os.fspath(annotation_file))
    image_folder = os.path.normpath(os.fspath(image_folder))
    if not os.path.isfile(annotation_file):
        raise DataError(f"COCO annotation file '{annotation_file}' not found: the data must be "
                        "there (an instances_*.json file)")
    if not os.path.isdir(image_folder):
        raise DataError(f"COCO image folder '{image_folder}' not found: the images of "
                        f"{annotation_file} must be there")
    name = name or f"coco:{annotation_file}:{image_folder}"
    key = cache.cache_key({"parser": PARSER_VERSION, "images": image_folder},
                          [cache.file_signature(annotation_file)])
    cached_path = cache.cache_path(cache_dir, name, key) if cache_dir else None
    parsed = cache.load(cached_path)
    if parsed is None or strict:
        content = _read_json(annotation_file)
        builder = RecordBuilder(strict=strict)
        classes = _parse(builder, content, annotation_file, image_folder)
        parsed = {"classes": classes, "builder": builder.state()}
        cache.save(cached_path, parsed)
    dataset = RecordBuilder.from_state(parsed["builder"]).dataset(name, parsed["classes"])
    dataset.annotation_file = annotation_file
    dataset.image_folder = image_folder
    return dataset


def _read_json(path):
    return read_json(path, "annotation file", DataError)


def _number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _parse(builder, content, path, image_folder):
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a JSON object with 'images' and 'categories'")
    for key in ("images", "categories"):
        if not isinstance(content.get(key), list):
            raise DataError(f"{path}: '{key}' must be a list")
    annotations = content.get("annotations", [])
    if not isinstance(annotations, list):
        raise DataError(f"{path}: 'annotations' must be a list")

    categories = {}
    for k, cat in enumerate(content["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) \
                or not isinstance(cat.get("name"), str):
            raise DataError(f"{path}: categories[{k}] needs an integer 'id' and a 'name'")
        if cat["id"] in categories:
            raise DataError(f"{path}: categories[{k}]: category id {cat['id']} appears twice")
        categories[cat["id"]] = cat["name"]
    cat_ids = sorted(categories)
    label_of = {cid: label for label, cid in enumerate(cat_ids, start=1)}
    classes = (BACKGROUND, *(categories[c] for c in cat_ids))

    by_image = collections.defaultdict(list)
    for k, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            builder.note(path, f"annotations[{k}] dropped: not an object", "boxes_dropped")
            continue
        image_id = ann.get("image_id")
        by_image[image_id if isinstance(image_id, (int, str)) else repr(image_id)].append((k, ann))

    seen = set()
    for k, im in enumerate(content["images"]):
        where = f"{path}: images[{k}]"
        valid_id = isinstance(im, dict) and isinstance(im.get("id"), (int, str))
        if valid_id and im["id"] not in seen:
            owned = by_image.pop(im.get("id"), [])  # a failed image's annotations go with it
        else:
            owned = []
        if not valid_id or not isinstance(im.get("file_name"), str):
            builder.fail(where, "needs an 'id' (integer or string) and a 'file_name'")
            continue
        width, height = im.get("width"), im.get("height")
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            builder.fail(where, f"image {im['id']}: 'width' and 'height' must be positive integers")
            continue
        if im["id"] in seen:
            builder.fail(where, f"image id {im['id']} appears twice")
            continue
        seen.add(im["id"])
        boxes, labels, dontcare = [], [], []
        for j, ann in owned:
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
                builder.note(path, f"annotations[{j}] dropped: bbox must be 4 numbers [x, y, w, h], "
                             f"got {bbox!r}", "boxes_dropped")
                continue
            x, y, w, h = (float(v) for v in bbox)
            box = [x, y, x + w - 1, y + h - 1]
            if ann.get("iscrowd"):
                dontcare.append(box)
            elif ann.get("category_id") not in label_of:
                builder.note(path, f"annotations[{j}] dropped: unknown category_id "
                             f"{ann.get('category_id')!r}", "objects_unknown_class")
            else:
                boxes.append(box)
                labels.append(label_of[ann["category_id"]])
        builder.add(im["id"], os.path.join(image_folder, im["file_name"]), width, height,
                    boxes, labels, [False] * len(boxes), dontcare,
                    source=f"{path} (image {im['id']})")
    for image_id, anns in by_image.items():
        builder.note(path, f"{len(anns)} annotation(s) of unknown image_id {image_id!r} dropped",
                     "boxes_dropped")
    return classes
