"""`pyfrcnn time`: `caffe time`, mean forward and backward milliseconds per
layer, in the TRAIN phase by default. A train net runs with its data layer,
given its solver file (as NET or --solver) or a data spec (--data); with a
solver file the net is built as `solve` builds it (its fuse_layers and
channels_last).
"""

import time

import torch

from .errors import PyfrcnnError, format_shape
from .net import channels_last_bottoms


SOLVER_SUFFIXES = (".yaml", ".yml")


def add_time_arguments(parser):
    from .arguments import add_device_argument, add_net_arguments, add_set_argument

    add_net_arguments(parser, phase="TRAIN")
    parser.set_defaults(phase="TRAIN")
    parser.add_argument("--solver", metavar="SOLVER.yaml",
                        help="the run config (data, detection, ...) a train net's data layer "
                        "reads; NET may also be the solver file itself (its train_net)")
    parser.add_argument("--data", metavar="SPEC",
                        help="the training data of a train net's data layer, without a solver "
                        "file (shapes:train, voc_2007_trainval, ...)")
    add_set_argument(parser, "data.workers=1", "a value of the solver file")
    add_device_argument(parser)
    parser.add_argument("--iterations", "-n", type=int, default=10, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")


def solver_and_net(args):
    """(solver file or None, net path or None): NET may be the solver file itself."""
    if args.solver is None and args.net.endswith(SOLVER_SUFFIXES):
        return args.net, None
    return args.solver, args.net


def run_config(args):
    """(net path, run config) for `time`: from a solver file (NET or --solver),
    else the sections' defaults with data.train / data.test = --data."""
    from . import registry
    from .distributed import run_config_entry
    from .solver_config import load_solver

    solver, net = solver_and_net(args)
    if solver:
        config = load_solver(solver, args.overrides)
        if net is None:
            net = config.train_net if args.phase == "TRAIN" else config.test_net or config.train_net
        sections = dict(config.sections)
    else:
        sections = {}
        for name, validate in registry.config_sections().items():
            value = {"train": args.data, "test": args.data} if name == "data" and args.data \
                else {}
            try:
                sections[name] = validate(value, name)
            except PyfrcnnError:
                if name == "data" and args.data:
                    raise
    sections["distributed"] = run_config_entry(None)
    return net, sections


def random_inputs(net, generator=None, device=None):
    inputs = {}
    for layer, tops, shapes in zip(net.layers, net.top_names, net.top_shapes):
        if layer.type != "Input":
            continue
        for top, shape in zip(tops, shapes):
            if any(d is None for d in shape):
                raise PyfrcnnError(f"input '{top}' has a dynamic shape {format_shape(shape)}: "
                                   "give it with --input-shape")
            inputs[top] = (torch.rand(shape, generator=generator) * 255).to(device or "cpu")
    return inputs


def _backward_target(outputs, net):
    if net.loss is not None:
        return net.loss
    grads = [v.sum() for v in outputs.values() if v.requires_grad]
    return sum(grads) if grads else None


def _clock(device):
    """perf_counter after the device's queued work is done (CUDA runs asynchronously)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_layers(net, iterations, warmup=1, device=None):
    """Per-layer (forward ms, backward ms) and whole-net (forward ms, backward ms).

    Each layer's backward is timed alone: its forward is rerun on detached
    bottoms that require grad, then autograd backward from random top grads.
    A data layer (no bottoms) is timed by one more forward: one more batch.
    """
    inputs = random_inputs(net, device=device)
    fwd = [0.0] * len(net.layers)
    bwd = [0.0] * len(net.layers)
    total_fwd = total_bwd = 0.0
    for it in range(warmup + iterations):
        timed = it >= warmup
        net.zero_grad(set_to_none=True)
        t0 = _clock(device)
        outputs = net.forward(**inputs)
        t1 = _clock(device)
        target = _backward_target(outputs, net)
        if target is not None and target.requires_grad:
            target.backward()
        t2 = _clock(device)
        net.loss = None
        if timed:
            total_fwd += t1 - t0
            total_bwd += t2 - t1
        blobs = dict(net.blobs, **inputs)
        for i, (layer, bottoms) in enumerate(zip(net.layers, net.bottom_names)):
            if layer.type == "Input":
                continue
            args = [blobs[b].detach().requires_grad_(blobs[b].is_floating_point()) for b in bottoms]
            if net.channels_last_layer(layer):  # as Net.forward hands them over
                args = channels_last_bottoms(args)
            t0 = _clock(device)
            out = layer.forward(*args)
            t1 = _clock(device)
            out = (out,) if isinstance(out, torch.Tensor) else tuple(out)
            pairs = [(o, torch.rand_like(o)) for o in out if o.requires_grad]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
            t2 = _clock(device)
            if timed:
                fwd[i] += t1 - t0
                bwd[i] += t2 - t1 if pairs else 0.0
    scale = 1000.0 / max(iterations, 1)
    per_layer = [(l.name, l.type, f * scale, b * scale) for l, f, b in zip(net.layers, fwd, bwd)]
    return per_layer, total_fwd * scale, total_bwd * scale


def net_options(args):
    """Net keyword arguments from the solver file, when one is given: the train net
    is then timed as `solve` runs it (fused chains, channels last)."""
    from .solver_config import load_solver

    solver, _ = solver_and_net(args)
    if not solver:
        return {}
    config = load_solver(solver, args.overrides)
    return {"fuse": config.fuse_layers, "channels_last": config.channels_last}


def run_time(args):
    from .arguments import build_net, device_from_args, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    options = net_options(args)
    net_path, config = run_config(args)
    args.net = net_path
    device = resolve_device(device_from_args(args))
    net = build_net(args, config=config, **options).to(device)
    try:
        per_layer, total_fwd, total_bwd = time_layers(net, args.iterations, args.warmup, device)
    finally:
        for layer in net.layers:
            close = getattr(layer, "close", None)
            if callable(close):
                close()
    width = max(len(n) for n, *_ in per_layer)
    print(f"{'layer'.ljust(width)}  {'type':<18}{'forward ms':>12}{'backward ms':>13}")
    for name, kind, f, b in per_layer:
        print(f"{name.ljust(width)}  {kind:<18}{f:12.3f}{b:13.3f}")
    print(f"Average Forward pass: {total_fwd:.3f} ms.")
    print(f"Average Backward pass: {total_bwd:.3f} ms.")
    print(f"Average Forward-Backward: {total_fwd + total_bwd:.3f} ms "
          f"({args.iterations} iterations, {torch.get_num_threads()} threads, {device}).")
    return 0
