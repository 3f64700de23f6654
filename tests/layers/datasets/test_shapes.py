import collections
import dataclasses
import os

import pytest

from pyfrcnn_layers.datasets import SHAPE_CLASSES, ShapesConfig, open_dataset
from pyfrcnn_layers.datasets import shapes
from pyfrcnn_layers.image import load_image

SMALL = ShapesConfig(train_images=24, test_images=12)


def files(folder):
    found = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = f.read()
    return found


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    cache = tmp_path_factory.mktemp("shapes")
    return cache, shapes.ensure_generated(str(cache), SMALL)


def test_two_generations_are_byte_identical(generated, tmp_path):
    _, folder = generated
    again = tmp_path / "again"
    shapes.generate(str(again), SMALL)
    first, second = files(folder), files(again)
    assert sorted(first) == sorted(second)
    assert len(first) == 2 * (24 + 12) + 4  # images, XML, 2 set files, classes.txt, marker
    assert all(first[name] == second[name] for name in first)


def test_image_k_does_not_depend_on_the_split_size(generated, tmp_path):
    _, folder = generated
    fewer = tmp_path / "fewer"
    shapes.generate(str(fewer), dataclasses.replace(SMALL, train_images=3, test_images=1))
    for name in ("JPEGImages/train_000002.jpg", "Annotations/train_000002.xml",
                 "JPEGImages/test_000000.jpg"):
        with open(os.path.join(folder, name), "rb") as f:
            assert (fewer / name).read_bytes() == f.read()


def test_splits_hold_every_class_and_boxes_fit(generated):
    cache, _ = generated
    for split, size in (("train", 24), ("test", 12)):
        ds = open_dataset(f"shapes:{split}", cache_dir=cache, shapes=SMALL)
        assert ds.classes == ("__background__",) + SHAPE_CLASSES and len(ds) == size
        assert not ds.failures and not ds.stats["boxes_clipped"] and not ds.stats["boxes_dropped"]
        counts = collections.Counter()
        for i in range(len(ds)):
            ann = ds.annotation(i)
            assert 1 <= len(ann["labels"]) <= 4
            assert 224 <= min(ann["width"], ann["height"]) <= 288
            boxes = ann["boxes"]
            assert (boxes[:, :2] >= 0).all()
            assert (boxes[:, 2] <= ann["width"] - 1).all() and (boxes[:, 3] <= ann["height"] - 1).all()
            sides = boxes[:, 2:] - boxes[:, :2] + 1
            assert sides.min() >= 24  # min_object_size 28, less for a star's short side
            counts.update(ann["labels"].tolist())
        assert sorted(counts) == [1, 2, 3, 4, 5], f"{split}: {counts}"
    im = load_image(ds.image_path(0))
    assert im.shape[:2] == (ds.annotation(0)["height"], ds.annotation(0)["width"])


def test_spec_size_override_and_incomplete_folder_regenerated(tmp_path):
    settings = ShapesConfig(train_images=2, test_images=1, min_side=64, max_side=80,
                            min_object_size=12)
    ds = open_dataset("shapes:train:3", cache_dir=tmp_path, shapes=settings)
    assert len(ds) == 3
    folder = os.path.dirname(os.path.dirname(ds.image_path(0)))
    os.remove(os.path.join(folder, shapes.MARKER))
    os.remove(ds.image_path(1))
    again = open_dataset("shapes:train:3", cache_dir=tmp_path, shapes=settings)
    assert os.path.exists(again.image_path(1)) and os.path.exists(os.path.join(folder, shapes.MARKER))
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(folder)]  # no temporary folders left
