"""Hostile nets, solver files and command lines: each ends with exit status 1,
one line on stderr naming the culprit, and no traceback."""

import re
import shutil
import sys

import pytest
import torch

from tests.conftest import REPO_DIR
from tests.engine.netlib import net_text
from tests.hostile.runner import assert_one_line_error, run_cli

MALFORMED = sorted((REPO_DIR / "tests" / "malformed").glob("*.prototxt"))
INPUT = 'layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
CONV = ('layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" '
        'convolution_param {{ {} }} }}\n')
PROPOSAL_BOTTOMS = (
    'layer { name: "in" type: "Input" top: "a" top: "b" top: "im_info" input_param { '
    'shape { dim: 1 dim: 18 dim: 4 dim: 4 } shape { dim: 1 dim: 36 dim: 4 dim: 4 } '
    'shape { dim: 1 dim: 3 } } }\n')


def python_layer(module, layer, param_str=None):
    extra = f' param_str: "{param_str}"' if param_str is not None else ""
    return (f'layer {{ name: "p" type: "Python" bottom: "data" top: "p" python_param {{ '
            f'module: "{module}" layer: "{layer}"{extra} }} }}\n')


def proposal(param_str):
    return PROPOSAL_BOTTOMS + (
        'layer { name: "proposal" type: "Python" bottom: "a" bottom: "b" bottom: "im_info" '
        f'top: "rois" python_param {{ module: "rpn.proposal_layer" layer: "ProposalLayer" '
        f'param_str: "{param_str}" }} }}\n')


MODULES = {
    "hostile_exits.py": "import sys\nsys.exit(3)\n",
    "hostile_boom.py": "x = 1 / 0\n",
    "hostile_syntax.py": "def broken(:\n",
    "hostile_setup.py": ("from pyfrcnn.layer import Layer\n\n"
                         "class Picky(Layer):\n    def layer_setup(self, shapes):\n"
                         "        int(self.param_str)\n"
                         "    def reshape(self, shapes):\n        return shapes\n"
                         "    def forward(self, x):\n        return x\n"),
    "hostile_kinds.py": ("from pyfrcnn.layer import Layer\n\n"
                         "def NotAClass():\n    pass\n\n"
                         "class Half(Layer):\n    def forward(self, x):\n        return x\n"),
}

