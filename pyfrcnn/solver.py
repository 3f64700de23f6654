"""The solver: a loop counted in steps, as Caffe's Solver::Step.

Each step zeroes the gradients, runs iter_size forward/backward passes of the
train net, averages the gradients over the ranks of a distributed run, and
applies one Caffe update (pyfrcnn.sgd) at the rate of the step's lr policy
(pyfrcnn.lr_policy). Testing, display, metrics and periodic snapshots are
hooks around the loop (pyfrcnn.hooks).

Snapshots are <snapshot_prefix>_iter_<N>.weights (Net.save, with the run's
config sections as meta) and <snapshot_prefix>_iter_<N>.solverstate (the
step, the update history by parameter name, every rank's random states and
layer states, the resolved solver config), each written atomically. Resuming
from a .solverstate continues bit for bit.

Signals, as Caffe's sigint_effect / sighup_effect: by default SIGINT and
SIGTERM snapshot at the end of the current step and stop; SIGHUP snapshots
and goes on. A run stopped by SIGINT exits with status 0 (Caffe's "stop");
one stopped by SIGTERM exits with 143 (128 + 15), by SIGHUP with 129, so that
a scheduler sees the run did not finish. A second SIGINT interrupts at once.

A step whose loss or global gradient norm is NaN or Inf stops the run
(status 1) with a message naming the step and the loss tops or the parameter
(layer, blob index) that went non-finite first, without writing a snapshot;
nan_policy: skip drops that step's update instead (the skips are counted and
logged at the end). A snapshot is never written with a non-finite weight.
"""

import argparse
import collections
import dataclasses
import glob
import logging
import math
import os
import random
import re
import signal
import sys
import threading

import numpy as np
import torch

from . import distributed, guard, hooks, solverstate
from .errors import ConfigError, PyfrcnnError, output_error
from .lr_policy import config_learning_rate
from .net import Net, atomic_torch_save
from .sgd import make_updater
from .solver_config import load_solver, plain
from .solverstate import STATE_FORMAT

log = logging.getLogger("pyfrcnn.solver")

SIGNALS = {"SIGINT": "sigint_effect", "SIGTERM": "sigterm_effect", "SIGHUP": "sighup_effect"}
STOP_STATUS = {"SIGINT": 0, "SIGTERM": 128 + 15, "SIGHUP": 128 + 1}


class TrainingDiverged(PyfrcnnError):
    """A NaN or Inf loss under nan_policy: stop."""


@dataclasses.dataclass
class StepResult:
    step: int            # the step this result belongs to (before the increment)
    loss: float          # the mean over iter_size passes of the weighted loss
    outputs: dict        # the scalar output blobs of the last pass (tensors)
    rate: float
    grad_norm: float = None
    skipped: bool = False


def resolve_device(name, info=None):
    """arguments.resolve_device for rank `info` (None: one process), made the
    current CUDA device."""
    from .arguments import resolve_device as resolve

    device = resolve(name, info.local_rank if info else None)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


