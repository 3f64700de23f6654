"""Solver files: YAML whose keys are Caffe's SolverParameter names, loaded strictly.

Beside the solver keys (SOLVER_KEYS: name, type, default, meaning) a file may
carry the run's own sections (`detection`, `data`, ...), each validated by the
function a plugin registered with `registry.register_config_section`. Unknown
keys, wrong types and impossible values are ConfigErrors that name the file,
the line, the key path and the closest valid key. Relative paths resolve
against the solver file's folder (paths given with `--set` against the current
folder). `--set key.path=value` overrides a value (parsed as YAML) with the
same strictness.
"""

import dataclasses
import math
import os

import yaml

from . import registry, safe_yaml
from .errors import ConfigError, did_you_mean
from .lr_policy import POLICIES
from .textfile import read_text

SOLVER_TYPES = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
SIGNAL_EFFECTS = ("stop", "snapshot", "none")


@dataclasses.dataclass(frozen=True)
class Key:
    name: str
    kind: object  # 'int', 'float', 'bool', 'str', 'path', 'paths', 'int_list' or a tuple of choices
    default: object
    doc: str


SOLVER_KEYS = [
    Key("net", "path", None, "net prototxt for both phases (include/exclude rules pick the layers); "
        "used where train_net / test_net are not given"),
    Key("train_net", "path", None, "the training net prototxt"),
    Key("test_net", "path", None, "the net built in TEST phase for testing during training"),
    Key("test_iter", "int", 0, "forward passes per test with the built-in tester (Caffe's test)"),
    Key("test_interval", "int", 0, "test every this many steps (0: never)"),
    Key("test_initialization", "bool", True, "also test at step 0 (Caffe's default)"),
    Key("test_after_train", "bool", False, "test once more at the end even when max_iter is "
        "not a multiple of test_interval"),
    Key("base_lr", "float", None, "the base learning rate (required)"),
    Key("lr_policy", POLICIES, "fixed", "how the rate changes with the step"),
    Key("gamma", "float", None, "decay factor of step, multistep, exp, inv, sigmoid"),
    Key("power", "float", None, "exponent of inv and poly"),
    Key("stepsize", "int", None, "steps between decays of step; the midpoint of sigmoid"),
    Key("stepvalue", "int_list", (), "the steps at which multistep decays (ascending)"),
    Key("max_iter", "int", None, "the number of steps to train (required)"),
    Key("warmup_iters", "int", 0, "linear warmup length in steps (0: none)"),
    Key("warmup_factor", "float", 0.001, "the rate multiplier at step 0 of the warmup"),
    Key("type", SOLVER_TYPES, "SGD", "the update rule"),
    Key("momentum", "float", 0.0, "SGD / Nesterov momentum; AdaDelta's decay; Adam's beta1"),
    Key("momentum2", "float", 0.999, "Adam's beta2"),
    Key("delta", "float", 1e-8, "AdaGrad, RMSProp, AdaDelta, Adam: the epsilon that keeps "
        "divisions finite"),
    Key("rms_decay", "float", 0.99, "RMSProp's decay of the mean square"),
    Key("weight_decay", "float", 0.0, "regularisation strength (times each param's decay_mult)"),
    Key("regularization_type", ("L2", "L1"), "L2", "L2: grad += decay * w; L1: grad += decay * sign(w)"),
    Key("clip_gradients", "float", -1.0, "scale gradients down to this global L2 norm "
        "(negative: no clipping)"),
    Key("iter_size", "int", 1, "forward/backward passes accumulated per step"),
    Key("single_tensor_updates", "bool", False, "update parameter by parameter instead of in "
        "multi-tensor groups (the same arithmetic; for checking)"),
    Key("fuse_layers", "bool", True, "run in-place BatchNorm -> Scale (-> ReLU) chains as one "
        "fused op (false: layer by layer, as Caffe)"),
    Key("channels_last", "bool", False, "run the train net's convolutions (and the layers "
        "after them) in torch's channels-last memory layout"),
    Key("average_loss", "int", 1, "the displayed loss is the mean over this many steps"),
    Key("display", "int", 0, "log every this many steps (0: never)"),
    Key("snapshot", "int", 0, "snapshot every this many steps (0: only at the end and on signals)"),
    Key("snapshot_prefix", "path", None, "snapshot files are <prefix>_iter_<N>.weights / "
        ".solverstate (default: <run folder>/<solver file name>)"),
    Key("snapshot_after_train", "bool", True, "snapshot when training ends (a stop by a "
        "signal always snapshots)"),
    Key("keep_snapshots", "int", 0, "keep only the last K snapshots of this prefix (0: all)"),
    Key("random_seed", "int", -1, "seed torch, numpy and random (negative: do not seed); "
        "rank r of a distributed run uses random_seed + r"),
    Key("weights", "paths", (), "weights file(s) to start from, loaded in order by layer name"),
    Key("device", "str", "auto", "cpu, cuda, cuda:N or auto (cuda when available)"),
    Key("nan_policy", ("stop", "skip"), "stop", "a NaN or Inf loss or gradient norm stops the "
        "run (no snapshot) or skips that step's update"),
    Key("sigint_effect", SIGNAL_EFFECTS, "stop", "on SIGINT: snapshot and stop, snapshot and "
        "go on, or ignore"),
    Key("sigterm_effect", SIGNAL_EFFECTS, "stop", "on SIGTERM (likewise)"),
    Key("sighup_effect", SIGNAL_EFFECTS, "snapshot", "on SIGHUP (likewise)"),
    Key("tensorboard", "bool", True, "write TensorBoard scalars to the run folder when "
        "torch.utils.tensorboard imports"),
]
KEYS = {k.name: k for k in SOLVER_KEYS}
PATH_KINDS = ("path", "paths")
INT_LIMIT = 2 ** 63 - 1


