"""Run folders: one run per folder, never two mixed.

A run folder holds one training run: train.log, metrics.jsonl, solver.yaml
(the resolved solver file, overrides included, as detectron2 writes
config.yaml), tensorboard/ and the snapshots <prefix>_iter_<N>.weights /
.solverstate. The rules `pyfrcnn solve` follows:

- A fresh solve into a folder that holds an earlier run (a snapshot or a
  metrics record) is refused, with the exact command that continues it
  (`--resume auto`) and `--force`, which deletes the earlier run's files and
  starts over. Leftovers of a run that never got that far are replaced.
- `--resume auto` continues from the latest complete snapshot (both files
  present) in the run folder, `--resume DIR` from the latest in DIR (which
  becomes the run folder), `--resume FILE.solverstate` from that file.
- While a run lives it holds <run folder>/pyfrcnn.lock (flock'ed, with its
  pid, host, start time and command); a second solve into the folder is
  refused naming that process (pyfrcnn.run_lock). The lock goes when the run
  ends; one left by a killed run is stale and is taken over, with a warning.
- A solver.yaml of the user's own in the run folder is never touched (the
  resolved copy then goes to solver.resolved.yaml).
"""

import glob
import json
import os
import re
import shlex
import shutil
import socket
import sys

from .run_lock import LOCK_NAME, RunFolderError, RunLock  # noqa: F401 (part of this API)

RUN_FILES = ("train.log", "metrics.jsonl", "solver.yaml", "solver.resolved.yaml")
RUN_FOLDERS = ("tensorboard",)
SNAPSHOT_RE = re.compile(r"^(?P<prefix>.+)_iter_(?P<step>\d+)\.(?P<kind>weights|solverstate)$")


# -- what a folder holds ---------------------------------------------------------
def snapshots(folder):
    """{step: .solverstate path} of the complete snapshots in `folder` (both the
    .weights and the .solverstate present), any prefix; the newest prefix wins a tie."""
    found = {}
    for path in glob.glob(os.path.join(glob.escape(folder), "*_iter_*.solverstate")):
        match = SNAPSHOT_RE.match(os.path.basename(path))
        weights = path[:-len(".solverstate")] + ".weights"
        if match and os.path.isfile(weights):
            step = int(match.group("step"))
            if step not in found or os.path.getmtime(path) > os.path.getmtime(found[step]):
                found[step] = path
    return found


def latest_snapshot(folder):
    found = snapshots(folder)
    return found[max(found)] if found else None


def metrics_records(folder):
    """(number of records, last step) of <folder>/metrics.jsonl."""
    count, last = 0, None
    try:
        with open(os.path.join(folder, "metrics.jsonl"), encoding="utf-8") as f:
            for line in f:
                try:
                    last = int(json.loads(line)["step"])
                    count += 1
                except (ValueError, KeyError, TypeError):
                    continue
    except OSError:
        pass
    return count, last


def earlier_run(folder):
    """A description of the run `folder` holds ('3 snapshots (last at iteration
    2000), 52 metrics records'), or None when it holds none."""
    found = snapshots(folder)
    count, last = metrics_records(folder)
    parts = []
    if found:
        parts.append(f"{len(found)} snapshot{'s' if len(found) > 1 else ''} "
                     f"(the last at iteration {max(found)})")
    if count:
        parts.append(f"{count} metrics record{'s' if count > 1 else ''} up to iteration {last}")
    return ", ".join(parts) or None


def remove_run_files(folder, with_snapshots=True):
    """Delete what a run writes into `folder` (logs, metrics, solver.yaml,
    tensorboard/ and, with_snapshots, every <prefix>_iter_<N> snapshot);
    returns the names removed."""
    removed = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        path = os.path.join(folder, name)
        if name == "solver.yaml" and not _ours(path):
            continue  # a user's own solver file that happens to live in the run folder
        if name in RUN_FILES or (with_snapshots and SNAPSHOT_RE.match(name)) or \
                re.match(r".+_iter_\d+\.(weights|solverstate)\.tmp\d+$", name):
            os.remove(path)
            removed.append(name)
        elif name in RUN_FOLDERS and os.path.isdir(path):
            shutil.rmtree(path)
            removed.append(name + "/")
    return removed


