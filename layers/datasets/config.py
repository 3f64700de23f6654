"""The `data:` section of a solver file: which datasets the data layers read and how.

    data:
      train: voc_2007_trainval        # a dataset spec (see spec.py) for the TRAIN phase
      test: voc_2007_test             # ... and for the TEST phase
      root: data                      # where py-faster-rcnn names (voc_2007_trainval) live
      cache_dir: data/cache           # parsed annotations, generated shapes (default <root>/cache)
      workers: 2                      # loader threads (0: load in the main thread)
      prefetch: 4                     # samples loaded ahead of the net, at most
      skip_empty: true                # skip training images with no object (py-faster-rcnn's
                                      #   filter_roidb); false trains on them as background
      use_difficult: false            # train on objects marked difficult (py-faster-rcnn: no)
      max_failures: 10                # samples failing to load in a row before the run stops
      shapes: {train_images: 1000}    # settings of the generated shapes dataset

`validate_data_config(value, where)` checks it strictly: an unknown key is a
ConfigError naming its path with the closest valid key; a wrong type names the
expected one. Relative paths are kept as given (relative to the working folder).
"""

import dataclasses
import os
import typing

from pyfrcnn.errors import ConfigError, did_you_mean

from .shapes import ShapesConfig, settings_problems
from .spec import parse_spec


@dataclasses.dataclass(frozen=True)
class DataConfig:
    train: typing.Optional[str] = None
    test: typing.Optional[str] = None
    root: str = "data"
    cache_dir: typing.Optional[str] = None
    workers: int = 2
    prefetch: int = 4
    skip_empty: bool = True
    use_difficult: bool = False
    max_failures: int = 10
    shapes: ShapesConfig = dataclasses.field(default_factory=ShapesConfig)

    def spec(self, phase):
        """The dataset spec of `phase` ('TRAIN' or 'TEST'), or None."""
        return self.train if str(phase).upper() == "TRAIN" else self.test

    @property
    def cache_folder(self):
        return self.cache_dir if self.cache_dir is not None else os.path.join(self.root, "cache")

    def to_dict(self):
        return dataclasses.asdict(self)


_MINIMUM = {"workers": 0, "prefetch": 1, "max_failures": 1}


def validate_data_config(value, where="data"):
    """A DataConfig from the `data:` mapping of a solver file (None: the defaults)."""
    if value is None:
        return DataConfig()
    if isinstance(value, DataConfig):
        return value
    values = _fields(DataConfig, value, where)
    for key, low in _MINIMUM.items():
        if key in values and values[key] < low:
            raise ConfigError(f"{where}.{key}: must be at least {low}, got {values[key]}")
    for key in ("train", "test"):
        if values.get(key) is not None:
            try:
                parse_spec(values[key], values.get("root"))
            except ConfigError as e:
                raise ConfigError(f"{where}.{key}: {e}") from None
    if "shapes" in values:
        shapes = values["shapes"]
        if not isinstance(shapes, ShapesConfig):
            shapes = ShapesConfig(**_fields(ShapesConfig, shapes, f"{where}.shapes"))
        problems = settings_problems(shapes)
        if problems:
            raise ConfigError(f"{where}.shapes: {'; '.join(problems)}")
        values["shapes"] = shapes
    return DataConfig(**values)


def _fields(cls, value, where):
    """{field: checked value} from the mapping `value` for dataclass `cls`."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    result = {}
    for key, item in value.items():
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown key{did_you_mean(key, fields)}; "
                              f"known keys: {', '.join(fields)}")
        result[key] = _check_type(item, hints[key], f"{where}.{key}")
    return result


def _check_type(value, hint, path):
    optional = typing.get_origin(hint) is typing.Union and type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        value = float(value)
    elif hint is str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


__all__ = ["DataConfig", "validate_data_config"]
