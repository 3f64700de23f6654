"""Hooks around the solver loop: testing, display, metrics files, TensorBoard,
a progress bar and periodic snapshots.

A hook may define before_train(solver), before_step(solver),
after_step(solver), after_train(solver) and write(record); the solver calls
them in list order. `solver.last` describes the step just taken (a
StepResult); displayed and tested values go out as records (plain dicts with
`step` and `kind`) to every hook that has `write`.

Evaluators: a plugin appends to EVALUATORS (or calls register_evaluator) a
factory `factory(solver) -> evaluate or None`; evaluate(step, train_net)
returns {metric: value} (e.g. {'mAP': 0.69}). The first factory that returns
one is used; without any, a solver with test_net and test_iter gets Caffe's
tester (NetTester).
"""

import datetime
import json
import logging
import math
import os
import sys
import time

import torch

from . import progress

log = logging.getLogger("pyfrcnn.solver")

EVALUATORS = []
STEP_STATS = []


def register_evaluator(factory):
    """Add factory(solver) -> evaluate(step, train_net) -> {metric: value} (or None)."""
    EVALUATORS.append(factory)
    return factory


def register_step_stats(factory):
    """Add factory(solver) -> stats (or None): the display calls stats.update(net) after
    every step (tensor work only, no host sync) and stats.read() -> {name: value} at each
    display, shown as 'Train stats' and written as the record's 'stats'."""
    STEP_STATS.append(factory)
    return factory


def fmt(value):
    """A number as Caffe's streams print it (6 significant digits)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class CaffeLogFormatter(logging.Formatter):
    """glog's line prefix ('I0131 12:34:56.789012  4242 solver.py:120] ') so that
    Caffe's log parsers (tools/extra/parse_log.py, parse_log.sh) read our logs."""

    def format(self, record):
        stamp = datetime.datetime.fromtimestamp(record.created).strftime("%m%d %H:%M:%S.%f")
        prefix = f"{record.levelname[:1]}{stamp} {record.process:>6} {record.filename}:{record.lineno}] "
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return prefix + text


def console_handler(stream=None):
    """The console's logging handler: lines go above a progress bar, never through it."""
    return progress.ConsoleHandler(stream or sys.stderr)


class HookBase:
    def before_train(self, solver):
        pass

    def before_step(self, solver):
        pass

    def after_step(self, solver):
        pass

    def after_train(self, solver):
        pass


# -- testing ---------------------------------------------------------------
class NetTester:
    """Caffe's Solver::Test: run the test net `test_iter` times with the train
    net's current weights and average each scalar output."""

    def __init__(self, solver):
        self.solver = solver
        self.net = None

    def __call__(self, step, train_net):
        from .net import Net

        s = self.solver
        if self.net is None:
            self.net = Net(s.config.test_net, "TEST", config=s.run_config).to(s.device)
        self.net.load(dict(train_net.params))
        sums = {}
        with torch.no_grad():
            for _ in range(s.config.test_iter):
                outputs = self.net.forward()
                for name, value in outputs.items():
                    if value.numel() == 1:
                        sums[name] = sums.get(name, 0.0) + float(value)
        return {name: total / s.config.test_iter for name, total in sums.items()}


def make_evaluator(solver):
    """The evaluate callable of the first plugin factory that gives one, else
    Caffe's tester when the solver has a test net and test_iter; else None."""
    for factory in EVALUATORS:
        evaluate = factory(solver)
        if evaluate is not None:
            return evaluate
    if solver.config.test_net and solver.config.test_iter > 0:
        return NetTester(solver)
    return None


class TestHook(HookBase):
    """Test at the start of every test_interval-th step (step 0 only with
    test_initialization) and once after training when the last step is a
    multiple of test_interval or test_after_train is set (Caffe's rules)."""

    def __init__(self, evaluate):
        self.evaluate = evaluate
        self.last_tested = None

    def due(self, solver):
        c = solver.config
        return bool(c.test_interval) and solver.step % c.test_interval == 0 and \
            (solver.step > 0 or c.test_initialization)

    def before_step(self, solver):
        if self.due(solver):
            self.run(solver)

    def after_train(self, solver):
        if solver.stopped_early or self.last_tested == solver.step:
            return
        if self.due(solver) or solver.config.test_after_train:
            self.run(solver)

    def run(self, solver):
        self.last_tested = solver.step
        if not solver.is_main:
            return
        log.info("Iteration %d, Testing net (#0)", solver.step)
        start = time.time()
        metrics = self.evaluate(solver.step, solver.net) or {}
        for k, (name, value) in enumerate(metrics.items()):
            log.info("    Test net output #%d: %s = %s", k, name, fmt(float(value)))
        solver.emit({"step": solver.step, "kind": "test", "seconds": time.time() - start,
                     "metrics": {k: float(v) for k, v in metrics.items()}})


