"""Outputs fail cleanly: a full disk or a read-only folder while snapshotting is
one OutputError naming the file, the earlier snapshots stay whole, and the temp
files of killed runs are removed when a run starts."""

import errno
import os

import pytest

import pyfrcnn.files
import pyfrcnn.net
from pyfrcnn.errors import OutputError
from pyfrcnn.net import load_weights_file
from pyfrcnn.solver import Solver
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import write_run

LINES = "tensorboard: false\ndevice: cpu\nrandom_seed: 3\nbase_lr: 0.01\n"


def make_solver(tmp_path, lines):
    if "snapshot_prefix" not in lines:
        lines += "snapshot_prefix: s/t\n"
    path = write_run(str(tmp_path), LINES + lines)
    return Solver(load_solver(path), run_dir=str(tmp_path / "run"), dist_info=False,
                  evaluate=None)


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
])
def test_a_failing_snapshot_names_the_file_and_keeps_the_last_one(tmp_path, monkeypatch, error,
                                                                   reason):
    solver = make_solver(tmp_path, "max_iter: 4\nsnapshot: 2\n")
    real_open = open

    def failing_open(path, mode="r", *args, **kwargs):
        if "_iter_4" in os.fspath(path) and "w" in mode:
            raise error
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(pyfrcnn.files, "open", failing_open, raising=False)
    with pytest.raises(OutputError, match=rf"s/t_iter_4\.weights: cannot write: {reason}") as e:
        solver.solve()
    assert "\n" not in str(e.value)
    assert sorted(os.listdir(tmp_path / "s")) == ["t_iter_2.solverstate", "t_iter_2.weights"]
    assert "fc" in load_weights_file(str(tmp_path / "s" / "t_iter_2.weights"))


def test_orphan_temp_files_are_removed_at_start(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    dead = 2 ** 22 + 12345  # above any pid this machine hands out
    orphan = folder / f"t_iter_6.weights.tmp{dead}"
    live = folder / f"t_iter_6.solverstate.tmp{os.getppid()}"
    other = folder / f"u_iter_6.weights.tmp{dead}"
    for path in (orphan, live, other):
        path.write_bytes(b"partial")
    make_solver(tmp_path, "max_iter: 1\n").solve()
    left = sorted(os.listdir(folder))
    assert orphan.name not in left
    assert live.name in left and other.name in left  # another live process; another prefix


def test_snapshot_folder_that_cannot_be_made_fails_before_training(tmp_path):
    (tmp_path / "afile").write_text("x")
    solver = make_solver(tmp_path, f"max_iter: 1\nsnapshot_prefix: {tmp_path}/afile/t\n")
    with pytest.raises(OutputError, match=r"afile: cannot make the snapshot folder"):
        solver.solve()
    assert solver.step == 0


def test_torch_writer_failure_is_an_output_error(tmp_path, monkeypatch):
    def short_write(obj, f, *args, **kwargs):
        f.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(pyfrcnn.net.torch, "save", short_write)
    with pytest.raises(OutputError, match=r"w\.weights: cannot write: (No space left|the write "
                                          r"failed \(\[enforce fail)"):
        pyfrcnn.net.atomic_torch_save({"a": 1}, tmp_path / "w.weights")
    assert os.listdir(tmp_path) == []
