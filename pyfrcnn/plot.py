"""`pyfrcnn plot RUN_DIR | LOG`: PNG curves from a run's metrics.jsonl, or from
a log in Caffe's format (a `caffe train` log or our train.log, read as Caffe's
tools/extra/parse_log.py reads them).

Writes loss.png (the smoothed loss and every loss output), outputs.png (the
other scalar outputs, e.g. accuracies), lr.png and test.png (the test metrics,
e.g. mAP) into the run folder (or --out). A resumed run is one curve: where
the steps go back (a resume from an earlier snapshot), the later records
replace the earlier ones from that step on. Needs matplotlib, imported only here.
"""

import argparse
import collections
import json
import os
import re
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


NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)"
ITERATION_LOSS = re.compile(r"\] Iteration (\d+)(?: \(.*?\))?, loss = " + NUMBER)
ITERATION_LR = re.compile(r"\] Iteration (\d+), lr = " + NUMBER)
TESTING = re.compile(r"\] Iteration (\d+), Testing net")
OUTPUT = re.compile(r"\]\s+(Train|Test) net output #\d+: (\S+) = " + NUMBER)


def read_caffe_log(path):
    """Records (as metrics.jsonl's) from a log in Caffe's format: 'Iteration N,
    loss = X', 'Train net output #k: name = v', 'Iteration N, lr = r',
    'Iteration N, Testing net (#0)' and 'Test net output #k: name = v'."""
    records, train, test = [], None, None
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the log: {e.strerror}") from None
    with f:
        for line in f:
            m = ITERATION_LOSS.search(line)
            if m:
                train = {"step": int(m.group(1)), "kind": "train", "loss": float(m.group(2)),
                         "outputs": {}}
                records.append(train)
                continue
            m = TESTING.search(line)
            if m:
                test = {"step": int(m.group(1)), "kind": "test", "metrics": {}}
                records.append(test)
                continue
            m = ITERATION_LR.search(line)
            if m and train is not None and train["step"] == int(m.group(1)):
                train["lr"] = float(m.group(2))
                continue
            m = OUTPUT.search(line)
            if m:
                target = train if m.group(1) == "Train" else test
                if target is not None:
                    key = "outputs" if m.group(1) == "Train" else "metrics"
                    target[key][m.group(2)] = float(m.group(3))
    return records


def continuous(records):
    """The records of one run, in order: where a kind's steps go back (a run
    resumed from an earlier snapshot appends again from there), the later
    records replace the earlier ones from that step on."""
    kept = collections.defaultdict(list)
    for r in records:
        step = r.get("step")
        if not isinstance(step, (int, float)):
            continue
        runs = kept[r.get("kind")]
        while runs and runs[-1]["step"] >= step:
            runs.pop()
        runs.append(r)
    return [r for runs in kept.values() for r in runs]


def read_records(path):
    """The records of a run folder (metrics.jsonl, else train.log) or a log file."""
    if os.path.isdir(path):
        metrics = os.path.join(path, "metrics.jsonl")
        log = os.path.join(path, "train.log")
        if not os.path.exists(metrics) and os.path.exists(log):
            return read_caffe_log(log)
        return read_metrics(metrics)
    if path.endswith(".jsonl"):
        return read_metrics(path)
    return read_caffe_log(path)


def series(records):
    """{figure: {curve: ([steps], [values])}} for the figures plot() draws."""
    figures = collections.defaultdict(lambda: collections.defaultdict(lambda: ([], [])))
    for r in continuous(records):
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

    records = read_records(run_dir)
    out_dir = out_dir or (run_dir if os.path.isdir(run_dir) else os.path.dirname(
        os.path.abspath(run_dir)))
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
    parser.add_argument("run_dir", metavar="RUN_DIR|LOG",
                        help="a run folder (its metrics.jsonl, else its train.log) or a log in "
                        "Caffe's format (`caffe train` 2> caffe.log)")
    parser.add_argument("--out", help="where to write the PNGs (default: the run folder, or "
                        "the log's folder)")
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
        print(f"pyfrcnn plot: {args.run_dir} has nothing to plot", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def main(argv=None):
    return run_plot(add_plot_arguments(argparse.ArgumentParser(prog="pyfrcnn plot")).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
