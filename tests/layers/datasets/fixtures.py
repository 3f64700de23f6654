"""Small VOC and COCO layouts written to temporary folders, broken files included."""

import json
import os

import numpy as np
from PIL import Image


def write_image(path, width, height, seed=0, mode="RGB", fmt=None):
    """A random image of `width` x `height`; returns its H x W x 3 RGB uint8 pixels."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, fmt)
    return pixels


def voc_xml(filename, width, height, objects, size=True):
    """VOC annotation text; objects are (name, xmin, ymin, xmax, ymax[, difficult]), 1-based."""
    parts = [f"<annotation><folder>VOC</folder><filename>{filename}</filename>"]
    if size:
        parts.append(f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>")
    for obj in objects:
        name, x1, y1, x2, y2 = obj[:5]
        difficult = obj[5] if len(obj) > 5 else 0
        parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
                     f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax>"
                     "</bndbox></object>")
    parts.append("</annotation>")
    return "".join(parts)


def make_voc(folder, images, image_set="train", classes=None, write_images=True):
    """A VOC year folder. `images`: {id: (width, height, objects)} or {id: xml text}."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    for k, (image_id, spec) in enumerate(images.items()):
        xml_path = os.path.join(folder, "Annotations", f"{image_id}.xml")
        if isinstance(spec, str):
            with open(xml_path, "w") as f:
                f.write(spec)
            continue
        width, height, objects = spec
        with open(xml_path, "w") as f:
            f.write(voc_xml(f"{image_id}.jpg", width, height, objects))
        if write_images:
            write_image(os.path.join(folder, "JPEGImages", f"{image_id}.jpg"), width, height, seed=k)
    with open(os.path.join(folder, "ImageSets", "Main", f"{image_set}.txt"), "w") as f:
        f.write("".join(f"{i}\n" for i in images))
    if classes is not None:
        with open(os.path.join(folder, "classes.txt"), "w") as f:
            f.write("".join(f"{c}\n" for c in classes))
    return folder


def write_coco(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(content, f)
    return path
