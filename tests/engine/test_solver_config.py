"""Strict solver files: unknown keys, types, relations, sections, paths, --set."""

import os
import re
import textwrap

import pytest

from pyfrcnn.errors import ConfigError
from pyfrcnn.solver_config import KEYS, SOLVER_KEYS, load_solver

BASE = """\
train_net: nets/train.prototxt
base_lr: 0.001
lr_policy: step
gamma: 0.1
stepsize: 50000
max_iter: 70000
"""


def write(tmp_path, text, name="solver.yaml"):
    path = tmp_path / "cfg" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def error(tmp_path, text, overrides=()):
    with pytest.raises(ConfigError) as info:
        load_solver(write(tmp_path, text), overrides)
    return str(info.value)


def test_py_faster_rcnn_solver_loads_with_caffe_defaults(tmp_path):
    c = load_solver(write(tmp_path, BASE + "momentum: 0.9\nweight_decay: 0.0005\niter_size: 2\n"
                          "average_loss: 100\ndisplay: 20\nsnapshot: 0\n"
                          "snapshot_prefix: vgg16_faster_rcnn\n"))
    assert (c.base_lr, c.lr_policy, c.gamma, c.stepsize, c.momentum) == (0.001, "step", 0.1, 50000, 0.9)
    assert (c.iter_size, c.average_loss, c.display, c.type) == (2, 100, 20, "SGD")
    assert c.regularization_type == "L2" and c.clip_gradients == -1.0 and c.delta == 1e-8
    assert c.momentum2 == 0.999 and c.rms_decay == 0.99 and c.random_seed == -1
    assert c.sigint_effect == "stop" and c.sighup_effect == "snapshot"
    folder = str(tmp_path / "cfg")
    assert c.train_net == os.path.join(folder, "nets", "train.prototxt")
    assert c.snapshot_prefix == os.path.join(folder, "vgg16_faster_rcnn")
    # the detection section defaults are present for the layers and the snapshot meta
    assert c.sections["detection"].TRAIN.BATCH_SIZE == 128
    assert c.to_dict()["detection"]["TRAIN"]["BATCH_SIZE"] == 128


def test_unknown_key_names_file_line_and_closest(tmp_path):
    msg = error(tmp_path, BASE + "momentun: 0.9\n")
    assert re.search(r"solver\.yaml:7: momentun: unknown key \(did you mean 'momentum'\?\)", msg), msg


def test_unknown_section_key_names_full_path(tmp_path):
    msg = error(tmp_path, BASE + "detection:\n  TRAIN:\n    BATCH_SIZ: 64\n")
    assert "solver.yaml:7: detection.TRAIN.BATCH_SIZ: unknown key (did you mean 'BATCH_SIZE'?)" in msg


def test_section_type_error(tmp_path):
    msg = error(tmp_path, BASE + "detection:\n  TRAIN:\n    BATCH_SIZE: many\n")
    assert "detection.TRAIN.BATCH_SIZE: expected an integer" in msg


def test_unknown_top_level_is_neither_key_nor_section(tmp_path):
    msg = error(tmp_path, BASE + "detecton: {}\n")
    assert "detecton: unknown key (did you mean 'detection'?)" in msg


@pytest.mark.parametrize("line, expected", [
    ("max_iter: ten", "max_iter: expected an integer, got 'ten'"),
    ("base_lr: [1]", "base_lr: expected a number"),
    ("snapshot_after_train: 1", "snapshot_after_train: expected true or false"),
    ("type: Adma", "type: expected one of SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam, got 'Adma' (did you mean 'Adam'?)"),
    ("lr_policy: steps", "lr_policy: expected one of fixed, step"),
    ("stepvalue: [1, x]", "stepvalue: expected an integer or a list of integers"),
    ("train_net: 3", "train_net: expected a string"),
])
def test_wrong_types_say_expected_type(tmp_path, line, expected):
    key = line.split(":")[0]
    base = "".join(l + "\n" for l in BASE.splitlines() if not l.startswith(key + ":"))
    assert expected in error(tmp_path, base + line + "\n")


