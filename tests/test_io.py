import pytest

from pyfrcnn.errors import NetError, ParseError
from pyfrcnn.io import read_net

def test_syntax_error_names_path_line_and_column(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text('name: "x"\nlayer {\n  name: "a"\n  typo: "b"\n}\n')
    with pytest.raises(ParseError) as e:
        read_net(str(path))
    assert str(e.value).startswith(f"{path}:4:")
    assert "typo" in str(e.value)


def test_legacy_inputs_become_one_input_layer():
    netdef = read_net('input: "data" input_dim: 1 input_dim: 3 input_dim: 5 input_dim: 7\n'
                      'input: "im_info" input_dim: 1 input_dim: 3 input_dim: 1 input_dim: 1\n')
    layer = netdef.param.layer[0]
    assert layer.type == "Input" and list(layer.top) == ["data", "im_info"]
    assert [list(s.dim) for s in layer.input_param.shape] == [[1, 3, 5, 7], [1, 3, 1, 1]]


def test_include_exclude_rules_filter_by_phase_stage_and_level():
    text = '''
    layer { name: "a" type: "Input" top: "x" include { phase: TRAIN } }
    layer { name: "b" type: "Input" top: "y" include { phase: TEST } }
    layer { name: "c" type: "Input" top: "z" exclude { stage: "deploy" } }
    layer { name: "d" type: "Input" top: "w" include { min_level: 2 } }
    layer { name: "e" type: "Input" top: "v" include { stage: "s1" stage: "s2" } }
    '''
    names = lambda d: [l.name for l in d.param.layer]
    assert names(read_net(text, "TRAIN")) == ["a", "c"]
    assert names(read_net(text, "TEST", stages=["deploy"])) == ["b"]
    assert names(read_net(text, "TEST", level=3)) == ["b", "c", "d"]
    assert names(read_net(text, "TEST", stages=["s1", "s2"])) == ["b", "c", "e"]


def test_layer_lines_are_recorded(tmp_path):
    path = tmp_path / "n.prototxt"
    path.write_text('# comment with layer {\nname: "n"\n\nlayer {\n name: "a" type: "Input" top: "x"\n'
                    ' input_param { shape { dim: 1 } } }\nlayer { name: "b#c" type: "ReLU" '
                    'bottom: "x" top: "x" }\n')
    netdef = read_net(str(path))
    assert netdef.lines == [4, 7]
    assert netdef.where(1) == f"{path}:7"


def test_both_include_and_exclude_is_an_error():
    with pytest.raises(NetError, match="either include or exclude"):
        read_net('layer { name: "a" type: "Input" top: "x" include { phase: TRAIN } '
                 'exclude { phase: TEST } }')


def test_py_faster_rcnn_prototxts_parse_unmodified(reference_dir):
    for name in ("vgg16_end2end_train.prototxt", "vgg16_end2end_test.prototxt"):
        netdef = read_net(str(reference_dir / name), "TRAIN")
        assert len(netdef.param.layer) > 40
