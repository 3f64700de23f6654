import os
import time

import numpy as np
import pytest

from pyfrcnn_layers.datasets import VOC_CLASSES, open_dataset, open_voc
from pyfrcnn.errors import DataError

from .fixtures import make_voc, voc_xml, write_image


def test_boxes_are_zero_based_floats_with_difficult_flagged(tmp_path):
    folder = make_voc(tmp_path / "VOC2007", {
        "000001": (100, 80, [("dog", 1, 1, 50, 40), ("person", 10.5, 20, 99, 80, 1)]),
    })
    ds = open_voc(folder, "train")
    assert ds.classes == VOC_CLASSES and ds.num_classes == 21
    assert ds.name == "voc_2007_train"
    ann = ds.annotation(0)
    assert ann["width"] == 100 and ann["height"] == 80
    assert ann["boxes"].dtype == np.float32
    np.testing.assert_array_equal(ann["boxes"], [[0, 0, 49, 39], [9.5, 19, 98, 79]])
    assert ann["labels"].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert ann["difficult"].tolist() == [False, True]
    assert ann["dontcare"].shape == (0, 4)
    assert ds.image_path(0) == os.path.join(folder, "JPEGImages", "000001.jpg")


def test_large_coordinates_do_not_wrap(tmp_path):
    # py-faster-rcnn kept boxes as uint16: 70000 - 1 would have wrapped to 4463.
    folder = make_voc(tmp_path / "VOC2007", {"a": (80000, 10, [("cat", 60000, 1, 70000, 10)])},
                      write_images=False)
    ann = open_voc(folder, "train").annotation(0)
    np.testing.assert_array_equal(ann["boxes"], [[59999, 0, 69999, 9]])


def test_clipped_and_degenerate_boxes_are_counted(tmp_path):
    folder = make_voc(tmp_path / "VOC2007", {"a": (50, 40, [
        ("cat", -4, 1, 20, 45),      # clipped to (0, 0, 19, 39)
        ("cat", 30, 10, 20, 20),     # xmax < xmin: dropped
        ("cat", 60, 10, 70, 20),     # wholly right of the image: dropped
        ("dog", 2, 2, 2, 2),         # one pixel: kept
        ("dog", "nan", 2, 5, 5),     # not finite: dropped
    ])})
    ds = open_voc(folder, "train")
    ann = ds.annotation(0)
    np.testing.assert_array_equal(ann["boxes"], [[0, 0, 19, 39], [1, 1, 1, 1]])
    assert ds.stats["boxes_clipped"] == 1 and ds.stats["boxes_dropped"] == 3
    assert [m.split(": it ")[-1] for _, m in ds.notes if "dropped" in m] == [
        "has x2 < x1 or y2 < y1 (less than one pixel)", "lies outside the 50x40 image",
        "has a non-finite coordinate"]
    assert all(path.endswith("a.xml") for path, _ in ds.notes)


def test_broken_annotation_files_are_skipped_and_listed(tmp_path):
    folder = make_voc(tmp_path / "VOC2007", {
        "good": (30, 20, [("cat", 1, 1, 10, 10)]),
        "garbled": "<annotation><object><name>cat</name>",
        "nosize": voc_xml("nosize.jpg", 0, 0, [("cat", 1, 1, 5, 5)], size=False),
        "nobox": "<annotation><size><width>9</width><height>9</height></size>"
                 "<object><name>cat</name><bndbox><xmin>a</xmin></bndbox></object>"
                 "<object><name>unicorn</name></object></annotation>",
    })
    with open(os.path.join(folder, "ImageSets", "Main", "train.txt"), "a") as f:
        f.write("missing\n")
    write_image(os.path.join(folder, "JPEGImages", "nosize.jpg"), 17, 13)
    ds = open_voc(folder, "train")
    assert ds.image_ids == ["good", "nosize", "nobox"]
    failed = dict(ds.failures)
    assert "not valid XML" in failed[os.path.join(folder, "Annotations", "garbled.xml")]
    assert "not found" in failed[os.path.join(folder, "Annotations", "missing.xml")]
    assert ds.annotation(1)["width"] == 17 and ds.annotation(1)["height"] == 13  # from the image
    assert len(ds.annotation(2)["labels"]) == 0
    assert ds.stats["boxes_dropped"] == 1 and ds.stats["objects_unknown_class"] == 1
    with pytest.raises(DataError, match="garbled.xml"):
        open_voc(folder, "train", strict=True)


def test_classes_file_and_png_images(tmp_path):
    folder = make_voc(tmp_path / "mine", {"x": (20, 20, [("blob", 1, 1, 5, 5)])},
                      classes=["blob", "spot"], write_images=False)
    write_image(os.path.join(folder, "JPEGImages", "x.png"), 20, 20)
    ds = open_dataset(f"voc:{folder}:train", cache_dir=tmp_path / "cache")
    assert ds.classes == ("__background__", "blob", "spot")
    assert ds.annotation(0)["labels"].tolist() == [1]
    assert ds.image_path(0).endswith("x.png")


def test_cache_is_used_and_invalidated_when_a_file_changes(tmp_path, monkeypatch):
    folder = make_voc(tmp_path / "VOC2007", {"a": (30, 20, [("cat", 1, 1, 10, 10)])})
    cache = tmp_path / "cache"
    open_voc(folder, "train", cache_dir=cache)
    assert len(os.listdir(cache)) == 1
    calls = []
    import pyfrcnn_layers.datasets.voc as voc
    real = voc._parse_annotation
    monkeypatch.setattr(voc, "_parse_annotation", lambda *a: calls.append(a) or real(*a))
    assert open_voc(folder, "train", cache_dir=cache).annotation(0)["boxes"][0, 2] == 9
    assert calls == []  # served from the cache
    xml = os.path.join(folder, "Annotations", "a.xml")
    with open(xml, "w") as f:
        f.write(voc_xml("a.jpg", 30, 20, [("cat", 1, 1, 12, 10)]))
    os.utime(xml, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert open_voc(folder, "train", cache_dir=cache).annotation(0)["boxes"][0, 2] == 11
    assert len(calls) == 1 and len(os.listdir(cache)) == 2


def test_py_faster_rcnn_name_under_root(tmp_path):
    make_voc(tmp_path / "VOCdevkit2007" / "VOC2007", {"a": (30, 20, [("cat", 1, 1, 10, 10)])},
             image_set="trainval")
    ds = open_dataset("voc_2007_trainval", root=tmp_path, cache_dir=tmp_path / "cache")
    assert ds.name == "voc_2007_trainval" and len(ds) == 1


def test_missing_folder_and_image_set_say_where(tmp_path):
    with pytest.raises(DataError, match=r"VOCdevkit2012.*VOC2012.*not found"):
        open_dataset("voc_2012_train", root=tmp_path)
    folder = make_voc(tmp_path / "VOC2007", {"a": (30, 20, [])}, image_set="trainval")
    with pytest.raises(DataError, match=r"image set 'test' not found.*trainval"):
        open_voc(folder, "test")
