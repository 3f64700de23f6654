"""`pyfrcnn solve solver.prototxt`: Caffe's text SolverParameter as a solver file."""

import pytest

from pyfrcnn import cli
from pyfrcnn.errors import ConfigError
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import net_text


def test_py_faster_rcnn_solver_reads_as_its_yaml_twin(reference_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Caffe resolves paths against the current folder
    c = load_solver(reference_dir / "vgg16_end2end_solver.prototxt", ["max_iter=70000"])
    assert c.train_net == str(tmp_path / "models/pascal_voc/VGG16/faster_rcnn_end2end/train.prototxt")
    assert (c.base_lr, c.lr_policy, c.gamma, c.stepsize) == (0.001, "step", 0.1, 50000)
    assert (c.display, c.average_loss, c.momentum, c.weight_decay) == (20, 100, 0.9, 0.0005)
    assert (c.snapshot, c.iter_size, c.max_iter) == (0, 2, 70000)
    assert c.snapshot_prefix == str(tmp_path / "vgg16_faster_rcnn")
    with pytest.raises(ConfigError, match="max_iter: required"):
        load_solver(reference_dir / "vgg16_end2end_solver.prototxt")


def test_caffe_enums_and_repeated_fields(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "s.prototxt"
    path.write_text('net: "n.prototxt"  # a comment\nbase_lr: 1e-2 max_iter: 100\n'
                    'lr_policy: "multistep" stepvalue: 10 stepvalue: 50 gamma: 0.5\n'
                    'solver_type: NESTEROV momentum: 0.9\nsolver_mode: GPU device_id: 1\n'
                    'sigint_effect: SNAPSHOT\nsnapshot_format: BINARYPROTO\n'
                    'test_iter: 5 test_iter: 7 test_interval: 10\n'
                    'train_state { level: 0 }\n')
    c = load_solver(path)
    assert c.train_net == str(tmp_path / "n.prototxt")
    assert c.stepvalue == (10, 50) and c.type == "Nesterov" and c.device == "cuda:1"
    assert c.sigint_effect == "snapshot" and c.test_iter == 5 and c.base_lr == 0.01


def test_an_unknown_field_names_the_line(tmp_path):
    path = tmp_path / "s.prototxt"
    path.write_text('base_lr: 0.1\nmax_iter: 10\nbase_lrr: 0.2\n')
    with pytest.raises(ConfigError, match=r"s\.prototxt:3: base_lrr: .*did you mean 'base_lr'"):
        load_solver(path)
    path.write_text('base_lr: 0.1\nnet_param {\n')
    with pytest.raises(ConfigError, match=r"s\.prototxt:2: 'net_param \{' is never closed"):
        load_solver(path)


def test_solve_a_caffe_solver(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.prototxt").write_text(net_text())
    (tmp_path / "solver.prototxt").write_text(
        'train_net: "train.prototxt"\nbase_lr: 0.01\nmax_iter: 2\nsolver_mode: CPU\n'
        'snapshot_prefix: "run/tiny"\ndisplay: 1\n')
    assert cli.main(["solve", "solver.prototxt", "--set", "tensorboard=false"]) == 0
    assert (tmp_path / "run" / "tiny_iter_2.weights").exists()
    log_text = (tmp_path / "run" / "train.log").read_text()
    assert "Iteration 1, lr = 0.01" in log_text and "device cpu" in log_text
