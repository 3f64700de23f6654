"""`pyfrcnn plot RUN_DIR`: PNG curves from a run's metrics.jsonl.

Writes loss.png (the smoothed loss and every loss output), outputs.png (the
other scalar outputs, e.g. accuracies), lr.png and test.png (the test metrics,
e.g. mAP) into the run folder (or --out). Needs matplotlib, imported only here.
"""

import argparse
import collections
import json
import os
import sys

from .errors import ConfigError


def read_metrics(path):
    """The records of a metrics.jsonl (a torn last line is ignored)."""
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
    except OSError as e:
        raise ConfigError(f"{path}: cannot read metrics: {e.strerror}") from None
    return records


def series(records):
    """{figure: {curve: ([steps], [values])}} for the figures plot() draws."""
    figures = collections.defaultdict(lambda: collections.defaultdict(lambda: ([], [])))
    for r in records:
        step = r.get("step")
        if r.get("kind") == "train":
            for name, value in (("loss (smoothed)", r.get("loss")), ("lr", r.get("lr"))):
                if value is not None:
                    figures["lr" if name == "lr" else "loss"][name][0].append(step)
                    figures["lr" if name == "lr" else "loss"][name][1].append(value)
            for name, value in r.get("outputs", {}).items():
                figure = "loss" if "loss" in name else "outputs"
                figures[figure][name][0].append(step)
                figures[figure][name][1].append(value)
        elif r.get("kind") == "test":
            for name, value in r.get("metrics", {}).items():
                figures["test"][name][0].append(step)
                figures["test"][name][1].append(value)
    return figures


def plot(run_dir, out_dir=None):
    """Write the PNGs; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    out_dir = out_dir or run_dir
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for figure, curves in series(records).items():
        fig, ax = plt.subplots(figsize=(8, 5))
        for name, (steps, values) in curves.items():
            ax.plot(steps, values, label=name, marker="o" if figure == "test" else None)
        ax.set_xlabel("iteration")
        ax.set_title(f"{os.path.basename(os.path.abspath(run_dir))}: {figure}")
        if figure == "lr":
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        path = os.path.join(out_dir, f"{figure}.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def add_plot_arguments(parser):
    parser.add_argument("run_dir", help="a run folder holding metrics.jsonl")
    parser.add_argument("--out", help="where to write the PNGs (default: the run folder)")
    return parser


def run_plot(args):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("pyfrcnn plot: matplotlib is not installed (pip install matplotlib, "
              "or pip install pyfrcnn[plot])", file=sys.stderr)
        return 1
    try:
        written = plot(args.run_dir, getattr(args, "out", None))
    except ConfigError as e:
        print(f"pyfrcnn plot: error: {e}", file=sys.stderr)
        return 1
    if not written:
        print(f"pyfrcnn plot: {args.run_dir}/metrics.jsonl has nothing to plot", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def main(argv=None):
    return run_plot(add_plot_arguments(argparse.ArgumentParser(prog="pyfrcnn plot")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
