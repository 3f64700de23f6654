"""The Faster R-CNN layers install as `pyfrcnn_layers`: a user's own `layers`
module neither shadows them nor is shadowed by them."""

import os
import subprocess
import sys

import pytest

from pyfrcnn import registry
from tests.conftest import REPO_DIR

USER_LAYERS = '''
from pyfrcnn.layer import Layer


class Twice(Layer):
    """The user's own layer, in the user's own layers.py."""

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        return 2 * x
'''

USER_NET = '''
input: "data" input_shape { dim: 1 dim: 3 }
layer { name: "twice" type: "Python" bottom: "data" top: "out"
        python_param { module: "layers" layer: "Twice" } }
'''


def installed_pyfrcnn(*args, cwd):
    """`python -c 'pyfrcnn.cli.main()' ARGS` as an installed command runs: this
    checkout is not on the path, so every import goes through the installation."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import sys; from pyfrcnn.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_plugin_is_pyfrcnn_layers_and_prototxt_names_are_aliases():
    registry.load_plugins()
    import pyfrcnn_layers  # noqa: F401

    assert registry._MODULE_ALIASES["layers.roi_data"] == "pyfrcnn_layers.roi_data"
    assert registry._MODULE_ALIASES["roi_data_layer.layer"] == "pyfrcnn_layers.roi_data"


def test_a_users_own_layers_module_beside_the_shipped_nets(tmp_path):
    if subprocess.run([sys.executable, "-c", "import pyfrcnn_layers"], cwd=tmp_path,
                      env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                      capture_output=True).returncode:
        pytest.skip("pyfrcnn is not installed (pip install -e .): nothing to check")
    (tmp_path / "layers.py").write_text(USER_LAYERS)
    (tmp_path / "net.prototxt").write_text(USER_NET)
    mine = installed_pyfrcnn("check", "net.prototxt", cwd=tmp_path)
    assert mine.returncode == 0, mine.stderr
    assert "twice" in mine.stdout and "Python" in mine.stdout
    ours = installed_pyfrcnn("check", REPO_DIR / "prototxt" / "fast" / "train.prototxt",
                             "--phase", "TRAIN", cwd=tmp_path)
    assert ours.returncode == 0, ours.stderr
    assert "rpn-data" in ours.stdout and "roi-data" in ours.stdout
