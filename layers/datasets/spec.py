"""Dataset specs: the strings that name a dataset in solver files and commands.

  voc:<VOC year folder>:<image set>    voc:data/VOCdevkit2007/VOC2007:trainval
  coco:<annotation json>:<image folder>
  shapes:<split>[:<images>]            shapes:train, shapes:test:100 (generated)
  voc_<year>_<image set>               py-faster-rcnn's names, under the data root:
                                       <root>/VOCdevkit<year>/VOC<year>
  coco_<year>_<split>                  <root>/coco/annotations/instances_<split><year>.json
                                       with images in <root>/coco/images/<split><year>
                                       (minival and valminusminival use val<year>'s)

Paths may hold ':' (a Windows drive): the image set / image folder is what
follows the last ':' (for coco, what follows '.json:').
"""

import dataclasses
import os
import re

from pyfrcnn.errors import ConfigError

FORMS = ("voc:<VOC year folder>:<image set>", "coco:<annotation json>:<image folder>",
         "shapes:<train|test>[:<number of images>]", "voc_<year>_<image set>",
         "coco_<year>_<split>")

SHAPES_SPLITS = ("train", "test")
_COCO_IMAGE_SPLIT = {"minival": "val", "valminusminival": "val"}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    kind: str     # 'voc', 'coco' or 'shapes'
    args: tuple   # voc: (folder, image set); coco: (json, image folder); shapes: (split, images or None)
    name: str     # the dataset's name


def bad_spec(spec, why):
    forms = "; ".join(FORMS)
    return ConfigError(f"dataset spec '{spec}': {why}; accepted forms: {forms}")


def parse_spec(spec, root=None):
    """The DatasetSpec a spec string names (ConfigError listing the forms if none)."""
    if not isinstance(spec, str) or not spec.strip():
        raise bad_spec(spec, "expected a non-empty string")
    spec = spec.strip()
    root = os.fspath(root) if root is not None else "data"
    kind, sep, rest = spec.partition(":")
    if sep:
        if kind == "voc":
            folder, sep, image_set = rest.rpartition(":")
            if not sep or not folder or not image_set:
                raise bad_spec(spec, "voc needs a folder and an image set")
            return DatasetSpec("voc", (folder, image_set), spec)
        if kind == "coco":
            cut = rest.rfind(".json:")
            json_file, folder = (rest[:cut + 5], rest[cut + 6:]) if cut >= 0 \
                else rest.rpartition(":")[::2]
            if not json_file or not folder:
                raise bad_spec(spec, "coco needs an annotation file and an image folder")
            return DatasetSpec("coco", (json_file, folder), spec)
        if kind == "shapes":
            split, _, count = rest.partition(":")
            if split not in SHAPES_SPLITS:
                raise bad_spec(spec, f"shapes split '{split}' is not one of {', '.join(SHAPES_SPLITS)}")
            if count and not (count.isdigit() and int(count) > 0):
                raise bad_spec(spec, f"'{count}' is not a positive number of images")
            return DatasetSpec("shapes", (split, int(count) if count else None), spec)
        raise bad_spec(spec, f"unknown kind '{kind}'")
    match = re.fullmatch(r"voc_(\d{4})_(\w+)", spec)
    if match:
        year, image_set = match.groups()
        folder = os.path.join(root, f"VOCdevkit{year}", f"VOC{year}")
        return DatasetSpec("voc", (folder, image_set), spec)
    match = re.fullmatch(r"coco_(\d{4})_(\w+)", spec)
    if match:
        year, split = match.groups()
        coco = os.path.join(root, "coco")
        json_file = os.path.join(coco, "annotations", f"instances_{split}{year}.json")
        images = os.path.join(coco, "images", f"{_COCO_IMAGE_SPLIT.get(split, split)}{year}")
        return DatasetSpec("coco", (json_file, images), spec)
    raise bad_spec(spec, "not a known name or form")
