import os

import numpy as np
import pytest

from pyfrcnn_layers.datasets import open_coco, open_dataset
from pyfrcnn.errors import DataError

from .fixtures import write_coco


def content():
    return {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 50},
                   {"id": 3, "file_name": "b.jpg", "width": 40, "height": 40},
                   {"id": 9, "file_name": "c.jpg"}],                       # no size: skipped
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"},
                       {"id": 5, "name": "car"}],
        "annotations": [
            {"image_id": 7, "category_id": 18, "bbox": [10, 5, 20, 10], "iscrowd": 0},
            {"image_id": 7, "category_id": 1, "bbox": [0.5, 0, 30.5, 60], "iscrowd": 0},
            {"image_id": 7, "category_id": 1, "bbox": [50, 10, 40, 30], "iscrowd": 1},
            {"image_id": 7, "category_id": 2, "bbox": [1, 1, 5, 5], "iscrowd": 0},   # unknown cat
            {"image_id": 3, "category_id": 5, "bbox": [1, 2, 3], "iscrowd": 0},      # bad bbox
            {"image_id": 99, "category_id": 5, "bbox": [1, 2, 3, 4], "iscrowd": 0},  # no such image
            {"image_id": 9, "category_id": 5, "bbox": [1, 2, 3, 4], "iscrowd": 0},   # skipped image
        ]}


def test_categories_boxes_and_crowds(tmp_path):
    path = write_coco(tmp_path / "annotations" / "instances.json", content())
    os.makedirs(tmp_path / "images")
    ds = open_coco(path, tmp_path / "images")
    # Labels follow category id order: person (1), car (5), dog (18).
    assert ds.classes == ("__background__", "person", "car", "dog")
    assert ds.image_ids == ["7", "3"]
    ann = ds.annotation(0)
    # [x, y, w, h] -> (x, y, x + w - 1, y + h - 1); the person box is clipped at y = 49.
    np.testing.assert_array_equal(ann["boxes"], [[10, 5, 29, 14], [0.5, 0, 30, 49]])
    assert ann["labels"].tolist() == [3, 1]
    np.testing.assert_array_equal(ann["dontcare"], [[50, 10, 89, 39]])
    assert ann["difficult"].tolist() == [False, False]
    assert ds.image_path(1) == os.path.join(tmp_path, "images", "b.jpg")
    assert len(ds.annotation(1)["labels"]) == 0
    assert ds.stats["boxes_clipped"] == 1
    assert ds.stats["objects_unknown_class"] == 1
    assert ds.stats["boxes_dropped"] == 2  # the bad bbox and the unknown image's annotation
    assert len(ds.failures) == 1 and "images[2]" in ds.failures[0][0]


def test_spec_and_cache(tmp_path):
    path = write_coco(tmp_path / "instances.json", content())
    os.makedirs(tmp_path / "images")
    ds = open_dataset(f"coco:{path}:{tmp_path / 'images'}", cache_dir=tmp_path / "cache")
    again = open_dataset(f"coco:{path}:{tmp_path / 'images'}", cache_dir=tmp_path / "cache")
    assert len(os.listdir(tmp_path / "cache")) == 1
    np.testing.assert_array_equal(ds.annotation(0)["boxes"], again.annotation(0)["boxes"])


def test_py_faster_rcnn_name_layout(tmp_path):
    write_coco(tmp_path / "coco" / "annotations" / "instances_minival2014.json", content())
    os.makedirs(tmp_path / "coco" / "images" / "val2014")
    ds = open_dataset("coco_2014_minival", root=tmp_path, cache_dir=tmp_path / "cache")
    assert ds.name == "coco_2014_minival"
    assert ds.image_path(0) == os.path.join(tmp_path, "coco", "images", "val2014", "a.jpg")


def test_broken_files_are_errors_naming_them(tmp_path):
    os.makedirs(tmp_path / "images")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [\n  {"id": 1,, }\n]}')
    with pytest.raises(DataError, match=r"bad\.json:2:\d+: not valid JSON"):
        open_coco(bad, tmp_path / "images")
    shapeless = write_coco(tmp_path / "shapeless.json", {"images": {}})
    with pytest.raises(DataError, match=r"shapeless\.json: 'images' must be a list"):
        open_coco(shapeless, tmp_path / "images")
    with pytest.raises(DataError, match=r"nowhere\.json' not found"):
        open_coco(tmp_path / "nowhere.json", tmp_path / "images")
