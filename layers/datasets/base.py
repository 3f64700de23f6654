"""Dataset: images with their ground-truth boxes, whatever the source format.

Boxes are py-faster-rcnn's: (x1, y1, x2, y2) in 0-based pixel coordinates with
inclusive x2 / y2 (a box's width is x2 - x1 + 1), float32, never wrapped
through uint16. Labels are 1..K-1; index 0 of `classes` is '__background__'.

Every source builds its records with a RecordBuilder, which cleans the boxes
the same way: a box partly outside the image is clipped to it; a box wholly
outside it, with a non-finite coordinate, or with x2 < x1 or y2 < y1 after
clipping (less than one pixel: x1 == x2 is one pixel wide) is dropped. Both are
logged as warnings naming the file and counted in `Dataset.stats`;
`Dataset.notes` keeps (file, message) for each, and `Dataset.failures` lists
(file, reason) for annotation files that could not be used at all (their
images are not in the dataset). Scoring sees the boxes as given instead
(annotation()'s eval_* keys: every box with finite corners, unclipped, as
VOC's voc_eval reads the XML).
"""

import collections
import logging

import numpy as np

from pyfrcnn.errors import DataError

log = logging.getLogger(__name__)

BACKGROUND = "__background__"


class Dataset:
    """Annotated images held in memory, one record per image."""

    def __init__(self, name, classes, records, failures=(), notes=(), stats=None):
        classes = tuple(classes)
        if not classes or classes[0] != BACKGROUND:
            classes = (BACKGROUND,) + classes
        self.name = name
        self.classes = classes
        self.records = list(records)
        self.failures = list(failures)
        self.notes = list(notes)
        self.stats = collections.Counter(stats or {})

    @property
    def num_classes(self):
        return len(self.classes)

    def __len__(self):
        return len(self.records)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}: {len(self)} images, {self.num_classes} classes>"

    @property
    def image_ids(self):
        return [r["image_id"] for r in self.records]

    def image_path(self, i):
        return self.records[i]["path"]

    def annotation(self, i):
        """{'image_id', 'width', 'height', 'boxes', 'labels', 'difficult', 'dontcare',
        'eval_boxes', 'eval_labels', 'eval_difficult'} (copies); the eval_* objects are
        the ones scored: boxes as given (float64, unclipped, only non-finite ones left out)."""
        r = self.records[i]
        ann = {"image_id": r["image_id"], "width": r["width"], "height": r["height"],
               "boxes": r["boxes"].copy(), "labels": r["labels"].copy(),
               "difficult": r["difficult"].copy(), "dontcare": r["dontcare"].copy()}
        for key in ("boxes", "labels", "difficult"):
            ann[f"eval_{key}"] = r.get(f"eval_{key}", r[key]).copy()
        return ann


class RecordBuilder:
    """Collects records, failures and box statistics while a source is parsed."""

    def __init__(self, strict=False):
        self.strict = strict  # raise on the first unusable file instead of skipping it
        self.records = []
        self.failures = []
        self.notes = []
        self.stats = collections.Counter()

    def state(self):
        """Plain values for the annotation cache."""
        return {"records": self.records, "failures": self.failures, "notes": self.notes,
                "stats": dict(self.stats)}

    @classmethod
    def from_state(cls, state):
        builder = cls()
        builder.records = state["records"]
        builder.failures = state["failures"]
        builder.notes = state["notes"]
        builder.stats = collections.Counter(state["stats"])
        return builder

    def fail(self, path, reason):
        if self.strict:
            raise DataError(f"{path}: {reason}")
        log.warning("%s: skipped: %s", path, reason)
        self.failures.append((str(path), reason))
        self.stats["files_failed"] += 1

    def note(self, path, message, counter):
        log.warning("%s: %s", path, message)
        self.notes.append((str(path), message))
        self.stats[counter] += 1

    def add(self, image_id, path, width, height, boxes, labels, difficult, dontcare=None,
            source=None):
        """Clean the boxes and append a record. `source` (the annotation file) names
        the file in warnings; it defaults to the image."""
        source = source or path
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        difficult = np.asarray(difficult, dtype=bool).reshape(-1)
        finite = np.isfinite(boxes).all(axis=1)
        eval_boxes, eval_labels, eval_difficult = boxes[finite], labels[finite], difficult[finite]
        keep = self._clean(source, "box", boxes, width, height)
        dontcare = np.asarray(dontcare if dontcare is not None else np.zeros((0, 4)),
                              dtype=np.float64).reshape(-1, 4)
        keep_dc = self._clean(source, "don't-care region", dontcare, width, height)
        self.stats["objects"] += int(keep.sum())
        self.records.append({
            "image_id": str(image_id), "path": str(path), "width": int(width),
            "height": int(height), "boxes": boxes[keep].astype(np.float32),
            "labels": labels[keep], "difficult": difficult[keep],
            "dontcare": dontcare[keep_dc].astype(np.float32),
            "eval_boxes": eval_boxes, "eval_labels": eval_labels, "eval_difficult": eval_difficult})

    def _clean(self, source, what, boxes, width, height):
        """Clip `boxes` in place to the image; return the mask of boxes kept."""
        finite = np.isfinite(boxes).all(axis=1)
        given = np.where(finite[:, None], boxes, 0.0)
        outside = (given[:, 0] > width - 1) | (given[:, 1] > height - 1) | \
            (given[:, 2] < 0) | (given[:, 3] < 0)
        clipped = np.stack([np.maximum(given[:, 0], 0), np.maximum(given[:, 1], 0),
                            np.minimum(given[:, 2], width - 1), np.minimum(given[:, 3], height - 1)],
                           axis=1)
        thin = (clipped[:, 2] < clipped[:, 0]) | (clipped[:, 3] < clipped[:, 1])
        keep = finite & ~outside & ~thin
        changed = keep & (clipped != given).any(axis=1)
        for k in np.flatnonzero(~keep | changed):
            shown = "(" + ", ".join(f"{v:g}" for v in boxes[k]) + ")"
            if changed[k]:
                self.note(source, f"{what} {shown} clipped to the {width}x{height} image",
                          "boxes_clipped")
                continue
            reason = ("has a non-finite coordinate" if not finite[k] else
                      f"lies outside the {width}x{height} image" if outside[k] else
                      "has x2 < x1 or y2 < y1 (less than one pixel)")
            self.note(source, f"{what} {shown} dropped: it {reason}", "boxes_dropped")
        boxes[keep] = clipped[keep]
        return keep

    def dataset(self, name, classes, cls=Dataset):
        return cls(name, classes, self.records, self.failures, self.notes, self.stats)


__all__ = ["BACKGROUND", "Dataset", "RecordBuilder"]