@pytest.mark.parametrize("text, expected", [
    ("train_net: a.prototxt\nmax_iter: 10\n", "base_lr: required"),
    ("train_net: a.prototxt\nbase_lr: 0.1\n", "max_iter: required"),
    ("base_lr: 0.1\nmax_iter: 10\n", "train_net: required"),
    ("train_net: a\nbase_lr: 0.1\nmax_iter: 10\nlr_policy: step\ngamma: 0.1\n",
     "stepsize: required by lr_policy 'step'"),
    ("train_net: a\nbase_lr: 0.1\nmax_iter: 10\nlr_policy: multistep\ngamma: 0.1\nstepvalue: [5, 3]\n",
     "stepvalue: must ascend"),
    ("train_net: a\nbase_lr: 0.1\nmax_iter: 10\ntype: AdaGrad\nmomentum: 0.9\n",
     "momentum: momentum cannot be used with AdaGrad"),
    ("train_net: a\nbase_lr: 0.1\nmax_iter: 10\niter_size: 0\n", "iter_size: must be at least 1"),
    ("train_net: a\nbase_lr: 0.1\nmax_iter: 10\nlr_policy: exp\ngamma: -0.5\n",
     "gamma: must not be negative for lr_policy 'exp'"),
    ("train_net: a\nbase_lr: 0.1\nmax_iter: 10\ndevice: gpu\n", "device: expected cpu, cuda"),
    ("train_net: a\nbase_lr: 0.1\nmax_iter: 10\ntest_interval: 5\n", "testing needs test_net"),
])
def test_relations_between_keys(tmp_path, text, expected):
    assert expected in error(tmp_path, text)


def test_yaml_syntax_and_duplicates(tmp_path):
    assert re.search(r"solver\.yaml:\d+:\d+: not valid YAML", error(tmp_path, "base_lr: [0.1\n"))
    assert "solver.yaml:2: base_lr: key given twice" in error(tmp_path, "base_lr: 1\nbase_lr: 2\n")
    assert "a solver file is a mapping" in error(tmp_path, "- 1\n- 2\n")


def test_set_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, BASE)
    c = load_solver(path, ["max_iter=100", "stepvalue=[10, 20]", "detection.TRAIN.SCALES=[400, 500]",
                           "weights=init.weights", "detection.RNG_SEED=7"])
    assert c.max_iter == 100 and c.stepvalue == (10, 20)
    assert c.sections["detection"].TRAIN.SCALES == (400, 500) and c.sections["detection"].RNG_SEED == 7
    assert c.weights == (os.path.join(str(tmp_path), "init.weights"),)  # --set paths: current folder
    with pytest.raises(ConfigError, match=r"--set max_iters=5: unknown key 'max_iters' \(did you mean 'max_iter'\?\)"):
        load_solver(path, ["max_iters=5"])
    with pytest.raises(ConfigError, match="detection.TRAIN.SCALE: unknown key"):
        load_solver(path, ["detection.TRAIN.SCALE=5"])
    with pytest.raises(ConfigError, match=r"solver\.yaml \(--set\): max_iter: expected an integer"):
        load_solver(path, ["max_iter=lots"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_solver(path, ["max_iter"])
    with pytest.raises(ConfigError, match="solver key 'base_lr' has no sub-keys"):
        load_solver(path, ["base_lr.x=1"])


def test_net_serves_both_phases(tmp_path):
    c = load_solver(write(tmp_path, "net: both.prototxt\nbase_lr: 0.1\nmax_iter: 5\n"
                          "test_interval: 2\ntest_iter: 3\n"))
    assert c.train_net == c.test_net == str(tmp_path / "cfg" / "both.prototxt")


def test_readme_documents_every_key():
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "solvers", "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    missing = [k.name for k in SOLVER_KEYS if f"`{k.name}`" not in text]
    assert not missing, f"solvers/README.md lacks {missing}"
    assert len(KEYS) == len(SOLVER_KEYS)
