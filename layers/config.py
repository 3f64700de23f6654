"""The detection configuration: every py-faster-rcnn TRAIN / TEST knob the
layers read, under py-faster-rcnn's own names, with its end2end defaults
(lib/fast_rcnn/config.py as overridden by experiments/cfgs/faster_rcnn_end2end.yml).

There is no global: the solver file's `detection:` section is validated into a
DetectionConfig and handed to every layer as `layer.config["detection"]`;
`detection_config(layer.config)` returns it (or the defaults). Unknown keys are
errors that name the key path and the closest valid key.
"""

import dataclasses
import math

from pyfrcnn import safe_yaml
from pyfrcnn.errors import ConfigError, did_you_mean


@dataclasses.dataclass
class TrainConfig:
    SCALES: tuple = (600,)            # shorter side of training images (one drawn per image)
    MAX_SIZE: int = 1000              # cap on the longer side
    IMS_PER_BATCH: int = 1            # images per forward (py-faster-rcnn end2end: 1; roi_data.py)
    BATCH_SIZE: int = 128             # RoIs per image sampled by proposal_target
    FG_FRACTION: float = 0.25         # at most this share of the RoIs are foreground
    FG_THRESH: float = 0.5            # IoU >= FG_THRESH: foreground RoI
    BG_THRESH_HI: float = 0.5         # background RoIs: IoU in [BG_THRESH_LO, BG_THRESH_HI)
    BG_THRESH_LO: float = 0.0         # end2end default (py-faster-rcnn's base cfg: 0.1)
    USE_FLIPPED: bool = True          # add horizontally flipped images
    BBOX_REG: bool = True
    BBOX_THRESH: float = 0.5
    BBOX_NORMALIZE_TARGETS: bool = True
    BBOX_NORMALIZE_TARGETS_PRECOMPUTED: bool = True   # end2end: normalise by the fixed means / stds
    BBOX_NORMALIZE_MEANS: tuple = (0.0, 0.0, 0.0, 0.0)
    BBOX_NORMALIZE_STDS: tuple = (0.1, 0.1, 0.2, 0.2)
    BBOX_INSIDE_WEIGHTS: tuple = (1.0, 1.0, 1.0, 1.0)
    ASPECT_GROUPING: bool = True      # batch images of like aspect (matters for IMS_PER_BATCH > 1)
    HAS_RPN: bool = True
    PROPOSAL_METHOD: str = "gt"
    ADD_JITTERED_GT: bool = False     # proposal_target: also add a jittered copy of the gt boxes
    RPN_POSITIVE_OVERLAP: float = 0.7
    RPN_NEGATIVE_OVERLAP: float = 0.3
    RPN_CLOBBER_POSITIVES: bool = False  # negatives overwrite positives when True
    RPN_FG_FRACTION: float = 0.5
    RPN_BATCHSIZE: int = 256
    RPN_NMS_THRESH: float = 0.7
    RPN_PRE_NMS_TOP_N: int = 12000
    RPN_POST_NMS_TOP_N: int = 2000
    RPN_MIN_SIZE: int = 16            # in the original image's pixels
    RPN_BBOX_INSIDE_WEIGHTS: tuple = (1.0, 1.0, 1.0, 1.0)
    RPN_POSITIVE_WEIGHT: float = -1.0  # -1: uniform 1 / number of sampled anchors


@dataclasses.dataclass
class TestConfig:
    SCALES: tuple = (600,)
    MAX_SIZE: int = 1000
    NMS: float = 0.3                  # per-class NMS of final detections
    SCORE_THRESH: float = 0.05        # per-class score threshold of final detections
    MAX_PER_IMAGE: int = 100          # detections kept per image over all classes
    BBOX_REG: bool = True
    HAS_RPN: bool = True
    PROPOSAL_METHOD: str = "gt"
    RPN_NMS_THRESH: float = 0.7
    RPN_PRE_NMS_TOP_N: int = 6000
    RPN_POST_NMS_TOP_N: int = 300
    RPN_MIN_SIZE: int = 16