# (id, prototxt text or bytes, culprit pattern); built with `pyfrcnn check`
NETS = [
    ("raw_ff_byte", b'name: "\xff"\n', r"n\.prototxt:1:8: not UTF-8 text \(byte 0xff\)"),
    ("escaped_ff", 'name: "\\xff"\n' + INPUT, r"n\.prototxt:\d+:\d+: .*utf-8"),
    ("latin1_comment", b"# caf\xe9\n" + INPUT.encode(), r"n\.prototxt:1:6: not UTF-8 text \(byte 0xe9\)"),
    ("num_output_4e9", INPUT + 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
     'inner_product_param { num_output: 4000000000 } }\n',
     r"layer 'fc' \(InnerProduct\).*blob 0 would have shape 4000000000x192.*a blob may hold"),
    ("conv_num_output_4e9", INPUT + CONV.format("num_output: 4000000000 kernel_size: 3"),
     r"layer 'c' \(Convolution\).*blob 0 would have shape"),
    ("huge_input", 'layer { name: "in" type: "Input" top: "data" input_param { shape { '
     'dim: 100000 dim: 3 dim: 100000 dim: 100 } } }\n', r"layer 'in' \(Input\).*top 'data'.*GiB"),
    ("negative_dim", 'layer { name: "in" type: "Input" top: "data" input_param { shape { '
     'dim: 1 dim: -3 dim: 8 dim: 8 } } }\n', r"layer 'in' \(Input\).*negative"),
    ("zero_channels_xavier", INPUT.replace("dim: 3", "dim: 0") + CONV.format(
        'num_output: 4 kernel_size: 3 weight_filler { type: "xavier" }'),
     r"layer 'c' \(Convolution\).*xavier filler.*fan-in"),
    ("zero_channels_msra", INPUT.replace("dim: 3", "dim: 0") + CONV.format(
        'num_output: 4 kernel_size: 3 weight_filler { type: "msra" variance_norm: FAN_OUT }'),
     r"layer 'c' \(Convolution\).*msra filler"),
    ("python_base_layer", INPUT + python_layer("pyfrcnn.layer", "Layer"),
     r"layer 'p' \(Python\): 'pyfrcnn.layer.Layer' is the base class"),
    ("python_abstract_layer", INPUT + python_layer("hostile_kinds", "Half"),
     r"layer 'p' \(Python\): 'hostile_kinds.Half' is an abstract layer"),
    ("python_function", INPUT + python_layer("hostile_kinds", "NotAClass"),
     r"'hostile_kinds.NotAClass' is not a pyfrcnn Layer"),
    ("python_sys_exit", INPUT + python_layer("hostile_exits", "X"),
     r"layer 'p' \(Python\): importing module 'hostile_exits' failed: SystemExit: 3"),
    ("python_import_raises", INPUT + python_layer("hostile_boom", "X"),
     r"importing module 'hostile_boom' failed: ZeroDivisionError"),
    ("python_syntax_error", INPUT + python_layer("hostile_syntax", "X"),
     r"layer 'p' \(Python\): .*module 'hostile_syntax'.*SyntaxError"),
    ("python_setup_raises", INPUT + python_layer("hostile_setup", "Picky", "two"),
     r"layer 'p' \(Python\) at .*: its setup raised ValueError: invalid literal"),
    ("python_module_missing", INPUT + python_layer("no.such.module", "X"),
     r"cannot import module 'no.such.module'"),
    ("python_empty_module", INPUT + python_layer("", "X"), r"needs both 'module' and 'layer'"),
    ("param_str_alias_bomb", proposal("a: &a [1,1,1,1,1,1,1,1,1]\\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]"
                                      "\\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\\nd: &d [*c,*c,*c,*c,*c,"
                                      "*c,*c,*c,*c]\\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\\nf: [*e,*e,"
                                      "*e,*e,*e,*e,*e,*e,*e]"),
     r"layer 'proposal' \(Python\).*param_str:\d+:\d+: its aliases expand"),
    ("param_str_python_object", proposal("'feat_stride': !!python/object/apply:os.system ['true']"),
     r"layer 'proposal' \(Python\).*python/object/apply:os.system"),
    ("param_str_python_name", proposal("'feat_stride': 16\\n'scales': !!python/name:os.system"),
     r"python/name:os.system"),
    ("param_str_bad_yaml", proposal("'feat_stride': [16"), r"layer 'proposal'.*param_str.*YAML"),
    ("param_str_unknown_key", proposal("'feat_strid': 16"),
     r"unknown setting 'feat_strid'.*did you mean 'feat_stride'"),
    ("param_str_not_mapping", proposal("16"), r"layer 'proposal'.*unknown setting '16'"),
    ("param_str_list", proposal("{a: 1}\\n- 2"), r"layer 'proposal'.*param_str.*YAML"),
    ("param_str_wrong_type", proposal("'feat_stride': sixteen"),
     r"layer 'proposal'.*feat_stride: expected an integer"),
    ("param_str_zero_stride", proposal("'feat_stride': 0"), r"layer 'proposal'.*feat_stride"),
    ("param_str_bad_scales", proposal("'feat_stride': 16, 'scales': [-8]"),
     r"layer 'proposal'.*'scales' must be positive"),
    ("param_str_huge_int", proposal("'feat_stride': " + "9" * 5000),
     r"layer 'proposal'.*(digits|64 bits)"),
    ("param_str_recursive", proposal("'scales': &s [*s]"), r"recursive"),
    ("deep_braces", "layer { " * 3000 + "}" * 3000, r"n\.prototxt:1:\d+"),
    ("unterminated_string", 'name: "abc\n' + INPUT, r"n\.prototxt:1:\d+"),
    ("huge_integer_literal", 'layer { name: "in" type: "Input" top: "data" input_param { shape { '
     'dim: 99999999999999999999999 } } }\n', r"n\.prototxt:1:\d+"),
    ("negative_uint", INPUT + CONV.format("num_output: -4 kernel_size: 3"), r"n\.prototxt:2:\d+"),
    ("include_and_exclude", INPUT + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" '
     'include { phase: TEST } exclude { phase: TRAIN } }\n', r"either include or exclude"),
    ("kernel_zero", INPUT + CONV.format("num_output: 4 kernel_size: 0"), r"layer 'c' \(Convolution\)"),
    ("stride_zero", INPUT + CONV.format("num_output: 4 kernel_size: 3 stride: 0"),
     r"layer 'c' \(Convolution\)"),
    ("pool_kernel_too_big", INPUT + 'layer { name: "pool" type: "Pooling" bottom: "data" '
     'top: "p" pooling_param { pool: MAX kernel_size: 50 } }\n', r"layer 'pool' \(Pooling\)"),
    ("ip_axis_out_of_range", INPUT + 'layer { name: "fc" type: "InnerProduct" bottom: "data" '
     'top: "fc" inner_product_param { num_output: 2 axis: 9 } }\n', r"layer 'fc'.*axis"),
    ("softmax_axis", INPUT + 'layer { name: "s" type: "Softmax" bottom: "data" top: "s" '
     'softmax_param { axis: 7 } }\n', r"layer 's' \(Softmax\).*axis"),
    ("concat_mismatch", INPUT + 'layer { name: "in2" type: "Input" top: "d2" input_param { '
     'shape { dim: 1 dim: 3 dim: 9 dim: 8 } } }\nlayer { name: "cat" type: "Concat" '
     'bottom: "data" bottom: "d2" top: "cat" }\n', r"layer 'cat' \(Concat\)"),
    ("eltwise_mismatch", INPUT + 'layer { name: "in2" type: "Input" top: "d2" input_param { '
     'shape { dim: 1 dim: 4 dim: 8 dim: 8 } } }\nlayer { name: "sum" type: "Eltwise" '
     'bottom: "data" bottom: "d2" top: "sum" }\n', r"layer 'sum' \(Eltwise\)"),
    ("reshape_bad_count", INPUT + 'layer { name: "r" type: "Reshape" bottom: "data" top: "r" '
     'reshape_param { shape { dim: 5 dim: 5 } } }\n', r"layer 'r' \(Reshape\)"),
    ("roi_pool_zero", PROPOSAL_BOTTOMS.replace('"a" top: "b" top: "im_info"', '"data" top: "r" top: "im"')
     .replace("dim: 1 dim: 36 dim: 4 dim: 4", "dim: 3 dim: 5") +
     'layer { name: "pool5" type: "ROIPooling" bottom: "data" bottom: "r" top: "p" '
     'roi_pooling_param { pooled_h: 0 pooled_w: 7 spatial_scale: 0.0625 } }\n',
     r"layer 'pool5' \(ROIPooling\)"),
    ("empty_layer_name", 'layer { name: "" type: "Input" top: "data" input_param { shape { '
     'dim: 1 } } }\n', r"n\.prototxt:1: a layer has no name"),
]


