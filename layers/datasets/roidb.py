"""The roidb: the list of images one data layer walks, as py-faster-rcnn builds it.

For TRAIN: objects marked difficult are dropped unless use_difficult (then
they are kept and flagged hard), images left with no object are skipped when
skip_empty (py-faster-rcnn's filter_roidb does so; otherwise they train as
background only), and with use_flipped a horizontally flipped copy of every
entry is appended after all the originals (py-faster-rcnn's
append_flipped_images: entry i + len(originals) is entry i flipped).
For TEST: every image in dataset order, difficult objects kept and flagged,
nothing flipped or skipped.

A flipped box of an image W pixels wide is (W - x2 - 1, y1, W - x1 - 1, y2),
inclusive pixels as everywhere (see base.py).
"""

import dataclasses
import logging

import numpy as np

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RoidbEntry:
    index: int              # the image's index in the dataset
    image_id: str
    path: str
    width: int
    height: int
    boxes: np.ndarray       # G x 4 float32
    labels: np.ndarray      # G int64, 1..K-1
    hard: np.ndarray        # G bool (difficult)
    dontcare: np.ndarray    # D x 4 float32
    flipped: bool = False


def flip_boxes(boxes, width):
    """Boxes of an image `width` pixels wide, mirrored left-right."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2] - 1
    flipped[:, 2] = width - boxes[:, 0] - 1
    return flipped


def flip_entry(entry):
    return dataclasses.replace(entry, boxes=flip_boxes(entry.boxes, entry.width),
                               dontcare=flip_boxes(entry.dontcare, entry.width),
                               flipped=not entry.flipped)


def build_roidb(dataset, phase="TRAIN", use_flipped=True, use_difficult=False, skip_empty=True):
    """[RoidbEntry] for `phase`, and a dict of what was left out."""
    train = str(phase).upper() == "TRAIN"
    entries, skipped = [], {"empty_images": 0, "difficult_objects": 0}
    for i in range(len(dataset)):
        ann = dataset.annotation(i)
        keep = np.ones(len(ann["labels"]), dtype=bool)
        if train and not use_difficult:
            keep = ~ann["difficult"]
            skipped["difficult_objects"] += int((~keep).sum())
        if train and skip_empty and not keep.any():
            skipped["empty_images"] += 1
            continue
        entries.append(RoidbEntry(
            index=i, image_id=ann["image_id"], path=dataset.image_path(i), width=ann["width"],
            height=ann["height"], boxes=ann["boxes"][keep].astype(np.float32),
            labels=ann["labels"][keep].astype(np.int64), hard=ann["difficult"][keep].astype(bool),
            dontcare=ann["dontcare"].astype(np.float32).reshape(-1, 4)))
    if train and use_flipped:
        entries += [flip_entry(e) for e in entries]
    if skipped["empty_images"]:
        log.info("%s: %d image(s) with no objects skipped for training", dataset.name,
                 skipped["empty_images"])
    return entries, skipped
