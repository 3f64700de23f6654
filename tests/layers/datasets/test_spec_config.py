import os

import pytest

from pyfrcnn_layers.datasets import DataConfig, ShapesConfig, parse_spec, validate_data_config
from pyfrcnn.errors import ConfigError


def test_spec_forms():
    assert parse_spec("voc:data/VOCdevkit2007/VOC2007:trainval").args == \
        ("data/VOCdevkit2007/VOC2007", "trainval")
    assert parse_spec(r"voc:C:\data\VOC2007:test").args == (r"C:\data\VOC2007", "test")
    assert parse_spec("coco:C:/a/instances.json:C:/a/images").args == \
        ("C:/a/instances.json", "C:/a/images")
    assert parse_spec("shapes:train").args == ("train", None)
    assert parse_spec("shapes:test:40").args == ("test", 40)
    voc = parse_spec("voc_2007_trainval", root="/d")
    assert voc.kind == "voc" and voc.args == (os.path.join("/d", "VOCdevkit2007", "VOC2007"), "trainval")
    coco = parse_spec("coco_2014_train", root="/d")
    assert coco.args == (os.path.join("/d", "coco", "annotations", "instances_train2014.json"),
                         os.path.join("/d", "coco", "images", "train2014"))


@pytest.mark.parametrize("spec", ["", "voc:onlyfolder", "shapes:val", "shapes:train:x",
                                  "lmdb:x:y", "pascal_2007"])
def test_bad_specs_name_the_spec_and_the_forms(spec):
    with pytest.raises(ConfigError) as e:
        parse_spec(spec)
    assert f"'{spec}'" in str(e.value) and "voc:<VOC year folder>:<image set>" in str(e.value)


def test_data_config_defaults_and_values():
    assert validate_data_config(None) == DataConfig()
    config = validate_data_config({"train": "shapes:train", "test": "voc_2007_test", "workers": 0,
                                   "shapes": {"train_images": 50, "max_object_fraction": 1}})
    assert config.spec("TRAIN") == "shapes:train" and config.spec("TEST") == "voc_2007_test"
    assert config.workers == 0 and config.prefetch == 4 and config.skip_empty is True
    assert config.shapes == ShapesConfig(train_images=50, max_object_fraction=1.0)
    assert config.cache_folder == os.path.join("data", "cache")


@pytest.mark.parametrize("value, message", [
    ({"trian": "shapes:train"}, r"data\.trian: unknown key \(did you mean 'train'\?\)"),
    ({"shapes": {"train_image": 3}}, r"data\.shapes\.train_image: unknown key \(did you mean 'train_images'"),
    ({"workers": "two"}, r"data\.workers: expected an integer"),
    ({"workers": -1}, r"data\.workers: must be at least 0"),
    ({"skip_empty": 1}, r"data\.skip_empty: expected true or false"),
    ({"train": "shapes:val"}, r"data\.train: dataset spec 'shapes:val'"),
    ({"shapes": {"min_side": 300, "max_side": 200}}, r"data\.shapes: need 16 <= min_side <= max_side"),
    (["train"], r"data: expected a mapping"),
])
def test_data_config_is_strict(value, message):
    with pytest.raises(ConfigError, match=message):
        validate_data_config(value, "data")
