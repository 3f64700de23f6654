"""The `pyfrcnn` command line: the engine's own commands (check, draw, time,
solve, plot) and those that plugins register (test, eval, detect, data, ...).

Every command prints a one-line error and exits 1 on bad input; `--debug`
shows the traceback instead. `--debug` and `--quiet` go before or after the
command's name; a usage error names the command. The options every command
shares (--device/--gpu, --set, --data-root, the net options) are in
pyfrcnn.arguments, re-exported here.
"""

import argparse
import logging
import os
import sys

from . import __version__, registry
from .arguments import (add_data_root_argument, add_device_argument, add_net_arguments,  # noqa: F401
                        add_set_argument, build_net, device_from_args, parse_input_shapes,
                        resolve_device)
from .errors import PyfrcnnError


def _engine_commands():
    from . import tools
    from .plot import add_plot_arguments, run_plot
    from .solver import add_solve_arguments, run_solve
    from .weights import add_convert_arguments, run_convert

    return {
        "check": (tools.add_check_arguments, tools.run_check,
                  "build a net without data and print its layers, shapes and costs"),
        "draw": (tools.add_draw_arguments, tools.run_draw, "draw a net with Graphviz"),
        "time": (tools.add_time_arguments, tools.run_time,
                 "time forward and backward per layer, as `caffe time`"),
        "solve": (add_solve_arguments, run_solve, "train a net with a YAML solver file"),
        "plot": (add_plot_arguments, run_plot, "plot the curves of a training run"),
        "convert": (add_convert_arguments, run_convert,
                    "write a .caffemodel or torchvision VGG16 file in pyfrcnn's weights format"),
    }


def _add_verbosity(parser, default):
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks and debug logs")
    parser.add_argument("--quiet", "-q", action="store_true", default=default,
                        help="only warnings and errors")


def make_parser():
    parser = argparse.ArgumentParser(
        prog="pyfrcnn", description="Caffe-style Faster R-CNN on PyTorch.")
    parser.add_argument("--version", action="version", version=f"pyfrcnn {__version__}")
    _add_verbosity(parser, False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = dict(_engine_commands())
    commands.update(registry.commands())
    for name, (add_arguments, run, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_verbosity(p, argparse.SUPPRESS)  # given here or before the command: either counts
        add_arguments(p)
        p.set_defaults(_run=run, _parser=p)
    return parser


def _current_folder_importable():
    """python_param modules in the current folder import, as `python -m` and
    Caffe users with '.' on PYTHONPATH expect; appended, so it shadows nothing."""
    here = os.getcwd()
    if not any(os.path.abspath(p or ".") == here for p in sys.path):
        sys.path.append(here)


def main(argv=None):
    try:
        parser = make_parser()
    except PyfrcnnError as e:
        print(f"pyfrcnn: error: {e}", file=sys.stderr)
        return 1
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would blame `pyfrcnn`; the command's own parser names it
        (getattr(args, "_parser", None) or parser).error(
            f"unrecognized arguments: {' '.join(extra)}")
    _current_folder_importable()
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    from . import progress

    progress.QUIET = bool(args.quiet)

    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(name)s] %(message)s",
                        datefmt="%H:%M:%S", handlers=[progress.ConsoleHandler(sys.stderr)])
    if not args.debug:
        logging.getLogger("pyfrcnn.net").setLevel(logging.WARNING)
    try:
        return args._run(args) or 0
    except PyfrcnnError as e:
        if args.debug:
            raise
        print(f"pyfrcnn {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # a command may say how to go on (solve: the resume command)
        note = f"; {e}" if str(e) else ""
        print(f"pyfrcnn {args.command}: interrupted{note}", file=sys.stderr)
        return 130
