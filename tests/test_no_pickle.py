"""No file pyfrcnn reads runs code: a .solverstate, a weights file or an
annotation cache that holds a pickle calling a function is refused (or, for a
cache, ignored and rebuilt) and the function never runs."""

import os

import numpy as np
import pytest
import torch

from pyfrcnn_layers.datasets import cache
from pyfrcnn_layers.datasets.voc import open_voc
from pyfrcnn.errors import ConfigError, WeightsError
from pyfrcnn.net import load_weights_file
from pyfrcnn.solver import Solver
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import write_run
from tests.layers.datasets.fixtures import make_voc

MARKER = "ran.txt"


class Evil:
    """Unpickling this calls open(path, 'w'): a stand-in for os.system."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def evil_payload(tmp_path):
    return {"format": "pyfrcnn-solverstate", "version": 1, "evil": Evil(str(tmp_path / MARKER))}


def test_unpickling_the_payload_does_run_code(tmp_path):
    # The reference: plain torch.load (weights_only=False) runs it.
    torch.save(evil_payload(tmp_path), tmp_path / "x.pt")
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert (tmp_path / MARKER).exists()


def test_a_solverstate_that_runs_code_is_refused(tmp_path):
    solver = Solver(load_solver(write_run(str(tmp_path), "base_lr: 0.1\nmax_iter: 2\n"
                                          "tensorboard: false\ndevice: cpu\n")),
                    run_dir=str(tmp_path / "run"), dist_info=False, evaluate=None)
    path = tmp_path / "evil.solverstate"
    torch.save(evil_payload(tmp_path), path)
    with pytest.raises(ConfigError, match=r"evil\.solverstate: not a readable solver state: .*"
                                          r"refused: loading it could run code") as e:
        solver.restore(str(path))
    assert "\n" not in str(e.value)
    assert not (tmp_path / MARKER).exists()


def test_our_solverstate_loads_with_weights_only(tmp_path):
    solver = Solver(load_solver(write_run(str(tmp_path), "base_lr: 0.1\nmax_iter: 2\n"
                                          "tensorboard: false\ndevice: cpu\nsnapshot_prefix: s/t\n")),
                    run_dir=str(tmp_path / "run"), dist_info=False, evaluate=None)
    solver.solve()
    state = torch.load(tmp_path / "s" / "t_iter_2.solverstate", weights_only=True)
    assert state["iter"] == 2 and state["ranks"][0]["net"]["data"]["cursor"] == 4
    name, keys, *_ = state["ranks"][0]["numpy"]
    assert name == "MT19937" and torch.is_tensor(keys) and keys.numel() == 624


def test_a_weights_file_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.weights"
    torch.save({"format": "pyfrcnn-weights", "layers": {}, "evil": Evil(str(tmp_path / MARKER))},
               path)
    with pytest.raises(WeightsError, match=r"evil\.weights: not a readable torch weights file"):
        load_weights_file(str(path))
    assert not (tmp_path / MARKER).exists()


def test_an_annotation_cache_that_runs_code_is_ignored(tmp_path):
    import pickle

    folder = make_voc(str(tmp_path / "voc"), {"a": (40, 30, [("dog", 2, 3, 20, 25)])},
                      classes=["dog"])
    cache_dir = tmp_path / "cache"
    open_voc(folder, "train", cache_dir=cache_dir)
    written = os.listdir(cache_dir)
    assert len(written) == 1 and written[0].endswith(".npz")
    with open(cache_dir / written[0], "rb") as f:
        assert f.read(2) == b"PK"  # a zip of .npy arrays, not a pickle
    with open(cache_dir / written[0], "wb") as f:
        pickle.dump({"records": Evil(str(tmp_path / MARKER))}, f)
    dataset = open_voc(folder, "train", cache_dir=cache_dir)
    assert not (tmp_path / MARKER).exists()
    assert dataset.annotation(0)["boxes"].tolist() == [[1, 2, 19, 24]]


def test_cache_round_trip_keeps_arrays_and_tuples(tmp_path):
    value = {"records": [{"boxes": np.arange(8, dtype=np.float32).reshape(2, 4),
                          "labels": np.array([1, 2]), "flag": np.array(True), "n": 3},
                         {"boxes": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64),
                          "flag": np.array(False), "n": 4}],
             "failures": [("a.xml", "broken")], "stats": {"objects": 2}}
    path = str(tmp_path / "c.npz")
    cache.save(path, value)
    back = cache.load(path)
    assert back["failures"] == [("a.xml", "broken")] and back["stats"] == {"objects": 2}
    for mine, theirs in zip(back["records"], value["records"]):
        for key in theirs:
            assert np.array_equal(mine[key], theirs[key])
            assert getattr(mine[key], "dtype", None) == getattr(theirs[key], "dtype", None)


def test_a_solverstate_of_an_earlier_version_still_resumes(tmp_path):
    """Earlier versions pickled numpy's random state as an ndarray; it is plain
    data, so it is still read (with weights_only), and the run resumes."""
    solver = Solver(load_solver(write_run(str(tmp_path), "base_lr: 0.1\nmax_iter: 2\n"
                                          "tensorboard: false\ndevice: cpu\nsnapshot_prefix: s/t\n")),
                    run_dir=str(tmp_path / "run"), dist_info=False, evaluate=None)
    solver.solve()
    path = tmp_path / "s" / "t_iter_2.solverstate"
    state = torch.load(path, weights_only=True)
    np.random.seed(5)
    old = np.random.get_state()
    state["ranks"][0]["numpy"] = old  # ('MT19937', ndarray of uint32, pos, has_gauss, cached)
    torch.save(state, path)
    np.random.seed(0)
    solver.restore(str(path))
    assert np.array_equal(np.random.get_state()[1], old[1])


def test_an_object_array_in_a_solverstate_is_refused(tmp_path):
    solver = Solver(load_solver(write_run(str(tmp_path), "base_lr: 0.1\nmax_iter: 2\n"
                                          "tensorboard: false\ndevice: cpu\n")),
                    run_dir=str(tmp_path / "run"), dist_info=False, evaluate=None)
    path = tmp_path / "evil.solverstate"
    array = np.empty(1, dtype=object)
    array[0] = Evil(str(tmp_path / MARKER))
    torch.save({"format": "pyfrcnn-solverstate", "numpy": array}, path)
    with pytest.raises(ConfigError, match=r"could run code"):
        solver.restore(str(path))
    assert not (tmp_path / MARKER).exists()
