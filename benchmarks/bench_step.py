"""One training step of a solver file, taken apart: where the time of a step goes.

Builds the solver as `pyfrcnn solve` does (its net, hooks and data layer) and
runs it two ways, in alternating blocks in one process:

- "solve": Solver.run_step with the solver's hooks around it, as `solve` runs
  it; the data layer's forward (waiting for the loader) is timed apart;
- "prepared": the same net on blobs taken from the data layer beforehand (as
  many as the steps, so the same variety of image sizes), forward + backward +
  update only: the case the torchvision comparison uses.
Blocks of --block steps of each kind alternate.

For the prepared step it also prints each layer's forward time and the
backward and update totals (a layer's time is measured by wrapping its
forward; the backward is one autograd call and is shown whole, with the
heaviest autograd nodes from torch.profiler when --profile is given).

    python benchmarks/bench_step.py solvers/shapes_solver.yaml --steps 60 [--threads 2]
"""

import argparse
import collections
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.machine import cpu_model  # noqa: E402
from pyfrcnn.solver import Solver  # noqa: E402
from pyfrcnn.solver_config import load_solver  # noqa: E402


def build_solver(path, overrides, out):
    config = load_solver(path, overrides)
    config = config.replace(snapshot_prefix=os.path.join(out, "bench"), test_interval=0,
                            test_after_train=False, snapshot=0)
    return Solver(config, run_dir=out, dist_info=False)


class LayerTimer:
    """Wraps every layer's forward to add its wall time to `totals[name]`."""

    def __init__(self, net):
        self.totals = collections.defaultdict(float)
        self.enabled = False
        for layer in net.layers:
            self._wrap(layer)

    def _wrap(self, layer):
        inner = layer.forward
        totals, name = self.totals, layer.name

        def forward(*args):
            if not self.enabled:
                return inner(*args)
            t0 = time.perf_counter()
            out = inner(*args)
            totals[name] += time.perf_counter() - t0
            return out

        layer.forward = forward


def prepared_inputs(solver, count):
    """`count` data-layer outputs, taken ahead (the data layer is the net's first layer)."""
    data_layer = solver.net.layers[0]
    return [data_layer.forward() for _ in range(count)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("solver")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--block", type=int, default=10, help="steps of each kind in a row")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=os.path.join("output", "bench_step"))
    parser.add_argument("--profile", action="store_true", help="also list the top autograd ops")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    solver = build_solver(args.solver, args.overrides, args.out)
    net = solver.net
    data_layer = net.layers[0]
    timer = LayerTimer(net)
    # As many samples as the solve steps take: images of as many sizes (each new
    # blob size costs the convolutions a new plan, on both sides alike).
    cached = prepared_inputs(solver, min(args.warmup + args.steps, 200))

    real_forward = data_layer.forward
    feed = {"i": 0}

    def cached_forward():
        item = cached[feed["i"] % len(cached)]
        feed["i"] += 1
        return item

    def solve_step():
        for hook in solver.hooks:
            hook.before_step(solver)
        solver.run_step()
        for hook in solver.hooks:
            hook.after_step(solver)

    phases = collections.defaultdict(list)
    for hook in solver.hooks:
        hook.before_train(solver)
    # Blocks of solve steps and prepared steps alternate: the loader threads (which
    # work ahead by data.prefetch samples) are busy during a solve block and idle
    # soon after a prepared block starts.
    done = 0
    while done < args.warmup + args.steps:
        block = min(args.block, args.warmup + args.steps - done)
        for k in range(done, done + block):
            measure = k >= args.warmup
            data_layer.forward = real_forward
            timer.totals.clear()
            timer.enabled = True
            t0 = time.perf_counter()
            solve_step()
            t1 = time.perf_counter()
            timer.enabled = False
            if measure:
                phases["solve: step"].append(t1 - t0)
                phases["solve: data layer forward"].append(timer.totals[data_layer.name])
        for k in range(done, done + block):
            measure = k >= args.warmup
            data_layer.forward = cached_forward
            timer.totals.clear()
            timer.enabled = True
            t0 = time.perf_counter()
            for p, _, _, _ in solver.updater.params:
                p.grad = None
            net.forward()
            t1 = time.perf_counter()
            timer.enabled = False
            net.backward()
            t2 = time.perf_counter()
            solver.updater.apply(solver.rate(), solver.step)
            t3 = time.perf_counter()
            if measure:
                phases["prepared: step"].append(t3 - t0)
                phases["prepared: forward"].append(t1 - t0)
                phases["prepared: backward"].append(t2 - t1)
                phases["prepared: update"].append(t3 - t2)
                for name, seconds in timer.totals.items():
                    phases["layer " + name].append(seconds)
        done += block
    data_layer.forward = real_forward

    load = os.getloadavg()[0]
    print(f"# {args.solver}: {args.steps} steps after {args.warmup}, {torch.get_num_threads()} "
          f"torch threads, {cpu_model()}, load {load:.2f}")
    print("| phase | median ms | mean ms |")
    print("| --- | ---: | ---: |")
    for name, values in phases.items():
        print(f"| {name} | {1000 * statistics.median(values):.2f} | "
              f"{1000 * statistics.mean(values):.2f} |")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        data_layer.forward = cached_forward
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                net.forward()
                net.backward()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
    solver.close()


if __name__ == "__main__":
    main()