def write_modules(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in MODULES.items():
        (folder / name).write_text(text)


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """A folder with the tiny net, a fast test net and the hostile modules (on sys.path)."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "train.prototxt").write_text(net_text())
    write_modules(root / "mods")
    sys.path.insert(0, str(root / "mods"))
    yield root
    sys.path.remove(str(root / "mods"))
    for name in MODULES:
        sys.modules.pop(name[:-3], None)


def write(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: f"malformed_{p.stem}")
def test_malformed_corpus_through_the_command_line(path):
    kind, pattern = re.match(r"# expect: (\w+) (.*)", path.read_text().splitlines()[0]).groups()
    assert_one_line_error(*run_cli(["check", path, "--phase", "TRAIN"]), pattern)


@pytest.mark.parametrize("case_id, text, pattern", NETS, ids=[c[0] for c in NETS])
def test_hostile_net(arena, tmp_path, case_id, text, pattern):
    path = write(tmp_path / "n.prototxt", text)
    assert_one_line_error(*run_cli(["check", path]), pattern)


@pytest.mark.parametrize("argv, pattern", [
    (["check", "/dev/zero"], r"/dev/zero: not a regular file"),
    (["check", "{tmp}"], r"is a folder, not a net"),
    (["check", "{tmp}/missing.prototxt"], r"missing\.prototxt: no such net"),
    (["check", "{tmp}/run{{1}}/net.prototxt"], r"run\{1\}/net\.prototxt: no such net"),
    (["check", "{tmp}/empty.prototxt"], None),
], ids=["dev_zero", "folder", "missing", "brace_in_path", "empty_net_is_fine"])
def test_hostile_net_paths(tmp_path, argv, pattern):
    (tmp_path / "empty.prototxt").write_text("")
    argv = [a.format(tmp=tmp_path) for a in argv]
    status, out, err = run_cli(argv)
    if pattern is None:
        assert status == 0 and "Traceback" not in err
        return
    assert_one_line_error(status, out, err, pattern)


# -- solver files: `pyfrcnn solve SOLVER -q` ----------------------------------------------
BASE = "base_lr: 0.1\nmax_iter: 2\ndevice: cpu\ntensorboard: false\nsnapshot_after_train: false\n"
BOMB = "".join([f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "lol"] * 9) + "]\n"
                for i in range(9)])

# (id, solver text (train_net is prepended unless the text names one), culprit pattern)
SOLVERS = [
    ("unknown_key", BASE + "bas_lr: 1\n", r"s\.yaml:\d+: bas_lr: unknown key \(did you mean 'base_lr'\?\)"),
    ("base_lr_negative", BASE.replace("0.1", "-1"), r"s\.yaml:\d+: base_lr: must be positive"),
    ("base_lr_inf", BASE.replace("0.1", ".inf"), r"base_lr: expected a finite number"),
    ("base_lr_nan", BASE.replace("0.1", ".nan"), r"base_lr: expected a finite number"),
    ("base_lr_1e400", BASE.replace("0.1", "1e400"), r"base_lr: expected a finite number"),
    ("base_lr_string", BASE.replace("0.1", "fast"), r"base_lr: expected a number, got 'fast'"),
    ("max_iter_zero", BASE.replace("max_iter: 2", "max_iter: 0"), r"max_iter: must be positive"),
    ("max_iter_float", BASE.replace("max_iter: 2", "max_iter: 2.5"), r"max_iter: expected an integer"),
    ("max_iter_huge", BASE.replace("max_iter: 2", "max_iter: " + "9" * 30), r"max_iter: .*64 bits"),
    ("max_iter_5000_digits", BASE.replace("max_iter: 2", "max_iter: " + "9" * 5000),
     r"s\.yaml: not valid YAML: Exceeds the limit"),
    ("iter_size_zero", BASE + "iter_size: 0\n", r"iter_size: must be at least 1"),
    ("lr_policy_typo", BASE + "lr_policy: stepp\n", r"lr_policy: expected one of .*did you mean 'step'"),
    ("type_typo", BASE + "type: SGDD\n", r"type: expected one of .*did you mean 'SGD'"),
    ("step_without_stepsize", BASE + "lr_policy: step\ngamma: 0.1\n", r"stepsize: required"),
    ("stepvalue_descending", BASE + "lr_policy: multistep\ngamma: 0.1\nstepvalue: [5, 2]\n",
     r"stepvalue: must ascend"),
    ("momentum_negative", BASE + "momentum: -0.5\n", r"momentum: must not be negative"),
    ("adam_momentum_one", BASE + "type: Adam\nmomentum: 1.0\n", r"momentum: must be below 1 for Adam"),
    ("random_seed_huge", BASE + f"random_seed: {2 ** 64}\n", r"random_seed: .*64 bits"),
    ("random_seed_edge", BASE + f"random_seed: {2 ** 63 - 1}\n", r"random_seed: must be below"),
    ("warmup_factor_zero", BASE + "warmup_factor: 0\n", r"warmup_factor: must be in \(0, 1\]"),
    ("device_tpu", BASE.replace("device: cpu", "device: tpu"), r"device: expected cpu, cuda"),
    ("nan_policy_typo", BASE + "nan_policy: ignore\n", r"nan_policy: expected one of stop, skip"),
    ("duplicate_key", BASE + "base_lr: 0.2\n", r"s\.yaml:\d+: base_lr: key given twice"),
    ("alias_bomb", BASE + BOMB, r"s\.yaml:\d+:\d+: its aliases expand to more than"),
    ("recursive_alias", BASE + "weights: &w [*w]\n", r"s\.yaml:\d+:\d+: an alias refers"),
    ("python_object_tag", BASE + "base_lr: !!python/object/apply:os.system ['true']\n",
     r"s\.yaml:\d+:\d+: not valid YAML: .*python/object/apply:os.system"),
    ("python_name_tag", BASE + "display: !!python/name:os.system\n", r"python/name:os.system"),
    ("not_utf8", BASE.encode() + b"# caf\xe9\n", r"s\.yaml:\d+:6: not UTF-8 text \(byte 0xe9\)"),
    ("control_character", BASE + "name: \x07\n", r"s\.yaml:\d+:\d+: .*control character 0x07"),
    ("a_list", "- base_lr: 0.1\n", r"s\.yaml: a solver file is a mapping of keys, got list"),
    ("a_scalar", "hello\n", r"s\.yaml: a solver file is a mapping of keys, got str"),
    ("unclosed_bracket", BASE + "stepvalue: [1, 2\n", r"s\.yaml:\d+:\d+: not valid YAML"),
    ("tab_indent", BASE + "detection:\n\tTRAIN: {}\n", r"s\.yaml:\d+:\d+: not valid YAML"),
    ("empty_file", "", r"base_lr: required"),
    ("train_net_missing", "train_net: nowhere.prototxt\n" + BASE, r"nowhere\.prototxt: no such net"),
    ("train_net_dev_zero", "train_net: /dev/zero\n" + BASE, r"/dev/zero: not a regular file"),
    ("train_net_folder", "train_net: .\n" + BASE, r"is a folder, not a net"),
    ("weights_missing", BASE + "weights: none.weights\n", r"none\.weights: no such weights file"),
    ("weights_dev_zero", BASE + "weights: /dev/zero\n", r"/dev/zero: not a regular file"),
    ("batch_size_zero", BASE + "detection:\n  TRAIN:\n    BATCH_SIZE: 0\n",
     r"s\.yaml:\d+: detection\.TRAIN\.BATCH_SIZE: must be at least 1, got 0"),
    ("scales_zero", BASE + "detection: {TRAIN: {SCALES: [0]}}\n", r"detection\.TRAIN\.SCALES: must be at least 1"),
    ("max_size_negative", BASE + "detection: {TEST: {MAX_SIZE: -5}}\n", r"detection\.TEST\.MAX_SIZE"),
    ("ims_per_batch_zero", BASE + "detection: {TRAIN: {IMS_PER_BATCH: 0}}\n", r"IMS_PER_BATCH: must be at least 1"),
    ("rpn_batchsize_zero", BASE + "detection: {TRAIN: {RPN_BATCHSIZE: 0}}\n", r"RPN_BATCHSIZE: must be at least 1"),
    ("fg_fraction_big", BASE + "detection: {TRAIN: {FG_FRACTION: 1.5}}\n", r"FG_FRACTION: must be in \[0.0, 1.0\]"),
    ("fg_fraction_nan", BASE + "detection: {TRAIN: {FG_FRACTION: .nan}}\n", r"FG_FRACTION: must be a finite"),
    ("bg_thresholds_swapped", BASE + "detection: {TRAIN: {BG_THRESH_LO: 0.6}}\n", r"BG_THRESH_LO: must not exceed"),
    ("bg_above_fg", BASE + "detection: {TRAIN: {BG_THRESH_HI: 0.6, FG_THRESH: 0.55}}\n",
     r"BG_THRESH_HI: must not exceed TRAIN.FG_THRESH"),
    ("rpn_overlaps_swapped", BASE + "detection: {TRAIN: {RPN_NEGATIVE_OVERLAP: 0.9}}\n",
     r"RPN_NEGATIVE_OVERLAP: must not exceed"),
    ("test_nms_negative", BASE + "detection: {TEST: {NMS: -0.1}}\n", r"detection\.TEST\.NMS: must be in"),
    ("score_thresh_big", BASE + "detection: {TEST: {SCORE_THRESH: 2}}\n", r"SCORE_THRESH: must be in"),
    ("rng_seed_negative", BASE + "detection: {RNG_SEED: -1}\n", r"detection\.RNG_SEED: must be in"),
    ("stds_zero", BASE + "detection: {TRAIN: {BBOX_NORMALIZE_STDS: [0.1, 0, 0.2, 0.2]}}\n",
     r"BBOX_NORMALIZE_STDS: must be positive"),
    ("detection_unknown_key", BASE + "detection: {TRAIN: {BATCHSIZE: 2}}\n",
     r"detection\.TRAIN\.BATCHSIZE: unknown key \(did you mean 'BATCH_SIZE'\?\)"),
    ("detection_not_mapping", BASE + "detection: 5\n", r"detection: expected a mapping"),
    ("pixel_means_two", BASE + "detection: {PIXEL_MEANS: [1, 2]}\n", r"PIXEL_MEANS: expected 3 numbers"),
    ("data_workers_negative", BASE + "data: {workers: -1}\n", r"data\.workers: must be at least 0"),
    ("data_bad_spec", BASE + "data: {train: 'bogus:thing'}\n", r"data\.train: "),
    ("data_unknown_key", BASE + "data: {trian: x}\n", r"data\.trian: unknown key"),
    ("deep_nesting", BASE + "weights: " + "[" * 2000 + "]" * 2000 + "\n", r"s\.yaml.*nested"),
]


@pytest.mark.parametrize("case_id, text, pattern", SOLVERS, ids=[c[0] for c in SOLVERS])
def test_hostile_solver(arena, tmp_path, case_id, text, pattern):
    head = f"train_net: {arena / 'train.prototxt'}\n"
    if isinstance(text, bytes):
        content = head.encode() + text
    else:
        content = text if "train_net" in text or case_id in ("a_list", "a_scalar", "empty_file") \
            else head + text
    write(tmp_path / "s.yaml", content)
    assert_one_line_error(*run_cli(["solve", tmp_path / "s.yaml", "-q", "--out", tmp_path / "run"]),
                          pattern)


def test_a_net_without_loss_is_refused(tmp_path):
    write(tmp_path / "n.prototxt", INPUT)
    write(tmp_path / "s.yaml", "train_net: n.prototxt\n" + BASE)
    assert_one_line_error(*run_cli(["solve", tmp_path / "s.yaml", "-q"]),
                          r"n\.prototxt: the train net takes input blob\(s\) data")


# -- command lines ------------------------------------------------------------------------
class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def trained(arena):
    """A finished 2-step run of the tiny net: its solver file and snapshot files."""
    solver = write(arena / "run" / "s.yaml", f"train_net: {arena / 'train.prototxt'}\n" +
                   BASE.replace("snapshot_after_train: false", "snapshot_prefix: snap/t"))
    status, _, err = run_cli(["solve", solver, "-q"])
    assert status == 0, err
    return solver, arena / "run" / "snap" / "t_iter_2.solverstate"


def edited_state(trained, tmp_path, **changes):
    state = torch.load(trained[1], weights_only=True)
    state.update(changes)
    path = tmp_path / "t_iter_2.solverstate"
    torch.save(state, path)
    shutil.copy(trained[1].with_suffix(".weights"), tmp_path / "t_iter_2.weights")
    return path


SOLVE_ARGS = [
    ("set_without_equals", ["--set", "base_lr"], r"--set base_lr: expected key\.path=value"),
    ("set_unknown_key", ["--set", "bogus=1"], r"--set bogus=1: unknown key 'bogus'"),
    ("set_bad_yaml", ["--set", "base_lr=[1,"], r"--set base_lr=\[1,: the value:\d+:\d+: not valid YAML"),
    ("set_wrong_type", ["--set", "base_lr=abc"], r"base_lr: expected a number, got 'abc'"),
    ("set_subkey_of_scalar", ["--set", "max_iter.x=1"], r"solver key 'max_iter' has no sub-keys"),
    ("set_python_tag", ["--set", "base_lr=!!python/object/apply:os.system [true]"],
     r"python/object/apply:os.system"),
    ("set_huge_float", ["--set", "base_lr=1e999"], r"base_lr: expected a finite number"),
    ("set_batch_size_zero", ["--set", "detection.TRAIN.BATCH_SIZE=0"], r"BATCH_SIZE: must be at least 1"),
    ("resume_missing", ["--resume", "{tmp}/none.solverstate"], r"none\.solverstate: no such solver state"),
    ("resume_folder", ["--resume", "{tmp}"], r"not a readable solver state|is a folder|holds no complete snapshot"),
    ("resume_dev_zero", ["--resume", "/dev/zero"], r"/dev/zero: not a readable solver state"),
    ("weights_missing", ["--weights", "{tmp}/none.weights"], r"none\.weights: no such weights file"),
    ("out_is_a_file", ["--out", "{tmp}/afile"], r"afile: .*a file stands where a folder is needed"),
    ("prefix_under_a_file", ["--set", "snapshot_prefix={tmp}/afile/sub/p"],
     r"afile/sub: .*a file stands where a folder is needed"),
    ("prefix_under_proc", ["--set", "snapshot_prefix=/proc/no/such/p"], r"/proc/no.*(No such|cannot)"),
    ("device_bogus", ["--device", "tpu"], r"device 'tpu': expected cpu, cuda, cuda:N or auto"),
    ("device_bad_index", ["--device", "cuda:x"], r"device 'cuda:x'"),
]


@pytest.mark.parametrize("case_id, extra, pattern", SOLVE_ARGS, ids=[c[0] for c in SOLVE_ARGS])
def test_hostile_solve_arguments(trained, tmp_path, case_id, extra, pattern):
    (tmp_path / "afile").write_text("x")
    own_folder = case_id in ("out_is_a_file", "prefix_under_a_file", "prefix_under_proc")
    argv = ["solve", trained[0], "-q"] + ([] if own_folder else ["--out", tmp_path / "run"])
    argv += [a.format(tmp=tmp_path) for a in extra]
    assert_one_line_error(*run_cli(argv), pattern)


STATES = [
    ("state_iter_negative", {"iter": -5}, r"entry 'iter' must be a step"),
    ("state_iter_string", {"iter": "2"}, r"entry 'iter' must be a step"),
    ("state_learned_net_path", {"learned_net": "../../etc/passwd"}, r"entry 'learned_net' must name"),
    ("state_history_not_tensors", {"history": {"fc/0": [1, 2]}}, r"history of 'fc/0' must be a list of tensors"),
    ("state_history_missing_param", {"history": {}}, r"no SGD history for fc/0"),
    ("state_ranks_empty", {"ranks": []}, r"entry 'ranks' must be a non-empty list"),
    ("state_rank_without_torch", {"ranks": [{"numpy": 1, "python": 1, "net": {}}]}, r"ranks\[0\] has no 'torch'"),
    ("state_bad_rng", {"ranks": [{"torch": torch.zeros(3, dtype=torch.uint8), "numpy": 1,
                                  "python": 1, "net": {}}]}, r"the random states are malformed"),
    ("state_bad_layer_state", "bad_layer", r"the saved state of layer 'data' \(Python\).* is malformed"),
    ("state_wrong_format", {"format": "something"}, r"not a pyfrcnn \.solverstate file"),
    ("state_wrong_version", {"version": 7}, r"version 7"),
    ("state_losses_nan", {"losses": [float("nan")]}, r"entry 'losses' must be a list of finite numbers"),
    ("state_other_solver_type", {"type": "Adam"}, r"written by a Adam solver"),
]


@pytest.mark.parametrize("case_id, changes, pattern", STATES, ids=[c[0] for c in STATES])
def test_hostile_solverstate(trained, tmp_path, case_id, changes, pattern):
    if changes == "bad_layer":
        state = torch.load(trained[1], weights_only=True)
        state["ranks"][0]["net"]["data"] = {"cursor": "x"}
        changes = {"ranks": state["ranks"]}
    path = edited_state(trained, tmp_path, **changes)
    argv = ["solve", trained[0], "-q", "--out", tmp_path / "run", "--resume", path]
    assert_one_line_error(*run_cli(argv), pattern)


def test_resume_from_a_code_running_pickle(trained, tmp_path):
    path = tmp_path / "evil.solverstate"
    torch.save({"format": "pyfrcnn-solverstate", "evil": Evil(str(tmp_path / "ran"))}, path)
    argv = ["solve", trained[0], "-q", "--out", tmp_path / "run", "--resume", path]
    assert_one_line_error(*run_cli(argv), r"evil\.solverstate: .*could run code")
    assert not (tmp_path / "ran").exists()


def test_resume_from_garbage_bytes(trained, tmp_path):
    path = write(tmp_path / "g.solverstate", bytes(range(256)) * 4)
    argv = ["solve", trained[0], "-q", "--out", tmp_path / "run", "--resume", path]
    assert_one_line_error(*run_cli(argv), r"g\.solverstate: not a readable solver state")


def test_resume_from_a_truncated_state(trained, tmp_path):
    path = write(tmp_path / "t.solverstate", trained[1].read_bytes()[:300])
    argv = ["solve", trained[0], "-q", "--out", tmp_path / "run", "--resume", path]
    assert_one_line_error(*run_cli(argv), r"t\.solverstate: not a readable solver state")


CHECK_ARGS = [
    ("input_shape_letters", ["--input-shape", "data=a,b"], r"--input-shape 'data=a,b': expected NAME="),
    ("input_shape_no_name", ["--input-shape", "=1,2"], r"--input-shape '=1,2'"),
    ("input_shape_not_an_input", ["--input-shape", "nosuch=1,3,8,8"], r"nosuch, which is not an input"),
    ("input_shape_huge", ["--input-shape", "data=100000,3,100000,100"], r"top 'data'.*a blob may hold"),
    ("input_shape_negative", ["--input-shape", "data=1,-3,8,8"], r"negative"),
    ("level_huge", ["--level", "99999999999999999999"], r"NetState level 99999999999999999999: out of range"),
]


@pytest.mark.parametrize("case_id, extra, pattern", CHECK_ARGS, ids=[c[0] for c in CHECK_ARGS])
def test_hostile_check_arguments(tmp_path, case_id, extra, pattern):
    net = write(tmp_path / "n.prototxt", INPUT)
    assert_one_line_error(*run_cli(["check", net, *extra]), pattern)


def test_draw_into_a_missing_folder(tmp_path):
    net = write(tmp_path / "n.prototxt", INPUT)
    assert_one_line_error(*run_cli(["draw", net, tmp_path / "no" / "such" / "x.dot"]),
                          r"no/such/x\.dot: No such file or directory")


def test_draw_unknown_format(tmp_path):
    net = write(tmp_path / "n.prototxt", INPUT)
    assert_one_line_error(*run_cli(["draw", net, tmp_path / "x.xyz"]), r"unknown drawing format")


def test_usage_errors_are_argparse_status_2():
    status, out, err = run_cli(["solve"])
    assert status == 2 and "Traceback" not in err and "required: solver" in err
