"""The detections file: what `pyfrcnn test` writes and `pyfrcnn eval` scores.

A JSON list with one object per detection:

    {"image_id": <dataset image id>, "class": <class name>,
     "bbox": [x1, y1, x2, y2], "score": <float>}

Boxes are in the 0-based pixel coordinates of the data layer with inclusive
corners (VOC: the XML values minus 1). Any detector can write this file.

Also here: the per-class VOC results files of the VOC devkit
(`comp4_det_test_<class>.txt`, one line "image score x1 y1 x2 y2" with 1-based
coordinates, as py-faster-rcnn writes them).
"""

import json
import math
import os

from pyfrcnn.errors import DataError, did_you_mean
from pyfrcnn.textfile import read_json

KEYS = ("image_id", "class", "bbox", "score")
SHOWN = 5  # unknown names listed in an error message


def detection(image_id, class_name, bbox, score):
    """One detection record (plain Python values)."""
    return {"image_id": image_id, "class": class_name,
            "bbox": [float(v) for v in bbox], "score": float(score)}


def write_detections(path, detections):
    """Write the records as a JSON list (one detection a line), atomically."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("[")
            for i, det in enumerate(detections):
                f.write(",\n " if i else "\n ")
                json.dump(det, f)
            f.write("\n]\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_record(path, index, det):
    where = f"{path}: detection {index}"
    if not isinstance(det, dict):
        raise DataError(f"{where}: expected an object with {', '.join(KEYS)}, got {det!r}")
    missing = [k for k in KEYS if k not in det]
    if missing:
        raise DataError(f"{where}: missing {', '.join(missing)}")
    extra = [k for k in det if k not in KEYS]
    if extra:
        raise DataError(f"{where}: unknown key(s) {', '.join(extra)}"
                        f"{did_you_mean(extra[0], KEYS)}; expected {', '.join(KEYS)}")
    bbox, score = det["bbox"], det["score"]
    if (not isinstance(bbox, list) or len(bbox) != 4
            or not all(_is_number(v) and math.isfinite(v) for v in bbox)):
        raise DataError(f"{where}: bbox must be 4 finite numbers [x1, y1, x2, y2], got {bbox!r}")
    if bbox[2] < bbox[0] or bbox[3] < bbox[1]:
        raise DataError(f"{where}: bbox {bbox} has x2 < x1 or y2 < y1")
    if not _is_number(score) or math.isnan(score):
        raise DataError(f"{where}: score must be a number, got {score!r}")
    if not isinstance(det["class"], str):
        raise DataError(f"{where}: class must be a class name (a string), got {det['class']!r}")
    if not isinstance(det["image_id"], (str, int)) or isinstance(det["image_id"], bool):
        raise DataError(f"{where}: image_id must be a string or an integer, "
                        f"got {det['image_id']!r}")
    return detection(det["image_id"], det["class"], bbox, score)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_detections(path):
    """The records of a detections file, each checked; a DataError names the
    file and the first bad record."""
    path = os.fspath(path)
    records = read_json(path, "detections file", DataError)
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of detections, got a "
                        f"{type(records).__name__}")
    return [_check_record(path, i, det) for i, det in enumerate(records)]


def _listing(names):
    names = sorted(names, key=str)
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return shown + more


def check_detections(detections, classes, image_ids, source="detections"):
    """Match the records to a dataset: their image ids to `image_ids` and their
    class names to `classes[1:]`. Returns the records with each image_id
    replaced by the dataset's own id (a file may give 7 for the id '7').
    Unknown classes or image ids are a DataError that names them."""
    by_key = {str(i): i for i in image_ids}
    known_classes = set(classes[1:])
    bad_classes = {d["class"] for d in detections} - known_classes
    if bad_classes:
        named = sorted(bad_classes)
        listed = ", ".join(f"{n!r}{did_you_mean(n, known_classes)}" for n in named[:SHOWN])
        more = f" and {len(named) - SHOWN} more" if len(named) > SHOWN else ""
        raise DataError(f"{source}: unknown class name(s) {listed}{more}; the dataset's "
                        f"classes are {', '.join(classes[1:])}")
    bad_ids = {d["image_id"] for d in detections if str(d["image_id"]) not in by_key}
    if bad_ids:
        raise DataError(f"{source}: {len(bad_ids)} image id(s) not in the dataset: "
                        f"{_listing(bad_ids)} (dataset ids look like "
                        f"{_listing(list(image_ids)[:3])})")
    return [dict(d, image_id=by_key[str(d["image_id"])]) for d in detections]


def voc_results_filename(class_name, comp_id="comp4", image_set="test"):
    return f"{comp_id}_det_{image_set}_{class_name}.txt"


def _voc_results_fields(det):
    """The score and 1-based corners of a results-file line, as text."""
    x1, y1, x2, y2 = det["bbox"]
    return f"{det['score']:.3f}", [f"{v + 1:.1f}" for v in (x1, y1, x2, y2)]


def voc_results_records(detections):
    """The detections as the VOC results files hold them (write_voc_results): scores
    rounded to 3 decimals and corners to 0.1 pixel, back in 0-based coordinates."""
    rounded = []
    for det in detections:
        score, corners = _voc_results_fields(det)
        rounded.append(dict(det, score=float(score), bbox=[float(v) - 1 for v in corners]))
    return rounded


def write_voc_results(out_dir, detections, classes, comp_id="comp4", image_set="test"):
    """One VOC devkit results file per class (every class but the background,
    empty when it has no detection), with 1-based coordinates as the devkit
    expects. Returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    lines = {name: [] for name in classes[1:]}
    for det in detections:
        score, corners = _voc_results_fields(det)
        lines[det["class"]].append(f"{det['image_id']} {score} {' '.join(corners)}\n")
    paths = []
    for name in classes[1:]:
        path = os.path.join(out_dir, voc_results_filename(name, comp_id, image_set))
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(lines[name])
        paths.append(path)
    return paths


__all__ = ["detection", "write_detections", "read_detections", "check_detections",
           "voc_results_filename", "write_voc_results", "voc_results_records"]
