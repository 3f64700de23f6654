"""The share of a training step spent waiting for data, with prefetching on.

Builds a solver file's train net with its run config, wraps the data layer's
forward with a timer, and runs forward + backward steps (no update: the wait
does not depend on it). The first `--warmup` steps are not counted.

    python benchmarks/bench_data_wait.py solvers/shapes_solver.yaml --steps 60
    python benchmarks/bench_data_wait.py solvers/shapes_solver.yaml --net prototxt/vgg16/train.prototxt \
        --set detection.TRAIN.SCALES=[600] --set detection.TRAIN.MAX_SIZE=1000 --steps 3
"""

import argparse
import os
import platform
import time

import torch

from pyfrcnn.net import Net
from pyfrcnn.solver_config import load_solver


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("solver")
    parser.add_argument("--net", help="train net (default: the solver's train_net)")
    parser.add_argument("--set", action="append", default=[], help="solver overrides, key.path=value")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_solver(args.solver, args.set)
    run_config = dict(config.sections)
    net = Net(args.net or config.train_net, "TRAIN", config=run_config)
    data_layer = next(l for l in net.layers if l.type == "Python" and not l.param.bottom)
    waited = []
    forward = data_layer.forward

    def timed_forward(*bottoms):
        t0 = time.perf_counter()
        tops = forward(*bottoms)
        waited.append(time.perf_counter() - t0)
        return tops

    data_layer.forward = timed_forward
    step_times = []
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        net.forward()
        net.backward()
        step_times.append(time.perf_counter() - t0)
    data_layer.close()
    waits, steps = waited[args.warmup:], step_times[args.warmup:]
    share = sum(waits) / sum(steps)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    print(f"{net.name}: {len(steps)} steps, {1000 * sum(steps) / len(steps):.1f} ms per step, "
          f"{1000 * sum(waits) / len(waits):.2f} ms waiting for data per step ({100 * share:.2f}%), "
          f"{data_layer.data_config.workers} loader threads")


if __name__ == "__main__":
    main()