# -- display ---------------------------------------------------------------
class DisplayHook(HookBase):
    """Every `display` steps, Caffe's lines: the smoothed loss, each scalar
    output of the last pass (with its weighted loss), the rate, and the speed.

    The speed is the time per step between two displays, test time left out;
    the ETA uses a moving average of it (weight ETA_SMOOTHING for the latest
    interval) that leaves out the first interval (it holds the run's set-up),
    so it neither starts with the set-up nor jumps between lines."""

    ETA_SMOOTHING = 0.3

    def __init__(self):
        self.last_time = None
        self.last_step = None
        self.stats = []
        self.excluded = 0.0
        self.average = None
        self.first_interval = True

    def before_train(self, solver):
        self.last_time, self.last_step = time.time(), solver.step
        self.first_interval = True
        self.stats = [s for s in (factory(solver) for factory in STEP_STATS) if s is not None]

    def write(self, record):
        if record.get("kind") == "test":
            self.excluded += record.get("seconds", 0.0)

    def after_step(self, solver):
        c, last = solver.config, solver.last
        for stats in self.stats:
            stats.update(solver.net)
        if not c.display or last.step % c.display != 0:
            return
        now = time.time()
        steps = max(solver.step - self.last_step, 1)
        seconds_per_step = max(now - self.last_time - self.excluded, 0.0) / steps
        self.last_time, self.last_step, self.excluded = now, solver.step, 0.0
        a = self.ETA_SMOOTHING
        if self.first_interval:  # it holds the run's set-up (data generation, the first
            # forward's allocations): shown, but kept out of the average
            self.first_interval = False
            speed = seconds_per_step
        else:
            self.average = seconds_per_step if self.average is None else \
                a * seconds_per_step + (1 - a) * self.average
            speed = self.average
        remaining = (c.max_iter - solver.step) * speed
        eta = str(datetime.timedelta(seconds=int(remaining)))
        log.info("Iteration %d, loss = %s (%.3g s/iter, eta %s)", last.step,
                 fmt(solver.smoothed_loss), seconds_per_step, eta)
        outputs = {}
        for k, (name, value) in enumerate(last.outputs.items()):
            value = float(value)
            outputs[name] = value
            weight = solver.loss_weights.get(name, 0.0)
            extra = f" (* {fmt(float(weight))} = {fmt(weight * value)} loss)" if weight else ""
            log.info("    Train net output #%d: %s = %s%s", k, name, fmt(value), extra)
        stats = {k: float(v) for s in self.stats for k, v in s.read().items()}
        if stats:
            log.info("    Train stats: %s", ", ".join(f"{k.replace('_', ' ')} = {fmt(v)}"
                                                     for k, v in stats.items()))
        log.info("Iteration %d, lr = %s", last.step, fmt(last.rate))
        record = {"step": last.step, "kind": "train", "loss": solver.smoothed_loss,
                  "lr": last.rate, "seconds_per_step": seconds_per_step, "outputs": outputs}
        if stats:
            record["stats"] = stats
        if last.grad_norm is not None:
            record["grad_norm"] = last.grad_norm
        solver.emit(record)


class MetricsFile(HookBase):
    """Appends every record as one JSON line to <run folder>/metrics.jsonl. On
    resume, records of steps at or after the resumed step are dropped first."""

    def __init__(self, path):
        self.path = path

    def before_train(self, solver):
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if solver.step > 0 and os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                kept = [line for line in f if _record_step(line) < solver.step]
            with open(self.path, "w", encoding="utf-8") as f:
                f.writelines(kept)

    def write(self, record):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _record_step(line):
    """The step of a metrics line; a torn last line (a crash mid-write) sorts last."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


class TensorBoardHook(HookBase):
    """Scalars train/<name> and test/<name>, when torch.utils.tensorboard imports."""

    def __init__(self, folder):
        self.folder = folder
        self.writer = None

    def before_train(self, solver):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard is optional
            log.debug("tensorboard is not installed: no TensorBoard scalars")
            return
        self.writer = SummaryWriter(self.folder, purge_step=solver.step or None)

    def write(self, record):
        if self.writer is None:
            return
        kind, step = record["kind"], record["step"]
        values = dict(record.get("outputs", {}), **record.get("metrics", {}))
        for key in ("loss", "lr", "seconds_per_step", "grad_norm"):
            if key in record:
                values[key] = record[key]
        for name, value in values.items():
            if math.isfinite(value):
                self.writer.add_scalar(f"{kind}/{name}", value, step)
        self.writer.flush()

    def after_train(self, solver):
        if self.writer is not None:
            self.writer.close()


class ProgressBar(HookBase):
    """A bar of steps with it/s, a smoothed ETA and the loss of the last display,
    when stderr is a terminal and the console is not --quiet (pyfrcnn.progress).
    Per step it adds 1 to a counter; the loss is read only at display steps,
    where DisplayHook has it on the host already."""

    def __init__(self):
        self.bar = progress.NullBar()

    def before_train(self, solver):
        self.bar = progress.progress(solver.config.max_iter, "train", "step",
                                     initial=solver.step, enabled=not progress.quiet())

    def after_step(self, solver):
        self.bar.update(1)
        display = solver.config.display
        if display and solver.last.step % display == 0 and solver.losses:
            self.bar.set_postfix(loss=f"{solver.smoothed_loss:.4g}")

    def after_train(self, solver):
        self.bar.close()


class PeriodicSnapshot(HookBase):
    """A snapshot after every `snapshot`-th step."""

    def after_step(self, solver):
        every = solver.config.snapshot
        if every and solver.step % every == 0:
            solver.snapshot()