class SolverConfig:
    """The validated solver keys as attributes, plus `sections` ({name: validated
    value}), `path` (the solver file) and `folder` (its directory)."""

    def __init__(self, values, sections, path):
        for key in SOLVER_KEYS:
            setattr(self, key.name, values.get(key.name, key.default))
        self.sections = sections
        self.path = path
        self.folder = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()

    def to_dict(self):
        """Plain values: every solver key, then the sections."""
        out = {k.name: plain(getattr(self, k.name)) for k in SOLVER_KEYS}
        out.update({name: plain(value) for name, value in self.sections.items()})
        return out

    def replace(self, **changes):
        values = {k.name: getattr(self, k.name) for k in SOLVER_KEYS}
        for name, value in changes.items():
            if name not in KEYS:
                raise ConfigError(f"unknown solver key '{name}'{did_you_mean(name, KEYS)}")
            values[name] = value
        return SolverConfig(values, dict(self.sections), self.path)


def plain(value):
    """A validated value as plain dicts, lists and scalars (dataclasses flattened)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return plain(value.to_dict())
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


# -- reading ---------------------------------------------------------------
def _key_lines(node, prefix, lines, where):
    """{key path: line} of a composed YAML mapping; duplicate keys are errors."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen = set()
    for key_node, value_node in node.value:
        path = prefix + (str(key_node.value),)
        line = key_node.start_mark.line + 1
        if path in seen:
            raise ConfigError(f"{where}:{line}: {'.'.join(path)}: key given twice")
        seen.add(path)
        lines[path] = line
        _key_lines(value_node, path, lines, where)


def read_yaml(path):
    """(mapping, {key path: line}) of a YAML file; syntax errors give line:col."""
    text = read_text(path, "solver file", ConfigError)
    node, data = safe_yaml.compose(text, path, ConfigError)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a solver file is a mapping of keys, got {type(data).__name__}")
    lines = {}
    _key_lines(node, (), lines, path)
    return data, lines


