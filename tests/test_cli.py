"""`pyfrcnn check | draw | time` as a user runs them."""

import shutil
import subprocess
import sys

import pytest
import torch

from pyfrcnn.cli import main
from tests.conftest import REPO_DIR

TRUNK = str(REPO_DIR / "benchmarks" / "vgg16_trunk.prototxt")
TINY = '''name: "tiny"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
'''


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.prototxt"
    path.write_text(TINY)
    return str(path)


def test_check_vgg16_trunk_gives_conv5_3_38x63(capsys):
    assert main(["check", TRUNK, "--input-shape", "data=1,3,600,1000"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("conv5_3 "))
    assert "1x512x38x63" in row and "2.36M" in row
    assert "14714688" in out  # VGG16's conv parameters: 14,714,688


def test_check_reference_test_net_unmodified(capsys, reference_dir):
    path = str(reference_dir / "vgg16_end2end_test.prototxt")
    assert main(["check", path, "--input-shape", "data=1,3,600,1000", "im_info=1,3"]) == 0
    out = capsys.readouterr().out
    assert "1x512x38x63" in next(l for l in out.splitlines() if l.startswith("conv5_3 "))
    assert "?x5" in next(l for l in out.splitlines() if l.startswith("proposal "))


def test_check_bad_net_is_one_line_and_exit_1(tmp_path, capsys):
    path = tmp_path / "bad.prototxt"
    path.write_text(TINY.replace('bottom: "conv1" top: "pool1"', 'bottom: "conv9" top: "pool1"'))
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "layer 'pool1' (Pooling)" in err and "'conv9'" in err and f"{path}:7" in err


def test_check_missing_python_module_names_layer_and_module(tmp_path, capsys):
    path = tmp_path / "p.prototxt"
    path.write_text(TINY + 'layer { name: "proposal" type: "Python" bottom: "pool1" top: "rois" '
                    'python_param { module: "rpn.no_such_layer" layer: "X" } }\n')
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "layer 'proposal' (Python)" in err and "rpn.no_such_layer" in err


def test_bad_input_shape_argument(tiny, capsys):
    assert main(["check", tiny, "--input-shape", "data:1,3"]) == 1
    assert "expected NAME=D1,D2" in capsys.readouterr().err


def test_draw_dot(tiny, tmp_path):
    out = tmp_path / "tiny.dot"
    assert main(["draw", tiny, str(out), "--rankdir", "TB"]) == 0
    text = out.read_text()
    assert text.startswith('digraph "tiny"') and "rankdir=TB" in text
    assert text.count("(Convolution)") == 1 and "conv1" in text


def test_draw_png_needs_graphviz(tiny, tmp_path, capsys):
    out = tmp_path / "tiny.png"
    status = main(["draw", tiny, str(out)])
    if shutil.which("dot"):
        assert status == 0 and out.read_bytes()[:4] == b"\x89PNG"
    else:
        assert status == 1 and "Graphviz" in capsys.readouterr().err


def test_time_prints_per_layer_rows(tiny, capsys):
    assert main(["time", tiny, "--iterations", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "conv1" in out and "pool1" in out and "Average Forward-Backward" in out


def test_time_on_a_device(tiny, capsys):
    assert main(["time", tiny, "--iterations", "1", "--warmup", "0", "--device", "cpu"]) == 0
    assert "threads, cpu)." in capsys.readouterr().out
    if not torch.cuda.is_available():
        assert main(["time", tiny, "--device", "cuda"]) == 1
        assert "CUDA is not available" in capsys.readouterr().err


def test_python_dash_m_entry_point(tiny):
    result = subprocess.run([sys.executable, "-m", "pyfrcnn", "check", tiny], capture_output=True,
                            text=True, cwd=REPO_DIR)
    assert result.returncode == 0, result.stderr
    assert "pool1" in result.stdout
