"""Two settings of one solver file, their prepared training steps interleaved in one process.

Builds the solver twice with the same seed, A with the --a overrides and B with
the --b overrides, takes the same samples from each one's data layer, and
alternates their prepared steps (forward + backward + update), swapping which
goes first every round. Prints each side's median and the median of the
per-round ratios A/B with its interquartile range. Paired like this, a machine
whose speed drifts between runs still gives a usable ratio; with the same
settings on both sides the ratio is 1.00 within about 0.01 (IQR about 0.95-1.06
on a shared 2-core VM).

    python benchmarks/bench_ab.py solvers/shapes_solver.yaml --b channels_last=false [--rounds 120]
"""

import argparse
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.bench_vs_torchvision import pyfrcnn_solver, pyfrcnn_step_fn, take_samples  # noqa: E402
from benchmarks.machine import cpu_model  # noqa: E402


def paired(solver_file, sides, rounds, warmup, device, out):
    """{side: [seconds]} of `rounds` rounds after `warmup`, one step of each side a round."""
    steps = {}
    for name, overrides in sides.items():
        torch.manual_seed(0)
        solver = pyfrcnn_solver(solver_file, overrides, device, os.path.join(out, name))
        steps[name] = pyfrcnn_step_fn(solver, take_samples(solver, 8), device)
    names = list(steps)
    times = {name: [] for name in names}
    for k in range(warmup + rounds):
        for name in (names if k % 2 else names[::-1]):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            steps[name]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if k >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("solver")
    parser.add_argument("--a", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of side A (repeatable)")
    parser.add_argument("--b", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of side B (repeatable)")
    parser.add_argument("--rounds", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("output", "bench_ab"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    times = paired(args.solver, {"A": args.a, "B": args.b}, args.rounds, args.warmup, device, args.out)
    ratios = sorted(a / b for a, b in zip(times["A"], times["B"]))
    quarter = len(ratios) // 4
    median = {name: 1000 * statistics.median(values) for name, values in times.items()}
    print(f"# {args.solver}, {args.rounds} rounds after {args.warmup}, {torch.get_num_threads()} "
          f"torch threads, {cpu_model()}, load {os.getloadavg()[0]:.2f}")
    print(f"A {' '.join(args.a) or '(as the file says)'}: {median['A']:.2f} ms")
    print(f"B {' '.join(args.b) or '(as the file says)'}: {median['B']:.2f} ms")
    print(f"A/B: median of the paired ratios {statistics.median(ratios):.3f} "
          f"(IQR {ratios[quarter]:.3f}-{ratios[-quarter - 1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