def parse_override(text):
    """'key.path=value' -> (['key', 'path'], value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text}: expected key.path=value")
    value = safe_yaml.load(raw, f"--set {text}: the value", ConfigError) if raw.strip() else None
    return key.strip().split("."), value


def apply_override(data, text, sections):
    """Set one `--set key.path=value` into the raw mapping; returns the top key."""
    keys, value = parse_override(text)
    top = keys[0]
    if top not in KEYS and top not in sections:
        raise ConfigError(f"--set {text}: unknown key '{top}'"
                          f"{did_you_mean(top, [*KEYS, *sections])}")
    if top in KEYS:
        if len(keys) > 1:
            raise ConfigError(f"--set {text}: solver key '{top}' has no sub-keys")
        data[top] = value
        return top
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {text}: '{'.'.join(keys[:i + 1])}' is not a mapping")
        node = child
    node[keys[-1]] = value
    return top


def _check_type(key, value, at):
    kind = key.kind
    if value is None:
        return None
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError(f"{at}: expected one of {', '.join(kind)}, got {value!r}"
                              f"{did_you_mean(value, kind)}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{at}: expected an integer, got {value!r}")
        if abs(value) > INT_LIMIT:
            raise ConfigError(f"{at}: {value} does not fit in 64 bits")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{at}: expected a number, got {value!r}")
        if isinstance(value, int) and abs(value) > INT_LIMIT or not math.isfinite(value):
            raise ConfigError(f"{at}: expected a finite number, got {value!r}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{at}: expected true or false, got {value!r}")
        return value
    if kind in ("str", "path"):
        if not isinstance(value, str):
            raise ConfigError(f"{at}: expected a string, got {value!r}")
        return value
    if kind == "paths":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{at}: expected a path or a list of paths, got {value!r}")
        return tuple(items)
    if kind == "int_list":
        items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(items, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise ConfigError(f"{at}: expected an integer or a list of integers, got {value!r}")
        return tuple(items)
    raise AssertionError(kind)


def _resolve(value, folder):
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(_resolve(v, folder) for v in value)
    return os.path.normpath(os.path.join(folder, os.path.expanduser(value)))


def _check_values(v, at):
    """Relations between keys, as Caffe's solvers CHECK them."""
    def need(cond, key, message):
        if not cond:
            raise ConfigError(f"{at(key)}: {message}")

    need(v["base_lr"] is not None, "base_lr", "required (the base learning rate)")
    need(v["base_lr"] > 0, "base_lr", "must be positive")
    need(v["max_iter"] is not None, "max_iter", "required (the number of steps)")
    need(v["max_iter"] > 0, "max_iter", "must be positive")
    need(v["train_net"] or v["net"], "train_net", "required (or give net)")
    for name in ("iter_size", "average_loss"):
        need(v[name] >= 1, name, "must be at least 1")
    for name in ("display", "snapshot", "test_interval", "test_iter", "keep_snapshots",
                 "warmup_iters"):
        need(v[name] >= 0, name, "must not be negative")
    need(0 < v["warmup_factor"] <= 1, "warmup_factor", "must be in (0, 1]")
    need(v["random_seed"] < 2 ** 63 - 1024, "random_seed", "must be below 2^63 - 1024 (torch's "
         "generator takes a signed 64-bit seed; rank r uses random_seed + r)")
    for name in ("momentum", "momentum2", "rms_decay"):
        need(v[name] >= 0, name, "must not be negative")
    if v["type"] in ("Adam", "AdaDelta"):
        need(v["momentum"] < 1, "momentum", f"must be below 1 for {v['type']}")
    if v["type"] == "Adam":
        need(v["momentum2"] < 1, "momentum2", "must be below 1 for Adam")
    need(v["weight_decay"] >= 0, "weight_decay", "must not be negative")
    need(v["delta"] > 0, "delta", "must be positive")
    policy = v["lr_policy"]
    needs = {"step": ("gamma", "stepsize"), "multistep": ("gamma",), "exp": ("gamma",),
             "inv": ("gamma", "power"), "poly": ("power",), "sigmoid": ("gamma", "stepsize")}
    for name in needs.get(policy, ()):
        need(v[name] is not None, name, f"required by lr_policy '{policy}'")
    if policy in ("step", "multistep", "exp", "inv"):
        need(v["gamma"] >= 0, "gamma", f"must not be negative for lr_policy '{policy}'")
    if policy in ("step", "sigmoid"):
        need(v["stepsize"] > 0, "stepsize", "must be positive")
    if policy == "multistep":
        steps = v["stepvalue"]
        need(steps, "stepvalue", "lr_policy 'multistep' needs at least one stepvalue")
        need(all(a < b for a, b in zip(steps, steps[1:])), "stepvalue", "must ascend")
    solver = v["type"]
    if solver in ("AdaGrad", "RMSProp"):
        need(v["momentum"] == 0, "momentum", f"momentum cannot be used with {solver}")
    if solver == "RMSProp":
        need(0 <= v["rms_decay"] <= 1, "rms_decay", "must be in [0, 1]")
    device = v["device"]
    need(device in ("auto", "cpu", "cuda") or (device.startswith("cuda:")
                                                and device[5:].isdigit()),
         "device", f"expected cpu, cuda, cuda:N or auto, got {device!r}")
    if v["test_interval"] and not v["test_net"]:
        need(v["net"], "test_interval", "testing needs test_net (or net)")


