"""The one YAML loader: Caffe users' floats, py-faster-rcnn's param_str, and
refusals (alias bombs, recursion, python tags, bytes that are not UTF-8) as
one-line errors naming the file and line."""

import time

import pytest

from pyfrcnn import safe_yaml
from pyfrcnn.errors import ConfigError, NetError, ParseError
from pyfrcnn.net import Net
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import net_text
from tests.layers.rpn_helpers import build_layer


def alias_bomb(levels=9, width=9):
    """The classic: each level an anchored list of `width` aliases of the one below."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, value", [
    ("1e-4", 1e-4), ("1e6", 1e6), ("-2E+3", -2000.0), ("1.5", 1.5), (".5", 0.5), ("3.", 3.0),
    ("1.0e-3", 1e-3), ("10", 10), ("0x10", 16), ("1_000", 1000), (".inf", float("inf")),
    ("'1e-4'", "1e-4"), ("e5", "e5"), ("1e", "1e"), ("true", True),
])
def test_scalars_as_caffe_users_mean_them(text, value):
    got = safe_yaml.load(f"k: {text}", "t")["k"]
    assert got == value and type(got) is type(value)


def test_solver_file_and_set_read_exponent_floats(tmp_path):
    (tmp_path / "train.prototxt").write_text(net_text())
    path = tmp_path / "solver.yaml"
    path.write_text("train_net: train.prototxt\nbase_lr: 1e-4\nmax_iter: 2\nweight_decay: 5e-4\n")
    config = load_solver(str(path))
    assert config.base_lr == 1e-4 and config.weight_decay == 5e-4
    assert load_solver(str(path), ["base_lr=1e6"]).base_lr == 1e6


def test_alias_bomb_is_refused_quickly_with_the_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    assert len(path.read_bytes()) < 1000
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb\.yaml:\d+:\d+: its aliases expand to more than "
                                          r"100000 values") as e:
        load_solver(str(path))
    assert time.perf_counter() - start < 2
    assert "\n" not in str(e.value)


def test_small_aliases_are_fine():
    assert safe_yaml.load("a: &x [1, 2]\nb: *x", "t") == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.parametrize("text, pattern", [
    ("a: &x [*x]", r"t:1:4: an alias refers to the collection that holds it"),
    ("a: !!python/object/apply:os.system ['true']", r"t:1:4: .*python/object/apply:os.system"),
    ("a: !!python/name:os.system", r"python/name:os.system"),
    ("a: !!python/object/new:dict {}", r"python/object/new:dict"),
    ("a: 1\nb: \x07", r"t:2:4: not valid YAML: the control character 0x07"),
    ("a: [1, 2", r"t:1:9: not valid YAML"),
    ("a: " + "[" * 300 + "]" * 300, r"t(:\d+:\d+)?: nested"),
])
def test_refusals_are_one_line(text, pattern):
    with pytest.raises(ConfigError, match=pattern) as e:
        safe_yaml.load(text, "t")
    assert "\n" not in str(e.value)


def test_solver_file_not_utf8_names_line_and_column(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"base_lr: 0.1\nmax_iter: 2\nname: \"\xff\"\n")
    with pytest.raises(ConfigError, match=r"s\.yaml:3:8: not UTF-8 text \(byte 0xff\)"):
        load_solver(str(path))


def test_prototxt_not_utf8_names_line_and_column(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_bytes(b'name: "\xff"\n')
    with pytest.raises(ParseError, match=r"n\.prototxt:1:8: not UTF-8 text \(byte 0xff\)"):
        Net(str(path))


def test_prototxt_escape_of_a_non_utf8_byte_is_one_line(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text('name: "\\xff"\n')
    with pytest.raises(ParseError) as e:
        Net(str(path))
    assert "n.prototxt:" in str(e.value) and "\n" not in str(e.value)


def test_net_path_with_a_brace_is_a_path(tmp_path):
    folder = tmp_path / "run{1}"
    folder.mkdir()
    (folder / "train.prototxt").write_text(net_text())
    assert Net(str(folder / "train.prototxt")).name == "tiny"
    with pytest.raises(ParseError, match=r"run\{2\}/x\.prototxt: no such net"):
        Net(str(tmp_path / "run{2}" / "x.prototxt"))


def test_py_faster_rcnn_coco_param_str():
    from pyfrcnn_layers.proposal import ProposalLayer

    shapes = [(1, 24, 4, 4), (1, 48, 4, 4), (1, 3)]
    layer, _ = build_layer(ProposalLayer, "'feat_stride': 16 \n'scales': !!python/tuple [4, 8, 16, 32]",
                        shapes, 1)
    assert layer.params.feat_stride == 16 and tuple(layer.params.scales) == (4, 8, 16, 32)
    assert layer.grid.num_anchors == 12
    # py-faster-rcnn's yaml.load reads the same text to the same values (a tuple).
    assert safe_yaml.load("'feat_stride': 16 \n'scales': !!python/tuple [4, 8, 16, 32]", "p") == \
        {"feat_stride": 16, "scales": [4, 8, 16, 32]}


def test_param_str_other_python_tags_are_refused():
    from pyfrcnn_layers.proposal import ProposalLayer

    shapes = [(1, 18, 4, 4), (1, 36, 4, 4), (1, 3)]
    with pytest.raises(NetError, match=r"layer .*param_str.*python/object/apply:os\.system"):
        build_layer(ProposalLayer, "'feat_stride': !!python/object/apply:os.system ['true']",
                    shapes, 1)


def test_coco_param_str_in_a_prototxt_as_py_faster_rcnn_writes_it():
    # py-faster-rcnn's models/coco/VGG16/faster_rcnn_end2end/test.prototxt, its proposal layer
    text = r'''
input: "data"
input_shape { dim: 1 dim: 3 dim: 224 dim: 224 }
input: "im_info"
input_shape { dim: 1 dim: 3 }
layer { name: "score" type: "Convolution" bottom: "data" top: "rpn_cls_prob_reshape"
  convolution_param { num_output: 24 kernel_size: 16 stride: 16 } }
layer { name: "deltas" type: "Convolution" bottom: "data" top: "rpn_bbox_pred"
  convolution_param { num_output: 48 kernel_size: 16 stride: 16 } }
layer {
  name: 'proposal'
  type: 'Python'
  bottom: 'rpn_cls_prob_reshape'
  bottom: 'rpn_bbox_pred'
  bottom: 'im_info'
  top: 'rois'
  python_param {
    module: 'rpn.proposal_layer'
    layer: 'ProposalLayer'
    param_str: "'feat_stride': 16 \n'scales': !!python/tuple [4, 8, 16, 32]"
  }
}
'''
    net = Net(text, "TEST")
    proposal = net.layer_dict["proposal"]
    assert proposal.params.feat_stride == 16 and list(proposal.params.scales) == [4, 8, 16, 32]
    assert proposal.grid.num_anchors == 12