@dataclasses.dataclass
class DetectionConfig:
    TRAIN: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    TEST: TestConfig = dataclasses.field(default_factory=TestConfig)
    PIXEL_MEANS: tuple = (102.9801, 115.9465, 122.7717)  # BGR, subtracted from images
    RNG_SEED: int = 3
    EPS: float = 1e-14
    DEDUP_BOXES: float = 1.0 / 16.0

    def phase(self, phase):
        """The TRAIN or TEST section for a phase name."""
        return self.TRAIN if str(phase).upper() == "TRAIN" else self.TEST

    @classmethod
    def from_dict(cls, values, where="detection"):
        """Validate a (possibly partial) dict of knobs; unknown keys, wrong types and
        values out of range are errors naming the key path."""
        config = _build(cls, values or {}, where)
        check_ranges(config, where)
        return config

    def to_dict(self):
        return dataclasses.asdict(self)


def _coerce(value, default, path):
    """Check `value` against the type of the field's default."""
    kind = type(default)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _INT_LIMIT:
        raise ConfigError(f"{path}: {value} does not fit in 64 bits")
    if dataclasses.is_dataclass(default):
        return _build(kind, value, path)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if kind is tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and len(default) >= 1 \
                and path.endswith("SCALES"):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        item_kind = type(default[0]) if default else float
        items = []
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{path}[{i}]: expected a number, got {v!r}")
            if isinstance(v, int) and abs(v) > _INT_LIMIT or not math.isfinite(v):
                raise ConfigError(f"{path}[{i}]: expected a finite number, got {v!r}")
            items.append(int(v) if item_kind is int and float(v).is_integer() else float(v)
                         if item_kind is float else v)
        if len(default) == 4 and len(items) != 4:
            raise ConfigError(f"{path}: expected 4 numbers, got {len(items)}")
        if path.endswith("PIXEL_MEANS") and len(items) != 3:
            raise ConfigError(f"{path}: expected 3 numbers (B, G, R), got {len(items)}")
        return tuple(items)
    return value


def _build(cls, values, path):
    if isinstance(values, cls):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{path}.{key}: unknown key{did_you_mean(key, fields)}")
        kwargs[key] = _coerce(value, getattr(defaults, key), f"{path}.{key}")
    return cls(**kwargs)


# Where each knob must lie: (low, high) inclusive, None for unbounded. Top-N and
# MAX_PER_IMAGE of 0 or less keep all, as in py-faster-rcnn, so they are free.
_UNIT = (0.0, 1.0)
_RANGES = {
    "TRAIN.SCALES": (1, None), "TRAIN.MAX_SIZE": (1, None), "TRAIN.IMS_PER_BATCH": (1, None),
    "TRAIN.BATCH_SIZE": (1, None), "TRAIN.FG_FRACTION": _UNIT, "TRAIN.FG_THRESH": _UNIT,
    "TRAIN.BG_THRESH_HI": _UNIT, "TRAIN.BG_THRESH_LO": _UNIT, "TRAIN.BBOX_THRESH": _UNIT,
    "TRAIN.BBOX_INSIDE_WEIGHTS": (0.0, None), "TRAIN.RPN_BBOX_INSIDE_WEIGHTS": (0.0, None),
    "TRAIN.RPN_POSITIVE_OVERLAP": _UNIT, "TRAIN.RPN_NEGATIVE_OVERLAP": _UNIT,
    "TRAIN.RPN_FG_FRACTION": _UNIT, "TRAIN.RPN_BATCHSIZE": (1, None),
    "TRAIN.RPN_NMS_THRESH": _UNIT, "TRAIN.RPN_MIN_SIZE": (0, None),
    "TEST.SCALES": (1, None), "TEST.MAX_SIZE": (1, None), "TEST.NMS": _UNIT,
    "TEST.SCORE_THRESH": _UNIT, "TEST.RPN_NMS_THRESH": _UNIT, "TEST.RPN_MIN_SIZE": (0, None),
    "RNG_SEED": (0, 2 ** 32 - 1), "EPS": (0.0, None), "DEDUP_BOXES": (0.0, None),
}
_POSITIVE = ("TRAIN.BBOX_NORMALIZE_STDS", "EPS", "DEDUP_BOXES")
_INT_LIMIT = 2 ** 63 - 1


