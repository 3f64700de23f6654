"""One rank of a distributed solver run for test_distributed: solve SOLVER as
the torchrun environment says, then save this rank's weights to OUT/rank<r>.pt.
With RESUME_AT, first train to that step (which snapshots), then resume from
that snapshot with a fresh solver and train to max_iter."""

import os
import sys

import torch


def main(solver_path, out, resume_at=None):
    torch.set_num_threads(1)
    from pyfrcnn.solver import Solver
    from pyfrcnn.solver_config import load_solver

    config = load_solver(solver_path)
    run_dir = os.path.join(out, "run")
    resume = None
    if resume_at is not None:
        first = Solver(config.replace(max_iter=int(resume_at)), run_dir=run_dir)
        if first.solve() != 0:
            return 1
        resume = first.snapshot_paths()[1]
    solver = Solver(config, run_dir=run_dir)
    try:
        status = solver.solve(resume=resume)
        torch.save({"weights": solver.net.weights_dict(), "run_config": solver.run_config,
                    "cursor": solver.net.layer_dict["data"].cursor},
                   os.path.join(out, f"rank{solver.rank}.pt"))
    finally:
        solver.close()
    return status


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
