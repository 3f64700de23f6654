"""Detection datasets: PASCAL VOC, COCO and the generated shapes set.

open_dataset(spec, root=None, cache_dir=None) -> Dataset, for a spec string
(see spec.py): 'voc:<folder>:<set>', 'coco:<json>:<images>', 'shapes:<split>',
or py-faster-rcnn's names 'voc_2007_trainval', 'coco_2014_train' under `root`.
A Dataset (base.py) gives name, classes, num_classes, len, image_ids,
image_path(i) and annotation(i); boxes are py-faster-rcnn's inclusive 0-based
pixels, as float32.
"""

import os

from pyfrcnn.errors import DataError

from .base import BACKGROUND, Dataset
from .coco import open_coco
from .config import DataConfig, validate_data_config
from .shapes import SHAPE_CLASSES, ShapesConfig, open_shapes
from .spec import FORMS, DatasetSpec, parse_spec
from .voc import VOC_CLASSES, open_voc


def open_dataset(spec, root=None, cache_dir=None, shapes=None, strict=False):
    """The Dataset a spec names. `cache_dir` holds parsed annotations and the
    generated shapes set (default <root>/cache; root defaults to 'data');
    `shapes` is a ShapesConfig; with `strict`, an unusable annotation file is an
    error rather than skipped."""
    parsed = spec if isinstance(spec, DatasetSpec) else parse_spec(spec, root)
    root = os.fspath(root) if root is not None else "data"
    cache_dir = os.fspath(cache_dir) if cache_dir is not None else os.path.join(root, "cache")
    if parsed.kind == "voc":
        folder, image_set = parsed.args
        name = parsed.name if not parsed.name.startswith("voc:") else None
        return open_voc(folder, image_set, cache_dir=cache_dir, name=name, strict=strict)
    if parsed.kind == "coco":
        json_file, images = parsed.args
        name = parsed.name if not parsed.name.startswith("coco:") else None
        return open_coco(json_file, images, cache_dir=cache_dir, name=name, strict=strict)
    if parsed.kind == "shapes":
        split, images = parsed.args
        return open_shapes(split, images, cache_dir=cache_dir, settings=shapes)
    raise DataError(f"dataset spec '{spec}': no loader for kind '{parsed.kind}'")


__all__ = ["BACKGROUND", "Dataset", "DataConfig", "DatasetSpec", "FORMS", "SHAPE_CLASSES",
           "ShapesConfig", "VOC_CLASSES", "open_coco", "open_dataset", "open_shapes", "open_voc",
           "parse_spec", "validate_data_config"]