class Solver:
    """Trains `config.train_net` (a SolverConfig) in `run_dir`.

    evaluate(step, train_net) -> {metric: value} is called at the test steps
    (default: hooks.make_evaluator). `hook_list` replaces the default hooks.
    dist_info: None reads the torchrun environment, False forces one process.
    """

    def __init__(self, config, run_dir=None, device=None, evaluate=None, hook_list=None,
                 dist_info=None):
        self.config = config
        self.dist_info = distributed.from_env() if dist_info is None else dist_info or None
        self.device = resolve_device(device or config.device, self.dist_info)
        self.group = (distributed.ProcessGroup(self.dist_info, self.device)
                      if self.dist_info else None)
        self.rank = self.group.rank if self.group else 0
        self.world_size = self.group.world_size if self.group else 1
        self.snapshot_prefix = config.snapshot_prefix or self.snapshot_prefix_default(run_dir)
        self.run_dir = run_dir or os.path.dirname(self.snapshot_prefix)
        self.run_config = dict(config.sections)
        self.run_config["distributed"] = distributed.run_config_entry(self.dist_info)
        if config.random_seed >= 0:
            seed_everything(config.random_seed + self.rank)
        self.net = self.build_net()
        self.updater = make_updater(self.net.learnable_params(), config)
        self.step = 0
        self.last = None
        self.losses = collections.deque(maxlen=config.average_loss)
        self.stopped_early = False
        self.skipped_steps = 0
        self.stop_signal = None
        self._pending = set()   # asked for by signals, acted on at the next step's end
        self._requests = set()  # agreed by every rank for the step just taken
        self._snapshot_step = None
        evaluate = evaluate if evaluate is not None else hooks.make_evaluator(self)
        self.hooks = hook_list if hook_list is not None else self.default_hooks(evaluate)

    # -- building ------------------------------------------------------------
    def snapshot_prefix_default(self, run_dir=None):
        """<run folder>/<solver file name>, the run folder defaulting to output/<name>."""
        stem = os.path.splitext(os.path.basename(self.config.path or "solver"))[0]
        return os.path.join(run_dir or os.path.join(os.getcwd(), "output", stem), stem)

    def build_net(self):
        c = self.config
        net = Net(c.train_net, "TRAIN", config=self.run_config, fuse=c.fuse_layers,
                  channels_last=c.channels_last).to(self.device)
        if net.input_blobs:
            raise ConfigError(f"{c.train_net}: the train net takes input blob(s) "
                              f"{', '.join(net.input_blobs)}; a solver needs data layers")
        self.loss_weights = {}
        for layer, tops in zip(net.layers, net.top_names):
            for top, weight in zip(tops, layer.loss_weights):
                if weight:
                    self.loss_weights[top] = weight
        if not self.loss_weights:
            raise ConfigError(f"{c.train_net}: the train net has no loss (no top with a "
                              "nonzero loss_weight)")
        for path in c.weights:
            loaded, skipped = net.load(path)
            log.info("Loaded weights of %d layer(s) from %s%s", len(loaded), path,
                     f" (the net lacks {', '.join(skipped)})" if skipped else "")
        if self.group:
            self.group.broadcast_params(list(net.parameters()))
        return net

    def default_hooks(self, evaluate):
        c = self.config
        result = []
        if evaluate is not None and (c.test_interval or c.test_after_train):
            result.append(hooks.TestHook(evaluate))
        elif c.test_interval:
            log.warning("test_interval is set but there is nothing to test with "
                        "(give test_iter for Caffe's tester, or install an evaluator)")
        if self.is_main:
            result.append(hooks.DisplayHook())
            result.append(hooks.MetricsFile(os.path.join(self.run_dir, "metrics.jsonl")))
            if c.tensorboard:
                result.append(hooks.TensorBoardHook(os.path.join(self.run_dir, "tensorboard")))
            result.append(hooks.ProgressBar())
        result.append(hooks.PeriodicSnapshot())
        return result

    @property
    def is_main(self):
        return self.rank == 0

    def rate(self, step=None):
        return config_learning_rate(self.config, self.step if step is None else step)

    @property
    def smoothed_loss(self):
        return sum(self.losses) / len(self.losses) if self.losses else float("nan")

    def emit(self, record):
        for hook in self.hooks:
            write = getattr(hook, "write", None)
            if write is not None:
                write(record)

    # -- the loop ------------------------------------------------------------
    def run_step(self):
        """One step: iter_size forward/backward passes, the all-reduce, one update.

        The losses and the global gradient norm are read back in one transfer (in
        a distributed run the losses go first: their flag rides on the all-reduce).
        """
        c = self.config
        for p, _, _, _ in self.updater.params:
            p.grad = None
        losses = []
        for _ in range(c.iter_size):
            outputs = self.net.forward()
            losses.append(self.net.backward().double().reshape(()))
        pending = set(self._pending)
        self._pending -= pending
        grads = self.updater.gradients()
        if self.group:
            loss_values = torch.stack(losses).tolist()
            bad = self._bad_losses(loss_values)
            flags = self.group.average_gradients(grads, self._flags(bad, pending))
            grad_norm = float(guard.global_norm(grads))  # every rank holds the same sum
        else:
            norm = guard.global_norm(grads).to(losses[0].device)
            *loss_values, grad_norm = torch.stack([*losses, norm]).tolist()
            bad = self._bad_losses(loss_values)
            flags = self._flags(bad, pending)
        if flags[1]:
            self._requests.add("stop")
        if flags[2]:
            self._requests.add("snapshot")
        rate = self.rate()
        scalars = {k: v.detach() for k, v in outputs.items() if v.numel() == 1}
        self.last = StepResult(self.step, sum(loss_values) / c.iter_size, scalars, rate)
        if flags[0] or not math.isfinite(grad_norm):
            if flags[0]:
                where = f"{', '.join(bad)}" if bad else "on another rank"
                message = f"Iteration {self.step}: non-finite loss ({where})"
            else:
                named = [(name, p.grad) for p, _, _, name in self.updater.params]
                message = (f"Iteration {self.step}: non-finite gradient (global norm "
                           f"{grad_norm}; the loss is finite): "
                           f"{guard.nonfinite_report(self.net, named, 'gradient')}")
            if c.nan_policy == "stop":
                raise TrainingDiverged(f"{message}; stopping without a snapshot, the last "
                                       "one is intact (nan_policy: skip would skip such steps)")
            log.warning("%s; skipping this step's update", message)
            self.last.skipped = True
            self.skipped_steps += 1
        else:
            self.losses.append(self.last.loss)
            clipped_norm = self.updater.apply(rate, self.step)
            self.last.grad_norm = clipped_norm if clipped_norm is not None else grad_norm
        self.step += 1
        return self.last

    @staticmethod
    def _flags(bad, pending):
        return [1.0 if bad else 0.0, 1.0 if "stop" in pending else 0.0,
                1.0 if "snapshot" in pending else 0.0]

    def _bad_losses(self, losses):
        """['loss_cls = nan', ...] for the first non-finite pass, or []."""
        for k, loss in enumerate(losses):
            if math.isfinite(loss):
                continue
            pass_note = f" in pass {k + 1} of {len(losses)}" if len(losses) > 1 else ""
            if k == len(losses) - 1:  # the blobs of the last pass are still there
                bad = [f"{t} = {float(self.net.blobs[t].detach().sum())}" for t in self.loss_weights
                       if t in self.net.blobs and not torch.isfinite(self.net.blobs[t]).all()]
                if bad:
                    return [b + pass_note for b in bad]
            return [f"loss = {loss}{pass_note}"]
        return []

    def solve(self, resume=None):
        """Train to max_iter (from a .solverstate if given); returns the exit status."""
        c = self.config
        log.info("Solving %s", self.net.name or c.train_net)
        log.info("Learning Rate Policy: %s", c.lr_policy)
        if resume:
            self.restore(resume)
        if self.is_main:
            self.prepare_snapshot_folder()
        previous = self._install_signal_handlers()
        try:
            for hook in self.hooks:
                hook.before_train(self)
            while self.step < c.max_iter:
                for hook in self.hooks:
                    hook.before_step(self)
                self.run_step()
                for hook in self.hooks:
                    hook.after_step(self)
                if not self.group:  # ranks agree on requests only through run_step's all-reduce
                    self._requests |= self._pending
                    self._pending.clear()
                if "snapshot" in self._requests:
                    self._requests.discard("snapshot")
                    self.snapshot()
                if "stop" in self._requests:
                    self.stopped_early = True
                    break
            if (c.snapshot_after_train or self.stopped_early) and self._snapshot_step != self.step:
                self.snapshot()
            for hook in self.hooks:
                hook.after_train(self)
        finally:
            self._restore_signal_handlers(previous)
        if self.skipped_steps:
            log.warning("%d of %d step(s) were skipped (non-finite loss or gradient, "
                        "nan_policy: skip)", self.skipped_steps, self.step)
        if self.stopped_early:
            log.info("Optimization stopped early.")
            return STOP_STATUS.get(self.stop_signal, 0)
        log.info("Optimization Done.")
        return 0

    def close(self):
        if self.group:
            self.group.close()

    # -- signals -------------------------------------------------------------
    def request(self, action, signal_name=None):
        """Ask for 'stop' (snapshot, then stop) or 'snapshot' at the end of the step."""
        if action == "stop":
            self.stop_signal = self.stop_signal or signal_name
        if action != "none":
            self._pending.add(action)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        effect = getattr(self.config, SIGNALS[name])
        log.info("%s received: %s", name, effect)
        if name == "SIGINT" and "stop" in self._pending | self._requests:
            raise KeyboardInterrupt
        self.request(effect, name)

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for name in SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                previous[signum] = signal.signal(signum, self._handle)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous):
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    # -- snapshots -----------------------------------------------------------
    def snapshot_paths(self, step=None):
        base = f"{self.snapshot_prefix}_iter_{self.step if step is None else step}"
        return base + ".weights", base + ".solverstate"

    def _rank_state(self):
        return solverstate.rank_state(self.net, self.device)

    def snapshot(self):
        """Write the weights and the solver state of the current step (rank 0);
        every rank must call it. Returns the two paths (None off rank 0).

        Refuses (TrainingDiverged) to write weights that hold a NaN or Inf: the
        snapshots already written stay the last good ones."""
        self._check_finite_weights()
        states = self.group.all_gather(self._rank_state()) if self.group else [self._rank_state()]
        self._snapshot_step = self.step
        if not self.is_main:
            return None
        weights_path, state_path = self.snapshot_paths()
        meta = {name: plain(value) for name, value in self.config.sections.items()}
        meta.update(self.net.weights_meta())
        meta["solver"] = {"iter": self.step, "train_net": self.config.train_net}
        log.info("Snapshotting to weights file %s", weights_path)
        self.net.save(weights_path, meta=meta)
        log.info("Snapshotting solver state to %s", state_path)
        atomic_torch_save({
            "format": STATE_FORMAT, "version": 1, "iter": self.step, "type": self.config.type,
            "learned_net": os.path.basename(weights_path),
            "history": self.updater.state_dict(), "ranks": states,
            "config": solverstate.loadable(self.config.to_dict(), "config"),
            "losses": [float(v) for v in self.losses]}, state_path)
        self.prune_snapshots()
        return weights_path, state_path

    def prepare_snapshot_folder(self):
        """Make the snapshot folder now (not after hours of training) and remove the
        temp files that killed runs left there (<prefix>_iter_N.*.tmp<pid> of a
        process that is gone). An OutputError names a folder that cannot be made."""
        folder = os.path.dirname(os.path.abspath(self.snapshot_prefix))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise output_error(folder, e, "make the snapshot folder") from None
        pattern = re.compile(re.escape(os.path.basename(self.snapshot_prefix)) +
                             r"_iter_\d+\.(weights|solverstate)\.tmp(\d+)$")
        for name in os.listdir(folder):
            match = pattern.match(name)
            if match and not _process_alive(int(match.group(2))):
                try:
                    os.remove(os.path.join(folder, name))
                    log.info("Removed %s, left by a run that was killed", name)
                except OSError as e:
                    log.warning("cannot remove the orphan temp file %s: %s", name, e.strerror)

    def _check_finite_weights(self):
        named = [(name, p.detach()) for p, _, _, name in self.net.learnable_params()]
        if math.isfinite(float(guard.global_norm([t for _, t in named]))):
            return
        bad = guard.nonfinite_in_backward_order(named)
        if bad:
            weights_path, _ = self.snapshot_paths()
            raise TrainingDiverged(
                f"Iteration {self.step}: refusing to write {weights_path}: the weights of "
                f"{guard.describe_param(self.net, bad[0])} are non-finite ({len(bad)} of "
                f"{len(named)} parameter blobs); the earlier snapshots are intact")

    def prune_snapshots(self):
        keep = self.config.keep_snapshots
        if not keep:
            return
        pattern = re.compile(re.escape(os.path.basename(self.snapshot_prefix)) +
                             r"_iter_(\d+)\.(weights|solverstate)$")
        found = collections.defaultdict(list)
        for path in glob.glob(glob.escape(self.snapshot_prefix) + "_iter_*"):
            match = pattern.match(os.path.basename(path))
            if match:
                found[int(match.group(1))].append(path)
        for step in sorted(found)[:-keep]:
            for path in found[step]:
                os.remove(path)

    def restore(self, state_path):
        """Continue from a .solverstate: weights, history, step and random states."""
        payload = solverstate.read(state_path)
        if payload["type"] != self.config.type:
            raise ConfigError(f"{state_path}: written by a {payload['type']} solver, "
                              f"the solver file says type: {self.config.type}")
        weights = os.path.join(os.path.dirname(os.path.abspath(state_path)), payload["learned_net"])
        self.net.load(weights, strict=True)
        self.updater.load_state_dict(payload["history"], state_path)
        self.step = payload["iter"]
        self.losses.extend(payload.get("losses", []))
        ranks = payload["ranks"]
        if len(ranks) == self.world_size:
            solverstate.restore_rank_state(ranks[self.rank], self.net, self.device, state_path)
        else:
            log.warning("%s was written by %d process(es), this run has %d: random and "
                        "data states are not restored", state_path, len(ranks), self.world_size)
        for key, old in payload.get("config", {}).items():
            new = self.config.to_dict().get(key)
            if old != new and key in self.config.to_dict():
                log.info("Resuming with %s changed: %r -> %r", key, old, new)
        log.info("Resumed from %s at iteration %d", state_path, self.step)