# -- a run's folder, snapshot prefix and resume point ------------------------------
def default_folder(config, out=None):
    """(run folder, snapshot prefix) as --out and the solver file give them."""
    stem = os.path.splitext(os.path.basename(config.path or "solver"))[0]
    if out:
        out = os.path.abspath(out)
        return out, os.path.join(out, os.path.basename(config.snapshot_prefix or stem))
    if config.snapshot_prefix:
        return os.path.dirname(config.snapshot_prefix), config.snapshot_prefix
    folder = os.path.join(os.getcwd(), "output", stem)
    return folder, os.path.join(folder, stem)


def _shown(path):
    """A path as the user would type it: relative to the current folder when inside it."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path, os.getcwd())
    return path if rel.startswith("..") else rel


class RunFolder:
    """Where a `solve` writes, from what to resume, and the lock on it.

    `args` carries the command line's solver, out, resume, force, overrides and
    device (missing attributes mean the defaults). open() takes the lock and
    applies the rules above; close() releases it.
    """

    def __init__(self, config, args, is_main=True):
        self.config = config
        self.args = args
        self.is_main = is_main
        self.out = getattr(args, "out", None)
        self.force = bool(getattr(args, "force", False))
        self.home, self.home_prefix = default_folder(config, self.out)
        self.resume = None
        self.path, self.prefix = self.home, self.home_prefix
        self.lock = None
        self.appending = False
        self.notes = []  # warnings for the run's log, which opens after the checks
        resume = getattr(args, "resume", None)
        if resume:
            self._find_resume(resume)

    def _find_resume(self, resume):
        if resume == "auto" or os.path.isdir(resume):
            folder = self.home if resume == "auto" else os.path.abspath(resume)
            state = latest_snapshot(folder)
            if state is None:
                raise RunFolderError(
                    f"--resume {resume}: {_shown(folder)} holds no complete snapshot "
                    "(<prefix>_iter_<N>.weights and .solverstate) to resume from")
        elif os.path.isfile(resume):
            state = os.path.abspath(resume)
        elif os.path.exists(resume):
            raise RunFolderError(f"--resume {resume}: not a readable solver state (give a "
                                 ".solverstate, a run folder or auto)")
        else:
            raise RunFolderError(f"--resume {resume}: no such solver state, file or folder "
                                 "(give a .solverstate, a run folder or auto)")
        self.resume = state
        folder = os.path.dirname(state)
        if not self.out:
            self.path = folder
            match = SNAPSHOT_RE.match(os.path.basename(state))
            self.prefix = os.path.join(folder, match.group("prefix")) if match else \
                os.path.join(folder, os.path.basename(self.home_prefix))
        self.appending = os.path.realpath(self.path) == os.path.realpath(folder)

    def open(self):
        """Take the lock and check the folder; returns self."""
        if not self.is_main:
            return self
        self.lock = RunLock(self.path).acquire(self.command())
        if self.lock.stale:
            self.notes.append(self.lock.stale)
        try:
            self._check()
        except BaseException:
            self.close()
            raise
        return self

    def _check(self):
        held = earlier_run(self.path)
        if self.appending:
            return
        if held and not self.force:
            where = _shown(self.path)
            if self.resume:
                raise RunFolderError(
                    f"{where} holds another run ({held}); resume into the snapshot's own "
                    "folder (drop --out), or give --force to delete that run first")
            hint = (f"continue it with `{self.command(resume='auto')}`, or " if snapshots(self.path)
                    else "")
            raise RunFolderError(
                f"{where} holds an earlier run ({held}); {hint}start over with "
                f"`{self.command(force=True)}` (deletes that run's logs, metrics and "
                "snapshots), or train into another folder with --out DIR")
        removed = remove_run_files(self.path, with_snapshots=bool(held))
        if held and removed:
            self.notes.append(f"--force: removed the earlier run in {self.path}: "
                              f"{', '.join(removed)}")

    def close(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def command(self, resume=None, force=False):
        """The `pyfrcnn solve` command line of this run, resuming or forcing if asked."""
        a = self.args
        words = ["pyfrcnn", "solve", getattr(a, "solver", None) or self.config.path]
        if self.out and self.out != getattr(a, "cfg_out", None):
            words += ["--out", self.out]
        elif resume and os.path.abspath(self.path) != os.path.abspath(self.home):
            words += ["--out", _shown(self.path)]
        if getattr(a, "cfg", None):
            words += ["--cfg", a.cfg]
        for text in getattr(a, "overrides", None) or ():
            words += ["--set", text]
        if getattr(a, "gpu", None) is not None:
            words += ["--gpu", str(a.gpu)]
        elif getattr(a, "device", None):
            words += ["--device", a.device]
        if resume:
            words += ["--resume", resume]
        elif getattr(a, "resume", None):
            words += ["--resume", a.resume]
        elif getattr(a, "weights", None):
            words += ["--weights", a.weights]
        if force:
            words.append("--force")
        return shlex.join(words)

    def resume_hint(self):
        """'resume with: pyfrcnn solve ... --resume auto' when a snapshot exists."""
        if snapshots(self.path):
            return f"resume with: {self.command(resume='auto')}"
        return None


# -- what the run folder records ---------------------------------------------------
def _listed(value):
    if isinstance(value, dict):
        return {k: _listed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listed(v) for v in value]
    return value


RESOLVED_HEADER = "# The solver of this run:"


def _ours(path):
    """True when `path` is a solver.yaml this module wrote (its first line says so)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline().startswith(RESOLVED_HEADER)
    except OSError:
        return False


