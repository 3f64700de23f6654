"""`pyfrcnn solve --cfg experiments/cfgs/faster_rcnn_end2end.yml`: a
py-faster-rcnn cfg file mapped onto the solver's keys and sections.

Each leaf key of the cfg (TRAIN.SCALES, TEST.NMS, PIXEL_MEANS, ...) goes to
the solver-file section that has a key of that path (the Faster R-CNN
plugin's `detection` section mirrors py-faster-rcnn's cfg), as a `--set`
override placed before the command line's own. Besides: RNG_SEED also sets
random_seed, EXP_DIR names the run folder output/<EXP_DIR> (as
py-faster-rcnn's output/<EXP_DIR>/), GPU_ID the device cuda:<GPU_ID>. Keys
that mean nothing here (HAS_RPN-style switches of other pipelines, ROOT_DIR,
MATLAB, USE_GPU_NMS, ...) are named in one warning.
"""

import json
import logging

import yaml

from .errors import ConfigError

log = logging.getLogger("pyfrcnn.solver")

IGNORED = ("ROOT_DIR", "DATA_DIR", "MODELS_DIR", "MATLAB", "USE_GPU_NMS")


class CfgLoader(yaml.SafeLoader):
    """Safe YAML plus py-faster-rcnn's !!python/tuple (read as a list)."""


CfgLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                          lambda loader, node: loader.construct_sequence(node))


def _leaves(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, prefix + (str(key),))
    else:
        yield prefix, node


def _flat(value):
    """PIXEL_MEANS as py-faster-rcnn writes it ([[[102.98, 115.95, 122.77]]]) -> a flat list."""
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    return value


def _nest(keys, value):
    for key in reversed(keys):
        value = {key: value}
    return value


def read_cfg(path, sections):
    """(--set strings, run folder or None, device or None) from the cfg at
    `path`; `sections` is {name: validate} (registry.config_sections())."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=CfgLoader)
    except OSError as e:
        raise ConfigError(f"--cfg {path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark else path
        raise ConfigError(f"--cfg {at}: not valid YAML: {getattr(e, 'problem', None) or e}") \
            from None
    if data is None:
        return [], None, None
    if not isinstance(data, dict):
        raise ConfigError(f"--cfg {path}: a py-faster-rcnn cfg is a mapping of keys")
    overrides, unused, out, device = [], [], None, None
    for keys, value in _leaves(data):
        name = ".".join(keys)
        value = _flat(value)
        if keys == ("EXP_DIR",):
            out = f"output/{value}"
            continue
        if keys == ("GPU_ID",):
            device = f"cuda:{int(value)}"
            continue
        if keys == ("RNG_SEED",):
            overrides.append(f"random_seed={int(value)}")
        if keys[0] in IGNORED:
            unused.append(name)
            continue
        section = _section_of(keys, value, sections, path)
        if section is None:
            unused.append(name)
        else:
            overrides.append(f"{section}.{name}={json.dumps(value)}")
    if unused:
        log.warning("--cfg %s: %s mean nothing to pyfrcnn (ignored)", path, ", ".join(unused))
    return overrides, out, device


def _section_of(keys, value, sections, path):
    """The section that takes this key path; a wrong value is an error."""
    for name, validate in sections.items():
        try:
            validate(_nest(keys, value), name)
        except ConfigError as e:
            if "unknown key" in str(e):
                continue
            raise ConfigError(f"--cfg {path}: {'.'.join(keys)}: {e}") from None
        return name
    return None
