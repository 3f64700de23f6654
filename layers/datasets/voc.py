"""PASCAL VOC devkit layout: <folder>/ImageSets/Main/<set>.txt lists image ids,
<folder>/Annotations/<id>.xml holds each image's objects, and the image is
<folder>/JPEGImages/<id>.jpg (.png or .jpeg when no .jpg exists).

Classes are VOC's twenty unless the folder has a classes.txt (one name a line;
the shapes generator writes one). Box coordinates are VOC's 1-based pixel
indices minus 1, kept as floats; objects marked <difficult>1 are kept and
flagged (the roidb drops them for training, evaluation ignores them). An
object whose class is not in the list, or whose box is missing or not a
number, is dropped with a warning and counted; an XML file that is missing or
does not parse is skipped with a warning and listed in `failures`. The image
size comes from <size>, or from the image's header when <size> is absent.

Parsed annotations are cached in cache_dir under a key made of the path, size
and mtime of the image set file, every XML file and every image (see cache.py).
"""

import logging
import os
import re
import xml.etree.ElementTree as ET

from PIL import Image

from pyfrcnn.errors import DataError

from . import cache
from ..image import oriented_size
from .base import BACKGROUND, RecordBuilder

log = logging.getLogger(__name__)

VOC_CLASSES = (BACKGROUND, "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")

IMAGE_EXTENSIONS = (".jpg", ".png", ".jpeg")
PARSER_VERSION = 1


def open_voc(folder, image_set, cache_dir=None, classes=None, name=None, strict=False):
    """The Dataset of image set `image_set` in the VOC year folder `folder`."""
    folder = os.path.normpath(os.fspath(folder))
    set_file = os.path.join(folder, "ImageSets", "Main", f"{image_set}.txt")
    _check_layout(folder, set_file, image_set)
    classes = tuple(classes) if classes else _read_classes(folder)
    name = name or _default_name(folder, image_set)
    image_ids = _read_image_set(set_file)

    annotation_dir = os.path.join(folder, "Annotations")
    xml_paths = [os.path.join(annotation_dir, f"{i}.xml") for i in image_ids]
    signatures = [cache.file_signature(set_file), cache.file_signature(os.path.join(folder, "classes.txt"))]
    signatures += [cache.file_signature(p) for p in xml_paths]
    signatures += [cache.file_signature(image_path(folder, i)) for i in image_ids]
    key = cache.cache_key({"parser": PARSER_VERSION, "classes": classes, "folder": folder}, signatures)
    cached_path = cache.cache_path(cache_dir, name, key) if cache_dir else None
    parsed = cache.load(cached_path)
    if parsed is None or strict:
        builder = RecordBuilder(strict=strict)
        class_index = {c: k for k, c in enumerate(classes) if k > 0}
        for image_id, xml_path in zip(image_ids, xml_paths):
            _parse_annotation(builder, folder, image_id, xml_path, class_index)
        parsed = builder.state()
        cache.save(cached_path, parsed)
    dataset = RecordBuilder.from_state(parsed).dataset(name, classes)
    dataset.root = folder
    dataset.image_set = image_set
    _log_summary(dataset)
    return dataset


def _check_layout(folder, set_file, image_set):
    if not os.path.isdir(folder):
        raise DataError(f"VOC folder '{folder}' not found: the data must be there, laid out as "
                        f"the VOC devkit (Annotations/, JPEGImages/, ImageSets/Main/); without "
                        f"VOC, `pyfrcnn solve solvers/shapes_solver.yaml` trains on the built-in "
                        f"shapes data")
    if not os.path.isfile(set_file):
        main = os.path.join(folder, "ImageSets", "Main")
        sets = sorted(f[:-4] for f in os.listdir(main) if f.endswith(".txt") and "_" not in f) \
            if os.path.isdir(main) else []
        raise DataError(f"{set_file}: image set '{image_set}' not found "
                        f"(image sets in {main}: {', '.join(sets) or 'none'})")


def _read_classes(folder):
    path = os.path.join(folder, "classes.txt")
    if not os.path.exists(path):
        return VOC_CLASSES
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    names = [n for n in names if n != BACKGROUND]
    if not names:
        raise DataError(f"{path}: no class names")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: a class name appears twice")
    return (BACKGROUND, *names)


def _read_image_set(set_file):
    try:
        with open(set_file, encoding="utf-8") as f:
            # Per-class set files carry a second column (1 / -1 / 0); the id is the first.
            return [line.split()[0] for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{set_file}: cannot read the image set: {e}") from None


def _default_name(folder, image_set):
    match = re.fullmatch(r"VOC(\d{4})", os.path.basename(folder))
    return f"voc_{match.group(1)}_{image_set}" if match else f"voc:{folder}:{image_set}"


def image_path(folder, image_id):
    base = os.path.join(folder, "JPEGImages", image_id)
    for ext in IMAGE_EXTENSIONS:
        if os.path.exists(base + ext):
            return base + ext
    return base + IMAGE_EXTENSIONS[0]


def _parse_annotation(builder, folder, image_id, xml_path, class_index):
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        return builder.fail(xml_path, "annotation file not found")
    except ET.ParseError as e:
        return builder.fail(xml_path, f"not valid XML: {e}")
    except (OSError, UnicodeDecodeError) as e:
        return builder.fail(xml_path, f"cannot read the annotation file: {e}")
    path = image_path(folder, image_id)
    size = _image_size(root)
    if size is None:
        try:
            with Image.open(path) as im:
                size = oriented_size(im)
        except Exception as e:
            return builder.fail(xml_path, f"no <size> in the XML and the image {path} cannot "
                                f"be read: {type(e).__name__}: {e}")
    boxes, labels, difficult = [], [], []
    for n, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip().lower()
        if name not in class_index:
            builder.note(xml_path, f"object {n} '{name}' dropped: not one of the "
                         f"{len(class_index)} classes", "objects_unknown_class")
            continue
        box = _bndbox(obj)
        if box is None:
            builder.note(xml_path, f"object {n} '{name}' dropped: no numeric "
                         "<bndbox> xmin/ymin/xmax/ymax", "boxes_dropped")
            continue
        boxes.append(box)
        labels.append(class_index[name])
        difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    builder.add(image_id, path, size[0], size[1], boxes, labels, difficult, source=xml_path)


def _image_size(root):
    try:
        width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    except (TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _bndbox(obj):
    bndbox = obj.find("bndbox")
    if bndbox is None:
        return None
    try:
        # VOC counts pixels from 1; py-faster-rcnn's boxes count from 0.
        return [float(bndbox.findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
    except (TypeError, ValueError):
        return None


def _log_summary(dataset):
    stats = dataset.stats
    problems = {k: stats[k] for k in ("files_failed", "boxes_clipped", "boxes_dropped",
                                      "objects_unknown_class") if stats[k]}
    if problems:
        log.warning("%s: %s (run `pyfrcnn data check` for the list)", dataset.name,
                    ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in problems.items()))