def _process_alive(pid):
    if pid == os.getpid():
        return False  # our own name, left by an earlier run with our pid: not in use now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- command line --------------------------------------------------------------
def add_solve_arguments(parser):
    from .arguments import add_device_argument, add_set_argument

    parser.add_argument("solver", help="the solver file: YAML, or Caffe's solver.prototxt")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--weights", help="weights file(s) to start from, comma-separated "
                       "(replaces the solver file's `weights`)")
    start.add_argument("--resume", metavar="auto|DIR|SNAPSHOT",
                       help="continue a run: auto (the latest complete snapshot in the run "
                       "folder), a run folder (its latest) or a .solverstate")
    parser.add_argument("--out", help="the run folder: metrics, logs and snapshots "
                        "(default: the folder of snapshot_prefix, else output/<solver name>)")
    parser.add_argument("--force", action="store_true", help="start over in a run folder that "
                        "holds an earlier run, deleting its logs, metrics and snapshots")
    parser.add_argument("--cfg", metavar="CFG.yml", help="a py-faster-rcnn cfg file "
                        "(experiments/cfgs/*.yml) mapped onto the solver file's sections")
    add_device_argument(parser, default="the solver file's `device`", what="training")
    add_set_argument(parser)
    return parser


def _setup_logging(run_dir, is_main, mode="a"):
    """A glog-style stderr handler when none is configured, and <run>/train.log
    at INFO whatever the console shows. Returns an undo function."""
    root = logging.getLogger()
    added, levels = [], [(root, root.level)]
    if not root.handlers:
        handler = hooks.console_handler(sys.stderr)
        handler.setFormatter(hooks.CaffeLogFormatter())
        handler.setLevel(logging.INFO if is_main else logging.WARNING)
        added.append(handler)
    else:  # keep the console as configured while the root lets INFO through to the file;
        # ranks other than 0 show warnings only
        for handler in root.handlers:
            levels.append((handler, handler.level))
            level = handler.level if handler.level != logging.NOTSET else root.level
            handler.setLevel(level if is_main else max(level, logging.WARNING))
    if is_main:
        os.makedirs(run_dir, exist_ok=True)
        handler = logging.FileHandler(os.path.join(run_dir, "train.log"), mode, encoding="utf-8")
        handler.setFormatter(hooks.CaffeLogFormatter())
        added.append(handler)
    for handler in added:
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)

    def undo():
        for handler in added:
            root.removeHandler(handler)
            handler.close()
        for obj, level in levels:
            obj.setLevel(level)

    return undo


