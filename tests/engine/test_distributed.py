"""Two gloo processes on CPU keep identical weights and match one process
with iter_size 2 over the same samples, across a resume."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from pyfrcnn import distributed
from pyfrcnn.solver import Solver
from pyfrcnn.solver_config import load_solver
from tests.engine.netlib import write_run

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

LINES = """base_lr: 0.1
lr_policy: step
gamma: 0.5
stepsize: 2
max_iter: 4
momentum: 0.9
weight_decay: 0.01
clip_gradients: 10.0
random_seed: 4
device: cpu
tensorboard: false
snapshot_prefix: snap/tiny
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_from_env():
    assert distributed.from_env({}) is None
    assert distributed.from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    info = distributed.from_env({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"})
    assert (info.rank, info.world_size, info.local_rank) == (2, 4, 0)
    with pytest.raises(Exception, match="RANK 4 is out of range"):
        distributed.from_env({"WORLD_SIZE": "4", "RANK": "4"})
    assert distributed.run_config_entry(info) == {"rank": 2, "world_size": 4}


def test_two_gloo_ranks_match_one_process_with_iter_size_2_across_a_resume(tmp_path):
    path = write_run(str(tmp_path / "dist"), LINES + "iter_size: 1\n", batch=2)
    port = free_port()
    procs, logs = [], []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                   RANK=str(rank), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
        log = open(tmp_path / f"rank{rank}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.engine.dist_worker", path, str(tmp_path), "2"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        statuses = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for log in logs:
            log.close()
    texts = [(tmp_path / f"rank{r}.log").read_text() for r in range(2)]
    assert statuses == [0, 0], texts

    single_path = write_run(str(tmp_path / "single"), LINES + "iter_size: 2\n", batch=2)
    single = Solver(load_solver(single_path), run_dir=str(tmp_path / "single"), dist_info=False)
    initial = single.net.weights_dict()
    single.solve()

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["run_config"]["distributed"] == {"rank": 0, "world_size": 2}
    assert ranks[1]["run_config"]["distributed"] == {"rank": 1, "world_size": 2}
    # 4 steps x batch 2 on each rank, disjoint shards; the resumed solvers took the cursor on
    assert ranks[0]["cursor"] == ranks[1]["cursor"] == 8
    assert single.net.layer_dict["data"].cursor == 16
    for name, blobs in ranks[0]["weights"].items():
        for i, blob in enumerate(blobs):
            assert torch.equal(blob, ranks[1]["weights"][name][i]), name
            torch.testing.assert_close(blob, single.net.params[name][i].detach(), rtol=1e-5, atol=1e-5)
        assert not torch.equal(blobs[0], initial[name][0])   # training moved them
    # rank 0 alone wrote the snapshot, holding both ranks' states
    assert sorted(os.listdir(tmp_path / "dist" / "snap")) == [
        "tiny_iter_2.solverstate", "tiny_iter_2.weights", "tiny_iter_4.solverstate", "tiny_iter_4.weights"]
    mid = torch.load(tmp_path / "dist" / "snap" / "tiny_iter_2.solverstate", weights_only=False)
    assert mid["iter"] == 2 and [s["net"]["data"]["cursor"] for s in mid["ranks"]] == [4, 4]
    state = torch.load(tmp_path / "dist" / "snap" / "tiny_iter_4.solverstate", weights_only=False)
    assert [s["net"]["data"]["cursor"] for s in state["ranks"]] == [8, 8]
