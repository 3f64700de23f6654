"""`pyfrcnn time` on train nets, `check` with a data layer's sizes, `draw`'s
in-place chains and parameters."""

import re

import pytest

from pyfrcnn import cli
from pyfrcnn.io import read_net
from pyfrcnn.timing import net_options
from pyfrcnn.tools import net_to_dot, run_config
from tests.conftest import REPO_DIR
from tests.engine.netlib import write_run

FAST_TRAIN = str(REPO_DIR / "prototxt" / "fast" / "train.prototxt")


def rows(text):
    return {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}


def test_time_a_train_net_from_its_solver_file(tmp_path, capsys):
    path = write_run(str(tmp_path), "base_lr: 0.1\nmax_iter: 1\n")
    assert cli.main(["time", path, "-n", "2", "--warmup", "1", "--device", "cpu"]) == 0
    table = rows(capsys.readouterr().out)
    assert table["data"][1] == "Python" and float(table["data"][2]) > 0  # the data layer ran
    assert table["fc"][1] == "Convolution" and float(table["fc"][3]) > 0  # and a backward
    assert table["Average"][1] == "Forward-Backward:"


def test_time_help_states_its_default_phase(capsys):
    with pytest.raises(SystemExit):
        cli.main(["time", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default TRAIN" in text and "default TEST" not in text


def test_time_data_spec_without_a_solver_file():
    args = cli.make_parser().parse_args(["time", FAST_TRAIN, "--data", "shapes:train"])
    net, config = run_config(args)
    assert net == FAST_TRAIN and config["data"].spec("TRAIN") == "shapes:train"
    assert config["distributed"] == {"rank": 0, "world_size": 1}


def test_time_builds_the_net_as_its_solver_file_says():
    solver = str(REPO_DIR / "solvers" / "shapes_solver.yaml")
    args = cli.make_parser().parse_args(["time", solver])
    assert net_options(args) == {"fuse": True, "channels_last": True}  # as `solve` runs it
    args = cli.make_parser().parse_args(["time", FAST_TRAIN, "--solver", solver,
                                         "--set", "channels_last=false"])
    assert net_options(args) == {"fuse": True, "channels_last": False}
    args = cli.make_parser().parse_args(["time", FAST_TRAIN, "--data", "shapes:train"])
    assert net_options(args) == {}  # no solver file: the Net's defaults


def test_check_a_train_net_at_a_given_image_size(capsys):
    assert cli.main(["check", FAST_TRAIN, "--phase", "TRAIN",
                     "--input-shape", "data=1,3,320,480"]) == 0
    table = rows(capsys.readouterr().out)
    assert "1x3x320x480" in table["input-data"]
    conv1 = next(c for c in table["conv1"] if re.match(r"\dx\d+x", c))
    assert conv1 == "1x24x160x240"  # 3x3 /2 pad 1 on 320x480
    assert cli.main(["check", FAST_TRAIN, "--phase", "TRAIN",
                     "--input-shape", "data=1,4,320,480"]) == 1
    err = capsys.readouterr().err
    assert "layer 'input-data' (Python)" in err and "1x3x?x?" in err and "1x4x320x480" in err


NET = '''name: "chain"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 7 } }
layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "fc" top: "loss" loss_weight: 0.5 }
'''


def edges(dot):
    labels = dict(re.findall(r'^  (\w+) \[label="([^"\\]+)', dot, re.M))
    return [(labels[a], labels[b]) for a, b in re.findall(r"^  (\w+) -> (\w+)", dot, re.M)]


def test_draw_chains_in_place_layers_in_order_and_shows_parameters(tmp_path):
    (tmp_path / "n.prototxt").write_text(NET)
    dot = net_to_dot(read_net(str(tmp_path / "n.prototxt"), "TEST"))
    assert "rankdir=TB" in dot
    e = edges(dot)
    # conv1 -> blob conv1 -> bn1 -> scale1 -> relu1 -> pool1: a chain, not a fan
    assert ("conv1", "conv1") in e and ("conv1", "bn1") in e
    assert ("bn1", "scale1") in e and ("scale1", "relu1") in e and ("relu1", "pool1") in e
    assert not any(b in ("scale1", "relu1") and a == "conv1" for a, b in e)
    assert "3x3 /2 pad 1, 4" in dot and "MAX 2x2 /2" in dot and "(InnerProduct)\\n7" in dot
    assert "loss weight 0.5" in dot


def test_draw_default_is_top_to_bottom(tmp_path):
    (tmp_path / "n.prototxt").write_text(NET)
    assert cli.main(["draw", str(tmp_path / "n.prototxt"), str(tmp_path / "n.dot")]) == 0
    assert "rankdir=TB" in (tmp_path / "n.dot").read_text()