def _with_cfg(args):
    """args with --cfg read: its --set strings, and --out / --device from its
    EXP_DIR / GPU_ID where the command line gives none."""
    from . import registry
    from .cfg_file import read_cfg

    overrides, out, device = read_cfg(args.cfg, registry.config_sections())
    args = argparse.Namespace(**vars(args))
    args.cfg_overrides = overrides
    if out and not getattr(args, "out", None):
        args.out = args.cfg_out = out  # the cfg's EXP_DIR: no --out in the resume command
    if device and not getattr(args, "device", None) and getattr(args, "gpu", None) is None:
        args.device = device
    return args


def run_solve(args):
    """`pyfrcnn solve`: returns the exit status (errors are printed, not raised).
    The run folder's rules (one run per folder, the lock) are pyfrcnn.run_dir's."""
    from .arguments import device_from_args
    from .run_dir import RunFolder, banner, write_resolved_solver

    solver, undo, run = None, None, None
    try:
        if getattr(args, "cfg", None):
            args = _with_cfg(args)
        config = load_solver(args.solver, args.cfg_overrides + list(args.overrides or ())
                             if getattr(args, "cfg", None) else args.overrides or ())
        if getattr(args, "weights", None):
            config = config.replace(weights=tuple(
                os.path.abspath(w) for w in args.weights.split(",") if w))
        info = distributed.from_env()
        run = RunFolder(config, args, is_main=info is None or info.rank == 0).open()
        config = config.replace(snapshot_prefix=run.prefix)
        if run.resume:
            config = config.replace(weights=())  # the snapshot's weights replace them
        undo = _setup_logging(run.path, run.is_main, "a" if run.appending else "w")
        device = resolve_device(device_from_args(args, config.device), info)
        if run.is_main:
            for line in banner(config, device, run.command()):
                if line:
                    log.info("%s", line)
            for note in run.notes:
                log.warning("%s", note)
            write_resolved_solver(run.path, config)
        solver = Solver(config, run_dir=run.path, device=str(device), dist_info=info or False)
        status = solver.solve(resume=run.resume)
        if solver.stopped_early and run.is_main and run.resume_hint():
            log.info("%s", run.resume_hint())
        return status
    except KeyboardInterrupt:  # a second Ctrl-C: the command line prints one line with the hint
        if run is not None and run.is_main and run.resume_hint():
            raise KeyboardInterrupt(run.resume_hint()) from None
        raise
    except (PyfrcnnError, OSError) as e:
        if getattr(args, "debug", False):
            raise
        if isinstance(e, OSError):  # a folder or file of the run that cannot be written
            e = output_error(e.filename or getattr(args, "out", None) or args.solver, e)
        if undo is not None:  # the run's log is open: the error goes there too
            log.error("%s", e)
        else:
            print(f"pyfrcnn solve: error: {e}", file=sys.stderr)
        return 1
    finally:
        if solver is not None:
            solver.close()
        if undo is not None:
            undo()
        if run is not None:
            run.close()


def main(argv=None):
    parser = add_solve_arguments(argparse.ArgumentParser(prog="pyfrcnn solve"))
    return run_solve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