def write_resolved_solver(folder, config):
    """<folder>/solver.yaml: every solver key and section as this run uses them
    (solver.resolved.yaml when a solver.yaml of the user's own lives there)."""
    import yaml

    path = os.path.join(folder, "solver.yaml")
    if os.path.exists(path) and not _ours(path):
        path = os.path.join(folder, "solver.resolved.yaml")
    text = (f"{RESOLVED_HEADER} {config.path} with its overrides, every key resolved\n"
            + yaml.safe_dump(_listed(config.to_dict()), sort_keys=False, default_flow_style=None))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _changed(value, default):
    """The parts of `value` that differ from `default` (mappings compared key by key)."""
    if isinstance(value, dict) and isinstance(default, dict):
        out = {}
        for key, item in value.items():
            if key not in default:
                out[key] = item
            else:
                diff = _changed(item, default[key])
                if diff is not _SAME:
                    out[key] = diff
        return out or _SAME
    return _SAME if value == default else value


_SAME = object()


def set_values(config):
    """The settings that differ from the defaults, as Caffe prints only the
    fields a SolverParameter sets (solver.yaml holds every value)."""
    from . import registry
    from .solver_config import SOLVER_KEYS, plain

    values = _listed(config.to_dict())
    defaults = {k.name: _listed(plain(k.default)) for k in SOLVER_KEYS}
    for name, validate in registry.config_sections().items():
        try:
            defaults[name] = _listed(plain(validate({}, name)))
        except Exception:  # a section without defaults: shown whole
            pass
    changed = _changed(values, defaults)
    return {} if changed is _SAME else changed


def banner(config, device, command=""):
    """The lines a run's log opens with: versions, device, threads, the settings
    that differ from the defaults."""
    import yaml
    import torch

    from . import __version__

    settings = yaml.safe_dump(set_values(config), sort_keys=False,
                              default_flow_style=False).rstrip()
    cuda = ""
    if device.type == "cuda":
        cuda = f" ({torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda})"
    return [
        f"pyfrcnn {__version__}, torch {torch.__version__}, Python {sys.version.split()[0]}; "
        f"device {device}{cuda}; {torch.get_num_threads()} threads; pid {os.getpid()} on "
        f"{socket.gethostname()}",
        f"Command: {command}" if command else "",
        "Initializing solver from parameters:\n" + "\n".join("  " + line for line in
                                                             settings.splitlines()),
    ]