def _values(config, prefix=""):
    """{'TRAIN.SCALES': value, ...} of a DetectionConfig."""
    out = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            out.update(_values(value, f"{prefix}{field.name}."))
        else:
            out[f"{prefix}{field.name}"] = value
    return out


def check_ranges(config, where="detection"):
    """Every number finite and within its range; thresholds ordered. ConfigError
    naming the key path otherwise (`BATCH_SIZE: 0` would train loss_cls = 0)."""
    values = _values(config)

    def fail(key, message):
        raise ConfigError(f"{where}.{key}: {message}")

    for key, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            shown = f"got {list(value)}" if isinstance(value, tuple) else f"got {value!r}"
            if isinstance(item, float) and not math.isfinite(item):
                fail(key, f"must be a finite number, {shown}")
            if isinstance(item, int) and abs(item) > _INT_LIMIT:
                fail(key, f"must fit in 64 bits, {shown}")
            low, high = _RANGES.get(key, (None, None))
            if low is not None and high is not None and not low <= item <= high:
                fail(key, f"must be in [{low}, {high}], {shown}")
            if low is not None and not item >= low:
                fail(key, f"must be at least {low}, {shown}")
            if key in _POSITIVE and not item > 0:
                fail(key, f"must be positive, {shown}")
    train = config.TRAIN
    if train.BG_THRESH_LO > train.BG_THRESH_HI:
        fail("TRAIN.BG_THRESH_LO", f"must not exceed TRAIN.BG_THRESH_HI ({train.BG_THRESH_LO:g} > "
             f"{train.BG_THRESH_HI:g}): no roi could be background")
    if train.BG_THRESH_HI > train.FG_THRESH:
        fail("TRAIN.BG_THRESH_HI", f"must not exceed TRAIN.FG_THRESH ({train.BG_THRESH_HI:g} > "
             f"{train.FG_THRESH:g}): a roi would be both foreground and background")
    if train.RPN_NEGATIVE_OVERLAP > train.RPN_POSITIVE_OVERLAP:
        fail("TRAIN.RPN_NEGATIVE_OVERLAP", f"must not exceed TRAIN.RPN_POSITIVE_OVERLAP "
             f"({train.RPN_NEGATIVE_OVERLAP:g} > {train.RPN_POSITIVE_OVERLAP:g})")
    # RPN_POSITIVE_WEIGHT is checked by the anchor target layer that reads it.


def detection_config(config):
    """The DetectionConfig in a layer's run config (py-faster-rcnn's end2end defaults if none)."""
    value = (config or {}).get("detection") if isinstance(config, dict) else None
    if value is None:
        return DetectionConfig()
    if isinstance(value, DetectionConfig):
        return value
    return DetectionConfig.from_dict(value)


def param_str_values(layer, param_str):
    """py-faster-rcnn's param_str as a dict, read by pyfrcnn's one safe YAML loader:
    "'feat_stride': 16" (one line, commas between keys) or its COCO nets'
    "'feat_stride': 16 \\n'scales': !!python/tuple [4, 8, 16, 32]" (a key a line)."""
    text = (param_str or "").strip()
    if not text:
        return {}
    if not text.startswith("{") and "\n" not in text:
        text = "{" + text + "}"  # one line of keys: a flow mapping
    try:
        return safe_yaml.load(text, "param_str", ConfigError)
    except ConfigError as e:
        raise layer.error(str(e)) from None


def parse_param_str(layer, param_str, cls):
    """py-faster-rcnn's param_str (YAML, e.g. "'feat_stride': 16") into dataclass `cls`;
    unknown keys and wrong types are errors naming the layer."""
    values = param_str_values(layer, param_str)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise layer.error(f"param_str must be a mapping of settings, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    defaults = cls()
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise layer.error(f"param_str: unknown setting '{key}'{did_you_mean(key, fields)}; "
                              f"known: {', '.join(fields)}")
        try:
            kwargs[key] = _coerce(value, getattr(defaults, key), f"param_str.{key}")
        except ConfigError as e:
            raise layer.error(str(e)) from None
    return cls(**kwargs)


__all__ = ["TrainConfig", "TestConfig", "DetectionConfig", "detection_config", "parse_param_str"]
