"""The main job end to end: `pyfrcnn solve solvers/shapes_solver.yaml`, timed.

Runs the solver as a user does (the `pyfrcnn` command, in a child process) from
a clean run folder: data generation when the shapes cache is absent, training,
and the final test on the shapes test split. The wall time covers all of it,
from start to exit. The figures come from the run folder's metrics.jsonl:
the steps taken, seconds per step (the training part of the wall time: the time
to the last training record over its steps), and the last test record's mAP
and per-class AP. The target: mAP@0.5 (VOC07) >= 0.90 within 10 minutes.

    python benchmarks/bench_main_job.py [--out output/bench_main_job]
        [--cache-dir DIR] [--fresh-cache] [--json FILE] [--set KEY=VALUE ...]

--fresh-cache generates the data in a new temporary folder, so the time
includes generation (about 40 s on one core); by default the cache is used as
it is, and the report says whether it held the data before the run.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import torch

from pyfrcnn_layers.datasets.shapes import MARKER, ShapesConfig, settings_key
from machine import cpu_model

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOLVER = os.path.join(REPO_DIR, "solvers", "shapes_solver.yaml")
TARGET_MAP = 0.90
TARGET_SECONDS = 600


def load_average():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def cached(cache_dir):
    """Whether the default shapes dataset is complete under cache_dir."""
    folder = os.path.join(cache_dir, f"shapes_{settings_key(ShapesConfig())}")
    return os.path.exists(os.path.join(folder, MARKER))


def read_metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if r.get("kind") == "train"]
    tests = [r for r in records if r.get("kind") == "test"]
    if not tests:
        raise SystemExit(f"{run_dir}/metrics.jsonl: no test record (did the run finish?)")
    return train, tests[-1]


def run_job(solver, run_dir, cache_dir, overrides):
    command = [sys.executable, "-m", "pyfrcnn", "solve", solver, "--out", run_dir, "--quiet"]
    if cache_dir:
        command += ["--set", f"data.cache_dir={cache_dir}"]
    for item in overrides:
        command += ["--set", item]
    start = time.perf_counter()
    status = subprocess.call(command, cwd=REPO_DIR)
    wall = time.perf_counter() - start
    if status:
        raise SystemExit(f"{' '.join(command)} exited with status {status}")
    return wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--solver", default=SOLVER)
    parser.add_argument("--out", default=os.path.join(REPO_DIR, "output", "bench_main_job"),
                        help="the run folder (emptied first)")
    parser.add_argument("--cache-dir", help="the data cache (default: the solver's, data/cache)")
    parser.add_argument("--fresh-cache", action="store_true",
                        help="generate the data in a new temporary cache (timed)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a solver override, as pyfrcnn solve --set")
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    temporary = tempfile.mkdtemp(prefix="shapes_cache_") if args.fresh_cache else None
    cache_dir = temporary or args.cache_dir
    had_data = cached(cache_dir or os.path.join(REPO_DIR, "data", "cache"))
    load_before = load_average()
    try:
        wall = run_job(args.solver, args.out, cache_dir, args.overrides)
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    load_after = load_average()

    train, test = read_metrics(args.out)
    steps = test["step"]
    first, last = train[0], train[-1]
    # Each train record holds the mean seconds per step since the one before it
    # (the first: step 0 alone); together they time steps 0..last.
    train_seconds = first["seconds_per_step"] + sum(
        (b["step"] - a["step"]) * b["seconds_per_step"] for a, b in zip(train, train[1:]))
    per_step = train_seconds / (last["step"] + 1)
    metrics = test["metrics"]
    results = {
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads(),
                    "load_average_before": load_before, "load_average_after": load_after},
        "solver": os.path.relpath(args.solver, REPO_DIR), "overrides": args.overrides,
        "data_cached_before": had_data, "wall_seconds": wall, "steps": steps,
        "seconds_per_step": per_step, "test_seconds": test.get("seconds"),
        "mAP": metrics["mAP"],
        "AP": {k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith("AP/")},
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)

    m = results["machine"]
    print(f"machine: {m['nproc']} cores (nproc), {m['cpu']}; Python {m['python']}, torch "
          f"{m['torch']}; load average {load_before} before, {load_after} after")
    print(f"{results['solver']}{' ' + ' '.join(args.overrides) if args.overrides else ''}; "
          f"data cache {'present' if had_data else 'absent (generated in the run)'}\n")
    print("| wall time | steps | s / step | test time | mAP@0.5 (VOC07) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    test_time = f"{results['test_seconds']:.1f} s" if results["test_seconds"] else "?"
    print(f"| {wall:.1f} s ({wall / 60:.2f} min) | {steps} | {per_step:.3f} | {test_time} | "
          f"{results['mAP']:.4f} |\n")
    print("| class | AP |")
    print("| --- | ---: |")
    for name, ap in results["AP"].items():
        print(f"| {name} | {ap:.4f} |")
    met = results["mAP"] >= TARGET_MAP and wall <= TARGET_SECONDS
    print(f"\ntarget (mAP >= {TARGET_MAP:.2f} within {TARGET_SECONDS // 60} min): "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