def validate(data, path, lines=None, overridden=()):
    """A SolverConfig from a raw mapping read from `path`."""
    lines = lines or {}
    sections_known = registry.config_sections()

    def at(*keys):
        line = lines.get(tuple(keys)) if keys[0] not in overridden else None
        origin = f"{path}:{line}" if line else (f"{path} (--set)" if keys[0] in overridden else path)
        return f"{origin}: {'.'.join(keys)}"

    values = {}
    raw_sections = {}
    for key, value in data.items():
        key = str(key)
        if key in KEYS:
            values[key] = _check_type(KEYS[key], value, at(key))
        elif key in sections_known:
            raw_sections[key] = value
        else:
            kinds = "solver keys" + (f" and sections ({', '.join(sorted(sections_known))})"
                                     if sections_known else "")
            raise ConfigError(f"{at(key)}: unknown key{did_you_mean(key, [*KEYS, *sections_known])}"
                              f"; see solvers/README.md for the {kinds}")
    full = {k.name: values.get(k.name, k.default) if values.get(k.name) is not None else k.default
            for k in SOLVER_KEYS}
    _check_values(full, at)
    folder = os.path.dirname(os.path.abspath(path))
    for key in SOLVER_KEYS:
        if key.kind in PATH_KINDS and full[key.name]:
            base = os.getcwd() if key.name in overridden else folder
            full[key.name] = _resolve(full[key.name], base)
    if not full["train_net"]:
        full["train_net"] = full["net"]
    if not full["test_net"] and full["net"] and (full["test_interval"] or full["test_after_train"]):
        full["test_net"] = full["net"]
    sections = {}
    for name, check in sections_known.items():
        if name in raw_sections:
            where = at(name)
            try:
                sections[name] = check(raw_sections[name], where)
            except ConfigError:
                raise
            except Exception as e:
                raise ConfigError(f"{where}: {type(e).__name__}: {e}") from None
        else:
            try:
                sections[name] = check({}, name)
            except ConfigError:
                pass  # a section with required keys is simply absent
    return SolverConfig(full, sections, path)


def load_solver(path, overrides=()):
    """Read, override (`--set key.path=value` strings) and validate a solver file."""
    path = os.fspath(path)
    if path.endswith(".prototxt"):  # Caffe's text SolverParameter
        from .caffe_solver import read_caffe_solver

        data, lines = read_caffe_solver(path, KEYS)
    else:
        data, lines = read_yaml(path)
    sections = registry.config_sections()
    overridden = {apply_override(data, text, sections) for text in overrides} & set(KEYS)
    return validate(data, path, lines, overridden)
