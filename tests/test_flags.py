"""The same flags in every command: --device/--gpu, --set, --data-root,
--debug/--quiet before the command, usage errors that name the command, and
`detect --classes a b c IMAGE...`."""

import json
import os

import pytest
import torch

from pyfrcnn import cli
from pyfrcnn.arguments import device_from_args, resolve_device
from pyfrcnn.errors import ConfigError
from tests.entry_point import pyfrcnn
from tests.layers.evaluation.test_commands import CLASSES, FAST_NET, SMALL, sets, voc, weights  # noqa: F401

NET_COMMANDS = ("test", "detect", "solve", "time")


def parse(argv):
    return cli.make_parser().parse_args(argv)


@pytest.mark.parametrize("argv", [
    ["test", "--net", "n", "--weights", "w", "--data", "d"],
    ["detect", "--net", "n", "--weights", "w", "x.jpg"],
    ["time", "n.prototxt"],
])
def test_device_defaults_to_auto_and_gpu_n_is_cuda_n(argv):
    assert device_from_args(parse(argv)) == "auto"
    assert device_from_args(parse(argv + ["--gpu", "1"])) == "cuda:1"
    assert device_from_args(parse(argv + ["--device", "cpu"])) == "cpu"


def test_solve_device_defaults_to_the_solver_file():
    args = parse(["solve", "s.yaml"])
    assert device_from_args(args, "cuda:0") == "cuda:0"
    assert device_from_args(parse(["solve", "s.yaml", "--gpu", "0"]), "cpu") == "cuda:0"


def test_auto_is_cpu_without_cuda_and_cuda_without_it_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="device 'cuda:0': CUDA is not available"):
        resolve_device("cuda:0")


def test_set_is_one_value_per_flag_everywhere():
    for argv in (["solve", "s.yaml"], ["test", "--net", "n", "--weights", "w", "--data", "d"],
                 ["detect", "--net", "n", "--weights", "w", "x.jpg"]):
        args = parse(argv + ["--set", "a.b=1", "--set", "c=2"])
        assert args.overrides == ["a.b=1", "c=2"]


def test_data_root_is_one_name_with_the_old_one_kept():
    assert parse(["data", "check", "voc_2007_test", "--data-root", "d1"]).data_root == "d1"
    assert parse(["data", "check", "voc_2007_test", "--root", "d2"]).data_root == "d2"
    assert parse(["eval", "--dets", "x", "--data", "s", "--data-root", "d3"]).data_root == "d3"
    assert parse(["test", "--net", "n", "--weights", "w", "--data", "s",
                  "--data-root", "d4"]).data_root == "d4"


def test_a_usage_error_names_the_command_through_the_entry_point(tmp_path):
    result = pyfrcnn("--quiet", "check", "net.prototxt", "--no-such-flag", cwd=tmp_path)
    assert result.returncode == 2
    assert "pyfrcnn check: error: unrecognized arguments: --no-such-flag" in result.stderr


@pytest.mark.parametrize("argv, message", [
    (["data", "check", "voc_2007_test", "--bogus"],
     "pyfrcnn data check: error: unrecognized arguments: --bogus"),
    (["solve", "s.yaml", "--gpu", "0", "--device", "cpu"],
     "pyfrcnn solve: error: argument --device: not allowed with argument --gpu"),
])
def test_usage_errors_name_the_command(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["detect", "--net", "n", "--weights", "w", "--device", "gpu0", "x.jpg"],
     "pyfrcnn detect: error: device 'gpu0': expected cpu, cuda, cuda:N or auto"),
])
def test_a_bad_device_is_one_line_naming_the_command(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("train_net: n.prototxt\nbase_lr: 0.1\nmax_iter: 1\n")
    assert cli.main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == message, lines


def test_debug_and_quiet_before_or_after_the_command():
    assert parse(["--debug", "check", "n"]).debug is True
    assert parse(["check", "n", "--debug"]).debug is True
    assert parse(["--quiet", "check", "n"]).quiet is True
    assert parse(["check", "n"]).debug is False


def test_detect_classes_then_images_folders_and_globs(voc, tmp_path, weights, capsys):  # noqa: F811
    images = voc / "JPEGImages"
    out = tmp_path / "dets"
    status = cli.main(["detect", "--net", FAST_NET, "--weights", str(weights), "--thresh", "0",
                       "--out", str(out), *sets(*SMALL), "--device", "cpu",
                       "--classes", *CLASSES, str(images / "a.jpg"), str(images)])
    assert status == 0, capsys.readouterr().err
    # a.jpg, then the folder's a.jpg and b.jpg
    assert sorted(os.listdir(out)) == ["a.json", "a_2.json", "a_2_det.jpg", "a_det.jpg",
                                       "b.json", "b_det.jpg"]
    found = json.loads((out / "a.json").read_text())["detections"]
    assert found and {d["class"] for d in found} <= set(CLASSES)
    out2 = tmp_path / "dets2"
    status = cli.main(["detect", str(images / "*.jpg"), "--net", FAST_NET, "--weights",
                       str(weights), "--out", str(out2), *sets(*SMALL), "--device", "cpu"])
    assert status == 0
    assert sorted(os.listdir(out2)) == ["a.json", "a_det.jpg", "b.json", "b_det.jpg"]
    assert cli.main(["detect", "--net", FAST_NET, "--weights", str(weights), "--device", "cpu",
                     "--classes", "x", "y"]) == 1
    assert "--classes: 2 names given, the net scores 5" in capsys.readouterr().err
