"""Command-line options every command spells the same way.

  --device auto|cpu|cuda|cuda:N   (default auto: cuda when available), or
  --gpu N                         py-faster-rcnn's spelling of --device cuda:N
  --set KEY.PATH=VALUE            one override per --set, repeatable
  --data-root DIR                 where py-faster-rcnn's named datasets live
  NET --phase --stage --level --input-shape   how a net is built

Commands (the engine's and the plugins') call these helpers; cli.py imports
this module, never the other way.
"""

import argparse

from .errors import ConfigError, PyfrcnnError


# -- devices -----------------------------------------------------------------------
def check_device_name(text):
    """'auto', or a name torch.device accepts; else a ConfigError (checked when
    the command runs, so that it is one line with exit status 1, as any bad
    value, not argparse's usage message)."""
    import torch

    if text == "auto":
        return text
    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device '{text}': expected cpu, cuda, cuda:N or auto") from None
    return text


def add_device_argument(parser, default="auto", what="the net"):
    """--device (default auto) and --gpu N (= --device cuda:N), exclusive."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--device", default=None,
                       help=f"where {what} runs: auto (cuda when available), cpu, cuda or "
                       f"cuda:N (default {default})")
    group.add_argument("--gpu", type=int, metavar="N", default=None,
                       help="the same as --device cuda:N (py-faster-rcnn's --gpu)")
    parser.set_defaults(_device_default=default)


def device_from_args(args, default=None):
    """The device name the options ask for: --gpu N, --device, else the default."""
    gpu = getattr(args, "gpu", None)
    if gpu is not None:
        if gpu < 0:
            raise ConfigError(f"--gpu {gpu}: a GPU index is 0 or more (--device cpu for the CPU)")
        return f"cuda:{gpu}"
    device = getattr(args, "device", None)
    if device:
        return check_device_name(device)
    return default if default is not None else getattr(args, "_device_default", "auto")


def resolve_device(name, local_rank=None):
    """A torch.device for 'auto', 'cpu', 'cuda', 'cuda:N'; a ConfigError when
    CUDA is asked for and absent."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"device '{name}': expected cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device '{name}': expected cpu, cuda, cuda:N or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}': CUDA is not available (use --device cpu)")
        if device.index is None:
            device = torch.device("cuda", local_rank if local_rank is not None
                                  else torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{name}': there are {torch.cuda.device_count()} "
                              "CUDA device(s)")
    return device


# -- overrides and data ---------------------------------------------------------------
def add_set_argument(parser, example="max_iter=100", what="a solver file value"):
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY.PATH=VALUE",
                        help=f"override {what} (YAML), e.g. {example}; one per --set, "
                        "repeatable")


def add_data_root_argument(parser, default="data"):
    parser.add_argument("--data-root", dest="data_root", default=default, metavar="DIR",
                        help="where py-faster-rcnn dataset names (voc_2007_test, ...) live "
                        f"(default: {default or 'data'})")
    parser.add_argument("--root", dest="data_root", help=argparse.SUPPRESS)  # the old name


# -- nets ---------------------------------------------------------------------------
def parse_input_shapes(items):
    """['data=1,3,600,1000', 'im_info=1,3'] -> {'data': (1, 3, 600, 1000), ...}"""
    shapes = {}
    for item in items or ():
        name, sep, dims = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            raise PyfrcnnError(f"--input-shape '{item}': expected NAME=D1,D2,... "
                               "(e.g. data=1,3,600,1000)") from None
    return shapes


def add_net_arguments(parser, shapes=True, phase="TEST"):
    parser.add_argument("net", help="the net's prototxt file")
    parser.add_argument("--phase", default=phase, type=str.upper, choices=("TRAIN", "TEST"),
                        help=f"which layers to keep (include / exclude rules); default {phase}")
    parser.add_argument("--stage", action="append", default=[], help="a NetState stage (repeatable)")
    parser.add_argument("--level", type=int, default=0, help="the NetState level")
    if shapes:
        parser.add_argument("--input-shape", action="extend", nargs="+", default=[],
                            metavar="BLOB=D1,D2,...",
                            help="the shape of an input blob or a data layer's top, e.g. "
                            "data=1,3,600,1000 im_info=1,3")


def build_net(args, config=None, **options):
    """The Net of args.net; `options` go to Net (fuse, channels_last)."""
    from .net import Net

    return Net(args.net, phase=args.phase, stages=args.stage, level=args.level,
               input_shapes=parse_input_shapes(getattr(args, "input_shape", None)),
               config=config, **options)
